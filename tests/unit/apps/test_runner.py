"""BatchRunner's rules, against a fake engine: atomic jobs, all-or-nothing, interrupts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import pytest

from pipework import AddressSpec, Attachment, AttachSpec, ConflictError, GuestInfo
from pipework.apps.runner import BatchRunner, Job
from pipework.engine.batch import BatchScope
from pipework.engine.errors import GuestNotFoundError
from pipework.engine.marker import Marker

pytestmark = pytest.mark.anyio


class FakeEngine:
    """attach() sleeps a little, fails for guests named "bad*", hangs for "slow*"."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.detached: list[tuple[str, str | None]] = []
        self.rolled_back: list[str] = []
        self.batches = 0

    @contextmanager
    def batch(self) -> Iterator[BatchScope]:
        self.batches += 1
        yield BatchScope()

    @asynccontextmanager
    async def deferred_removal(self) -> AsyncIterator[None]:
        yield

    async def attach(self, spec: AttachSpec) -> Attachment:
        try:
            await anyio.sleep(60 if spec.guest.startswith("slow") else 0.01)
        except anyio.get_cancelled_exc_class():
            self.rolled_back.append(spec.guest)
            raise
        if spec.guest.startswith("bad"):
            raise ConflictError(f"eth1 in {spec.guest} is attached with another configuration")
        status = "unchanged" if spec.guest.startswith("old") else "created"
        self.live.add(spec.guest)
        return Attachment(
            guest=GuestInfo(spec.guest, spec.guest, "netns"),
            ifname="eth1",
            kind="bridge",
            host=spec.host,
            host_ifname=None,
            mac=None,
            mtu=None,
            vlan=None,
            address_method="static",
            addresses=(),
            gateway=None,
            status=status,  # type: ignore[arg-type]
        )

    async def detach(self, guest: str, ifname: str | None = None) -> list[Marker]:
        if guest.startswith("gone"):
            raise GuestNotFoundError(f"no network namespace named {guest}")
        self.detached.append((guest, ifname))
        self.live.discard(guest)
        return [Marker(guest=guest, ifname=ifname or "eth1", kind="bridge", host="br1")]


def job(guest: str) -> Job:
    return Job.attach(AttachSpec(host="br1", guest=guest, address=AddressSpec()), f"f:{guest}")


async def test_each_attach_is_atomic_and_the_first_failure_sets_the_exit_code():
    engine = FakeEngine()
    runner = BatchRunner(engine, limit=4)  # type: ignore[arg-type]
    report = await runner.run([job("a"), job("bad1"), job("b"), job("bad2")])
    assert [o.state for o in report.outcomes] == ["done", "failed", "done", "failed"]
    assert engine.live == {"a", "b"}
    assert report.exit_code == 7
    assert report.summary()["failed"] == 2
    assert report.failures[0].message.startswith("eth1 in bad1 is attached")
    data = report.to_dict()
    assert data["results"][1]["exit_code"] == 7 and data["results"][1]["where"] == "f:bad1"


async def test_all_or_nothing_undoes_what_the_run_made_and_keeps_what_was_there():
    engine = FakeEngine()
    runner = BatchRunner(engine, limit=1, all_or_nothing=True)  # type: ignore[arg-type]
    report = await runner.run([job("a"), job("old1"), job("bad"), job("c")])
    states = [o.state for o in report.outcomes]
    assert states == ["rolled back", "done", "failed", "skipped"]
    assert report.rolled_back and report.exit_code == 7
    assert engine.detached == [("a", "eth1")]  # old1 was unchanged: it stays
    assert engine.live == {"old1"}


async def test_all_or_nothing_cancels_what_is_in_flight():
    engine = FakeEngine()
    runner = BatchRunner(engine, limit=4, all_or_nothing=True)  # type: ignore[arg-type]
    with anyio.fail_after(5):
        report = await runner.run([job("slow1"), job("bad"), job("slow2")])
    assert [o.state for o in report.outcomes] == ["interrupted", "failed", "interrupted"]
    assert sorted(engine.rolled_back) == ["slow1", "slow2"]


async def test_interrupt_keeps_what_completed_and_rolls_back_what_is_in_flight():
    engine = FakeEngine()
    runner = BatchRunner(engine, limit=2)  # type: ignore[arg-type]
    jobs = [job("a"), job("b"), job("slow1"), job("slow2"), job("later")]

    async def interrupt_soon() -> None:
        await anyio.sleep(0.2)
        runner.interrupt()

    async with anyio.create_task_group() as tg:
        tg.start_soon(interrupt_soon)
        with anyio.fail_after(5):
            report = await runner.run(jobs)
    assert [o.state for o in report.outcomes] == [
        "done",
        "done",
        "interrupted",
        "interrupted",
        "skipped",
    ]
    assert report.interrupted and report.exit_code == 130
    assert engine.live == {"a", "b"} and engine.detached == []


async def test_detach_jobs_of_vanished_guests_count_as_done_when_missing_is_fine():
    engine = FakeEngine()
    runner = BatchRunner(engine, limit=2)  # type: ignore[arg-type]
    report = await runner.run(
        [
            Job.detach("a", "eth1"),
            Job.detach("gone1", "eth1", missing_ok=True),
            Job.detach("gone2", "eth1"),
        ]
    )
    assert [o.state for o in report.outcomes] == ["done", "done", "failed"]
    assert report.outcomes[0].to_dict()["removed"] == ["eth1"]
    assert report.exit_code == 3
