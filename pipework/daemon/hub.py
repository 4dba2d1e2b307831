"""The daemon's event hub: every event published once, to every subscriber,
and counted in the metrics.

Events come from the engine in the daemon's own process (its watcher, its
DHCP supervisor: ``telemetry.add_sink(hub.publish)``) and from the worker
processes that run forwarded commands (one JSON line each, over a pipe the
daemon reads). ``publish`` is synchronous and runs on the daemon's event
loop; it never blocks and never raises.

Each subscriber (a ``GET /v1/events`` client) has a bounded buffer. One that
reads too slowly loses the events that do not fit, not the daemon's time:
when it reads again, it first gets one ``{"type": "dropped", "count": N}``
event where the N events were lost.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

import anyio

from pipework.daemon.metrics import Metrics

log = logging.getLogger("pipework.daemon")

BUFFER = 1024
"""Events a subscriber may be behind before it loses some."""
DROPPED = "dropped"


def matches(kind: str, types: frozenset[str] | None) -> bool:
    """Does an event of type ``kind`` pass the filter ``types`` (None: all)?
    A type matches itself and the types under it (``dhcp``: ``dhcp.renew``...)."""
    if types is None or kind == DROPPED or kind in types:
        return True
    return any(kind.startswith(f"{t}.") for t in types)


class Subscription:
    """What one subscriber reads: ``async for event in subscription``.
    The events are the hub's own dicts, shared with the other subscribers:
    read them, do not change them."""

    def __init__(self, types: frozenset[str] | None, buffer: int) -> None:
        self.types = types
        self._buffer = buffer
        self._queue: deque[Mapping[str, object]] = deque()
        self._lost = 0
        self._wake = anyio.Event()
        self._closed = False

    def offer(self, event: Mapping[str, object], kind: str) -> bool:
        """Queue ``event`` if it is wanted and fits; False if it was lost."""
        if not matches(kind, self.types):
            return True
        if len(self._queue) >= self._buffer:
            self._lost += 1
            return False
        if self._lost:  # the gap, where it is: before what comes after it
            self._queue.append(self._notice())
        self._queue.append(event)
        self._wake.set()
        return True

    def close(self) -> None:
        """End the iteration once what is queued has been read."""
        self._closed = True
        self._wake.set()

    def _notice(self) -> Mapping[str, object]:
        count, self._lost = self._lost, 0
        return {"time": time.time(), "type": DROPPED, "count": count}

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Mapping[str, object]:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._lost:
                return self._notice()
            if self._closed:
                raise StopAsyncIteration
            self._wake = anyio.Event()
            await self._wake.wait()


class Hub:
    """Fan-out of the daemon's events, and the metrics counted from them."""

    def __init__(self, metrics: Metrics | None = None, *, buffer: int = BUFFER) -> None:
        self.metrics = metrics if metrics is not None else Metrics()
        self.buffer = buffer
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def publish(self, event: Mapping[str, object]) -> None:
        """Count ``event`` and queue it for every subscriber that wants it.
        Call it on the event loop. Never blocks, never raises: an event
        without a string ``type`` is dropped (logged at debug level)."""
        try:
            record = dict(event)
            kind = record.get("type")
            if not isinstance(kind, str) or kind == DROPPED:
                raise ValueError(f"an event's type must be a string, not {kind!r}")
            if not isinstance(record.get("time"), int | float):
                record["time"] = time.time()
        except (TypeError, ValueError) as exc:
            log.debug("hub: not an event: %r (%s)", event, exc)
            return
        self.metrics.observe(record)
        for subscription in tuple(self._subscriptions):
            if not subscription.offer(record, kind):
                self.metrics.dropped.inc()

    @asynccontextmanager
    async def subscribe(self, types: Iterable[str] | None = None) -> AsyncIterator[Subscription]:
        """``async with hub.subscribe() as events: async for event in events:``
        every event published from now on (of ``types`` and the types under
        them, if given), until the block ends or the hub closes."""
        wanted = frozenset(t for t in types if t) if types is not None else None
        subscription = Subscription(wanted or None, self.buffer)
        if self._closed:
            subscription.close()
        self._subscriptions.add(subscription)
        self.metrics.subscribers.set(len(self._subscriptions))
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            self.metrics.subscribers.set(len(self._subscriptions))

    def close(self) -> None:
        """End every subscription (the daemon stops): each reader gets what
        is queued, then its iteration ends. Later subscriptions end at once."""
        self._closed = True
        for subscription in tuple(self._subscriptions):
            subscription.close()


__all__ = ["BUFFER", "DROPPED", "Hub", "Subscription", "matches"]
