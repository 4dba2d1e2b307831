"""``pipework batch [FILE|-]``: original-style command lines, run concurrently.

    # comments and blank lines are fine
    br1 web1 198.18.1.2/24@198.18.1.1
    pipework br1 -i eth2 web2 198.18.2.2/24 U:web2     # a leading "pipework" is allowed

Every line is parsed before anything runs: one bad line stops the batch with
``FILE:LINE: message`` (exit 2) and nothing is touched. A plain line of
options runs without typer (cli/batchpath.py, the one implementation); this
is the command typer shows in ``--help`` and reads the other lines with.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipework.apps.batchfile import parse_batch
from pipework.cli.batchpath import BatchArgs, run_batch
from pipework.cli.batchrun import ALL_OR_NOTHING_HELP, JOBS_HELP
from pipework.cli.commands.common import options


def command(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="File of command lines, one attach per line; - for stdin."
        ),
    ] = "-",
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, metavar="N", help=JOBS_HELP)
    ] = None,
    all_or_nothing: Annotated[
        bool, typer.Option("--all-or-nothing", help=ALL_OR_NOTHING_HELP)
    ] = False,
) -> None:
    """Run many original-style attach lines concurrently (see docs/CLI.md)."""
    raise typer.Exit(run_batch(BatchArgs(file, jobs, all_or_nothing), options(ctx)))


__all__ = ["command", "parse_batch"]
