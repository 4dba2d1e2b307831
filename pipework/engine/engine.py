"""The engine: attach / attach_many / detach, backend-agnostic.

One attach, as data flows (docs/ARCHITECTURE.md has the long version):

1. resolver  -> ``Guest`` (an open netns fd)
2. backend   -> host side ready, guest interface created in the guest
                namespace under a temporary name
3. engine    -> rename, MAC, MTU, marker alias, up (one netlink request)
4. provider  -> addresses, gateway, routes
5. engine    -> gratuitous ARP (non-blocking), ``Attachment``

Every step that creates something records its inverse in a ``Journal``;
any exception or cancellation unwinds it under a shielded scope.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import anyio.to_thread

from pipework.engine import telemetry
from pipework.engine.announcing import (
    Announcement,
    announce_when_ready,
    announces,
    link_settings,
    ready,
    trigger,
)
from pipework.engine.batch import BatchScope, batch_scope, current_scope
from pipework.engine.compat import same_configuration
from pipework.engine.contract import (
    AddressContext,
    AddressProvider,
    AddressResult,
    DetachContext,
    EngineConfig,
    GuestLink,
    GuestResolver,
    HostChange,
    HostContext,
    HostRequest,
    LinkBackend,
    LinkContext,
)
from pipework.engine.errors import (
    ConflictError,
    GuestNotFoundError,
    GuestNotRunningError,
    HostInterfaceError,
    NotPermittedError,
    PipeworkError,
    TimeoutExpiredError,
    UnknownHostInterfaceError,
    UnsupportedError,
    UnverifiedError,
    UsageError,
)
from pipework.engine.guests import Guest, open_netns, still_there
from pipework.engine.journal import Journal
from pipework.engine.kernel.netlink import (
    Link,
    NetlinkFailure,
    NetlinkPool,
    Netns,
    NoSuchLink,
    netns_identity,
)
from pipework.engine.linkends import LinkEnds
from pipework.engine.locks import HostLocks
from pipework.engine.marker import LINK_KIND, Marker
from pipework.engine.plugins import (
    address_providers,
    guest_resolvers,
    link_backends,
    make_plugin_manager,
)
from pipework.engine.replacement import BreakBeforeMake, add_routes, live_rename, other_hostif
from pipework.engine.resolution import Outcome, choose_guest, guess_order
from pipework.engine.specs import (
    AddressSpec,
    Attachment,
    AttachSpec,
    GuestInfo,
    Status,
    short_hash,
)

if TYPE_CHECKING:  # loaded on use: not on the attach path
    from pipework.engine.guestlinks import LinkExamination, LinkResult
    from pipework.engine.inventory import AttachmentRecord, GcReport, Inventory
    from pipework.engine.kept import KeptClient, Revival
    from pipework.engine.linkspec import LinkSpec

log = logging.getLogger("pipework")

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
RESOLVE_GRACE = 2.0
"""Seconds beyond the timeout before the engine gives up on a resolver."""
DEFAULT_LIMIT = 16
"""Default concurrency of ``attach_many``. Netlink work runs on the event loop
and gains little from concurrency (bench/README.md); what overlaps is waiting
on Docker lookups and on the kernel, so a modest bound suffices."""
DEFAULT_RUN_DIR = "/run/pipework"
"""Where plugins keep runtime files, unless ``run_dir`` or PIPEWORK_RUN_DIR says otherwise."""
LOCK_WAIT_FACTOR = 2
"""A lock another process holds is waited for this many times the timeout:
its holder's steps are each bounded by the timeout, and it takes a few."""
STACKED_KINDS = frozenset({"bridge", "vlan", "macvlan", "macvtap", "ipvlan", "bond", "team"})


def require_privileges() -> None:
    """Fail before touching anything when we cannot change interfaces."""
    try:
        with open("/proc/self/status") as status:
            caps = next(int(line.split()[1], 16) for line in status if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):  # pragma: no cover - not Linux
        caps = 0 if os.geteuid() else ~0
    missing = [
        name
        for name, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
        if not caps >> bit & 1
    ]
    if missing:
        raise NotPermittedError(
            f"pipework needs root to change network interfaces (missing {', '.join(missing)})",
            "run it with sudo",
        )


def _privileged_once() -> None:
    """``require_privileges()``, once per batch: a process gains no capability
    on its own, and losing one makes the kernel refuse (EPERM) anyway."""
    scope = current_scope()
    if scope.peek(_PRIVILEGED) is None:
        require_privileges()
        scope.keep(_PRIVILEGED, True)


_PRIVILEGED = ("pipework.engine", "privileges")


Action = Literal["create", "unchanged", "repair", "update", "conflict"]
"""What an attach would do: make it; nothing; rebuild a broken one (no
``--force`` needed); replace one with another configuration (``--force``);
refuse, because the interface is not pipework's."""


@dataclass(frozen=True)
class Examination:
    """``Engine.examine()``: what an attach would do, and why."""

    action: Action
    guest: GuestInfo
    marker: Marker
    """The marker the attach would write."""
    existing: Marker | None
    """The marker found on the guest interface, if any."""


@dataclass(frozen=True)
class Found:
    """``Engine._classify()``: what an attach finds at its guest interface."""

    action: Action
    link: Link | None = None
    """The interface there, if any."""
    marker: Marker | None = None
    """Its marker, when it is this attachment's (same guest and name)."""
    configured: AddressResult | None = None
    """What the provider holds, when ``unchanged``."""
    whole: bool = True
    """False for a ``repair`` of an attachment that is down or lost its host side."""
    unverified: str | None = None
    """For a ``conflict``: the interface's marker claims this attachment, but
    nothing the host owns corroborates it (why, for people)."""


