"""``pipework destroy FILE``: remove what a topology file declares.

The file is read and validated before anything is touched, as by ``apply``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from pipework.apps.runner import BatchRunner, Report
from pipework.cli.batchrun import (
    FILE_HELP,
    JOBS_HELP,
    load_topology,
    make_progress,
    show,
    with_interrupts,
)
from pipework.cli.commands.common import fail, options
from pipework.cli.render import run_async
from pipework.engine.errors import PipeworkError


def command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help=FILE_HELP)],
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, metavar="N", help=JOBS_HELP)
    ] = None,
) -> None:
    """Remove every attachment and link a topology file names, and the bridges pipework made for it."""
    opts = options(ctx)
    try:
        loaded = load_topology(file)
    except PipeworkError as exc:
        raise fail(exc) from None
    raise typer.Exit(_destroy(loaded, jobs, opts.json, opts.debug))


def _destroy(loaded: Any, jobs: int | None, json_output: bool, debug: bool) -> int:
    async def main() -> int:
        from pipework.apps.topology.reconcile import destroy_jobs, release_bridges
        from pipework.engine import Engine
        from pipework.engine.engine import require_privileges

        require_privileges()
        progress = make_progress("destroying", json_output)
        removed: list[str] = []
        async with Engine() as engine:
            limit = jobs or engine.limit
            runner = BatchRunner(engine, limit=limit, progress=progress)

            async def body() -> Report:
                report = await runner.run(await destroy_jobs(engine, loaded, limit=limit))
                if not report.interrupted and not report.failures:
                    removed.extend(await release_bridges(engine, loaded))
                for name in removed:
                    progress.line(f"removed: bridge {name}")
                return report

            try:
                report = await with_interrupts(runner, body)
            finally:
                progress.close()
        if json_output:
            data = report.to_dict()
            data["bridges_removed"] = removed
            print(json.dumps(data), flush=True)
        else:
            show(report, False, "attachment")
        return report.exit_code

    return run_async(main, debug)
