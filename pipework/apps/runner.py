"""Many attaches and detaches at once, with the failure rules of a batch.

``BatchRunner.run(jobs)`` runs the jobs concurrently (at most ``limit`` at a
time) and returns one ``Outcome`` per job, in the jobs' order:

* each attach is atomic on its own: a failed one leaves nothing behind and
  the others go on;
* with ``all_or_nothing``, the first failure stops the run: jobs not yet
  started are skipped, those in flight roll back, and the attachments this
  run created or replaced are detached again (one batched teardown).
  ``unchanged`` ones were there before and stay;
* ``interrupt()`` (Ctrl-C) stops the run the same way, except that what
  completed is kept.

A link job (``Job.link_job``: a veth pair straight between two guests, a
topology file's ``links:``) runs with the attaches, as atomic as one, and
is undone by detaching either of its ends.

Detach jobs are collected into one batched teardown (``teardown.py``).
They cannot be undone, so callers run them only after the attaches
succeeded when every-or-nothing matters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio

from pipework.engine.errors import (
    EXIT_INTERRUPTED,
    GuestNotFoundError,
    GuestNotRunningError,
    PipeworkError,
)
from pipework.engine.marker import Marker
from pipework.engine.specs import Attachment, AttachSpec

if TYPE_CHECKING:
    from pipework.engine.engine import Engine
    from pipework.engine.guestlinks import LinkResult
    from pipework.engine.linkspec import LinkSpec

log = logging.getLogger("pipework.runner")

State = Literal["done", "failed", "interrupted", "skipped", "rolled back"]
"""done: completed and kept. failed: refused or failed, nothing left behind.
interrupted: in flight when the run stopped, and rolled back. skipped: never
started. rolled back: completed, then undone by ``all_or_nothing``."""


@dataclass(frozen=True)
class Job:
    """One thing to do: attach ``spec``, make the link ``link``, or detach
    ``ifname`` from ``guest``."""

    label: str
    """For people: ``eth1 in web1``."""
    spec: AttachSpec | None = None
    guest: str | None = None
    ifname: str | None = None
    where: str | None = None
    """Where the job was asked for (``FILE:LINE``), for messages."""
    missing_ok: bool = False
    """A detach whose guest is gone counts as done: its interfaces went with it."""
    link: LinkSpec | None = None
    what: str = "attachment"
    """What the job is about, for summaries: ``attachment`` or ``link`` (a
    detach of one end of a link removes the link)."""

    @classmethod
    def attach(cls, spec: AttachSpec, where: str | None = None) -> Job:
        label = f"{spec.ifname or 'default interface'} in {spec.guest} on {spec.host}"
        return cls(label=label, spec=spec, where=where)

    @classmethod
    def link_job(cls, spec: LinkSpec, where: str | None = None) -> Job:
        return cls(label=f"link {spec}", link=spec, where=where, what="link")

    @classmethod
    def detach(
        cls,
        guest: str,
        ifname: str,
        where: str | None = None,
        *,
        missing_ok: bool = False,
        label: str | None = None,
        what: str = "attachment",
    ) -> Job:
        return cls(
            label=label or f"{ifname} in {guest}",
            guest=guest,
            ifname=ifname,
            where=where,
            missing_ok=missing_ok,
            what=what,
        )

    @property
    def makes(self) -> bool:
        """Does the job make something (an attach or a link), rather than remove it?"""
        return self.spec is not None or self.link is not None


@dataclass
class Outcome:
    job: Job
    state: State = "skipped"
    attachment: Attachment | None = None
    removed: list[Marker] = field(default_factory=list)
    error: BaseException | None = None
    linked: LinkResult | None = None
    """A link job's result (its two ends)."""

    @property
    def status(self) -> str | None:
        """created, unchanged, replaced... of what a done attach or link made."""
        made = self.attachment if self.attachment is not None else self.linked
        return None if made is None else made.status

    @property
    def exit_code(self) -> int:
        if self.error is None:
            return 0
        return self.error.exit_code if isinstance(self.error, PipeworkError) else 1

    @property
    def message(self) -> str:
        if self.error is None:
            return ""
        if isinstance(self.error, PipeworkError):
            return str(self.error)
        return f"internal error: {self.error!r}"

    def to_dict(self) -> dict[str, Any]:
        job = self.job
        kind = "attach" if job.spec is not None else "link" if job.link is not None else "detach"
        data: dict[str, Any] = {"job": kind, "label": job.label, "state": self.state}
        if job.what != "attachment":
            data["what"] = job.what
        if job.where:
            data["where"] = job.where
        if self.attachment is not None:
            data["attachment"] = self.attachment.to_dict()
        if self.linked is not None:
            data["link"] = self.linked.to_dict()
        if not job.makes and self.state == "done":
            data["removed"] = [m.ifname for m in self.removed]
        if self.error is not None:
            data["error"] = self.message
            data["exit_code"] = self.exit_code
        return data