class Engine:
    """Attach interfaces to guests. Use as ``async with Engine() as engine:``.

    ``host_netns`` makes another namespace (a name under /run/netns or a
    path) play the host: bridges and host-side interfaces go there.
    ``plugins`` registers extra plugin objects in code, next to the
    ``pipework`` entry points.
    """

    def __init__(
        self,
        *,
        host_netns: str | None = None,
        timeout: float = 30.0,
        run_dir: str | None = None,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        run_dir = run_dir or os.environ.get("PIPEWORK_RUN_DIR") or DEFAULT_RUN_DIR
        self.config = EngineConfig(timeout=timeout, run_dir=run_dir, host_netns=host_netns)
        self.plugin_manager = make_plugin_manager(plugins, entry_points=entry_points)
        self.limit = limit
        self.backends: dict[str, LinkBackend] = {}
        self.providers: list[AddressProvider] = []
        self.resolvers: list[GuestResolver] = []
        self._pool = NetlinkPool()
        self._host_fd: int | None = None
        self._host: Netns | None = None
        self._host_identity: tuple[int, int] | None = None
        self._locks = HostLocks(run_dir, wait=max(timeout, 5.0) * LOCK_WAIT_FACTOR)
        self._background: anyio.abc.TaskGroup | None = None
        self._stack: AsyncExitStack | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        """Load the plugins and open what the engine holds. A failure anywhere
        here closes again whatever was opened before it."""
        async with AsyncExitStack() as stack:
            # Closed in reverse: sockets and the host fd last, after the
            # plugins, after the pending announcements.
            stack.callback(self._close_host)
            stack.callback(self._pool.close)
            stack.callback(self._locks.close)
            stack.push_async_callback(self._close_plugins)
            self._collect_plugins()
            if self.config.host_netns is not None:
                ref = self.config.host_netns
                path = ref if "/" in ref else f"/run/netns/{ref}"
                try:
                    self._host_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise UsageError(f"host namespace {ref}: {exc.strerror}") from None
            background = anyio.create_task_group()
            await background.__aenter__()
            # A background group, not a scope around the caller's block: it
            # always ends normally, after its announcements (each bounded).
            stack.push_async_callback(background.__aexit__, None, None, None)
            self._background = background
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Let pending announcements finish (each bounds its own wait), close
        the plugins and the sockets; the stack sees the real exception."""
        stack, self._stack = self._stack, None
        self._background = None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    def _collect_plugins(self) -> None:
        # The engine's own kind first: no plugin can take over its markers.
        self.backends[LINK_KIND] = LinkEnds(self)
        # Every object checked against its contract (a one-line error naming the plugin).
        for backend in link_backends(self.plugin_manager, self.config):
            self.backends.setdefault(backend.name, backend)
        self.providers.extend(address_providers(self.plugin_manager, self.config))
        self.resolvers.extend(guest_resolvers(self.plugin_manager, self.config))

    async def _close_plugins(self) -> None:
        with anyio.CancelScope(shield=True):
            objects: list[LinkBackend | AddressProvider | GuestResolver] = [
                *self.backends.values(),
                *self.providers,
                *self.resolvers,
            ]
            for obj in objects:
                try:
                    await obj.aclose()
                except Exception as err:  # pragma: no cover - best effort
                    log.debug("closing %s: %s", obj, err)

    def _close_host(self) -> None:
        self._host = None
        self._host_identity = None
        if self._host_fd is not None:
            os.close(self._host_fd)
            self._host_fd = None

    @property
    def kinds(self) -> list[str]:
        """The link kinds an attachment may name (``--kind``), sorted: every
        backend's but the engine's own ``link`` (a link between guests)."""
        return sorted(k for k in self.backends if k != LINK_KIND)

    @property
    def host(self) -> Netns:
        if self._host is None:
            self._host = self._pool.acquire(self._host_fd, "host")
        return self._host

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """``async with engine.lock("bridge:br1"):`` serialise work on a shared
        resource with this engine's other tasks and with other processes
        (a file lock under RUN_DIR/locks: engine/locks.py)."""
        return self._locks.hold(name)

    # -- selection ------------------------------------------------------------------
    async def resolve(self, ref: str) -> Guest:
        """Open the guest named by ``ref`` with the resolver that claims it most.

        Resolvers that tie on the highest claim (a bare name that Docker,
        Podman and LXC could all have) are all asked, and more than one
        having it is an error: see engine/resolution.py.
        """
        bids = [(resolver.claim(ref), resolver) for resolver in self.resolvers]
        top = max((score for score, _ in bids), default=0)
        if top <= 0:
            prefix = ref.partition(":")[0]
            raise UnsupportedError(
                f"no guest resolver handles {ref!r}",
                f"is the plugin for {prefix}: installed? see `pipework plugins`",
            )
        tied = sorted((resolver for score, resolver in bids if score == top), key=guess_order)
        if len(tied) > 1:
            return await self._resolve_tied(ref, tied)
        return await self._resolve_with(tied[0], ref)

    async def _resolve_tied(self, ref: str, resolvers: Sequence[GuestResolver]) -> Guest:
        said: list[Guest | Exception | None] = [None] * len(resolvers)

        async def ask(i: int, resolver: GuestResolver) -> None:
            try:
                said[i] = await self._resolve_with(resolver, ref)
            except Exception as exc:
                said[i] = exc

        chosen: Guest | None = None
        try:
            async with anyio.create_task_group() as tg:
                for i, resolver in enumerate(resolvers):
                    tg.start_soon(ask, i, resolver)
            outcomes: list[Outcome] = []
            for resolver, outcome in zip(resolvers, said, strict=True):
                if isinstance(outcome, Exception) and not isinstance(outcome, PipeworkError):
                    raise outcome  # a plugin's bug, not an answer
                if outcome is not None:
                    outcomes.append((resolver.name, outcome))
            chosen = choose_guest(ref, outcomes)
            return chosen
        finally:
            for outcome in said:
                if isinstance(outcome, Guest) and outcome is not chosen:
                    outcome.close()

    async def _resolve_with(self, resolver: GuestResolver, ref: str) -> Guest:
        try:
            # A backstop: resolvers bound their own calls with the same timeout
            # and explain themselves; this catches one that does not.
            with anyio.fail_after(self.config.timeout + RESOLVE_GRACE):
                return await resolver.resolve(ref)
        except TimeoutError:
            raise TimeoutExpiredError(
                f"looking up {ref} took longer than {self.config.timeout + RESOLVE_GRACE:g} s",
                f"the {resolver.name} resolver did not answer",
            ) from None

    async def _host_link(self, spec: AttachSpec) -> Link | None:
        if not spec.host.startswith("mac:"):
            return await self.host.link(spec.host)
        wanted = spec.host[4:].lower().replace("-", ":")
        matches = [link for link in await self.host.links() if (link.mac or "") == wanted]
        if not matches:
            raise HostInterfaceError(f"no host interface has MAC address {wanted}")

        # A NIC and the bridges/VLANs stacked on it share its MAC: prefer the
        # NIC, then other devices, then the stacked kinds.
        def rank(link: Link) -> int:
            return 0 if link.kind is None else 2 if link.kind in STACKED_KINDS else 1

        top = min(rank(link) for link in matches)
        best = [link for link in matches if rank(link) == top]
        if len(best) > 1:
            names = ", ".join(link.ifname for link in best)
            raise HostInterfaceError(
                f"MAC address {wanted} is on several interfaces ({names})",
                "name the interface instead",
            )
        return best[0]

    async def choose_backend(self, spec: AttachSpec, host_link: Link | None) -> LinkBackend:
        if spec.kind is not None:
            backend = self.backends.get(spec.kind)
            if backend is None:
                raise UnsupportedError(
                    f"no link backend named {spec.kind!r}",
                    f"known kinds: {', '.join(self.kinds)}",
                )
            return backend
        request = HostRequest(spec=spec, host_link=host_link, host=self.host)
        best: tuple[int, LinkBackend | None] = (0, None)
        for backend in self.backends.values():
            score = await backend.claim(request)
            if score > best[0]:
                best = (score, backend)
        if best[1] is None:
            what = (
                f"it is a {host_link.kind or 'network'} interface no backend handles"
                if host_link is not None
                else "it does not exist"
            )
            raise UnknownHostInterfaceError(
                f"I do not know how to set up interface {spec.host}",
                f"{what}; known kinds: {', '.join(self.kinds)} (choose one with --kind)",
            )
        return best[1]

    def choose_provider(self, spec: AttachSpec) -> AddressProvider:
        """The provider of the request's address; for several addresses, one
        that configures each with its own (engine/addressing.py)."""
        if not spec.extra_addresses:
            return self._address_provider(spec.address)
        from pipework.engine.addressing import Addressing  # several addresses only

        return Addressing([(a, self._address_provider(a)) for a in spec.addresses])

    def _address_provider(self, address: AddressSpec) -> AddressProvider:
        provider = self._handler(address)
        if provider is None:
            raise UnsupportedError(
                f"no address provider handles {address.method!r}",
                "see `pipework plugins` for what is installed",
            )
        return provider

    def _handler(self, address: AddressSpec) -> AddressProvider | None:
        return next((p for p in self.providers if p.handles(address)), None)

    # -- attach ---------------------------------------------------------------------
    async def _prepare(
        self, spec: AttachSpec, span: telemetry.Span = telemetry.IDLE
    ) -> tuple[Link | None, LinkBackend, AddressProvider, Guest]:
        """Everything ``attach`` and ``examine`` decide before touching anything.

        What can refuse the request comes before the guest lookup: bad input
        fails fast, even when Docker is slow or down. The caller closes the
        guest it gets back. ``span`` learns the backend and the guest as
        they are known.
        """
        host_link = await self._batch_host_link(spec)
        backend = await self.choose_backend(spec, host_link)
        span.update(backend=backend.name, ifname=spec.ifname or backend.default_ifname)
        backend.validate(HostRequest(spec=spec, host_link=host_link, host=self.host))
        provider = self.choose_provider(spec)
        guest = await self.resolve(spec.guest)
        try:
            self._refuse_host(guest)
            _apply_key(guest, spec)
            span.update(guest=guest.name, key=guest.info.key)
            provider.validate(spec, guest.info)
        except BaseException:
            guest.close()
            raise
        return host_link, backend, provider, guest

    def _refuse_host(self, guest: Guest) -> None:
        """A guest must not be the host itself (``pid:1``, a container of
        ``--network host``): its guest side would be in the host, where
        ``gc`` takes pipework's interfaces for host sides whose guest left."""
        if self._host_identity is None:  # fixed for the engine's life: looked up once
            self._host_identity = netns_identity(self._host_fd)
        if netns_identity(guest.fd) == self._host_identity:
            raise UsageError(
                f"{guest.name} is in the host's own network namespace",
                "attach a container or namespace of its own (not one of --network host)",
            )

    async def attach(self, spec: AttachSpec) -> Attachment:
        """Attach one interface; all or nothing. Reported as an ``attach``
        event (engine/telemetry.py), its outcome the status or the error."""
        span = telemetry.span("attach", guest=spec.guest, ifname=spec.ifname, backend=spec.kind)
        try:
            _privileged_once()
            host_link, backend, provider, guest = await self._prepare(spec, span)
            try:
                result = await self._attach(spec, guest, host_link, backend, provider)
            finally:
                guest.close()
        except BaseException as exc:
            # What failed may be the host interface found earlier in the
            # batch (removed or replaced since): the next attach looks again.
            current_scope().forget(self._host_link_key(spec))
            span.failed(exc)
            raise
        span.done(result.status)
        return result

    def _host_link_key(self, spec: AttachSpec) -> tuple[str, str | None, str]:
        return ("pipework.engine", self.config.host_netns, spec.host)

    async def _batch_host_link(self, spec: AttachSpec) -> Link | None:
        """``_host_link``, looked up once per batch: a host interface that is
        there stays where it is (an index is never reused); one that is not
        is looked for again by the next attach (a backend may make it)."""
        scope = current_scope()
        key = self._host_link_key(spec)
        link: Link | None = scope.peek(key)
        if link is None:
            link = await self._host_link(spec)
            if link is not None:
                scope.keep(key, link)
        return link

    async def check(self, spec: AttachSpec) -> Attachment:
        """Verify, changing nothing, that the attachment ``spec`` asks for is
        in place and whole (an orchestrator's health check: CNI CHECK).

        Returns it as found (status ``unchanged``), or raises a
        ``PipeworkError`` that says what is missing or different.
        """
        require_privileges()
        host_link = await self._host_link(spec)
        backend = await self.choose_backend(spec, host_link)
        provider = self.choose_provider(spec)
        guest = await self.resolve(spec.guest)
        gns = self._pool.acquire(guest.fd, guest.name)
        try:
            _apply_key(guest, spec)
            marker = self._marker(spec, guest, host_link, backend, provider)
            found = await self._classify(gns, marker, spec, provider)
            where = f"{marker.ifname} in {guest.name}"
            if found.action == "create":
                raise NoSuchLink(f"{marker.ifname} is missing from {guest.name}", 19)
            if found.action == "conflict":
                why = f": {found.unverified}" if found.unverified else ""
                raise ConflictError(f"{where} is not this attachment{why}")
            if found.action == "update":
                raise ConflictError(f"{where} has another configuration")
            assert found.link is not None and found.marker is not None
            if found.action == "repair" and not found.whole:
                raise PipeworkError(
                    f"{where} is not whole: it is down, or its host side "
                    f"({found.marker.hostif or 'none'}) is missing"
                )
            if found.configured is None:
                raise PipeworkError(
                    f"the {found.marker.addr} addressing of {where} is no longer intact"
                )
            return await self._result(
                guest,
                gns,
                found.link,
                found.marker,
                spec,
                "unchanged",
                found.configured,
                notify=False,
            )
        finally:
            self._pool.release(gns)
            guest.close()

    async def attach_many(
        self, specs: Sequence[AttachSpec], limit: int | None = None
    ) -> list[Attachment | Exception]:
        """Attach concurrently, at most ``limit`` at a time; each one is atomic.

        Returns, in the order of ``specs``, each ``Attachment`` or the
        exception that stopped it.
        """
        require_privileges()
        limiter = anyio.CapacityLimiter(limit or self.limit)
        results: list[Attachment | Exception] = [PipeworkError("not run")] * len(specs)

        async def one(i: int, spec: AttachSpec) -> None:
            async with limiter:
                try:
                    results[i] = await self.attach(spec)
                except Exception as exc:
                    results[i] = exc

        with self.batch():
            async with anyio.create_task_group() as tg:
                for i, spec in enumerate(specs):
                    tg.start_soon(one, i, spec)
        return results

    async def _attach(
        self,
        spec: AttachSpec,
        guest: Guest,
        host_link: Link | None,
        backend: LinkBackend,
        provider: AddressProvider,
    ) -> Attachment:
        marker = self._marker(spec, guest, host_link, backend, provider)
        ifname, key = marker.ifname, marker.guest
        gns = self._pool.acquire(guest.fd, guest.name)
        try:
            async with self.lock(f"guest:{key}:{ifname}"):
                status: Status = "created"
                found = await self._classify(gns, marker, spec, provider)
                if found.action == "unchanged":
                    assert found.link and found.marker and found.configured
                    return await self._result(
                        guest, gns, found.link, found.marker, spec, "unchanged", found.configured
                    )
                if found.unverified is not None:
                    raise UnverifiedError(
                        f"{ifname} in {guest.name} carries a pipework marker, but "
                        f"{found.unverified}: pipework leaves it alone",
                        "remove it inside the guest, or choose another name with -i",
                    )
                if found.action == "conflict":
                    raise ConflictError(
                        f"{ifname} already exists in {guest.name} and pipework did not create it",
                        "choose another guest interface name with -i",
                    )
                if found.action == "update" and not spec.force:
                    raise ConflictError(
                        f"{ifname} in {guest.name} is attached with another configuration",
                        "add --force to replace it, or choose another name with -i",
                    )
                beside: Found | None = None
                if found.marker is not None:  # update (--force) or repair
                    status = "replaced"
                    if self._beside(found, spec, backend, provider):
                        beside = found  # make before break: the old one goes once the new is ready
                    elif found.action == "update" and not self._coexist(found, backend):
                        raise ConflictError(
                            f"{ifname} in {guest.name} cannot be replaced with --force: "
                            "a NIC passed through cannot be in the guest twice, and --force "
                            "removes nothing before its replacement is ready",
                            f"detach it first (pipework detach {guest.name} {ifname}), "
                            "then attach again",
                        )
                    else:  # the old one cannot stay beside the new one
                        await self._remove(found.marker, gns, found.link, verified=True)
                try:
                    link, final, configured = await self._create(
                        spec, guest, gns, backend, provider, marker, host_link, beside
                    )
                except BreakBeforeMake:  # rolled back (Linux < 6.2, a VXLAN): break, make
                    assert beside is not None and beside.marker is not None
                    await self._remove(beside.marker, gns, beside.link, verified=True)
                    link, final, configured = await self._create(
                        spec, guest, gns, backend, provider, marker, host_link
                    )
                # Committed: a cancellation now must not lose the result of
                # what stays (a batch reports it as done, and keeps it).
                with anyio.CancelScope(shield=True):
                    result = await self._result(guest, gns, link, final, spec, status, configured)
                return result
        finally:
            self._pool.release(gns)

    def _beside(
        self, found: Found, spec: AttachSpec, backend: LinkBackend, provider: AddressProvider
    ) -> bool:
        """Can the replacement of ``found`` be built while it still stands?
        The old one's backend, the new one's and the new address provider
        must all say so, and the new host side must be free to take another
        name than the old one's (not one ``-l`` fixes to it)."""
        assert found.marker is not None
        return (
            found.link is not None
            and self._coexist(found, backend)
            and provider.make_before_break
            and not (spec.host_ifname and spec.host_ifname == found.marker.hostif)
        )

    def _coexist(self, found: Found, backend: LinkBackend) -> bool:
        """Can the backends of ``found`` and of its replacement have both at once?"""
        old = self.backends.get(found.marker.kind) if found.marker is not None else None
        return backend.make_before_break and (old is None or old.make_before_break)

    async def _classify(
        self, gns: Netns, marker: Marker, spec: AttachSpec, provider: AddressProvider
    ) -> Found:
        """What is at ``marker``'s guest interface, against what ``spec`` asks:
        the one decision that attach, check and examine share."""
        existing = await gns.link(marker.ifname)
        if existing is None:
            return Found("create")
        old = Marker.parse(existing.alias)
        if old is None or (old.guest, old.ifname) != (marker.guest, marker.ifname):
            return Found("conflict", existing)
        if not same_configuration(old.cfg, marker, spec):  # also 0.1.0's fingerprint
            found = Found("update", existing, old)
        elif not await self._healthy(old, existing, gns):
            found = Found("repair", existing, old, whole=False)
        else:
            configured = await self._inspect(provider, old, gns, existing, spec)
            if configured is not None:
                return Found("unchanged", existing, old, configured)
            found = Found("repair", existing, old)
        # Replacing it acts on the host because of what the marker says.
        reason = await self._verify(old, gns, existing)
        return found if reason is None else Found("conflict", existing, unverified=reason)

    @staticmethod
    def _marker(
        spec: AttachSpec,
        guest: Guest,
        host_link: Link | None,
        backend: LinkBackend,
        provider: AddressProvider,
    ) -> Marker:
        """The ownership marker an attach of ``spec`` puts on its interfaces."""
        return _marker_of(spec, guest.info.key, host_link, backend, provider)

    # -- links between guests (engine/guestlinks.py) ------------------------------------
    async def link(self, spec: LinkSpec) -> LinkResult:
        """Link two guests with a veth pair, no bridge; all or nothing.
        Idempotent; another configuration at either end needs ``spec.force``.
        ``detach`` of either end removes the link."""
        from pipework.engine.guestlinks import Linker

        a, b = spec.ends
        span = telemetry.span(
            "link",
            backend=LINK_KIND,
            guest=a.guest,
            ifname=a.ifname,
            peer=b.guest,
            peer_ifname=b.ifname,
        )
        with span:
            require_privileges()
            result = await Linker(self).link(spec)
        span.done(
            result.status,
            guest=result.a.guest.name,
            key=result.a.guest.key,
            peer=result.b.guest.name,
            peer_key=result.b.guest.key,
        )
        return result

    async def examine_link(self, spec: LinkSpec) -> LinkExamination:
        """What ``link(spec)`` would do now, without changing anything."""
        from pipework.engine.guestlinks import Linker

        return await Linker(self).examine(spec)

    # -- looking without touching (pipework apply --plan) ------------------------------
    async def examine(self, spec: AttachSpec) -> Examination:
        """What ``attach(spec)`` would do now, without changing anything.

        Raises what ``attach`` would raise before creating anything (bad
        input, no such guest, unknown host interface...).
        """
        host_link, backend, provider, guest = await self._prepare(spec)
        gns = self._pool.acquire(guest.fd, guest.name)
        try:
            marker = self._marker(spec, guest, host_link, backend, provider)
            found = await self._classify(gns, marker, spec, provider)
        finally:
            self._pool.release(gns)
            guest.close()
        existing = found.marker if found.action != "conflict" else None
        return Examination(action=found.action, guest=guest.info, marker=marker, existing=existing)

    async def owned(self, guest_ref: str) -> tuple[GuestInfo, list[Marker]]:
        """The guest, and the markers of the interfaces pipework made in it
        (those whose claim the host corroborates: the others are only
        warned about)."""
        guest = await self.resolve(guest_ref)
        gns = self._pool.acquire(guest.fd, guest.name)
        owned = []
        try:
            for link in await gns.links():
                marker = Marker.parse(link.alias)
                if marker is None or marker.guest != guest.info.key:
                    continue
                reason = await self._verify(marker, gns, link)
                if reason is not None:
                    log.warning("%s", _left_alone(link.ifname, f"in {guest.name}", marker, reason))
                    continue
                owned.append(marker)
        finally:
            self._pool.release(gns)
            guest.close()
        return guest.info, owned

    async def _create(
        self,
        spec: AttachSpec,
        guest: Guest,
        gns: Netns,
        backend: LinkBackend,
        provider: AddressProvider,
        marker: Marker,
        host_link: Link | None,
        beside: Found | None = None,
    ) -> tuple[Link, Marker, AddressResult]:
        """Create the attachment; return the guest link, its final marker and
        what the address provider configured.

        ``beside``: the attachment this one replaces, left in place while
        this one is built under temporary names (make before break); it is
        removed once this one is ready, and this one then takes its name. If
        anything fails before that, only this one is rolled back.
        """
        journal = Journal()
        replacing = beside.marker if beside is not None else None
        if replacing is not None and replacing.hostif and marker.hostif == replacing.hostif:
            # One host-side name cannot be used twice: the other derived name.
            marker = replace(marker, hostif=other_hostif(marker))
        mac_later: str | None = None
        device: str | None = None
        async with journal.transaction():
            glink: GuestLink = await backend.attach(
                LinkContext(
                    spec=spec,
                    guest=guest,
                    host=self.host,
                    guest_ns=gns,
                    journal=journal,
                    host_link=host_link,
                    ifname=marker.ifname,
                    temp_ifname="pwt" + short_hash(marker.guest, marker.ifname, "tmp"),
                    host_ifname=marker.hostif,
                    marker=marker,
                    lock=self.lock,
                    replacing=replacing,
                )
            )
            created = await gns.link(glink.temp_ifname)
            if created is None:
                raise PipeworkError(
                    f"the {backend.name} backend did not create {glink.temp_ifname} in {guest.name}"
                )
            if glink.owned:
                # The backend's inverse removes it through the host side; this
                # one covers guest interfaces that outlive their host side.
                journal.record(
                    f"guest interface in {guest.name}", lambda: gns.delete(created.index)
                )
            # The guest-side marker names the host side only if there is one.
            final = replace(
                marker,
                hostif=glink.host_ifname or "",
                state=glink.state,
                vlan=str(spec.vlan) if spec.vlan is not None else "",
            )
            # One request: rename, alias, MAC, MTU, up (the kernel renames
            # before it changes flags) and arp_notify; IPv6 address
            # generation off before it (engine/announcing.py). A replacement
            # keeps its temporary name.
            before_up, with_up = link_settings(spec, glink.owned)
            if before_up:
                await gns.set(created.index, **before_up)
            attrs: dict[str, Any] = {"ifalias": final.format(), "state": "up", **with_up}
            if replacing is None:
                attrs["ifname"] = marker.ifname
            if spec.mac:
                attrs["address"] = spec.mac
            if glink.mtu:
                attrs["mtu"] = glink.mtu
            try:
                await gns.set(created.index, **attrs)
            except NetlinkFailure as exc:
                if replacing is None or not spec.mac or exc.code != errno.EADDRINUSE:
                    raise
                # The old one holds the MAC on the same parent (a macvlan):
                # the new one takes it once the old one is gone.
                mac_later = attrs.pop("address")
                await gns.set(created.index, **attrs)
            if replacing is not None:
                device = await live_rename(gns, created.index, marker)
            actx = AddressContext(
                address=spec.address,
                spec=spec,
                guest=guest,
                guest_ns=gns,
                index=created.index,
                ifname=marker.ifname,
                journal=journal,
                device=device,
                replacing=replacing,
            )
            configured = await provider.configure(actx)
            # Routes ride on the interface: deleting it (any rollback) removes them.
            deferred = await add_routes(gns, created.index, spec.routes, defer=bool(replacing))
            if not still_there(guest):
                # Our open fd kept the namespace alive for nothing: its guest
                # (a container that was killed) is gone.
                raise GuestNotRunningError(
                    f"{guest.name} stopped during the attach",
                    "nothing was left behind; start it and attach again",
                )
            if beside is not None and replacing is not None:
                with anyio.CancelScope(shield=True):  # the new one is ready: break
                    await self._remove(replacing, gns, beside.link, verified=True)
                    attrs = {"ifname": marker.ifname}
                    if mac_later:
                        attrs["address"] = mac_later
                    await gns.set(created.index, **attrs)
                await add_routes(gns, created.index, deferred)
            link = await gns.link_by_index(created.index)
            if link is None:
                raise NoSuchLink(f"{marker.ifname} vanished from {guest.name}", 19)
        if device is not None:  # the provider's part of the rename
            await provider.adopt(replace(actx, journal=Journal(), replacing=None))
        if announces(spec):
            await self._announce(
                guest, gns, link, Announcement(spec, glink.owned, glink.host_ifname)
            )
        return link, final, configured

    async def _inspect(
        self, provider: AddressProvider, marker: Marker, gns: Netns, link: Link, spec: AttachSpec
    ) -> AddressResult | None:
        """What the provider holds for an intact attachment (None: not intact)."""
        ctx = DetachContext(marker=marker, host=self.host, guest_ns=gns, guest_link=link, spec=spec)
        return await provider.inspect(ctx)

    async def _announce(self, guest: Guest, gns: Netns, link: Link, what: Announcement) -> None:
        """Announce now if the link is ready, else from a background task
        once it is (engine/announcing.py)."""
        try:
            now = await ready(self.host, link, what.host_ifname)
        except PipeworkError as exc:  # a missed announcement must never fail anything
            log.debug("announcing on %s: %s", link.ifname, exc)
            return
        if now:
            await trigger(gns, link, what)
        elif self._background is not None:
            fd = os.dup(guest.fd)
            self._background.start_soon(self._announce_later, fd, guest.name, link, what)

    async def _announce_later(self, fd: int, label: str, link: Link, what: Announcement) -> None:
        gns = self._pool.acquire(fd, label)
        try:
            await announce_when_ready(gns, self.host, link, what)
        finally:
            self._pool.release(gns)
            os.close(fd)

    async def _healthy(self, marker: Marker, link: Link, gns: Netns) -> bool:
        """Is an attachment that matches the request still whole?

        The engine checks the guest interface and the host-side interface
        named in the marker; the backend's ``healthy(ctx)`` checks what only
        it knows (an OVS port, say).
        """
        if not link.up:
            return False
        if marker.hostif:
            host_side = await self.host.link(marker.hostif)
            if host_side is None or not marker.same_attachment(Marker.parse(host_side.alias)):
                return False
        backend = self.backends.get(marker.kind)
        if backend is None:
            return True
        ctx = DetachContext(marker=marker, host=self.host, guest_ns=gns, guest_link=link)
        return bool(await backend.healthy(ctx))

    async def _result(
        self,
        guest: Guest,
        gns: Netns,
        link: Link,
        marker: Marker,
        spec: AttachSpec,
        status: Status,
        configured: AddressResult,
        *,
        notify: bool = True,
    ) -> Attachment:
        entries = await gns.address_entries(link.index)
        gateways = configured.gateways or ((configured.gateway,) if configured.gateway else ())
        if spec.extra_addresses:
            from pipework.engine.addressing import attribute

            sources = attribute(entries, spec.addresses, configured.sources)
        else:  # one method got them all
            word = spec.address.word
            sources = tuple(
                (str(e.address), word) for e in entries if not e.address.ip.is_link_local
            )
        attachment = Attachment(
            guest=guest.info,
            ifname=link.ifname,
            kind=marker.kind,
            host=marker.host,
            host_ifname=marker.hostif or None,
            mac=link.mac,
            mtu=link.mtu,
            vlan=spec.vlan,
            address_method=marker.addr or "static",
            addresses=tuple(address for address, _ in sources),
            gateway=configured.gateway,
            status=status,
            dns=configured.dns,
            domain=configured.domain,
            routes=tuple(str(route) for route in spec.routes),
            gateways=gateways,
            address_sources=sources,
        )
        if notify:
            self.plugin_manager.hook.pipework_attached(attachment=attachment)
        return attachment

    # -- detach ---------------------------------------------------------------------
    async def detach(
        self, guest_ref: str, ifname: str | None = None, *, prune_bridges: bool = False
    ) -> list[Marker]:
        """Remove pipework's interfaces from a guest (all, or just ``ifname``).

        Returns the markers of what was removed; detaching what is not there
        is not an error. ``prune_bridges`` also removes each bridge the
        removed interfaces hung on, if pipework created it and it is empty
        (the backend's ``release_host``).
        """
        # Reported as one ``detach`` (or ``unlink``) event per interface, or
        # one ``detach`` event when there was nothing to remove, or it failed first.
        span = telemetry.span("detach", guest=guest_ref, ifname=ifname)
        with span:
            require_privileges()
            guest = await self.resolve(guest_ref)
        span.update(guest=guest.name, key=guest.info.key)
        gns = self._pool.acquire(guest.fd, guest.name)
        removed: list[Marker] = []
        skipped = False
        try:
            if ifname is None:
                links = await gns.links()
            else:  # one lookup, not a listing: a hub of many links detaches in O(N)
                found = await gns.link(ifname)
                links = [found] if found is not None else []
            for link in links:
                marker = Marker.parse(link.alias)
                if marker is None or marker.guest != guest.info.key:
                    continue
                one = _removal_span(marker, guest.name)
                try:
                    async with AsyncExitStack() as held:
                        for name in _locks_of(marker):
                            await held.enter_async_context(self.lock(name))
                        await self._remove(marker, gns, link)
                except (UnverifiedError, UnsupportedError) as exc:
                    # Left alone: one interface the guest marked must not
                    # keep --all from the others.
                    one.failed(exc, "error" if ifname is not None else "skipped")
                    if ifname is not None:
                        raise
                    log.warning("%s", exc)
                    skipped = True
                    continue
                except BaseException as exc:
                    one.failed(exc)
                    raise
                one.done("removed")
                removed.append(marker)
        finally:
            self._pool.release(gns)
            guest.close()
        if not removed and not skipped:
            span.done("absent")
        if prune_bridges:
            await self._prune(removed)
        return removed

    async def _prune(self, removed: Sequence[Marker]) -> None:
        for kind, name in sorted({(m.kind, m.host) for m in removed}):
            if await self.release_host(kind, name):
                log.info("removed %s %s (pipework created it; it was empty)", kind, name)

    # -- shared host resources (bridges a topology file declares) ----------------------
    def _host_context(
        self, name: str, settings: Mapping[str, Any], *, force: bool, dry_run: bool
    ) -> HostContext:
        return HostContext(
            name=name,
            host=self.host,
            settings=settings,
            force=force,
            dry_run=dry_run,
            lock=self.lock,
        )

    async def prepare_host(
        self,
        kind: str,
        name: str,
        settings: Mapping[str, Any],
        *,
        force: bool = False,
        dry_run: bool = False,
    ) -> HostChange | None:
        """Create, check or (``force``) change the shared host resource
        ``name`` (a bridge) of the backend ``kind``; None when that backend
        keeps none (its resources are made with the first attachment)."""
        backend = self.backends.get(kind)
        if backend is None:
            raise UnsupportedError(
                f"no link backend named {kind!r}",
                f"known kinds: {', '.join(self.kinds)}",
            )
        return await backend.prepare_host(
            self._host_context(name, settings, force=force, dry_run=dry_run)
        )

    async def release_host(self, kind: str, name: str) -> bool:
        """Remove the shared host resource ``name`` of the backend ``kind`` if
        pipework created it and nothing uses it; True if it was removed."""
        backend = self.backends.get(kind)
        if backend is None:
            return False
        return await backend.release_host(self._host_context(name, {}, force=False, dry_run=False))

    async def owns_host(self, kind: str, name: str) -> bool:
        """Did pipework create the shared host resource ``name`` of the backend
        ``kind`` (its own mark, on the host)? False for an unknown kind."""
        backend = self.backends.get(kind)
        if backend is None:
            return False
        return await backend.owns_host(self._host_context(name, {}, force=False, dry_run=True))

    # -- batches -------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[BatchScope]:
        """Within the block, attaches share one ``BatchScope``: plugins do
        host-wide reads once for all of them (``attach_many`` does this)."""
        with batch_scope() as scope:
            yield scope

    @asynccontextmanager
    async def deferred_removal(self) -> AsyncIterator[None]:
        """Within the block, interfaces that detaches remove are deleted
        together when it ends: one group delete per namespace (engine/kernel/teardown.py)."""
        from pipework.engine.kernel.teardown import deferred_deletes

        async with deferred_deletes():
            yield

    # -- inventory (engine/inventory.py) ---------------------------------------------
    async def list_attachments(self, guest_ref: str | None = None) -> list[AttachmentRecord]:
        """Every attachment pipework made, read from the kernel markers (or
        those of one guest), including host sides whose guest is gone."""
        require_privileges()
        return await self._inventory().list_attachments(guest_ref)

    async def gc(self, dry_run: bool = False) -> GcReport:
        """Remove what guests that are gone left behind: host sides, NICs that
        came back, OVS ports, VLAN references, forward rules, DHCP clients,
        helpers and state. ``dry_run`` lists without removing."""
        span = telemetry.span("gc", dry_run=dry_run or None)
        with span:
            require_privileges()
            report = await self._inventory().collect_garbage(dry_run)
        outcome = "dry-run" if dry_run else "removed" if report.items else "unchanged"
        span.done(outcome, count=len(report.items), skipped=len(report.skipped) or None)
        return report

    # -- kept clients (pipework daemon's supervisor: engine/kept.py) -----------------
    async def kept_clients(self) -> list[KeptClient]:
        """Every kept client the address providers know of, alive or dead
        (``AddressProvider.kept()``). A provider that fails is logged and
        skipped: one bad state file must not hide the others' clients."""
        found: list[KeptClient] = []
        for provider in self.providers:
            try:
                found.extend(await provider.kept())
            except (PipeworkError, OSError, ValueError) as exc:
                log.warning("%s: cannot list its kept clients: %s", provider.name, exc)
        return found

    async def revive_kept(self, client: KeptClient) -> Revival:
        """Start a dead kept client again through its provider's ``configure``,
        on the interface it served, if that attachment still exists: the
        guest's namespace is the recorded one, and the interface carries the
        attachment's marker, corroborated by its backend. ``"restarted"``;
        ``"gone"`` when the attachment is not there (nothing done: ``gc``
        cleans up); ``"alive"`` when, under the attachment's lock, its
        provider finds the client running after all (an attach or re-run
        just made it). ``PipeworkError`` when the start failed (what it made
        is rolled back)."""
        require_privileges()
        provider = next((p for p in self.providers if p.name == client.provider), None)
        if provider is None or client.anchor is None or client.netns is None:
            return "gone"
        try:
            guest = open_netns(client.anchor, client.guest_info)
        except PipeworkError:
            return "gone"  # the guest is gone
        try:
            if netns_identity(guest.fd) != tuple(client.netns):
                return "gone"  # the path names another namespace now
            gns = self._pool.acquire(guest.fd, guest.name)
            try:
                async with self.lock(f"guest:{client.guest}:{client.ifname}"):
                    return await self._revive(provider, client, guest, gns)
            finally:
                self._pool.release(gns)
        finally:
            guest.close()

    async def _revive(
        self, provider: AddressProvider, client: KeptClient, guest: Guest, gns: Netns
    ) -> Revival:
        # Under the lock an attach holds: a client it just started is seen.
        if any(c.alive for c in await provider.kept() if c.identity == client.identity):
            return "alive"
        link = await gns.link(client.ifname)
        marker = Marker.parse(link.alias) if link is not None else None
        if link is None or marker is None or not client.serves(marker):
            return "gone"
        if provider not in self._providers_in(marker):
            return "gone"
        if await self._verify(marker, gns, link) is not None:
            return "gone"  # the host does not corroborate it: not ours to serve
        spec = AttachSpec(
            host=marker.host,
            guest=guest.name,
            address=client.address,
            ifname=marker.ifname,
            kind=marker.kind,
            guest_key=marker.guest,
        )
        journal = Journal()
        async with journal.transaction():
            await provider.configure(
                AddressContext(
                    address=client.address,
                    spec=spec,
                    guest=guest,
                    guest_ns=gns,
                    index=link.index,
                    ifname=marker.ifname,
                    journal=journal,
                )
            )
        return "restarted"

    def _inventory(self) -> Inventory:
        from pipework.engine.inventory import Inventory  # loaded on use: not on the attach path

        return Inventory(
            host=self.host,
            pool=self._pool,
            resolve=self.resolve,
            resolvers=self.resolvers,
            backends=self.backends,
            providers=self.providers,
            provider_of=self._provider_of,
            remove=self._remove,
            verify=self._verify,
            timeout=self.config.timeout,
            lock=self.lock,
        )

    async def wait(self, guest_ref: str | None, ifname: str, seconds: float | None = None) -> Link:
        """Wait until ``ifname`` exists in the guest (None: this namespace)
        and is operationally up; ``TimeoutExpiredError`` after ``seconds``
        (None: wait for ever)."""
        from pipework.engine.kernel.waiting import wait_for_link

        if guest_ref is None:
            return await wait_for_link(self.host, ifname, seconds, "this namespace")
        require_privileges()
        guest = await self.resolve(guest_ref)
        gns = self._pool.acquire(guest.fd, guest.name)
        try:
            return await wait_for_link(gns, ifname, seconds, guest.name)
        finally:
            self._pool.release(gns)
            guest.close()

    async def remove(self, spec: AttachSpec, *, resolve: bool = True) -> list[Marker]:
        """Remove the attachment ``spec`` describes, whatever is left of it.

        For orchestrators that tear down by request rather than by looking
        (CNI DEL). The guest may be gone (or ``resolve=False`` says so), its
        interface may be gone, and still a host side, an OVS port, a VLAN
        reference or a kept DHCP client may remain: those are found by the
        marker ``spec`` would have made and released. The guest key is
        ``spec.guest_key``, else the resolver's, else ``spec.guest`` as
        written. Idempotent. Returns the markers of the interfaces removed.
        Reported as one ``detach`` event: ``removed`` or ``absent``.
        """
        span = telemetry.span(
            "detach", guest=spec.guest, key=spec.guest_key, ifname=spec.ifname, backend=spec.kind
        )
        with span:
            removed = await self._remove_spec(spec, resolve, span)
        span.done("removed" if removed else "absent")
        return removed

    async def _remove_spec(
        self, spec: AttachSpec, resolve: bool, span: telemetry.Span
    ) -> list[Marker]:
        require_privileges()
        try:
            host_link = await self._host_link(spec)
        except HostInterfaceError:  # a mac: selector whose NIC left (or is in the guest)
            host_link = None
        backend = await self.choose_backend(spec, host_link)
        ifname = spec.ifname or backend.default_ifname
        span.update(backend=backend.name, ifname=ifname)
        key = spec.guest_key
        if resolve:
            try:
                guest: Guest | None = await self.resolve(spec.guest)
            except (GuestNotFoundError, GuestNotRunningError):
                guest = None
            if guest is not None:
                key = key or guest.info.key
                span.update(guest=guest.name, key=key)
                gns = self._pool.acquire(guest.fd, guest.name)
                try:
                    async with self.lock(f"guest:{key}:{ifname}"):
                        link = await gns.link(ifname)
                        found = Marker.parse(link.alias) if link is not None else None
                        if found is not None and (found.guest, found.ifname) == (key, ifname):
                            try:
                                await self._remove(found, gns, link)
                                return [found]
                            except UnverifiedError as exc:
                                log.warning("%s", exc)  # what is left on the host, below
                finally:
                    self._pool.release(gns)
                    guest.close()
        key = key or spec.guest
        span.update(key=key)
        # No guest interface: what may be left is outside the guest.
        markers = {
            marker
            for link in await self.host.links()
            if (marker := Marker.parse(link.alias)) is not None
            and (marker.guest, marker.ifname) == (key, ifname)
        }
        try:
            provider: AddressProvider | None = self.choose_provider(spec)
        except UnsupportedError:
            provider = None
        template = _marker_of(spec, key, host_link, backend, provider)
        removed = []
        async with self.lock(f"guest:{key}:{ifname}"):
            for marker in sorted(markers, key=str) or [template]:
                try:
                    await self._remove(marker, None, None)
                except UnverifiedError as exc:
                    log.warning("%s", exc)  # idempotent: what is not ours is not in the way
                    continue
                if marker in markers:
                    removed.append(marker)
        return removed

    async def _remove(
        self,
        marker: Marker,
        where: Netns | None,
        link: Link | None,
        *,
        moved: bool = False,
        verified: bool = False,
    ) -> None:
        """The one removal path: release the address, let the backend take down
        what it made, then delete ``link`` (in the namespace ``where``: the
        guest's, or the host's for a host side whose guest is gone) if it
        still carries ``marker``. ``moved``: ``link`` is the user's device
        that came back to the host; only its backend may give it back.
        First the backend verifies the marker (``UnverifiedError`` if the host
        does not corroborate it), unless the caller just did (``verified``)."""
        ctx = self._detach_context(marker, where, link)
        reason = None if verified else await self._verify(marker, where, link)
        if reason is not None:
            ifname = link.ifname if link is not None else marker.ifname
            place = "on the host" if where is None or where is self.host else f"in {where.label}"
            raise UnverifiedError(
                _left_alone(ifname, place, marker, reason),
                "pipework did not make it, or cannot tell; remove it by hand if it is unwanted",
            )
        with anyio.CancelScope(shield=True):
            provider = self._provider_of(marker)
            if provider is not None:
                await provider.release(ctx)
            # The backend goes first: it may take the interface back (a NIC
            # passed through) or must delete it before what it hangs on.
            backend = self.backends.get(marker.kind)
            if backend is not None:
                await backend.detach(ctx)
            if where is None or link is None or moved:
                return
            current = await where.link_by_index(link.index)
            if current is not None and Marker.parse(current.alias) == marker:
                if backend is None and marker.state and where is not self.host:
                    raise UnsupportedError(
                        f"the {marker.kind} backend that made {link.ifname} is not installed",
                        "install it to detach; pipework will not delete an interface it moved",
                    )
                await where.delete(link.index)

    def _detach_context(
        self, marker: Marker, where: Netns | None, link: Link | None
    ) -> DetachContext:
        return DetachContext(
            marker=marker,
            host=self.host,
            guest_ns=where if where is not self.host else None,
            guest_link=link if where is not self.host else None,
            lock=self.lock,
        )

    async def _verify(self, marker: Marker, where: Netns | None, link: Link | None) -> str | None:
        """Why the host does not corroborate ``marker`` (None: it does, or
        the backend that made it has nothing outside the guest to protect)."""
        backend = self.backends.get(marker.kind)
        if backend is None:
            return None
        return await backend.verify(self._detach_context(marker, where, link))

    def _provider_of(self, marker: Marker) -> AddressProvider | None:
        """The provider that configured an attachment, by its marker's
        methods (several: engine/addressing.py; those not installed are left out)."""
        if "," not in marker.addr and "/" not in marker.addr:  # one address, as 0.1.0 wrote it
            return self._handler(AddressSpec(method=marker.addr or "static"))
        from pipework.engine.addressing import parse_methods, providers_of

        return providers_of(parse_methods(marker.addr), self._handler)

    def _providers_in(self, marker: Marker) -> list[AddressProvider]:
        """Each provider of the marker's addresses."""
        provider = self._provider_of(marker)
        return list(getattr(provider, "declared", [provider] if provider else []))


def _marker_of(
    spec: AttachSpec,
    key: str,
    host_link: Link | None,
    backend: LinkBackend,
    provider: AddressProvider | None,
) -> Marker:
    """The ownership marker an attach of ``spec`` makes for the guest ``key``."""
    ifname = spec.ifname or backend.default_ifname
    host_name = host_link.ifname if host_link else spec.host
    declared = [p.options for p in getattr(provider, "declared", [provider] if provider else [])]
    addr = spec.address.method
    if spec.extra_addresses or spec.address.family:
        from pipework.engine.addressing import marker_methods

        addr = marker_methods(spec)
    return Marker(
        guest=key,
        ifname=ifname,
        kind=backend.name,
        host=host_name,
        hostif=spec.host_ifname or "pw" + short_hash(key, ifname),
        addr=addr,
        cfg=spec.fingerprint(
            backend.name,
            host_name,
            backend.options,
            declared[0] if declared else {},
            declared[1:],
        ),
    )


def _removal_span(marker: Marker, guest_name: str) -> telemetry.Span:
    """The event of one interface's removal: ``detach``, or ``unlink`` for a
    link's end (its peer named)."""
    if marker.kind == LINK_KIND:
        return telemetry.span(
            "unlink",
            backend=LINK_KIND,
            guest=guest_name,
            key=marker.guest,
            ifname=marker.ifname,
            peer_key=marker.host,
            peer_ifname=marker.peer,
        )
    return telemetry.span(
        "detach", backend=marker.kind, guest=guest_name, key=marker.guest, ifname=marker.ifname
    )


def _locks_of(marker: Marker) -> list[str]:
    """The locks a removal of ``marker``'s interface takes, in the order all
    takers use: a link's end also takes its peer's (``link`` holds both)."""
    names = {f"guest:{marker.guest}:{marker.ifname}"}
    if marker.kind == LINK_KIND and marker.peer:
        names.add(f"guest:{marker.host}:{marker.peer}")
    return sorted(names)


def _left_alone(ifname: str, place: str, marker: Marker, reason: str) -> str:
    """For people: an interface whose marker the host does not corroborate."""
    return (
        f"{ifname} {place} carries a pipework marker ({marker.kind} {marker.host}), "
        f"but {reason}: left alone"
    )


def _apply_key(guest: Guest, spec: AttachSpec) -> None:
    """Give the guest the identity the request names (``AttachSpec.guest_key``)."""
    if spec.guest_key is not None:
        guest.info = replace(guest.info, key=spec.guest_key)
