"""``pipework apply FILE`` and ``pipework destroy FILE``: a declarative topology.

The file is read and validated before anything is touched; a schema error
names the file, the line and the field (exit 2).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from pipework.apps.runner import BatchRunner, Report
from pipework.cli.batch import ALL_OR_NOTHING_HELP, JOBS_HELP, show
from pipework.cli.batchrun import make_progress, with_interrupts
from pipework.cli.render import error, run_async
from pipework.engine.errors import PipeworkError

FILE_HELP = "Topology file, YAML or JSON (see docs/CLI.md); - for stdin."


def _load(file: str, force: bool = False) -> Any:
    from pipework.apps.topology.loader import load
    from pipework.apps.topology.reconcile import specs

    loaded = load(file)
    specs(loaded, force=force)  # every attachment is checked before anything runs
    return loaded


def apply(
    file: Annotated[str, typer.Argument(metavar="FILE", help=FILE_HELP)],
    plan: Annotated[
        bool, typer.Option("--plan", help="Print what would change; change nothing.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune", help="Remove pipework interfaces of the file's guests it no longer names."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Fix bridges and attachments that differ.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, metavar="N", help=JOBS_HELP)
    ] = None,
    all_or_nothing: Annotated[
        bool, typer.Option("--all-or-nothing", help=ALL_OR_NOTHING_HELP)
    ] = False,
) -> None:
    """Make the bridges and attachments of a topology file exist, as declared."""
    from pipework.cli.app import Settings

    try:
        loaded = _load(file, force)
    except PipeworkError as exc:
        error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    if plan:
        raise typer.Exit(_plan(loaded, force, prune, jobs, Settings.json, Settings.debug))
    raise typer.Exit(
        _apply(loaded, force, prune, jobs, all_or_nothing, Settings.json, Settings.debug)
    )


def destroy(
    file: Annotated[str, typer.Argument(metavar="FILE", help=FILE_HELP)],
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, metavar="N", help=JOBS_HELP)
    ] = None,
) -> None:
    """Remove every attachment a topology file names, and the bridges pipework made for it."""
    from pipework.cli.app import Settings

    try:
        loaded = _load(file)
    except PipeworkError as exc:
        error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(_destroy(loaded, jobs, Settings.json, Settings.debug))


def _plan(
    loaded: Any, force: bool, prune: bool, jobs: int | None, json_output: bool, debug: bool
) -> int:
    async def main() -> int:
        from pipework.apps.topology.reconcile import plan
        from pipework.engine import Engine, require_privileges

        require_privileges()
        async with Engine() as engine:
            result = await plan(
                engine, loaded, force=force, prune=prune, limit=jobs or engine.limit
            )
        if json_output:
            print(json.dumps(result.to_dict()), flush=True)
        else:
            for item in result.items:
                print(item.line())
            counts = ", ".join(f"{n} {action}" for action, n in result.summary().items())
            print(f"plan: {counts or 'nothing declared'}", file=sys.stderr)
        return result.exit_code

    return run_async(main, debug)


def _apply(
    loaded: Any,
    force: bool,
    prune: bool,
    jobs: int | None,
    all_or_nothing: bool,
    json_output: bool,
    debug: bool,
) -> int:
    async def main() -> int:
        from pipework.apps.topology.reconcile import (
            attach_jobs,
            prepare_bridges,
            prune_jobs,
            release_bridges,
            specs,
        )
        from pipework.engine import Engine, require_privileges

        require_privileges()
        progress = make_progress("applying", json_output)
        bridges: list[Any] = []
        async with Engine() as engine:
            limit = jobs or engine.limit
            runner = BatchRunner(
                engine, limit=limit, all_or_nothing=all_or_nothing, progress=progress
            )

            async def body() -> Report:
                nonlocal bridges
                bridges, created = await prepare_bridges(engine, loaded, force=force, dry_run=False)
                for item in bridges:
                    if not json_output and item.action != "deferred":
                        progress.line(_bridge_line(item))
                all_specs = specs(loaded, force=force)
                report = await runner.run(attach_jobs(loaded, all_specs))
                if report.rolled_back:
                    await release_bridges(engine, loaded, only=created)
                if prune and not report.interrupted and not report.rolled_back:
                    declared = {
                        (o.job.spec.guest, o.attachment.ifname)
                        for o in report.outcomes
                        if o.job.spec is not None and o.attachment is not None
                    } | {(s.guest, s.ifname) for s in all_specs if s.ifname}
                    removals = await prune_jobs(engine, loaded, declared, limit=limit)
                    # A failed attachment of the default interface: which one the
                    # file names there is unknown, so its guest is not pruned.
                    unsure = {
                        o.job.spec.guest
                        for o in report.outcomes
                        if o.job.spec is not None
                        and o.attachment is None
                        and o.job.spec.ifname is None
                    }
                    removals = [job for job in removals if job.guest not in unsure]
                    if removals:
                        pruned = await runner.run(removals)
                        report.outcomes += pruned.outcomes
                        report.interrupted = pruned.interrupted
                return report

            try:
                report = await with_interrupts(runner, body)
            finally:
                progress.close()
        if json_output:
            data = report.to_dict()
            data["bridges"] = [item.to_dict() for item in bridges]
            print(json.dumps(data), flush=True)
        else:
            show(report, False, "attachment")
        return report.exit_code

    return run_async(main, debug)


def _bridge_line(item: Any) -> str:
    status = {"create": "created", "update": "updated"}.get(item.action, item.action)
    details = f" ({'; '.join(item.details)})" if item.details else ""
    return f"{status}: bridge {item.label}{details}"


def _destroy(loaded: Any, jobs: int | None, json_output: bool, debug: bool) -> int:
    async def main() -> int:
        from pipework.apps.topology.reconcile import destroy_jobs, release_bridges
        from pipework.engine import Engine, require_privileges

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


__all__ = ["apply", "destroy"]
