"""What ``apply``, ``destroy`` and ``batch`` share: progress, Ctrl-C, the summary,
their options' help, reading a topology file, running jobs on a fresh engine.

Output rules:

* ``--json``: nothing while it runs; one JSON document on stdout at the end.
* stdout a terminal: a rich progress bar, with each result printed above it.
* otherwise (a pipe, a file, CI logs): one plain line per result on stdout,
  as it completes; failures on stderr.

The summary (counts, then every failure with its reason) goes to stderr,
so stdout holds only results.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import anyio

from pipework.apps.runner import BatchRunner, Job, Outcome, Progress, Report
from pipework.cli.render import describe, one_line, run_async

JOBS_HELP = "How many attachments run at once [16]."
ALL_OR_NOTHING_HELP = "If any attachment fails, undo every attachment this run made."
FILE_HELP = (
    "Topology file, YAML or JSON, or a containerlab .clab.yml (see docs/CLI.md); - for stdin."
)


def load_topology(file: str, force: bool = False) -> Any:
    """Read and check a topology file (pipework's, or containerlab's): every
    attachment and link is checked before anything runs."""
    from pipework.apps.topology.loader import load
    from pipework.apps.topology.reconcile import link_specs, specs

    loaded = load(file)
    specs(loaded, force=force)
    link_specs(loaded, force=force)
    return loaded


def outcome_line(outcome: Outcome) -> str:
    """One line for people about one job."""
    job = outcome.job
    where = f" ({job.where})" if job.where else ""
    if outcome.state == "failed":
        return f"failed: {job.label}{where}: {outcome.message}"
    if outcome.state == "done" and outcome.attachment is not None:
        return describe(outcome.attachment)
    if outcome.state == "done" and outcome.linked is not None:
        from pipework.cli.linkpath import describe as describe_link

        return describe_link(outcome.linked)
    if outcome.state == "done":
        if outcome.removed:
            return f"removed: {job.label}"
        return f"absent: {job.label} (nothing to remove)"
    return f"{outcome.state}: {job.label}{where}"


class PlainProgress:
    """One line per result: results on stdout, failures on stderr."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out, self.err = out, err

    def started(self, total: int) -> None:
        pass

    def line(self, text: str, *, failure: bool = False) -> None:
        text = one_line(text)  # a guest's name may hold control characters
        print(f"pipework: {text}" if failure else text, file=self.err if failure else self.out)
        (self.err if failure else self.out).flush()

    def finished(self, outcome: Outcome) -> None:
        self.line(outcome_line(outcome), failure=outcome.state == "failed")

    def close(self) -> None:
        pass


class RichProgress:
    """A progress bar on the terminal; results printed above it."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        self.console = Console(file=sys.stdout, highlight=False)
        self.bar = Bar(
            TextColumn(title),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[failed]}"),
            console=self.console,
            transient=True,
        )
        self.task: Any = None
        self.failed = 0

    def started(self, total: int) -> None:
        self.task = self.bar.add_task("", total=total, failed="")
        self.bar.start()

    def line(self, text: str, *, failure: bool = False) -> None:
        text = one_line(text)
        self.console.print(f"pipework: {text}" if failure else text, markup=False, soft_wrap=True)

    def finished(self, outcome: Outcome) -> None:
        failure = outcome.state == "failed"
        self.failed += failure
        self.line(outcome_line(outcome), failure=failure)
        if self.task is not None:
            note = f"{self.failed} failed" if self.failed else ""
            self.bar.update(self.task, advance=1, failed=note)

    def close(self) -> None:
        self.bar.stop()


class QuietProgress:
    """``--json``: nothing until the end."""

    def started(self, total: int) -> None:
        pass

    def line(self, text: str, *, failure: bool = False) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        pass

    def close(self) -> None:
        pass


Reporter = PlainProgress | RichProgress | QuietProgress


def make_progress(title: str, json_output: bool) -> Reporter:
    if json_output:
        return QuietProgress()
    if sys.stdout.isatty():
        return RichProgress(title)
    return PlainProgress()


def summary_lines(report: Report, noun: str) -> list[str]:
    """The end of a run, for people: counts (links, when there are, on a line
    of their own), then each failure and why."""
    links = [o for o in report.outcomes if o.job.what == "link"]
    others = [o for o in report.outcomes if o.job.what != "link"]
    lines = [_counts(others, noun)] if others or not links else []
    if links:
        lines.append(_counts(links, "link"))
    if report.interrupted:
        lines.append("interrupted: what was in flight has been rolled back; what completed is kept")
    if report.rolled_back:
        lines.append("--all-or-nothing: a job failed, so everything this run made was undone")
    lines += [f"failed: {o.job.label}{_where(o)}: {o.message}" for o in report.failures]
    return lines


def _counts(outcomes: list[Outcome], noun: str) -> str:
    """``3 attachments: 2 created, 1 failed``."""
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.state != "done":
            continue
        key = outcome.status or ("removed" if outcome.removed else "absent")
        statuses[key] = statuses.get(key, 0) + 1
    parts = [f"{n} {status}" for status, n in statuses.items()]
    for state in ("failed", "interrupted", "skipped", "rolled back"):
        n = sum(1 for o in outcomes if o.state == state)
        if n:
            label = "rolled back in flight" if state == "interrupted" else state
            parts.append(f"{n} {label}")
    total = len(outcomes)
    return f"{total} {noun}{'s' if total != 1 else ''}: {', '.join(parts) or 'nothing to do'}"


def _where(outcome: Outcome) -> str:
    return f" ({outcome.job.where})" if outcome.job.where else ""


def print_summary(report: Report, noun: str) -> None:
    for line in summary_lines(report, noun):
        print(f"pipework: {line}", file=sys.stderr)


def show(report: Report, json_output: bool, noun: str) -> None:
    """The end of a run: the report as JSON on stdout, or the summary on stderr."""
    if json_output:
        print(json.dumps(report.to_dict()), flush=True)
    else:
        print_summary(report, noun)


async def with_interrupts(
    runner: BatchRunner, body: Callable[[], Coroutine[Any, Any, Report]]
) -> Report:
    """Run ``body`` with SIGINT and SIGTERM turned into ``runner.interrupt()``.

    Further signals while it rolls back are absorbed: the roll-back itself
    must not be cut short.
    """
    result: list[Report] = []

    async def watch_signals(task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                runner.interrupt()

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(watch_signals)
            try:
                result.append(await body())
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:  # the body's own error, not a group of them
            raise group.exceptions[0] from None
        raise
    return result[0]


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


__all__ = [
    "ALL_OR_NOTHING_HELP",
    "FILE_HELP",
    "JOBS_HELP",
    "PlainProgress",
    "Progress",
    "QuietProgress",
    "Reporter",
    "RichProgress",
    "load_topology",
    "make_progress",
    "outcome_line",
    "print_summary",
    "run_jobs",
    "show",
    "summary_lines",
    "with_interrupts",
]
