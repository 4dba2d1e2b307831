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

Labels are input, not instructions: the label policy (apps/watch_policy.py)
decides which the watcher acts on. A label refused, or one that does not
parse, is logged once per guest (not on every reconciliation) and shown in
the status. The watcher's own DHCP helper containers are not guests.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from pipework.apps.grammar import parse_legacy
from pipework.apps.watch_policy import (
    BRIDGE_KINDS,
    LABEL_VALUE_MAX,
    HostFacts,
    LabelPolicy,
    host_refusal,
    own_keys,
    spec_refusal,
)
from pipework.engine import telemetry
from pipework.engine.contract import EventSource
from pipework.engine.errors import PipeworkError, UsageError
from pipework.engine.events import GuestEvent
from pipework.engine.specs import AttachSpec, derive_mac, validate_ifname, with_methods

log = logging.getLogger("pipework.watch")

LABEL_PREFIX = "pipework."
HELPER_LABEL = "pipework.helper"
"""The label of pipework's own helper containers (the ``dhcp`` provider's,
backends/addresses/dhcp/helper.py): they are not guests, and their other
``pipework.*`` labels (``pipework.guest``...) are not declarations."""
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
    if is_helper(event):
        return specs, errors
    for key in sorted(event.labels):
        if not key.startswith(LABEL_PREFIX):
            continue
        ifname = key[len(LABEL_PREFIX) :]
        try:
            validate_ifname(ifname, f"label {key}: guest interface name")
            if len(event.labels[key]) > LABEL_VALUE_MAX:
                raise UsageError(
                    f"label {key} is {len(event.labels[key])} characters long",
                    f"at most {LABEL_VALUE_MAX}",
                )
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


def since_start(event: GuestEvent) -> float | None:
    """Milliseconds since the runtime's start event, if it said when."""
    if event.time_ns is None:
        return None
    return round((time.time_ns() - event.time_ns) / 1e6, 3)


