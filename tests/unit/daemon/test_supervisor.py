"""daemon/supervisor.py: the bookkeeping of kept clients, and one pass of supervise."""

from __future__ import annotations

from dataclasses import replace

import anyio
import pytest

from pipework.daemon import supervisor
from pipework.daemon.supervisor import BACKOFF_MAX, Tracker, backoff
from pipework.engine import AddressSpec, KeptClient, PipeworkError

ALIVE = KeptClient(
    provider="udhcpc",
    guest="netns:blue",
    guest_name="netns:blue",
    ifname="eth1",
    address=AddressSpec(method="udhcpc-f"),
    alive=True,
    pid=4242,
    starttime=777,
    lease_address="198.18.100.37/24",
    lease_seconds=120,
    renewals=1,
    lease_stamp="1:100:200",
)
DEAD = replace(ALIVE, alive=False)


def types(events):
    return [e["type"] for e in events]


def test_adopted_only_on_the_first_reading_and_never_restarted():
    tracker = Tracker(interval=5)
    events = tracker.observe([ALIVE], 0)
    assert events == [
        {
            "type": "dhcp.adopted",
            "provider": "udhcpc",
            "guest": "netns:blue",
            "key": "netns:blue",
            "ifname": "eth1",
            "pid": 4242,
            "address": "198.18.100.37/24",
            "lease": 120,
        }
    ]
    assert tracker.due(0) == []
    other = replace(ALIVE, ifname="eth2")
    assert tracker.observe([ALIVE, other], 5) == []  # made later: watched, not "adopted"
    assert set(tracker.watched) == {ALIVE.identity, other.identity}


def test_a_renewal_is_a_new_report():
    tracker = Tracker(interval=5)
    tracker.observe([ALIVE], 0)
    assert tracker.observe([ALIVE], 5) == []
    renewed = replace(ALIVE, lease_stamp="2:100:300", renewals=2)
    (event,) = tracker.observe([renewed], 10)
    assert event["type"] == "dhcp.renew" and event["lease"] == 120 and event["pid"] == 4242
    assert tracker.observe([renewed], 15) == []
    # A report without a lease (unbound: the lease was lost) is no renewal.
    unbound = replace(renewed, lease_stamp="3:1:1", lease_address=None)
    assert tracker.observe([unbound], 20) == []


def test_exit_then_start_then_restarted():
    tracker = Tracker(interval=5)
    tracker.observe([ALIVE], 0)
    events = tracker.observe([DEAD], 5)
    assert types(events) == ["dhcp.exited"] and "exit_code" not in events[0]
    assert tracker.due(5) == [DEAD]
    tracker.starting(DEAD, 5)
    assert tracker.due(5) == []
    new = replace(ALIVE, pid=5000, starttime=900)
    (event,) = tracker.observe([new], 6)
    assert event["type"] == "dhcp.restarted" and event["pid"] == 5000 and event["tries"] == 1
    assert tracker.observe([new], 10) == []


def test_failed_starts_back_off_then_give_up():
    tracker = Tracker(interval=5)
    tracker.observe([ALIVE], 0)
    tracker.observe([DEAD], 1)
    now = 1.0
    for attempt in (1, 2):
        (client,) = tracker.due(now)
        tracker.starting(client, now)
        assert tracker.failed(client, "no lease", now) == []
        # The rollback took the state directory: it stays watched, for the retry.
        assert tracker.observe([], now) == []
        assert tracker.due(now + backoff(attempt, 5) - 0.1) == []
        now += backoff(attempt, 5)
    (client,) = tracker.due(now)
    tracker.starting(client, now)
    (event,) = tracker.failed(client, "no lease", now)
    assert event["type"] == "dhcp.given-up" and event["tries"] == 3 and event["error"] == "no lease"
    assert tracker.due(now + 10_000) == []
    assert tracker.observe([], now) == [] and tracker.watched == {}


