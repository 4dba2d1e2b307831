"""``pipework gc [--dry-run]``: remove what guests that are gone left behind."""

from __future__ import annotations

from typing import Annotated

import typer

from pipework.cli.commands.common import options
from pipework.cli.render import emit, error, run_async


def command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
) -> None:
    """Remove what guests that are gone left behind."""
    opts = options(ctx)

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            report = await engine.gc(dry_run=dry_run)
        for note in report.skipped:
            error(f"WARNING: could not look at {note}")
        verb = "would remove" if dry_run else "removed"
        emit(
            report.to_dict(),
            opts.json,
            "\n".join(f"{verb}: {item}" for item in report.items) or "nothing to collect",
        )
        return 0

    raise typer.Exit(run_async(run, opts.debug))
