"""``pipework detach GUEST (-i IF | --all) [--prune-bridges]``."""

from __future__ import annotations

from typing import Annotated

import typer

from pipework.cli.commands.common import GuestArg, fail, options
from pipework.cli.render import emit, run_async
from pipework.engine.errors import PipeworkError, UsageError
from pipework.engine.marker import Marker
from pipework.engine.specs import validate_ifname


def check_detach(ifname: str | None, all_: bool) -> None:
    """``detach`` needs exactly one of ``-i IF`` and ``--all``."""
    if ifname is None and not all_:
        raise UsageError("say which interface to detach", "use -i IF, or --all for every one")
    if ifname is not None and all_:
        raise UsageError("-i and --all exclude each other")
    if ifname is not None:
        validate_ifname(ifname, "guest interface name")


def _what(marker: Marker) -> str:
    if marker.peer:  # a link between guests: its other end went with it
        peer = marker.host[:12] if len(marker.host) == 64 else marker.host
        return f"a link: {marker.peer} in {peer} went with it"
    return f"{marker.kind} {marker.host}" + (
        f"; host side {marker.hostif}" if marker.hostif else ""
    )


def command(
    ctx: typer.Context,
    guest: GuestArg,
    ifname: Annotated[
        str | None, typer.Option("--ifname", "-i", help="The guest interface to detach.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Detach every interface pipework attached to GUEST.")
    ] = False,
    prune_bridges: Annotated[
        bool,
        typer.Option(
            "--prune-bridges", help="Also remove bridges pipework created, once they are empty."
        ),
    ] = False,
) -> None:
    """Remove what pipework attached to GUEST (found by its markers). Idempotent."""
    opts = options(ctx)
    try:
        check_detach(ifname, all_)
    except PipeworkError as exc:
        raise fail(exc) from None

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            removed = await engine.detach(guest, ifname, prune_bridges=prune_bridges)
        rows = [
            {"ifname": m.ifname, "kind": m.kind, "host": m.host, "host_ifname": m.hostif or None}
            for m in removed
        ]
        lines = [f"detached: {m.ifname} from {guest} ({_what(m)})" for m in removed]
        what = f"interface {ifname}" if ifname else "interfaces"
        emit(
            {"guest": guest, "removed": rows},
            opts.json,
            "\n".join(lines) or f"nothing to detach: {guest} has no pipework {what}",
        )
        return 0

    raise typer.Exit(run_async(run, opts.debug))


__all__ = ["check_detach", "command"]
