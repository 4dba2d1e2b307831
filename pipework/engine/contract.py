"""THE plugin contract.

pipework is extended through pluggy hooks in the ``pipework`` project,
loaded from the entry-point group ``pipework``. Built-in backends register
through exactly the same path as third-party packages.

pluggy is synchronous and the work is asynchronous, so every hook is a plain
*factory*: it returns objects whose methods are mostly ``async``. Never
write an ``async def`` hook implementation (pluggy would return an
un-awaited coroutine). There are five hooks (``PipeworkSpecs``): four
factories, one per object type below, and the ``pipework_attached``
notification.

``LinkBackend``
    Creates the host side of an attachment and the guest-side interface
    (under a temporary name, directly in the guest's namespace). Chosen by
    ``claim()`` from what the host interface is, or by ``--kind NAME``.
``AddressProvider``
    Configures addresses and routes on the guest interface: selected by the
    IPSPEC word (``static`` for ``ADDR/PREFIX[@GW]`` and ``0/0``) through
    ``handles()``.
``GuestResolver``
    Turns a guest reference (``web1``, ``netns:blue``, ``pid:42``, a path)
    into an open network namespace.
``EventSource``
    Streams a runtime's guest start/die events, for ``pipework watch``.

Each type is a base class here: the methods marked ``@required`` must be
defined, every other one has a default that means "this plugin does not do
that" (``healthy()`` is True, ``collect_garbage()`` removes nothing...).
docs/PLUGINS.md lists them all with their defaults.

The contract is checked when a plugin registers (engine/plugins.py): every
object a factory returns must have the required methods, each contract
method with the right ``async``-ness and number of parameters, and no
public method whose name is close to a contract name (``heathy``); anything
else is a one-line ``PipeworkError`` naming the plugin and its
distribution, raised when the engine starts. So the engine calls every
method directly and never looks for one.

Objects written for pipework 0.1.0 (duck-typed, not subclassing; ``check``
for ``validate``, ``claims`` for ``handles``, ``collect_garbage(dry_run)``
or ``collect_garbage(host, dry_run)``) are validated the same way and
wrapped in an adapter that supplies the defaults and maps the old names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pluggy

from pipework.engine.batch import BatchScope, current_scope
from pipework.engine.guests import Guest
from pipework.engine.journal import Journal
from pipework.engine.kept import KeptClient
from pipework.engine.kernel.netlink import Link, Netns
from pipework.engine.marker import Marker
from pipework.engine.options import OptionSpec
from pipework.engine.specs import AddressSpec, Attachment, AttachSpec, GuestInfo

if TYPE_CHECKING:  # only `watch` makes events: not built on an attach
    from pipework.engine.events import GuestEvent

hookspec = pluggy.HookspecMarker("pipework")
hookimpl = pluggy.HookimplMarker("pipework")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class EngineConfig:
    """Settings the engine hands to every plugin factory."""

    timeout: float = 30.0
    """Seconds any single external call (Docker API, a program) may take."""
    run_dir: str = "/run/pipework"
    """Where plugins keep runtime files (pidfiles, leases)."""
    host_netns: str | None = None
    """The namespace that plays "the host" (None: pipework's own)."""


# -- what the engine hands to plugins -----------------------------------------


Lock = Callable[[str], AbstractAsyncContextManager[None]]
"""``async with ctx.lock("bridge:br1"):``: the engine's named locks, held
against this engine's other tasks and against other processes (file locks
under RUN_DIR/locks). Take one around every check-then-act on a resource
other attachments share: creating or removing a bridge, adding or dropping
a firewall rule, counting the users of a shared sub-interface."""


@asynccontextmanager
async def no_lock(name: str) -> AsyncIterator[None]:
    """The default ``lock`` of a context built by hand (tests): guards nothing.
    The engine always passes its own."""
    yield


@dataclass(frozen=True)
class HostRequest:
    """What a link backend sees when asked to claim a request."""

    spec: AttachSpec
    host_link: Link | None
    """The host interface named by ``spec.host``, if it exists."""
    host: Netns


@dataclass(frozen=True)
class LinkContext:
    """Everything a link backend needs to create one attachment."""

    spec: AttachSpec
    guest: Guest
    host: Netns
    guest_ns: Netns
    journal: Journal
    host_link: Link | None
    """The host interface as found when the backend was chosen (None: it did
    not exist then). Re-check under ``lock`` before creating it."""
    ifname: str
    """The final guest-side name (the engine renames to it afterwards)."""
    temp_ifname: str
    """The name to create the guest-side interface under."""
    host_ifname: str
    """The host-side name to use for a peer interface (``-l`` or generated)."""
    marker: Marker
    """The ownership marker; put ``marker.format()`` in the alias of host-side
    interfaces you create."""
    lock: Lock
    """``async with ctx.lock("bridge:br1")``: serialise work on a shared resource,
    within this engine and across processes (``Lock``)."""
    scope: BatchScope = field(default_factory=current_scope)
    """Shared by the attaches of one batch: host-wide reads done once (engine/batch.py)."""
    replacing: Marker | None = None
    """The attachment this one replaces (``--force``, a repair), still in
    place while this one is built beside it: the engine removes it once this
    one is ready. ``host_ifname`` is then a name the old one does not use."""


@dataclass(frozen=True)
class GuestLink:
    """What a link backend returns: the guest-side interface it made."""

    temp_ifname: str
    host: str
    """What the guest is attached to, for results (bridge name, parent NIC)."""
    host_ifname: str | None = None
    """The host-side interface created, if any."""
    mtu: int | None = None
    """The MTU the engine should set on the guest side (None: leave it)."""
    owned: bool = True
    """False when the guest interface is the user's (a NIC moved in): the
    engine must never delete it, only the backend's inverse gives it back."""
    state: str = ""
    """Backend data kept in the guest interface's marker and handed back to
    ``detach`` as ``ctx.marker.state`` (e.g. the NIC's original MAC)."""


@dataclass(frozen=True)
class DetachContext:
    """What a plugin sees when an attachment is removed."""

    marker: Marker
    host: Netns
    guest_ns: Netns | None
    """The guest's namespace, or None when the guest is already gone."""
    guest_link: Link | None
    scope: BatchScope = field(default_factory=current_scope)
    """Shared by the attaches of one batch (a re-run's health check)."""
    spec: AttachSpec | None = None
    """The request, when the engine has one (a re-run, a check)."""
    lock: Lock = no_lock
    """The engine's named locks (``Lock``): releasing a shared resource is a
    check-then-act too (the last user of a rule or a sub-interface)."""
    address: AddressSpec | None = None
    """For an address provider: which of the attachment's addresses is its
    own (its method and family, from the marker or the request), when the
    attachment has several; None for one address (``spec.address``, when
    the engine has the request)."""


@dataclass(frozen=True)
class HostContext:
    """A shared host resource (a bridge) declared in a topology file."""

    name: str
    host: Netns
    settings: Mapping[str, Any]
    """What the file asks for: ``mtu``, ``vlan_filtering`` (only keys given)."""
    force: bool
    """Change an existing resource that differs (else raise ``ConflictError``)."""
    dry_run: bool
    """Only say what would change."""
    lock: Lock


@dataclass(frozen=True)
class HostChange:
    """What ``prepare_host`` did (or, in a dry run, would do)."""

    action: Literal["create", "unchanged", "update"]
    details: tuple[str, ...] = ()
    """What differs, for people: ``mtu 1500 -> 9000``."""


@dataclass(frozen=True)
class AddressContext:
    """Everything an address provider needs."""

    address: AddressSpec
    spec: AttachSpec
    guest: Guest
    guest_ns: Netns
    index: int
    ifname: str
    """The final name of the interface: what the attachment is known by."""
    journal: Journal
    device: str | None = None
    """The interface's name now, when it is not ``ifname`` yet: a replacement
    (``--force``, a repair) is configured beside the attachment it replaces,
    under a temporary name, and renamed once that one is removed; ``adopt``
    is called then. Only providers with ``make_before_break`` see this."""
    replacing: Marker | None = None
    """The attachment being replaced, still in place (``device`` is set):
    leave what it holds alone; the engine releases it once this one is ready."""


@dataclass(frozen=True)
class AddressResult:
    """What an address provider configured, for the ``Attachment``."""

    addresses: tuple[str, ...] = ()
    gateway: str | None = None
    """The default gateway set (a static ``@GATEWAY``, a DHCP router)."""
    dns: tuple[str, ...] = ()
    """DNS servers learnt (from a DHCP lease); written to the guest only with ``--dns``."""
    domain: str | None = None
    """The DNS domain learnt (from a DHCP lease)."""
    gateways: tuple[str, ...] = ()
    """Every default gateway set, when an attachment's several addresses set
    several (one per family); ``gateway`` is the first. Providers of one
    address leave it empty: the engine fills it (engine/addressing.py)."""
    sources: tuple[tuple[str, str], ...] = ()
    """``(ADDRESS/PREFIX, METHOD)``: which method got each address; filled by
    the engine, like ``gateways``."""


# -- the plugin object types ---------------------------------------------------


def required(method: F) -> F:
    """Marks a contract method every plugin object must define (the others have defaults)."""
    method.__pipework_required__ = True  # type: ignore[attr-defined]
    return method


class LinkBackend:
    """Makes the link: the host side of an attachment and the guest interface.

    Subclass it and define ``name``, ``claim``, ``attach`` and ``detach``;
    every other method has a default (docs/PLUGINS.md lists them).
    """

    name: str
    """The kind name (``bridge``), used by ``--kind``, in results and in markers."""
    default_ifname: str = "eth1"
    """The guest interface name when ``-i`` is not given."""
    options: Mapping[str, OptionSpec] = {}
    """What this backend accepts beyond the core fields, by key: ``-o KEY=VALUE``
    options and settings with a flag of their own (engine/options.py). They
    are validated by ``spec.backend_options(self.name, self.options)`` and
    make up the marker fingerprint; the core never reads them."""

    @required
    async def claim(self, request: HostRequest) -> int:
        """How strongly this backend wants the request: 0 = not at all.

        Convention: 100 when the host interface exists and is of this
        backend's type; 10 when it does not exist and its name is this
        backend's auto-create prefix (``br*``); 1 for a catch-all.
        """
        raise NotImplementedError

    def validate(self, request: HostRequest) -> None:
        """Raise ``UsageError`` for options this backend cannot honour (a VLAN,
        ``--direct-phys``...). Called before anything is touched, so a
        refused ``--force`` re-run leaves the old attachment in place.
        Default: accept everything. (0.1.0 called it ``check``.)"""

    make_before_break = True
    """Can a replacement be built while the attachment it replaces still
    stands (``ctx.replacing``)? True: the engine builds the new one first
    and removes the old one only once the new one is ready. False (a NIC
    passed through cannot be in the guest twice): ``--force`` is refused,
    and a repair removes the broken one first."""

    @required
    async def attach(self, ctx: LinkContext) -> GuestLink:
        """Create the host side and the guest interface ``ctx.temp_ifname``
        *in the guest namespace*, down. Record an inverse in ``ctx.journal``
        right after each thing you create."""
        raise NotImplementedError

    @required
    async def detach(self, ctx: DetachContext) -> None:
        """Remove what ``attach`` created. Called before the engine deletes
        the guest interface (if it is still there afterwards), so a backend
        may take it back (a NIC passed through) or delete it in the order its
        host side needs. Must be idempotent."""
        raise NotImplementedError

    async def verify(self, ctx: DetachContext) -> str | None:
        """Does host-owned evidence corroborate ``ctx.marker``? None if it
        does, else why not, for people (``its host side pw1a2b is not its
        peer``). Asked before anything is removed or rebuilt because of a
        marker, and by ``ls``: a marker is a claim the guest may have
        written, so a backend whose ``detach`` acts outside the guest (a
        host side, a NIC given back, a shared sub-interface, a firewall
        rule) checks what only the host can write. Unverified attachments
        are reported and left alone. ``ctx.guest_ns`` is None when only a
        host side (``ctx.guest_link`` None too) is being looked at.
        Default: None (nothing outside the guest to protect)."""
        return None

    async def healthy(self, ctx: DetachContext) -> bool:
        """Is what only this backend knows of an attachment still whole (an
        OVS port)? Asked by a re-run that finds the same configuration, after
        the engine checked the guest and host-side interfaces; False
        rebuilds it. Default: True."""
        return True

    async def prepare_host(self, ctx: HostContext) -> HostChange | None:
        """Make sure the shared host resource ``ctx.name`` (a bridge a topology
        file declares) exists as ``ctx.settings`` says. Default: None, "this
        backend keeps no shared host resources" (``apply --plan`` shows it as
        deferred: made with its first attachment)."""
        return None

    async def release_host(self, ctx: HostContext) -> bool:
        """Remove ``ctx.name`` if this backend created it and nothing uses it;
        True if it did. Default: False (nothing of ours to remove)."""
        return False

    async def owns_host(self, ctx: HostContext) -> bool:
        """Did pipework create the shared host resource ``ctx.name`` (a bridge
        made on demand or for a topology file)? Answer from evidence kept on
        the host, never in a guest (``pipework watch`` lets labels join only
        such bridges). Default: False (nothing of ours)."""
        return False

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """``gc``: remove what this backend keeps outside the kernel's
        interfaces for attachments that are gone (OVS ports, firewall
        rules); one line per item. With ``ctx.dry_run``, only list them.
        Default: nothing."""
        return []

    async def aclose(self) -> None:
        """Called when the engine shuts down (close a connection). Default: nothing."""


class AddressProvider:
    """Configures addresses and routes on the guest interface, selected by the IPSPEC word.

    Subclass it and define ``name``, ``handles``, ``configure`` and ``release``.
    """

    name: str
    options: Mapping[str, OptionSpec] = {}
    """The settings this provider accepts (``AddressSpec.settings``), by key
    (engine/options.py); they make up the marker fingerprint."""

    @required
    def handles(self, address: AddressSpec) -> bool:
        """True if this provider handles ``address.method``. (0.1.0: ``claims``.)"""
        raise NotImplementedError

    def validate(self, spec: AttachSpec, guest: GuestInfo) -> None:
        """Raise ``UsageError``/``UnsupportedError`` for a request this provider
        cannot honour (unknown options, a missing program, the wrong kind of
        guest). Called after the guest lookup and before anything is
        created. Default: accept. (0.1.0: ``check``.)"""

    make_before_break = False
    """Can this provider configure a replacement beside the attachment it
    replaces, under a temporary name (``ctx.device``), and finish in
    ``adopt`` once it has its final name? False (the default, for providers
    that know an interface by its final name): the engine removes the old
    attachment before it configures the new one."""

    @required
    async def configure(self, ctx: AddressContext) -> AddressResult:
        """Configure the (up) interface ``ctx.index`` in the guest."""
        raise NotImplementedError

    async def adopt(self, ctx: AddressContext) -> None:
        """A replacement configured under ``ctx.device`` has its final name
        ``ctx.ifname`` now, and the attachment it replaced is gone: move
        what was kept under the temporary name (only with
        ``make_before_break``). Default: nothing."""

    @required
    async def release(self, ctx: DetachContext) -> None:
        """Release what ``configure`` holds (a DHCP client...). Idempotent."""
        raise NotImplementedError

    async def inspect(self, ctx: DetachContext) -> AddressResult | None:
        """What ``configure`` set up, as it stands now, for the result of an
        "unchanged" re-run; None when it is no longer intact (a kept DHCP
        client that died): the engine then replaces the attachment.
        Default: the request's gateway, as ``configure`` would have set it."""
        gateway = ctx.spec.address.gateway if ctx.spec is not None else None
        return AddressResult(gateway=str(gateway) if gateway else None)

    async def describe(self, ctx: DetachContext) -> str | None:
        """One short phrase for the DHCP column of ``pipework ls`` (``kept,
        running (PID 4242)``); None shows nothing. Default: None."""
        return None

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """``gc``: remove what this provider keeps for guests that are gone
        (kept clients, helper containers, state files); one line per item.
        With ``ctx.dry_run``, only list them. Default: nothing."""
        return []

    async def kept(self) -> list[KeptClient]:
        """The clients this provider left running to keep a lease (kept DHCP
        clients), one record each, alive or dead, read from what it keeps on
        the host; ``pipework daemon`` supervises them. Trust nothing on disk
        without the kernel's word (a process's start time, its namespaces);
        a malformed file is skipped with a log line, never raised. Default: []."""
        return []

    async def aclose(self) -> None:
        """Called when the engine shuts down. Default: nothing."""


DEFAULT_GUESS_ORDER = 100
"""``GuestResolver.guess_order`` unless a resolver sets it (docker 10, podman 20, lxc 30)."""


class GuestResolver:
    """Turns a guest reference (``web1``, ``netns:blue``, ``pid:42``) into an
    open network namespace. Subclass it and define ``name``, ``claim`` and
    ``resolve``."""

    name: str
    guess_order: int = DEFAULT_GUESS_ORDER
    """Where this resolver stands among resolvers that tie on a guess: lower
    is asked and listed first."""

    @required
    def claim(self, ref: str) -> int:
        """0 if ``ref`` is not for this resolver; 100 for an explicit prefix
        (``netns:``), lower for a guess (a bare name): 2 when this
        resolver's runtime is present here, 1 for a fallback that only
        explains why nothing was found (Docker without a socket). Must be
        cheap (a ``stat``, no connection): it runs on every attach.

        Resolvers that tie on the highest claim are all asked to
        ``resolve``; if more than one has the guest, it is an
        ``AmbiguousGuestError`` listing ``NAME:ref`` for each (so a
        resolver that guesses must accept its name as a prefix).
        """
        raise NotImplementedError

    @required
    async def resolve(self, ref: str) -> Guest:
        """Open the guest's network namespace, or raise a ``PipeworkError``:
        ``GuestNotFoundError`` when it is not there (which lets another
        runtime have it), ``GuestNotRunningError`` when it is but stopped."""
        raise NotImplementedError

    def detect(self) -> tuple[bool, str] | None:
        """Whether this resolver's runtime is present here, and how it was
        found or what is missing, for ``pipework plugins``. Cheap, like
        ``claim``. Default: None, "cannot tell" (not listed)."""
        return None

    async def aclose(self) -> None:
        """Called when the engine shuts down (close an HTTP session). Default: nothing."""


class EventSource:
    """Guest lifecycle events of one runtime, for ``pipework watch``
    (engine/events.py). Subclass it and define ``name``, ``running`` and ``watch``."""

    name: str
    """The runtime (``docker``)."""

    @required
    async def running(self) -> list[GuestEvent]:
        """The guests running now, each as a ``start`` event.

        Raise ``RuntimeUnavailableError`` when the runtime cannot be reached.
        """
        raise NotImplementedError

    @required
    async def watch(self, send: Callable[[GuestEvent], Awaitable[None]], since: float) -> None:
        """Call ``send`` for every event from ``since`` (a Unix time) on, so
        that nothing is missed between ``running()`` and the subscription
        (replays are harmless: attaching is idempotent). Return or raise
        ``RuntimeUnavailableError`` when the runtime goes away; the watcher
        reconnects."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Called when the watcher stops. Default: nothing."""


@dataclass(frozen=True)
class GcContext:
    """What ``collect_garbage`` sees: one ``pipework gc`` run."""

    host: Netns
    dry_run: bool
    """Only say what would be removed."""
    live: frozenset[Marker]
    """The guest-side markers the scan found: attachments whose guest side exists."""
    rescan: Callable[[], Awaitable[frozenset[Marker]]]
    """Look again (a new scan), for collectors that must confirm after a delay
    (an attach names its references a moment before its interface exists)."""
    scope: BatchScope = field(default_factory=BatchScope)
    """Shared by the collectors of this run: plugins that share a resource do
    its work once with ``await ctx.scope.once(key, ...)``."""
    lock: Lock = no_lock
    """The engine's named locks (``Lock``), for what a collector removes."""


# -- the hooks -------------------------------------------------------------------


class PipeworkSpecs:
    """Hook specifications. Call them with keyword arguments only."""

    @hookspec
    def pipework_link_backends(self, config: EngineConfig) -> list[LinkBackend]:  # type: ignore[empty-body]
        """Return link backend objects (one per kind this plugin provides)."""

    @hookspec
    def pipework_address_providers(self, config: EngineConfig) -> list[AddressProvider]:  # type: ignore[empty-body]
        """Return address provider objects."""

    @hookspec
    def pipework_guest_resolvers(self, config: EngineConfig) -> list[GuestResolver]:  # type: ignore[empty-body]
        """Return guest resolver objects."""

    @hookspec
    def pipework_event_sources(self, config: EngineConfig) -> list[EventSource]:  # type: ignore[empty-body]
        """Return guest event sources for ``pipework watch``."""

    @hookspec
    def pipework_attached(self, attachment: Attachment) -> None:
        """Notification: an attach completed (also for "unchanged" re-runs).
        Must be quick and must not raise."""


__all__ = [
    "DEFAULT_GUESS_ORDER",
    "AddressContext",
    "AddressProvider",
    "AddressResult",
    "DetachContext",
    "EngineConfig",
    "EventSource",
    "GcContext",
    "GuestLink",
    "GuestResolver",
    "HostChange",
    "HostContext",
    "HostRequest",
    "LinkBackend",
    "LinkContext",
    "OptionSpec",
    "PipeworkSpecs",
    "hookimpl",
    "hookspec",
    "required",
]
