"""``pipework wait GUEST [-i IF] [--timeout SECONDS]``, from the host."""

from __future__ import annotations

from typing import Annotated

import typer

from pipework.cli.commands.common import GuestArg, fail, options
from pipework.cli.fastpath import parse_seconds
from pipework.cli.render import emit, run_async
from pipework.engine.errors import PipeworkError
from pipework.engine.specs import DEFAULT_IFNAME, validate_ifname


def check_wait(ifname: str, timeout: str | None) -> float | None:
    """``wait``'s options -> seconds (None: for ever)."""
    validate_ifname(ifname, "guest interface name")
    return parse_seconds(timeout) if timeout is not None else None


def command(
    ctx: typer.Context,
    guest: GuestArg,
    ifname: Annotated[
        str, typer.Option("--ifname", "-i", help=f"The guest interface [{DEFAULT_IFNAME}].")
    ] = DEFAULT_IFNAME,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", metavar="SECONDS", help="Give up after this long (default: never)."
        ),
    ] = None,
) -> None:
    """Wait until IF exists in GUEST and is operationally up."""
    opts = options(ctx)
    try:
        seconds = check_wait(ifname, timeout)
    except PipeworkError as exc:
        raise fail(exc) from None

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            link = await engine.wait(guest, ifname, seconds)
        emit(
            {"guest": guest, "ifname": link.ifname, "operstate": link.operstate, "mac": link.mac},
            opts.json,
            f"{link.ifname} in {guest} is up",
        )
        return 0

    raise typer.Exit(run_async(run, opts.debug))


__all__ = ["check_wait", "command"]
