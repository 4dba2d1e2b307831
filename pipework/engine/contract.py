"""THE plugin contract.

pipework is extended through pluggy hooks in the ``pipework`` project,
loaded from the entry-point group ``pipework``. Built-in backends register
through exactly the same path as third-party packages.

pluggy is synchronous and the work is asynchronous, so every hook is a plain
*factory*: it returns objects whose methods are ``async``. Never write an
``async def`` hook implementation (pluggy would return an un-awaited
coroutine).

Three kinds of objects can be contributed, one hook each:

``LinkBackend``
    Creates the host side of an attachment and the guest-side interface
    (under a temporary name, directly in the guest's namespace). Chosen by
    ``claim()`` from what the host interface is, or by ``--kind NAME``.
``AddressProvider``
    Configures addresses and routes on the guest interface: selected by the
    IPSPEC word (``static`` for ``ADDR/PREFIX[@GW]`` and ``0/0``).
``GuestResolver``
    Turns a guest reference (``web1``, ``netns:blue``, ``pid:42``, a path)
    into an open network namespace.

Every object may also define ``async def aclose(self) -> None``; the engine
calls it when it shuts down (to close an HTTP session, say). A link backend
may define ``async def healthy(self, ctx: DetachContext) -> bool``: a re-run
that finds the same configuration asks it whether the attachment is still
whole, and rebuilds it if not. A link backend that owns shared host
resources (a bridge) may define ``async def prepare_host(self, ctx:
HostContext) -> HostChange`` and ``async def release_host(self, ctx:
HostContext) -> bool``, which ``pipework apply`` and ``destroy`` call for the
bridges a topology file declares.

``pipework ls`` and ``gc`` (engine/inventory.py) use two more optional
methods: a link backend's ``async def collect_garbage(self, host: Netns,
dry_run: bool = False) -> list[str]`` removes what it keeps outside the
kernel's interfaces for attachments that are gone (OVS ports whose
interface vanished, firewall rules); an address provider's ``async def
describe(self, ctx: DetachContext) -> str`` says how its client stands (the
DHCP column of ``ls``). ``ls`` names guests by resolving their keys.

See docs/PLUGINS.md for a complete third-party backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import pluggy

from pipework.engine.batch import BatchScope, current_scope
from pipework.engine.events import EventSource
from pipework.engine.guests import Guest
from pipework.engine.journal import Journal
from pipework.engine.kernel.netlink import Link, Netns
from pipework.engine.marker import Marker
from pipework.engine.options import OptionSpec
from pipework.engine.specs import AddressSpec, Attachment, AttachSpec

hookspec = pluggy.HookspecMarker("pipework")
hookimpl = pluggy.HookimplMarker("pipework")


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
    lock: Callable[[str], AbstractAsyncContextManager[None]]
    """``async with ctx.lock("bridge:br1")``: serialise work on a shared resource
    within this engine (other processes are handled by EEXIST-tolerance)."""
    scope: BatchScope = field(default_factory=current_scope)
    """Shared by the attaches of one batch: host-wide reads done once (engine/batch.py)."""


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
    lock: Callable[[str], AbstractAsyncContextManager[None]]


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
    journal: Journal


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


# -- the three plugin object types ---------------------------------------------


@runtime_checkable
class LinkBackend(Protocol):
    name: str
    """The kind name (``bridge``), used by ``--kind`` and in results."""
    default_ifname: str
    """The guest interface name when ``-i`` is not given."""
    options: Mapping[str, OptionSpec] = {}
    """What this backend accepts beyond the core fields, by key: ``-o KEY=VALUE``
    options and settings with a flag of their own (engine/options.py). They
    are validated by ``spec.backend_options(self.name, self.options)`` and
    make up the marker fingerprint; the core never reads them."""

    async def claim(self, request: HostRequest) -> int:
        """How strongly this backend wants the request: 0 = not at all.

        Convention: 100 when the host interface exists and is of this
        backend's type; 10 when it does not exist and its name is this
        backend's auto-create prefix (``br*``); 1 for a catch-all.
        """
        ...

    def check(self, request: HostRequest) -> None:
        """Raise ``UsageError`` for options this backend cannot honour (a VLAN,
        ``--direct-phys``...). Called before anything is touched, so a
        refused ``--force`` re-run leaves the old attachment in place."""
        ...

    async def attach(self, ctx: LinkContext) -> GuestLink:
        """Create the host side and the guest interface ``ctx.temp_ifname``
        *in the guest namespace*, down. Record an inverse in ``ctx.journal``
        right after each thing you create."""
        ...

    async def detach(self, ctx: DetachContext) -> None:
        """Remove what ``attach`` created. Called before the engine deletes
        the guest interface (if it is still there afterwards), so a backend
        may take it back (a NIC passed through) or delete it in the order its
        host side needs. Must be idempotent."""
        ...


@runtime_checkable
class AddressProvider(Protocol):
    name: str
    options: Mapping[str, OptionSpec] = {}
    """The settings this provider accepts (``AddressSpec.settings``), by key
    (engine/options.py); they make up the marker fingerprint."""

    def claims(self, address: AddressSpec) -> bool:
        """True if this provider handles ``address.method``."""
        ...

    async def configure(self, ctx: AddressContext) -> AddressResult:
        """Configure the (up) interface ``ctx.index`` in the guest."""
        ...

    async def release(self, ctx: DetachContext) -> None:
        """Release what ``configure`` holds (a DHCP client...). Idempotent."""
        ...

    # Optional methods (the engine looks them up with getattr):
    #
    # def check(self, spec: AttachSpec, guest: GuestInfo) -> None
    #     Raise ``UsageError``/``UnsupportedError`` for a request this
    #     provider cannot honour (unknown options, a missing program, the
    #     wrong kind of guest). Called after the guest lookup and before
    #     anything is created.
    #
    # async def inspect(self, ctx: DetachContext) -> AddressResult | None
    #     What ``configure`` set up, as it stands now, for the result of an
    #     "unchanged" re-run. None when it is no longer intact (a kept DHCP
    #     client that died): the engine then replaces the attachment.
    #
    # async def collect_garbage(self, dry_run: bool = False) -> list[str]
    #     Remove what this provider keeps for guests that are gone (kept
    #     clients, helper containers, state files); return one line per
    #     item. With ``dry_run``, only list them.


@runtime_checkable
class GuestResolver(Protocol):
    name: str

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
        ...

    async def resolve(self, ref: str) -> Guest:
        """Open the guest's network namespace, or raise a ``PipeworkError``:
        ``GuestNotFoundError`` when it is not there (which lets another
        runtime have it), ``GuestNotRunningError`` when it is but stopped."""
        ...

    # Optional (the engine looks them up with getattr):
    #
    # guess_order: int
    #     Where this resolver stands among resolvers that tie on a guess:
    #     lower is asked and listed first (docker 10, podman 20, lxc 30;
    #     default 100).
    #
    # def detect(self) -> tuple[bool, str]
    #     Whether this resolver's runtime is present here, and how it was
    #     found or what is missing, for `pipework plugins`. Cheap, like claim().


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
        """Return guest event sources for ``pipework watch`` (engine/events.py)."""

    @hookspec
    def pipework_attached(self, attachment: Attachment) -> None:
        """Notification: an attach completed (also for "unchanged" re-runs).
        Must be quick and must not raise."""


__all__ = [
    "AddressContext",
    "AddressProvider",
    "AddressResult",
    "DetachContext",
    "EngineConfig",
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
]
