"""The engine: everything backends may import lives in this namespace."""

from typing import TYPE_CHECKING

from .dockerapi import ContainerAPI, ContainerResolver
from .engine import Engine, require_privileges
from .errors import (
    EXIT_INTERRUPTED,
    AmbiguousGuestError,
    ConflictError,
    ExternalCommandError,
    GuestNotFoundError,
    GuestNotRunningError,
    HostInterfaceError,
    NotPermittedError,
    PipeworkError,
    RuntimeUnavailableError,
    TimeoutExpiredError,
    UnknownHostInterfaceError,
    UnsupportedError,
    UsageError,
)
from .firewall import (
    FORWARD_FLAG,
    check_bridge_name,
    forward_intact,
    release_forward,
    settle_forward,
    stale_forward_rules,
)
from .guests import Guest, open_netns, proc_netns
from .hookspecs import (
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
    hookimpl,
    hookspec,
)
from .journal import Journal
from .marker import BRIDGE_MARKER, Marker
from .netlink import (
    ARPHRD_INFINIBAND,
    ARPHRD_LOOPBACK,
    Link,
    LinkExists,
    NetlinkFailure,
    Netns,
    NoSuchLink,
    current_netns_fd,
    pick_mtu,
    socket_in_netns,
    unsupported_kind,
)
from .specs import (
    AddressSpec,
    Attachment,
    AttachSpec,
    GuestInfo,
    RouteSpec,
    derive_mac,
    parse_mac,
    parse_macspec,
    parse_pkey,
    validate_ifname,
)
from .sublinks import create_child, create_veth, detach_child

if TYPE_CHECKING:
    from .runner import BatchRunner, Job, Outcome, Report

_RUNNER_NAMES = frozenset({"BatchRunner", "Job", "Outcome", "Report"})


def __getattr__(name: str) -> object:
    """The batch runner is imported on first use: a single attach never needs it."""
    if name in _RUNNER_NAMES:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'pipework.engine' has no attribute {name!r}")


__all__ = [
    "ARPHRD_INFINIBAND",
    "ARPHRD_LOOPBACK",
    "BRIDGE_MARKER",
    "EXIT_INTERRUPTED",
    "FORWARD_FLAG",
    "AddressContext",
    "AddressProvider",
    "AddressResult",
    "AddressSpec",
    "AmbiguousGuestError",
    "AttachSpec",
    "Attachment",
    "BatchRunner",
    "ConflictError",
    "ContainerAPI",
    "ContainerResolver",
    "DetachContext",
    "Engine",
    "EngineConfig",
    "ExternalCommandError",
    "Guest",
    "GuestInfo",
    "GuestLink",
    "GuestNotFoundError",
    "GuestNotRunningError",
    "GuestResolver",
    "HostChange",
    "HostContext",
    "HostInterfaceError",
    "HostRequest",
    "Job",
    "Journal",
    "Link",
    "LinkBackend",
    "LinkContext",
    "LinkExists",
    "Marker",
    "NetlinkFailure",
    "Netns",
    "NoSuchLink",
    "NotPermittedError",
    "Outcome",
    "PipeworkError",
    "Report",
    "RouteSpec",
    "RuntimeUnavailableError",
    "TimeoutExpiredError",
    "UnknownHostInterfaceError",
    "UnsupportedError",
    "UsageError",
    "check_bridge_name",
    "create_child",
    "create_veth",
    "current_netns_fd",
    "derive_mac",
    "detach_child",
    "forward_intact",
    "hookimpl",
    "hookspec",
    "open_netns",
    "parse_mac",
    "parse_macspec",
    "parse_pkey",
    "pick_mtu",
    "proc_netns",
    "release_forward",
    "require_privileges",
    "settle_forward",
    "socket_in_netns",
    "stale_forward_rules",
    "unsupported_kind",
    "validate_ifname",
]
