"""The watcher's ``watch.reconcile`` events: one per guest reconciled, its
outcome, and the latency from the runtime's start event."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anyio
import pytest
from support.events import collected

from pipework.apps.watch import Watcher
from pipework.engine.errors import GuestNotRunningError
from pipework.engine.events import GuestEvent
from pipework.engine.specs import AttachSpec

CID = "3a55e189703c3f8596828a2b1abac08804d9d5744f12f372bb3a94dd268bbb6f"


class Result:
    def __init__(self, status: str) -> None:
        self.status = status
        self.addresses = ("198.18.30.2/24",)
        self.address_method = "static"
        self.address_sources = (("198.18.30.2/24", "static"),)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status}


class Engine:
    """Attaches answer from ``statuses`` (an exception is raised); removes find one."""

    limit = 4

    def __init__(self, *statuses: str | Exception) -> None:
        self.statuses = list(statuses)

    async def attach(self, spec: AttachSpec) -> Result:
        await anyio.sleep(0.005)
        status = self.statuses.pop(0)
        if isinstance(status, Exception):
            raise status
        return Result(status)

    async def remove(self, spec: AttachSpec, *, resolve: bool = True) -> list[object]:
        return []


class Source:
    name = "fake"


SPECS = [
    AttachSpec(host="br1", guest=f"docker:{CID}", ifname="eth1"),
    AttachSpec(host="br1", guest=f"docker:{CID}", ifname="eth2"),
]


@pytest.fixture
def seen() -> Iterator[list[dict[str, Any]]]:
    with collected() as events:
        yield events


def handle(engine: Engine, *events: GuestEvent) -> None:
    watcher = Watcher(engine, [Source()], declare=lambda event: list(SPECS))  # type: ignore[list-item]

    async def main() -> None:
        for event in events:
            await watcher.handle(event)

    anyio.run(main)


def start(time_ns: int | None = None) -> GuestEvent:
    return GuestEvent("start", f"docker:{CID}", CID, "web1", {}, time_ns=time_ns)


def test_a_started_guest_reports_its_latency_from_the_start_event(seen):
    started = time.time_ns() - 20_000_000  # the runtime said: 20 ms ago
    handle(Engine("created", "unchanged"), start(started))
    (event,) = seen
    assert (event["type"], event["outcome"], event["guest"], event["key"]) == (
        "watch.reconcile", "changed", "web1", CID,
    )  # fmt: skip
    assert (event["action"], event["count"]) == ("start", 2)
    assert 20 <= event["latency_ms"] < 5000  # type: ignore[operator]
    assert 10 <= event["duration_ms"] < event["latency_ms"]  # type: ignore[operator]


def test_an_unchanged_guest_has_no_latency_and_a_failure_is_an_error(seen):
    handle(
        Engine("unchanged", "unchanged", "replaced", GuestNotRunningError("gone")),
        start(time.time_ns()),
        start(),
    )
    unchanged, failed = seen
    assert unchanged["outcome"] == "unchanged" and "latency_ms" not in unchanged
    assert failed["outcome"] == "error" and "latency_ms" not in failed  # no start time given


def test_a_dead_guest_is_reconciled_by_removal(seen):
    handle(Engine("created", "created"), start(), replace(start(), action="die"))
    assert [(e["action"], e["outcome"]) for e in seen] == [("start", "changed"), ("die", "removed")]


def test_a_guest_with_nothing_declared_is_not_reported(seen):
    watcher = Watcher(Engine(), [Source()])  # type: ignore[list-item]
    anyio.run(watcher.handle, start())
    assert seen == []
