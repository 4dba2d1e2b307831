"""``pipework shim PARENT ADDR/PREFIX [--route CIDR]... [--name NAME] [--mtu N] [--force]``
and ``pipework shim PARENT --remove [--name NAME]``: the host's own macvlan on
PARENT, so it reaches its macvlan guests (apps/shim.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pipework.cli.commands.common import fail, options
from pipework.cli.render import emit, run_async
from pipework.engine.errors import PipeworkError, UsageError

if TYPE_CHECKING:
    from pipework.apps.shim import ShimSpec


def command(
    ctx: typer.Context,
    parent: Annotated[str, typer.Argument(help="The NIC the macvlan guests hang on.")],
    address: Annotated[
        str | None,
        typer.Argument(help="The host's address on the shim, ADDR/PREFIX (e.g. 198.18.42.254/32)."),
    ] = None,
    route: Annotated[
        list[str] | None,
        typer.Option(
            "--route",
            metavar="CIDR",
            help="A route through the shim: DEST/PREFIX [via GW] [metric N] (repeatable).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The shim's name (default: pws- + a hash of PARENT)."),
    ] = None,
    mtu: Annotated[
        int | None, typer.Option("--mtu", help="MTU (default: PARENT's; at most PARENT's).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a shim of ours with another configuration.")
    ] = False,
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove pipework's shim(s) on PARENT instead.")
    ] = False,
) -> None:
    """The host's own macvlan on PARENT, so it reaches its macvlan guests.

    A macvlan (mode bridge) on PARENT in the host namespace, with ADDR/PREFIX
    and the --route(s) through it; PARENT's own addresses are not touched.
    Idempotent; --remove takes it away (docs/CLI.md).
    """
    opts = options(ctx)
    try:
        spec = _parse(parent, address, route or [], name, mtu, force=force, remove=remove)
    except PipeworkError as exc:
        raise fail(exc) from None

    async def run() -> int:
        from pipework.apps import shim
        from pipework.engine import Engine

        async with Engine() as engine:
            if spec is None:
                removed = await shim.remove(engine, parent, name)
                lines = [f"removed: shim {n} from {parent}" for n in removed]
                emit(
                    {"parent": parent, "removed": removed},
                    opts.json,
                    "\n".join(lines) or f"nothing to remove: {parent} has no pipework shim",
                )
                return 0
            record = await shim.create(engine, spec, force=force)
        emit(record.to_dict(), opts.json, record.describe())
        return 0

    raise typer.Exit(run_async(run, opts.debug))


def _parse(
    parent: str,
    address: str | None,
    routes: list[str],
    name: str | None,
    mtu: int | None,
    *,
    force: bool,
    remove: bool,
) -> ShimSpec | None:
    """The request, or None for ``--remove`` (checked without the kernel)."""
    from pipework.apps.shim import ShimSpec

    if remove:
        given = [
            what
            for what, value in (
                ("ADDR/PREFIX", address),
                ("--route", routes),
                ("--mtu", mtu),
                ("--force", force),
            )
            if value
        ]
        if given:
            raise UsageError(f"--remove takes no {given[0]}", "pipework shim PARENT --remove")
        from pipework.engine.specs import validate_ifname

        validate_ifname(parent, "parent interface name")
        if name is not None:
            validate_ifname(name, "shim name")
        return None
    if address is None:
        raise UsageError(
            "say which address the host takes on the shim",
            "pipework shim PARENT ADDR/PREFIX [--route CIDR]..., e.g. 198.18.42.254/32",
        )
    return ShimSpec.parse(parent, address, routes, name, mtu)


__all__ = ["command"]
