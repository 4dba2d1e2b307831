"""``pipework apply FILE``: make a declarative topology exist.

The file is read and validated before anything is touched; a schema error
names the file, the line and the field (exit 2).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from pipework.apps.runner import BatchRunner, Report
from pipework.cli.batchrun import (
    ALL_OR_NOTHING_HELP,
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
    plan: Annotated[
        bool, typer.Option("--plan", help="Print what would change; change nothing.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Remove pipework interfaces and links of the file's guests it no longer names.",
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
    """Make the bridges, attachments and links of a topology file (or a containerlab file) exist, as declared."""
    opts = options(ctx)
    try:
        loaded = load_topology(file, force)
    except PipeworkError as exc:
        raise fail(exc) from None
    if plan:
        raise typer.Exit(_plan(loaded, force, prune, jobs, opts.json, opts.debug))
    raise typer.Exit(_apply(loaded, force, prune, jobs, all_or_nothing, opts.json, opts.debug))


def _plan(
    loaded: Any, force: bool, prune: bool, jobs: int | None, json_output: bool, debug: bool
) -> int:
    async def main() -> int:
        from pipework.apps.topology.reconcile import plan
        from pipework.engine import Engine
        from pipework.engine.engine import require_privileges

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
            declared_ends,
            link_jobs,
            link_specs,
            missing_nodes,
            prepare_bridges,
            prune_jobs,
            release_bridges,
            specs,
        )
        from pipework.engine import Engine
        from pipework.engine.engine import require_privileges

        require_privileges()
        progress = make_progress("applying", json_output)
        bridges: list[Any] = []
        async with Engine() as engine:
            limit = jobs or engine.limit
            missing = await missing_nodes(engine, loaded, limit=limit)
            if missing:  # before anything is touched
                assert missing[0].error is not None
                raise missing[0].error
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
                all_links = link_specs(loaded, force=force)
                jobs = attach_jobs(loaded, all_specs) + link_jobs(loaded, all_links)
                report = await runner.run(jobs)
                if report.rolled_back:
                    await release_bridges(engine, loaded, only=created)
                if prune and not report.interrupted and not report.rolled_back:
                    declared = {
                        (o.job.spec.guest, o.attachment.ifname)
                        for o in report.outcomes
                        if o.job.spec is not None and o.attachment is not None
                    } | {(s.guest, s.ifname) for s in all_specs if s.ifname}
                    declared |= declared_ends(all_links)
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
