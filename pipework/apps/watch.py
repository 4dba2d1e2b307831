"""``pipework watch``: keep declared attachments in place while guests come and go.

A ``Watcher`` follows the event sources that plugins provide
(engine/events.py). For every guest that runs, or starts, it attaches what
is declared for it: in its labels (``pipework.eth1=br1 198.18.30.2/24``) or
in a topology file. When a guest dies it removes what the death leaves
behind (OVS ports, kept DHCP clients, helper containers...). Attaching is
idempotent, so the watcher simply reconciles: at start-up, after every
reconnection, on every ``start`` event, and every ``interval`` seconds
(which also restarts a kept DHCP client that died while its guest lives:
the provider reports it, and the attachment is rebuilt).

Declarations without a MAC address get a stable one derived from the guest
and the interface name (as ``U:`` does), so a restarted container keeps its
MAC address, and with it its DHCP lease.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from pipework.apps.grammar import parse_legacy
from pipework.engine.contract import EventSource
from pipework.engine.errors import PipeworkError, UsageError
from pipework.engine.events import GuestEvent
from pipework.engine.specs import AttachSpec, derive_mac, validate_ifname

log = logging.getLogger("pipework.watch")

LABEL_PREFIX = "pipework."
DEFAULT_INTERVAL = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0

Declare = Callable[[GuestEvent], list[AttachSpec]]
"""More declarations for a guest (a topology file), besides its labels."""


class LabelError(UsageError):
    """A ``pipework.*`` label that does not parse."""


def specs_from_labels(event: GuestEvent) -> tuple[list[AttachSpec], list[LabelError]]:
    """The attachments a guest's ``pipework.IFNAME`` labels declare.

    The value is the original grammar without GUEST (``HOSTIF IPSPEC
    [MACSPEC] [options]``), split as a shell would split it but never given
    to one. Labels that do not parse come back as errors, not exceptions.
    """
    specs: list[AttachSpec] = []
    errors: list[LabelError] = []
    for key in sorted(event.labels):
        if not key.startswith(LABEL_PREFIX):
            continue
        ifname = key[len(LABEL_PREFIX) :]
        try:
            validate_ifname(ifname, f"label {key}: guest interface name")
            words = shlex.split(event.labels[key])
            if not words:
                raise UsageError(f"label {key} is empty", "write HOSTIF IPSPEC [MACSPEC]")
            if any(w in ("-i", "--ifname") or w.startswith(("-i", "--ifname=")) for w in words):
                raise UsageError(f"label {key} names the interface already; drop -i")
            spec = parse_legacy([words[0], event.ref, *words[1:], "-i", ifname])
        except (PipeworkError, ValueError) as exc:
            errors.append(LabelError(f"label {key} of {event.name}: {exc}"))
            continue
        specs.append(spec)
    return specs, errors


def topology_declarations(loaded: Any) -> Declare:
    """Declarations from a topology file (``pipework apply``'s format, as
    ``topofile.load`` returns it): a guest gets the attachments whose
    ``guest`` names it (its name, its ID or short ID, with or without the
    runtime's prefix). Every attachment is checked now, so a bad file stops
    the watcher before it starts, with the file and line."""
    specs = []
    for i in range(len(loaded.topology.attachments)):
        try:
            specs.append(loaded.topology.spec(i))
        except PipeworkError as exc:
            raise loaded.error(("attachments", i), exc) from None

    def names_of(event: GuestEvent) -> set[str]:
        runtime = event.ref.partition(":")[0]
        plain = {event.name, event.key, event.key[:12]}
        return plain | {f"{runtime}:{name}" for name in plain}

    def declare(event: GuestEvent) -> list[AttachSpec]:
        names = names_of(event)
        return [replace(spec, guest=event.ref) for spec in specs if spec.guest in names]

    return declare


def with_stable_mac(spec: AttachSpec, key: str) -> AttachSpec:
    """``spec`` with a MAC derived from the guest and interface, unless it has one."""
    if spec.mac is not None or spec.kind == "ipoib":
        return spec
    return replace(spec, mac=derive_mac(f"{key}/{spec.ifname or ''}"))


@dataclass
class GuestState:
    name: str
    ref: str
    specs: list[AttachSpec] = field(default_factory=list)
    attachments: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    updated: float = 0.0


class Watcher:
    """Reconcile guests against their declarations, driven by events.

    ``engine`` is an entered ``Engine``. When a guest dies, what it leaves
    behind is removed with ``Engine.remove()`` for each of its declarations,
    as the marker each would have made identifies it.
    """

    def __init__(
        self,
        engine: Any,
        sources: Sequence[EventSource],
        *,
        declare: Declare | None = None,
        interval: float = DEFAULT_INTERVAL,
        status_path: Path | None = None,
    ) -> None:
        if not sources:
            raise UsageError(
                "no event source is installed", "pipework watch needs a runtime plugin (docker)"
            )
        self.engine = engine
        self.sources = list(sources)
        self.declare = declare
        self.interval = interval
        self.status_path = status_path
        self.guests: dict[str, GuestState] = {}
        self.connected: dict[str, str] = {s.name: "connecting" for s in self.sources}
        self.started = time.time()
        self.failures = 0
        self._locks: dict[str, anyio.Lock] = {}
        self._limiter = anyio.CapacityLimiter(max(1, engine.limit))

    # -- one guest -------------------------------------------------------------------
    def declared(self, event: GuestEvent) -> list[AttachSpec]:
        specs, errors = specs_from_labels(event)
        for error in errors:
            log.warning("%s", error, extra={"guest": event.name, "event": "label"})
        if self.declare is not None:
            specs.extend(self.declare(event))
        return [with_stable_mac(spec, event.key) for spec in specs]

    async def handle(self, event: GuestEvent) -> None:
        lock = self._locks.setdefault(event.key, anyio.Lock())
        async with lock, self._limiter:
            try:
                if event.action == "start":
                    await self._attach_all(event)
                else:
                    await self._forget(event)
            except Exception as exc:  # one guest's trouble must not stop the watcher
                log.error(
                    "handling %s of %s failed: %s", event.action, event.name, exc,
                    exc_info=not isinstance(exc, PipeworkError),
                    extra={"guest": event.name, "event": "failed"},
                )  # fmt: skip

    async def _attach_all(self, event: GuestEvent) -> None:
        specs = self.declared(event)
        if not specs:
            return
        state = self.guests.setdefault(event.key, GuestState(event.name, event.ref))
        state.specs, state.errors = specs, []
        for spec in specs:
            ifname = spec.ifname or "?"
            try:
                result = await self.engine.attach(spec)
            except PipeworkError as exc:
                self.failures += 1
                state.errors.append(f"{ifname}: {exc}")
                state.attachments[ifname] = {"status": "failed", "error": str(exc)}
                log.error(
                    "attach %s in %s failed: %s", ifname, event.name, exc,
                    extra={"guest": event.name, "ifname": ifname, "event": "failed"},
                )  # fmt: skip
                continue
            state.attachments[ifname] = result.to_dict()
            latency = (
                (time.time_ns() - event.time_ns) / 1e6
                if event.time_ns is not None and result.status != "unchanged"
                else None
            )
            if result.status != "unchanged":
                log.info(
                    "%s %s in %s (%s)%s", result.status, ifname, event.name,
                    ", ".join(result.addresses) or "no address",
                    f" {latency:.1f} ms after the start event" if latency is not None else "",
                    extra={
                        "guest": event.name, "ifname": ifname, "event": result.status,
                        "latency_ms": latency,
                    },
                )  # fmt: skip
        state.updated = time.time()
        self.write_status()

    async def _forget(self, event: GuestEvent) -> None:
        state = self.guests.pop(event.key, None)
        specs = self.declared(event) or (state.specs if state is not None else [])
        removed: list[str] = []
        for spec in specs:
            try:
                markers = await self.engine.remove(
                    replace(spec, guest_key=event.key), resolve=False
                )
            except PipeworkError as exc:
                log.error(
                    "cleaning up %s of %s failed: %s", spec.ifname, event.name, exc,
                    extra={"guest": event.name, "ifname": spec.ifname, "event": "cleanup-failed"},
                )  # fmt: skip
                continue
            removed.extend(f"{m.ifname} ({m.kind} {m.host})" for m in markers)
        if specs:
            log.info(
                "%s died; removed %s", event.name, ", ".join(removed) or "nothing that was left",
                extra={"guest": event.name, "event": "died"},
            )  # fmt: skip
        self.write_status()

    # -- everything ----------------------------------------------------------------------
    async def reconcile(self, source: EventSource) -> None:
        running = await source.running()
        async with anyio.create_task_group() as tg:
            for event in running:
                tg.start_soon(self.handle, event)
        alive = {event.key for event in running}
        for key in [k for k, g in self.guests.items() if k not in alive]:
            state = self.guests[key]
            await self.handle(GuestEvent("die", state.ref, key, state.name))

    async def run_once(self) -> int:
        """Reconcile every source once; return how many attaches failed."""
        for source in self.sources:
            await self.reconcile(source)
            self.connected[source.name] = "connected"
        self.write_status()
        return self.failures

    async def run(self) -> None:
        """Follow every source until cancelled (SIGTERM: the CLI cancels)."""
        async with anyio.create_task_group() as tg:
            self._events = tg
            for source in self.sources:
                tg.start_soon(self._follow, source)
            tg.start_soon(self._periodically)

    async def _follow(self, source: EventSource) -> None:
        backoff = BACKOFF_FIRST
        while True:
            since = time.time() - 1.0
            try:
                await self.reconcile(source)
                self._set_connected(source, "connected")
                backoff = BACKOFF_FIRST
                await source.watch(self._on_event, since)
                raise PipeworkError(f"the {source.name} event stream ended")
            except PipeworkError as exc:
                self._set_connected(source, f"reconnecting: {exc}")
                log.warning(
                    "%s; retrying in %.1f s", exc, backoff,
                    extra={"event": "disconnected", "source": source.name},
                )  # fmt: skip
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _on_event(self, event: GuestEvent) -> None:
        # Handled in the background: a slow attach must not hold up events
        # of other guests. Each guest's events stay in order (its lock).
        assert self._events is not None
        self._events.start_soon(self.handle, event)

    _events: anyio.abc.TaskGroup | None = None

    async def _periodically(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            for source in self.sources:
                if self.connected.get(source.name) == "connected":
                    try:
                        await self.reconcile(source)
                    except PipeworkError as exc:
                        log.warning("periodic reconcile: %s", exc, extra={"event": "periodic"})

    def _set_connected(self, source: EventSource, state: str) -> None:
        if self.connected.get(source.name) != state:
            self.connected[source.name] = state
            if state == "connected":
                log.info(
                    "%s: reconciled; following its events", source.name,
                    extra={"event": "connected", "source": source.name},
                )  # fmt: skip
            self.write_status()

    # -- status ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started": self.started,
            "updated": time.time(),
            "sources": dict(self.connected),
            "guests": {
                key: {
                    "name": g.name,
                    "attachments": g.attachments,
                    "errors": g.errors,
                    "updated": g.updated,
                }
                for key, g in sorted(self.guests.items(), key=lambda kv: kv[1].name)
            },
        }

    def write_status(self) -> None:
        if self.status_path is None:
            return
        try:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.status(), indent=1, default=str))
            tmp.replace(self.status_path)
        except OSError as exc:  # the status file is a convenience, never fatal
            log.debug("writing %s: %s", self.status_path, exc)


def read_status(path: Path) -> Mapping[str, Any] | None:
    """The status a running watcher wrote, or None when none runs."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return data
