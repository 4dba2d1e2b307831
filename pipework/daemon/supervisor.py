"""The daemon's DHCP supervisor: kept clients watched, dead ones started again.

``supervise(engine, emit, interval=...)`` runs until cancelled. At start it
adopts every live kept client (``dhcp.adopted``): nothing is restarted, the
process that was renewing goes on renewing. Then, every ``interval``
seconds, it reads the clients again (``Engine.kept_clients()``: each
provider's state, confirmed by the kernel) and reports what changed:

- ``dhcp.renew``: a client reported a lease again (its report was rewritten);
- ``dhcp.exited``: a client it saw alive is dead (no ``exit_code``: a kept
  client is no child of the daemon, its status is nobody's to read);
- ``dhcp.restarted``: it started a dead client again
  (``Engine.revive_kept()``, the provider's own ``configure`` on the
  attachment's interface), only while the attachment still exists;
- ``dhcp.given-up``: it stopped trying: ``TRIES`` starts failed, or the
  client died again each time within ``STABLE`` seconds, or its attachment
  is gone (``gc`` removes what is left; a re-run of the attach makes a new one).

Nothing is recorded: a restarted daemon reads the same state and adopts the
same processes. The bookkeeping (``Tracker``) is pure, for the unit tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import anyio

from pipework.engine import Engine, KeptClient, PipeworkError

log = logging.getLogger("pipework.daemon")

Emit = Callable[[Mapping[str, object]], None]
Identity = tuple[str, str, str]

TRIES = 3
"""Starts of a dead client before the supervisor gives up on it."""
BACKOFF_MAX = 300.0
"""Seconds: the longest wait between two starts."""
STABLE = 60.0
"""Seconds a started client must live before its tries are forgotten."""


def backoff(failures: int, interval: float) -> float:
    """Seconds to wait before the next start after ``failures`` failed ones."""
    return min(BACKOFF_MAX, max(interval, 1.0) * 2.0 ** max(failures - 1, 0))


@dataclass
class Watched:
    """What the supervisor knows of one kept client."""

    client: KeptClient
    tries: int = 0
    """Starts since it was last stable."""
    due: float | None = None
    """When to start it (monotonic seconds); None: not to be started."""
    started: float | None = None
    """When the supervisor last started it (monotonic), until it is stable."""
    given_up: bool = False


def _fields(client: KeptClient, **more: object) -> dict[str, object]:
    return {
        "provider": client.provider,
        "guest": client.guest_name or client.guest,
        "key": client.guest,
        "ifname": client.ifname,
        **more,
    }


@dataclass
class Tracker:
    """The supervisor's bookkeeping: ``observe`` each reading of the clients,
    ``start`` the ones it says are due, tell it how each start went."""

    interval: float
    tries: int = TRIES
    stable: float = STABLE
    watched: dict[Identity, Watched] = field(default_factory=dict)
    first: bool = True

    def observe(self, clients: Iterable[KeptClient], now: float) -> list[dict[str, object]]:
        """The events for what changed since the last reading."""
        events: list[dict[str, object]] = []
        seen: set[Identity] = set()
        for client in clients:
            if client.pid is None:
                continue  # never got to the background (an attach under way, or one that failed)
            seen.add(client.identity)
            old = self.watched.get(client.identity)
            if old is None:
                events += self._new(client, now)
                continue
            events += self._again(old, client, now)
            old.client = client
        for gone in self.watched.keys() - seen:
            if self.watched[gone].due is None:  # a start that failed took its state too
                del self.watched[gone]  # its state was removed: detached, or collected
        self.first = False
        return events

    def _new(self, client: KeptClient, now: float) -> list[dict[str, object]]:
        watched = self.watched[client.identity] = Watched(client)
        if client.alive:
            return [_event("dhcp.adopted", client)] if self.first else []
        watched.due = now  # found dead: start it at once
        return [_event("dhcp.exited", client)]

    def _again(self, old: Watched, client: KeptClient, now: float) -> list[dict[str, object]]:
        before = old.client
        if client.alive:
            events: list[dict[str, object]] = []
            if old.started is not None and not before.alive:
                events.append(_event("dhcp.restarted", client, tries=old.tries))
            elif client.lease_stamp != before.lease_stamp and client.lease_address:
                events.append(_event("dhcp.renew", client))
            old.due, old.given_up = None, False
            if old.started is not None and now - old.started >= self.stable:
                old.started, old.tries = None, 0
            return events
        if not before.alive:
            return []
        if old.given_up:
            return []
        old.due = now + (backoff(old.tries, self.interval) if old.tries else 0.0)
        if old.tries >= self.tries:
            old.due = None
        events = [_event("dhcp.exited", client)]
        if old.due is None:
            old.given_up = True
            events.append(
                _event(
                    "dhcp.given-up",
                    client,
                    tries=old.tries,
                    error=f"it died {old.tries} times within {self.stable:g} s of a start",
                )
            )
        return events

    def due(self, now: float) -> list[KeptClient]:
        """The dead clients to start now."""
        return [w.client for w in self.watched.values() if w.due is not None and w.due <= now]

    def starting(self, client: KeptClient, now: float) -> None:
        watched = self.watched[client.identity]
        watched.tries += 1
        watched.started = now
        watched.due = None

    def failed(self, client: KeptClient, error: str, now: float) -> list[dict[str, object]]:
        """A start failed: try again later, or give up."""
        watched = self.watched[client.identity]
        if watched.tries < self.tries:
            watched.due = now + backoff(watched.tries, self.interval)
            log.warning(
                "%s for %s in %s: start %d failed: %s",
                client.provider,
                client.ifname,
                client.guest_name or client.guest,
                watched.tries,
                error,
            )
            return []
        watched.given_up = True
        return [_event("dhcp.given-up", client, tries=watched.tries, error=error)]

    def running(self, client: KeptClient) -> None:
        """Not started after all: it runs (an attach made it meanwhile)."""
        watched = self.watched[client.identity]
        watched.tries = max(0, watched.tries - 1)
        watched.started = None

    def gone(self, client: KeptClient) -> list[dict[str, object]]:
        """Its attachment is gone: nothing to start, ever."""
        watched = self.watched[client.identity]
        watched.given_up, watched.due, watched.started = True, None, None
        return [
            _event(
                "dhcp.given-up",
                client,
                error=f"{client.ifname} is gone from {client.guest_name or client.guest}: "
                "not restarted (pipework gc removes what is left)",
            )
        ]


def _event(kind: str, client: KeptClient, **more: object) -> dict[str, object]:
    fields = _fields(client, **more)
    fields["type"] = kind
    if kind in ("dhcp.adopted", "dhcp.restarted", "dhcp.renew"):
        fields["pid"] = client.pid
        fields["address"] = client.lease_address
        fields["lease"] = client.lease_seconds
    return {k: v for k, v in fields.items() if v is not None}


async def supervise(engine: Engine, emit: Emit, *, interval: float) -> None:
    """Watch the engine's kept clients until cancelled (see the module's text).
    ``emit`` gets each event (``telemetry.emit``); ``interval`` is how often,
    in seconds, the clients are read again (renewals are noticed that late)."""
    tracker = Tracker(interval=interval)
    while True:
        try:
            await _pass(engine, emit, tracker)
        except Exception as exc:  # a bug or a surprise must not end the daemon's supervision
            log.warning("DHCP supervisor: %s (will look again in %g s)", _why(exc), interval)
        await anyio.sleep(interval)


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, PipeworkError) else f"internal error: {exc!r}"


async def _pass(engine: Engine, emit: Emit, tracker: Tracker) -> None:
    """One reading; the starts it calls for; a reading again after any."""
    for event in tracker.observe(await engine.kept_clients(), time.monotonic()):
        emit(event)
    due = tracker.due(time.monotonic())
    for client in due:
        tracker.starting(client, time.monotonic())
        try:
            outcome = await engine.revive_kept(client)
        except Exception as exc:
            events = tracker.failed(client, _why(exc), time.monotonic())
        else:
            events = []
            if outcome == "gone":
                events = tracker.gone(client)
            elif outcome == "alive":
                tracker.running(client)
        for event in events:
            emit(event)
    if due:
        for event in tracker.observe(await engine.kept_clients(), time.monotonic()):
            emit(event)


__all__ = ["BACKOFF_MAX", "STABLE", "TRIES", "Tracker", "backoff", "supervise"]