@dataclass
class Report:
    outcomes: list[Outcome]
    interrupted: bool = False
    rolled_back: bool = False
    """True when ``all_or_nothing`` undid the run."""

    def count(self, state: State) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def exit_code(self) -> int:
        """0; 130 after an interruption; else the first failure's code (input order)."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return next((o.exit_code for o in self.failures), 0)

    def summary(self) -> dict[str, int]:
        states: tuple[State, ...] = ("done", "failed", "interrupted", "skipped", "rolled back")
        return {state.replace(" ", "_"): self.count(state) for state in states}

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [o.to_dict() for o in self.outcomes],
            "summary": self.summary(),
            "interrupted": self.interrupted,
            "rolled_back": self.rolled_back,
            "exit_code": self.exit_code,
        }


class Progress(Protocol):
    """What a runner tells its caller as it goes (a progress bar, log lines)."""

    def started(self, total: int) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


class BatchRunner:
    def __init__(
        self,
        engine: Engine,
        *,
        limit: int,
        all_or_nothing: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.engine = engine
        self.limit = max(1, limit)
        self.all_or_nothing = all_or_nothing
        self.progress = progress
        self._scope: anyio.CancelScope | None = None
        self._interrupted = False
        self._failed = False

    def interrupt(self) -> None:
        """Stop the run: in-flight jobs roll back, completed ones stay."""
        self._interrupted = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, jobs: Sequence[Job]) -> Report:
        outcomes = [Outcome(job) for job in jobs]
        if self.progress is not None:
            self.progress.started(len(jobs))
        limiter = anyio.CapacityLimiter(self.limit)
        attaches = [o for o in outcomes if o.job.makes]
        detaches = [o for o in outcomes if not o.job.makes]
        with anyio.CancelScope() as scope, self.engine.batch():
            self._scope = scope
            if self._interrupted:
                scope.cancel()
            async with anyio.create_task_group() as tg:
                for outcome in attaches:
                    tg.start_soon(self._attach, outcome, limiter)
            if detaches and not scope.cancel_called:
                async with self.engine.deferred_removal(), anyio.create_task_group() as tg:
                    for outcome in detaches:
                        tg.start_soon(self._detach, outcome, limiter)
        self._scope = None
        report = Report(outcomes, interrupted=self._interrupted)
        if self._failed and self.all_or_nothing and not self._interrupted:
            await self._undo(report)
        return report

    async def _attach(self, outcome: Outcome, limiter: anyio.CapacityLimiter) -> None:
        job = outcome.job
        async with limiter:
            try:
                outcome.state = "interrupted"
                # The engine commits an attach (a link) and returns without a
                # checkpoint in between, so a cancellation either undoes it or
                # comes after.
                if job.link is not None:
                    outcome.linked = await self.engine.link(job.link)
                else:
                    assert job.spec is not None
                    outcome.attachment = await self.engine.attach(job.spec)
                outcome.state = "done"
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                self._fail(outcome, exc)
        self._report(outcome)

    async def _detach(self, outcome: Outcome, limiter: anyio.CapacityLimiter) -> None:
        assert outcome.job.guest is not None
        async with limiter:
            try:
                outcome.state = "interrupted"
                outcome.removed = await self.engine.detach(outcome.job.guest, outcome.job.ifname)
                outcome.state = "done"
            except anyio.get_cancelled_exc_class():
                raise
            except (GuestNotFoundError, GuestNotRunningError) as exc:
                if outcome.job.missing_ok:
                    outcome.state = "done"
                else:
                    self._fail(outcome, exc)
            except Exception as exc:
                self._fail(outcome, exc)
        self._report(outcome)

    def _fail(self, outcome: Outcome, exc: Exception) -> None:
        outcome.state = "failed"
        outcome.error = exc
        if not isinstance(exc, PipeworkError):
            log.error("%s: %r", outcome.job.label, exc, exc_info=exc)
        self._failed = True
        if self.all_or_nothing and self._scope is not None:
            self._scope.cancel()

    def _report(self, outcome: Outcome) -> None:
        if self.progress is not None:
            self.progress.finished(outcome)

    async def _undo(self, report: Report) -> None:
        """``all_or_nothing`` after a failure: detach what this run made."""
        made = [
            o
            for o in report.outcomes
            if o.state == "done" and o.status is not None and o.status != "unchanged"
        ]
        with anyio.CancelScope(shield=True):
            async with self.engine.deferred_removal():
                for outcome in made:
                    if outcome.linked is not None:  # either end takes the link
                        assert outcome.job.link is not None
                        guest, ifname = outcome.job.link.a.guest, outcome.linked.a.ifname
                    else:
                        assert outcome.attachment is not None and outcome.job.spec is not None
                        guest, ifname = outcome.job.spec.guest, outcome.attachment.ifname
                    try:
                        await self.engine.detach(guest, ifname)
                        outcome.state = "rolled back"
                    except Exception as exc:
                        log.error("rolling back %s: %s", outcome.job.label, exc)
        report.rolled_back = True


__all__ = ["BatchRunner", "Job", "Outcome", "Progress", "Report", "State"]
