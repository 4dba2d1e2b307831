"""The engine: everything backends may import lives in this namespace.

Each name is imported on first use (module ``__getattr__``), so that a
module which needs one part (``pipework.engine.errors``, the specs) does not
load the whole engine; the names, ``__all__`` and static typing are as if
they were imported here.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipework.engine.contract import (
        AddressContext,
        AddressProvider,
        AddressResult,
        DetachContext,
        EngineConfig,
        EventSource,
        GcContext,
        GuestLink,
        GuestResolver,
        HostChange,
        HostContext,
        HostRequest,
        LinkBackend,
        LinkContext,
        Lock,
        hookimpl,
        required,
    )
    from pipework.engine.engine import Engine
    from pipework.engine.errors import (
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
        UnverifiedError,
        UsageError,
    )
    from pipework.engine.events import GuestEvent
    from pipework.engine.guestlinks import LinkExamination, LinkResult
    from pipework.engine.guests import Guest, open_netns, proc_netns
    from pipework.engine.journal import Journal
    from pipework.engine.kept import KeptClient
    from pipework.engine.kernel.mtu import pick_mtu
    from pipework.engine.kernel.netlink import (
        ARPHRD_INFINIBAND,
        ARPHRD_LOOPBACK,
        Link,
        LinkExists,
        NetlinkFailure,
        Netns,
        NoSuchLink,
        current_netns_fd,
        socket_in_netns,
        unsupported_kind,
    )
    from pipework.engine.linkspec import LinkEnd, LinkSpec, parse_endpoint
    from pipework.engine.marker import BRIDGE_MARKER, LINK_KIND, UPLINK_MARKER, Marker
    from pipework.engine.options import OptionSpec
    from pipework.engine.replacement import BreakBeforeMake
    from pipework.engine.specs import (
        AddressSpec,
        Attachment,
        AttachSpec,
        GuestInfo,
        RouteSpec,
        parse_addresses,
        parse_pkey,
        validate_ifname,
    )
    from pipework.engine.sublinks import create_child, create_veth, parent_link, veth_evidence

__all__ = [
    "ARPHRD_INFINIBAND",
    "ARPHRD_LOOPBACK",
    "BRIDGE_MARKER",
    "LINK_KIND",
    "UPLINK_MARKER",
    "AddressContext",
    "AddressProvider",
    "AddressResult",
    "AddressSpec",
    "AmbiguousGuestError",
    "AttachSpec",
    "Attachment",
    "BreakBeforeMake",
    "ConflictError",
    "DetachContext",
    "Engine",
    "EngineConfig",
    "EventSource",
    "ExternalCommandError",
    "GcContext",
    "Guest",
    "GuestEvent",
    "GuestInfo",
    "GuestLink",
    "GuestNotFoundError",
    "GuestNotRunningError",
    "GuestResolver",
    "HostChange",
    "HostContext",
    "HostInterfaceError",
    "HostRequest",
    "Journal",
    "KeptClient",
    "Link",
    "LinkBackend",
    "LinkContext",
    "LinkEnd",
    "LinkExamination",
    "LinkExists",
    "LinkResult",
    "LinkSpec",
    "Lock",
    "Marker",
    "NetlinkFailure",
    "Netns",
    "NoSuchLink",
    "NotPermittedError",
    "OptionSpec",
    "PipeworkError",
    "RouteSpec",
    "RuntimeUnavailableError",
    "TimeoutExpiredError",
    "UnknownHostInterfaceError",
    "UnsupportedError",
    "UnverifiedError",
    "UsageError",
    "create_child",
    "create_veth",
    "current_netns_fd",
    "hookimpl",
    "open_netns",
    "parent_link",
    "parse_addresses",
    "parse_endpoint",
    "parse_pkey",
    "pick_mtu",
    "proc_netns",
    "required",
    "socket_in_netns",
    "unsupported_kind",
    "validate_ifname",
    "veth_evidence",
]

_WHERE: dict[str, str] = {
    "AddressContext": "pipework.engine.contract",
    "AddressProvider": "pipework.engine.contract",
    "AddressResult": "pipework.engine.contract",
    "DetachContext": "pipework.engine.contract",
    "EngineConfig": "pipework.engine.contract",
    "EventSource": "pipework.engine.contract",
    "GcContext": "pipework.engine.contract",
    "GuestLink": "pipework.engine.contract",
    "GuestResolver": "pipework.engine.contract",
    "hookimpl": "pipework.engine.contract",
    "HostChange": "pipework.engine.contract",
    "HostContext": "pipework.engine.contract",
    "HostRequest": "pipework.engine.contract",
    "LinkBackend": "pipework.engine.contract",
    "LinkContext": "pipework.engine.contract",
    "Lock": "pipework.engine.contract",
    "required": "pipework.engine.contract",
    "Engine": "pipework.engine.engine",
    "AmbiguousGuestError": "pipework.engine.errors",
    "ConflictError": "pipework.engine.errors",
    "ExternalCommandError": "pipework.engine.errors",
    "GuestNotFoundError": "pipework.engine.errors",
    "GuestNotRunningError": "pipework.engine.errors",
    "HostInterfaceError": "pipework.engine.errors",
    "NotPermittedError": "pipework.engine.errors",
    "PipeworkError": "pipework.engine.errors",
    "RuntimeUnavailableError": "pipework.engine.errors",
    "TimeoutExpiredError": "pipework.engine.errors",
    "UnknownHostInterfaceError": "pipework.engine.errors",
    "UnsupportedError": "pipework.engine.errors",
    "UnverifiedError": "pipework.engine.errors",
    "UsageError": "pipework.engine.errors",
    "GuestEvent": "pipework.engine.events",
    "Guest": "pipework.engine.guests",
    "open_netns": "pipework.engine.guests",
    "proc_netns": "pipework.engine.guests",
    "Journal": "pipework.engine.journal",
    "KeptClient": "pipework.engine.kept",
    "pick_mtu": "pipework.engine.kernel.mtu",
    "ARPHRD_INFINIBAND": "pipework.engine.kernel.netlink",
    "ARPHRD_LOOPBACK": "pipework.engine.kernel.netlink",
    "current_netns_fd": "pipework.engine.kernel.netlink",
    "Link": "pipework.engine.kernel.netlink",
    "LinkExists": "pipework.engine.kernel.netlink",
    "NetlinkFailure": "pipework.engine.kernel.netlink",
    "Netns": "pipework.engine.kernel.netlink",
    "NoSuchLink": "pipework.engine.kernel.netlink",
    "socket_in_netns": "pipework.engine.kernel.netlink",
    "unsupported_kind": "pipework.engine.kernel.netlink",
    "LinkExamination": "pipework.engine.guestlinks",
    "LinkResult": "pipework.engine.guestlinks",
    "LinkEnd": "pipework.engine.linkspec",
    "LinkSpec": "pipework.engine.linkspec",
    "parse_endpoint": "pipework.engine.linkspec",
    "BRIDGE_MARKER": "pipework.engine.marker",
    "LINK_KIND": "pipework.engine.marker",
    "UPLINK_MARKER": "pipework.engine.marker",
    "Marker": "pipework.engine.marker",
    "OptionSpec": "pipework.engine.options",
    "BreakBeforeMake": "pipework.engine.replacement",
    "AddressSpec": "pipework.engine.specs",
    "Attachment": "pipework.engine.specs",
    "AttachSpec": "pipework.engine.specs",
    "GuestInfo": "pipework.engine.specs",
    "parse_addresses": "pipework.engine.specs",
    "parse_pkey": "pipework.engine.specs",
    "RouteSpec": "pipework.engine.specs",
    "validate_ifname": "pipework.engine.specs",
    "create_child": "pipework.engine.sublinks",
    "create_veth": "pipework.engine.sublinks",
    "parent_link": "pipework.engine.sublinks",
    "veth_evidence": "pipework.engine.sublinks",
}
"""Each public name -> the module that defines it."""


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'pipework.engine' has no attribute {name!r}")
    # __import__, not importlib.import_module: the same, but seen by -X importtime.
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
