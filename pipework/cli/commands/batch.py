"""``pipework batch [FILE|-]``: original-style command lines, run concurrently.

    # comments and blank lines are fine
    br1 web1 198.18.1.2/24@198.18.1.1
    pipework br1 -i eth2 web2 198.18.2.2/24 U:web2     # a leading "pipework" is allowed

Every line is parsed before anything runs: one bad line stops the batch with
``FILE:LINE: message`` (exit 2) and nothing is touched.
"""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from pipework.apps.grammar import parse_legacy
from pipework.apps.runner import BatchRunner, Job, Report
from pipework.apps.topology.loader import read
from pipework.cli.batchrun import (
    ALL_OR_NOTHING_HELP,
    JOBS_HELP,
    make_progress,
    show,
    with_interrupts,
)
from pipework.cli.commands.common import fail, options
from pipework.cli.render import run_async
from pipework.engine.errors import PipeworkError, UsageError


def parse_batch(text: str, label: str) -> list[Job]:
    """One attach job per command line; a bad line is a ``UsageError`` naming it."""
    jobs: list[Job] = []
    seen: dict[tuple[str, str | None], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{label}:{number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if words[:1] == ["pipework"]:
            words = words[1:]
        if not words:
            continue
        try:
            spec = parse_legacy(words)
        except PipeworkError as exc:
            raise UsageError(f"{where}: {exc.message}", exc.hint) from None
        key = (spec.guest, spec.ifname)
        if key in seen:
            raise UsageError(
                f"{where}: {spec.ifname or 'the default interface'} in {spec.guest}"
                f" is already attached on line {seen[key]}",
                "give one of them another -i",
            )
        seen[key] = number
        jobs.append(Job.attach(spec, where))
    return jobs


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
    opts = options(ctx)
    try:
        text, label = read(file)
        todo = parse_batch(text, label)
    except PipeworkError as exc:
        raise fail(exc) from None
    raise typer.Exit(
        run_jobs(
            todo,
            jobs=jobs,
            all_or_nothing=all_or_nothing,
            json_output=opts.json,
            debug=opts.debug,
            noun="attachment",
        )
    )


def run_jobs(
    todo: list[Job],
    *,
    jobs: int | None,
    all_or_nothing: bool,
    json_output: bool,
    debug: bool,
    noun: str,
    host_netns: str | None = None,
) -> int:
    """Run ``todo`` on a fresh engine; print results and the summary; the exit code."""

    async def main() -> int:
        from pipework.engine import Engine
        from pipework.engine.engine import require_privileges

        require_privileges()
        progress = make_progress("attaching", json_output)
        async with Engine(host_netns=host_netns) as engine:
            runner = BatchRunner(
                engine,
                limit=jobs or engine.limit,
                all_or_nothing=all_or_nothing,
                progress=progress,
            )
            try:
                report: Report = await with_interrupts(runner, lambda: runner.run(todo))
            finally:
                progress.close()
        show(report, json_output, noun)
        return report.exit_code

    return run_async(main, debug)


__all__ = ["command", "parse_batch", "run_jobs"]