def is_helper(event: GuestEvent) -> bool:
    """Is this one of pipework's own helper containers?"""
    return HELPER_LABEL in event.labels


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
    refused: dict[str, str] = field(default_factory=dict)
    """Labels the policy refused, by interface: why."""
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
        policy: LabelPolicy | None = None,
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
        self.policy = policy or LabelPolicy()
        self.guests: dict[str, GuestState] = {}
        self._told: dict[str, set[str]] = {}
        """What was logged about each guest's labels, so it is said once."""
        self.connected: dict[str, str] = {s.name: "connecting" for s in self.sources}
        self.started = time.time()
        self.failures = 0
        self._locks: dict[str, anyio.Lock] = {}
        self._limiter = anyio.CapacityLimiter(max(1, engine.limit))

    # -- one guest -------------------------------------------------------------------
    async def declared(
        self, event: GuestEvent, *, quiet: bool = False
    ) -> tuple[list[AttachSpec], dict[str, str]]:
        """What ``event``'s guest declares and the policy allows, and the labels
        refused (by interface: why). Each problem is logged once per guest."""
        labelled, errors = specs_from_labels(event)
        for error in errors:
            self._tell(event, str(error), "label", None, quiet)
        own = own_keys(event.labels, event.image_labels)
        specs: list[AttachSpec] = []
        refused: dict[str, str] = {}
        for spec in labelled:
            key = f"{LABEL_PREFIX}{spec.ifname}"
            reason = spec_refusal(spec, own=key in own, policy=self.policy)
            if reason is None:
                reason = await self._host_refusal(spec)
            if reason is None:
                specs.append(spec)
                continue
            refused[spec.ifname or "?"] = reason
            self._tell(
                event, f"label {key} of {event.name} refused: {reason}", "refused",
                spec.ifname, quiet,
            )  # fmt: skip
        if self.declare is not None:
            specs.extend(self.declare(event))
        return [with_stable_mac(spec, event.key) for spec in specs], refused

    async def _host_refusal(self, spec: AttachSpec) -> str | None:
        """The policy's word on what ``spec``'s host interface is."""
        try:
            link = await self.engine.host.link(spec.host)
            kind = (await self.engine.choose_backend(spec, link)).name
            ours = (
                link is not None
                and kind in BRIDGE_KINDS
                and await self.engine.owns_host(kind, spec.host)
            )
        except PipeworkError as exc:
            return f"cannot tell what {spec.host} is: {exc}"
        return host_refusal(spec, HostFacts(kind, link is not None, ours), self.policy)

    def _tell(
        self, event: GuestEvent, message: str, what: str, ifname: str | None, quiet: bool
    ) -> None:
        told = self._told.setdefault(event.key, set())
        if quiet or message in told:
            return
        told.add(message)
        log.warning("%s", message, extra={"guest": event.name, "ifname": ifname, "event": what})

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
        specs, refused = await self.declared(event)
        if not specs and not refused and event.key not in self.guests:
            return
        state = self.guests.setdefault(event.key, GuestState(event.name, event.ref))
        state.specs, state.errors, state.refused = specs, [], refused
        for ifname in [i for i in state.attachments if i in refused]:
            del state.attachments[ifname]
        span = telemetry.span(
            "watch.reconcile", guest=event.name, key=event.key, action=event.action,
            count=len(specs), refused=len(refused) or None,
        )  # fmt: skip
        with span:
            statuses = [await self._attach_one(event, state, spec) for spec in specs]
        changed = any(status in ("created", "replaced") for status in statuses)
        outcome = "error" if "failed" in statuses else "changed" if changed else "unchanged"
        span.done(outcome, latency_ms=since_start(event) if changed else None)
        state.updated = time.time()
        self.write_status()

    async def _attach_one(self, event: GuestEvent, state: GuestState, spec: AttachSpec) -> str:
        """Attach one of a guest's declarations; its status, or ``failed``."""
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
            return "failed"
        state.attachments[ifname] = result.to_dict()
        if result.status != "unchanged":
            latency = since_start(event)
            log.info(
                "%s %s in %s (%s)%s", result.status, ifname, event.name,
                ", ".join(
                    with_methods(result.addresses, result.address_method, dict(result.address_sources))
                )
                or "no address",
                f" {latency:.1f} ms after the start event" if latency is not None else "",
                extra={
                    "guest": event.name, "ifname": ifname, "event": result.status,
                    "latency_ms": latency,
                },
            )  # fmt: skip
        status: str = result.status
        return status

    async def _forget(self, event: GuestEvent) -> None:
        state = self.guests.pop(event.key, None)
        self._told.pop(event.key, None)
        specs = (await self.declared(event, quiet=True))[0] or (
            state.specs if state is not None else []
        )
        if not specs:
            self.write_status()
            return
        removed: list[str] = []
        span = telemetry.span(
            "watch.reconcile", guest=event.name, key=event.key, action=event.action,
            count=len(specs),
        )  # fmt: skip
        failed = False
        for spec in specs:
            try:
                markers = await self.engine.remove(
                    replace(spec, guest_key=event.key), resolve=False
                )
            except PipeworkError as exc:
                failed = True
                log.error(
                    "cleaning up %s of %s failed: %s", spec.ifname, event.name, exc,
                    extra={"guest": event.name, "ifname": spec.ifname, "event": "cleanup-failed"},
                )  # fmt: skip
                continue
            removed.extend(f"{m.ifname} ({m.kind} {m.host})" for m in markers)
        log.info(
            "%s died; removed %s", event.name, ", ".join(removed) or "nothing that was left",
            extra={"guest": event.name, "event": "died"},
        )  # fmt: skip
        span.done("error" if failed else "removed")
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
            "refused": sum(len(g.refused) for g in self.guests.values()),
            "guests": {
                key: {
                    "name": g.name,
                    "attachments": g.attachments,
                    "errors": g.errors,
                    "refused": g.refused,
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


@asynccontextmanager
async def watching(
    engine: Any,
    *,
    interval: float,
    declare: Declare | None = None,
    policy: LabelPolicy | None = None,
    status_file: Path | None = None,
) -> AsyncIterator[Watcher]:
    """A ``Watcher`` over the engine's event sources, for ``pipework watch``
    and ``pipework daemon --watch``: its sources are closed and its status
    file removed on the way out."""
    from pipework.engine.plugins import event_sources

    unknown = sorted(policy.kinds - set(engine.kinds)) if policy is not None else []
    if unknown:
        raise UsageError(
            f"--allow-kinds: no link backend named {', '.join(unknown)}",
            f"known kinds: {', '.join(engine.kinds)}",
        )
    sources = event_sources(engine.plugin_manager, engine.config)
    watcher = Watcher(
        engine,
        sources,
        declare=declare,
        interval=interval,
        status_path=status_file,
        policy=policy,
    )
    try:
        yield watcher
    finally:
        for source in sources:
            with anyio.CancelScope(shield=True):
                await source.aclose()
        if status_file is not None:
            status_file.unlink(missing_ok=True)  # noqa: ASYNC240 - one small unlink at exit