def test_a_client_that_keeps_dying_is_given_up():
    tracker = Tracker(interval=5, stable=60)
    tracker.observe([ALIVE], 0)
    now, seen = 0.0, []
    for pid in (5001, 5002, 5003):
        now += 1
        seen += tracker.observe([DEAD], now)
        (client,) = tracker.due(now + BACKOFF_MAX)
        now += BACKOFF_MAX
        tracker.starting(client, now)
        seen += tracker.observe([replace(ALIVE, pid=pid)], now + 1)
    seen += tracker.observe([DEAD], now + 2)
    assert types(seen) == [
        *["dhcp.exited", "dhcp.restarted"] * 3,
        "dhcp.exited",
        "dhcp.given-up",
    ]
    assert tracker.due(now + 10_000) == []


def test_a_stable_client_gets_its_tries_back():
    tracker = Tracker(interval=5, stable=60)
    tracker.observe([ALIVE], 0)
    tracker.observe([DEAD], 1)
    tracker.starting(DEAD, 1)
    tracker.observe([ALIVE], 2)
    tracker.observe([ALIVE], 70)
    assert tracker.watched[ALIVE.identity].tries == 0
    tracker.observe([DEAD], 71)
    assert tracker.due(71) == [DEAD]  # at once again, no backoff


def test_gone_is_reported_once_and_never_started():
    tracker = Tracker(interval=5)
    tracker.observe([DEAD], 0)
    tracker.starting(DEAD, 0)
    (event,) = tracker.gone(DEAD)
    assert event["type"] == "dhcp.given-up" and "gc" in event["error"]
    assert tracker.observe([DEAD], 5) == [] and tracker.due(1000) == []


def test_found_dead_at_start_and_not_started_clients_ignored():
    tracker = Tracker(interval=5)
    starting = replace(DEAD, ifname="eth3", pid=None, starttime=None)
    assert types(tracker.observe([DEAD, starting], 0)) == ["dhcp.exited"]
    assert tracker.due(0) == [DEAD]


def test_backoff_doubles_and_is_bounded():
    assert [backoff(n, 5) for n in (1, 2, 3)] == [5, 10, 20]
    assert backoff(20, 5) == BACKOFF_MAX
    assert backoff(1, 0.01) == 1.0


class FakeEngine:
    def __init__(self, readings, outcome):
        self.readings = list(readings)
        self.outcome = outcome
        self.revived = []

    async def kept_clients(self):
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    async def revive_kept(self, client):
        self.revived.append(client)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "after", "expected"),
    [
        ("restarted", [replace(ALIVE, pid=9)], ["dhcp.exited", "dhcp.restarted"]),
        ("gone", [DEAD], ["dhcp.exited", "dhcp.given-up"]),
        ("alive", [ALIVE], ["dhcp.exited"]),
        (PipeworkError("udhcpc got no DHCP lease"), [], ["dhcp.exited"]),
        (RuntimeError("a bug"), [], ["dhcp.exited"]),
    ],
)
@pytest.mark.anyio
async def test_supervise_starts_the_dead_and_reads_again(outcome, after, expected):
    engine = FakeEngine([[DEAD], after], outcome)
    seen: list = []
    with anyio.move_on_after(0.5):
        await supervisor.supervise(engine, seen.append, interval=60)  # type: ignore[arg-type]
    assert types(seen) == expected
    assert engine.revived == [DEAD]


@pytest.mark.anyio
async def test_a_failing_reading_is_logged_and_tried_again(caplog):
    class Broken(FakeEngine):
        calls = 0

        async def kept_clients(self):
            self.calls += 1
            raise OSError("no /proc")

    engine = Broken([[]], "gone")
    with anyio.move_on_after(0.35):
        await supervisor.supervise(engine, [].append, interval=0.1)  # type: ignore[arg-type]
    assert engine.calls >= 3
    assert "internal error: OSError('no /proc')" in caplog.text
