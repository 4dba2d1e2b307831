"""What the command modules share: the global options, one-line failures, GUEST."""

from __future__ import annotations

from typing import Annotated

import typer

from pipework.cli.options import GlobalOptions
from pipework.cli.render import error
from pipework.engine.errors import PipeworkError

GuestArg = Annotated[str, typer.Argument(help="Container name/ID, netns:NAME, pid:N or a path.")]
PassthroughArgs = Annotated[
    list[str] | None, typer.Argument(help="Passed to the program as they are.")
]


def options(ctx: typer.Context) -> GlobalOptions:
    """The global options ``run_app`` gave the app (the defaults if it was run without)."""
    given = ctx.find_object(GlobalOptions)
    return given if given is not None else GlobalOptions()


def fail(exc: PipeworkError) -> typer.Exit:
    """Print ``exc`` as the one-line error; the exit to raise."""
    error(str(exc))
    return typer.Exit(exc.exit_code)


def passthrough(ctx: typer.Context, word: str, guest: str, args: list[str] | None) -> typer.Exit:
    """``route``/``rule``/``tc`` reached through the app (the dispatcher runs them
    itself, cli/fastpath.py, unless the line asks for help)."""
    from pipework.cli.fastpath import run_passthrough

    return typer.Exit(run_passthrough(word, [guest, *(args or [])], debug=options(ctx).debug))


__all__ = ["GuestArg", "PassthroughArgs", "fail", "options", "passthrough"]
