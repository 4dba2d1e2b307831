"""``pipework tc GUEST [ARGS...]``: ``tc`` inside GUEST's network namespace."""

from __future__ import annotations

import typer

from pipework.cli.commands.common import GuestArg, PassthroughArgs, passthrough


def command(
    ctx: typer.Context,
    guest: GuestArg,
    args: PassthroughArgs = None,
) -> None:
    """Run `tc ARGS...` inside GUEST's network namespace (no shell)."""
    raise passthrough(ctx, "tc", guest, args)
