"""daemon/hub.py: fan-out, bounded buffers with drop accounting, unsubscribe, close."""

from __future__ import annotations

import anyio
import pytest

from pipework.daemon.hub import Hub, matches

pytestmark = pytest.mark.anyio


def sample(hub: Hub, name: str, **labels: str) -> float | None:
    return hub.metrics.registry.get_sample_value(name, labels)


def drain(subscription: object) -> list[dict[str, object]]:
    """What is queued now, without waiting (the queue is the subscription's own)."""
    out = []
    queue = subscription._queue  # type: ignore[attr-defined]
    while queue:
        out.append(dict(queue.popleft()))
    return out


async def test_every_subscriber_gets_every_event_in_order():
    hub = Hub()
    async with hub.subscribe() as a, hub.subscribe() as b:
        assert hub.subscribers == 2
        for i in range(3):
            hub.publish({"type": "attach", "outcome": "created", "n": i})
        got_a = [await a.__anext__() for _ in range(3)]
        got_b = [await b.__anext__() for _ in range(3)]
    assert [e["n"] for e in got_a] == [e["n"] for e in got_b] == [0, 1, 2]
    assert all(isinstance(e["time"], float) for e in got_a)
    assert hub.subscribers == 0


async def test_a_waiting_reader_is_woken_by_publish():
    hub = Hub()
    got: list[object] = []
    async with hub.subscribe() as events, anyio.create_task_group() as tg:

        async def read() -> None:
            async for event in events:
                got.append(event["type"])
                if len(got) == 2:
                    return

        tg.start_soon(read)
        await anyio.sleep(0.01)  # the reader waits
        hub.publish({"type": "gc"})
        await anyio.sleep(0.01)
        hub.publish({"type": "detach"})
    assert got == ["gc", "detach"]


async def test_types_filter_by_name_and_by_family():
    assert matches("dhcp.renew", frozenset({"dhcp"}))
    assert not matches("dhcpx", frozenset({"dhcp"}))
    assert matches("dropped", frozenset({"attach"}))  # always said
    hub = Hub()
    async with hub.subscribe(["attach", "dhcp"]) as some, hub.subscribe([""]) as every:
        for kind in ("attach", "detach", "dhcp.renew", "gc", "dhcp.exited"):
            hub.publish({"type": kind})
        assert [e["type"] for e in drain(some)] == ["attach", "dhcp.renew", "dhcp.exited"]
        assert len(drain(every)) == 5


async def test_a_slow_reader_loses_events_and_is_told_how_many_where():
    hub = Hub(buffer=3)
    async with hub.subscribe() as slow, hub.subscribe() as keen:
        for i in range(10):
            hub.publish({"type": "attach", "n": i})  # never blocks
            await keen.__anext__()
        # The three oldest fit; the seven after are lost, and the reader is
        # told so where they were: after the three, before what came next.
        assert [(await slow.__anext__())["n"] for _ in range(2)] == [0, 1]
        hub.publish({"type": "attach", "n": 10})
        rest = drain(slow)
        assert [(e["type"], e.get("n"), e.get("count")) for e in rest] == [
            ("attach", 2, None),
            ("dropped", None, 7),
            ("attach", 10, None),
        ]
        # Lost and nothing after: the notice alone, when it reads again.
        for i in range(5):
            hub.publish({"type": "gc", "n": i})
        assert [e["n"] for e in drain(slow)[:3]] == [0, 1, 2]
        notice = await slow.__anext__()
        assert (notice["type"], notice["count"]) == ("dropped", 2)
    # 7 + 2 for the slow one; the keen one, not read meanwhile, lost gc 2, 3 and 4.
    assert sample(hub, "pipework_events_dropped_total") == 7 + 2 + 3
    assert sample(hub, "pipework_events_total", type="attach") == 11


async def test_leaving_unsubscribes():
    hub = Hub()
    async with hub.subscribe() as events:
        hub.publish({"type": "gc"})
        assert sample(hub, "pipework_event_subscribers") == 1
    hub.publish({"type": "gc"})
    assert hub.subscribers == 0 and sample(hub, "pipework_event_subscribers") == 0
    assert len(drain(events)) == 1  # nothing was queued after it left


async def test_close_ends_every_stream_after_what_is_queued():
    hub = Hub()
    async with hub.subscribe() as events:
        hub.publish({"type": "attach"})
        hub.close()
        assert [e["type"] async for e in events] == ["attach"]
    async with hub.subscribe() as late:
        assert [e async for e in late] == []


async def test_what_is_no_event_is_dropped_without_raising():
    hub = Hub()
    async with hub.subscribe() as events:
        hub.publish({"outcome": "created"})  # no type
        hub.publish({"type": 7})
        hub.publish({"type": "dropped", "count": 99})  # only the hub says that
        hub.publish(["not", "a", "mapping"])  # type: ignore[arg-type]
        hub.publish({"type": "attach", "time": "yesterday", "duration_ms": "slow"})
        (event,) = drain(events)
    assert event["type"] == "attach" and isinstance(event["time"], float)
