"""Netlink in plain values: one ``Netns`` handle per network namespace.

``Netns`` speaks in names, indexes and ``ipaddress`` objects, and translates
the kernel's errors into ``PipeworkError``. Every request goes out through
one raw NETLINK_ROUTE socket per namespace, encoded by ``rtnl.py``: one
production path per request, and the bytes the unit tests check
(tests/unit/engine/kernel/test_link_requests.py, against ``tests/support/fake_netlink``).

pyroute2 earns its place in one spot: ``create()`` and ``set()`` take
pyroute2's attribute names, and a link attribute ``rtnl.py`` does not
encode (a link kind no built-in backend makes, say a third-party plugin's
``vxlan_id=``) is compiled by pyroute2's request compiler and sent through
the same socket. pyroute2 is imported there, on first use: importing the
package costs 100 ms or more, and no built-in backend's request needs it.

Sockets are created inside a namespace with ``setns()`` on the calling
thread (a socket stays bound to the namespace it was created in), then the
thread moves back: microseconds, no fork.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio.to_thread
from anyio.lowlevel import checkpoint

from pipework.engine.errors import (
    ConflictError,
    HostInterfaceError,
    NotPermittedError,
    PipeworkError,
    UnsupportedError,
    UsageError,
)
from pipework.engine.kernel import rtnl
from pipework.engine.kernel.rtnl import (
    AF_SPEC_KEYS,
    BR_STATE_FORWARDING,
    Rtnl,
    RtnlError,
    UnknownAttribute,
)

T = TypeVar("T")

# The same unions as pipework.engine.specs's: the kernel layer imports nothing
# of the engine but its errors (an import-linter contract, pyproject.toml).
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
IFA_F_NODAD = 0x02

#: Kernel modules that provide a link kind, for "this kernel has no X support".
KIND_MODULES = {"vlan": "8021q", "ipoib": "ib_ipoib", "veth": "veth"}
ARPHRD_INFINIBAND = 32
ARPHRD_LOOPBACK = 772


class _DeleteRecorder(Protocol):
    def add(self, netns: Netns, index: int) -> None: ...


DEFERRED_DELETES: ContextVar[_DeleteRecorder | None] = ContextVar(
    "pipework_deferred_deletes", default=None
)
"""Set by ``teardown.deferred_deletes()``: where ``Netns.delete()`` records instead."""


class NetlinkFailure(PipeworkError):
    """A netlink request failed; ``code`` is the errno."""

    def __init__(self, message: str, code: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class LinkExists(NetlinkFailure):
    """EEXIST: expected in races; callers decide what it means."""


class NoSuchLink(NetlinkFailure):
    """ENODEV: the interface is gone (also expected in races)."""


_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def _inside(fd: int | None) -> Iterator[None]:
    """Run the block with this thread in the namespace ``fd`` (None: stay put).

    Only the calling thread moves, and it always moves back; sockets and
    /proc/sys/net files opened meanwhile stay tied to the namespace.
    """
    if fd is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            _check(_libc().setns(fd, CLONE_NEWNET))
        except OSError as exc:
            if exc.errno == errno.EPERM:
                raise NotPermittedError(
                    "cannot enter the guest's network namespace", "run pipework as root"
                ) from None
            raise PipeworkError(f"cannot enter network namespace: {exc.strerror}") from None
        try:
            yield
        finally:
            _check(_libc().setns(home, CLONE_NEWNET))
    finally:
        os.close(home)


def new_netns() -> int:
    """Create an anonymous network namespace; return an fd that keeps it alive.

    The namespace vanishes, with every interface in it, when the last fd
    closes: nothing to clean up even if the process is killed.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    with _inside(home):  # come back here whatever unshare() did
        try:
            _check(_libc().unshare(CLONE_NEWNET))
        except OSError as exc:
            raise NotPermittedError(f"cannot create a network namespace: {exc.strerror}") from None
        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    os.close(home)
    return fd


def write_sysctl(fd: int | None, key: str, value: str) -> bool:
    """Set sysctl ``key`` (``net/ipv6/conf/eth1/disable_ipv6``) inside the namespace
    ``fd``; False if it already had ``value``.

    /proc/sys/net shows the namespace of the task that opens it, so the file
    is opened while this thread is inside the namespace.
    """
    try:
        with _inside(fd), open("/proc/sys/" + key, "r+") as handle:
            if handle.read().strip() == value:
                return False
            handle.seek(0)
            handle.write(value)
            return True
    except OSError as exc:
        raise PipeworkError(f"cannot set {key}: {exc.strerror}") from None


def read_sysctl(fd: int | None, key: str) -> str | None:
    """The value of sysctl ``key`` inside the namespace ``fd``; None if it
    does not exist (or the namespace cannot be entered)."""
    try:
        with _inside(fd), open("/proc/sys/" + key) as handle:
            return handle.read().strip()
    except (OSError, PipeworkError):
        return None


def enter_netns(fd: int) -> None:
    """Move this thread into the namespace ``fd`` for good (before an exec)."""
    _check(_libc().setns(fd, CLONE_NEWNET))


def socket_in_netns(fd: int | None, family: int, type_: int, proto: int) -> socket.socket:
    """Create a socket inside the namespace ``fd`` (``None``: the current one)."""
    with _inside(fd):
        return socket.socket(family, type_, proto)


def open_rtnl(fd: int | None) -> socket.socket:
    """A NETLINK_ROUTE socket inside the namespace ``fd``.

    Not bound to any multicast group: subscribing makes bind() and close()
    wait for RCU grace periods (~30 ms measured) and floods the socket with
    notifications nobody reads.
    """
    sock = socket_in_netns(fd, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80


@dataclass(frozen=True)
class AddressEntry:
    """One address of an interface, as the kernel lists it."""

    address: IPInterface
    flags: int = 0
    """IFA_F_* (``IFA_F_PERMANENT``: no lifetime; ``IFA_F_TENTATIVE``: DAD runs)."""
    proto: int = 0
    """Who made it: ``rtnl.IFA_PROTO_KERNEL_RA`` for SLAAC; 0 when not said."""

    @property
    def from_router(self) -> bool:
        """Made by the kernel from a router advertisement (SLAAC)?"""
        return self.proto == rtnl.IFA_PROTO_KERNEL_RA


@dataclass(frozen=True)
class Link:
    """What we need to know about one interface."""

    index: int
    ifname: str
    kind: str | None
    mtu: int
    mac: str | None
    alias: str | None
    master: int | None
    up: bool
    operstate: str
    link_type: int
    max_mtu: int | None
    parent: int | None = None
    """IFLA_LINK: the interface this one is stacked on (VLAN, macvlan...)."""
    vlan_id: int | None = None
    link_netnsid: int | None = None
    """IFLA_LINK_NETNSID: set when ``parent`` (a veth's peer, a macvlan's
    parent) is in another network namespace, which the guest cannot fake."""
    perm_mac: str | None = None
    """IFLA_PERM_ADDRESS: the hardware's own MAC address (NICs only)."""
    parent_dev: str | None = None
    """IFLA_PARENT_DEV_NAME: the device behind a NIC (a PCI address...)."""
    parent_bus: str | None = None
    """IFLA_PARENT_DEV_BUS_NAME: its bus (``pci``, ``usb``...)."""
    port_state: int | None = None
    """A Linux bridge port's STP state (``BR_STATE_FORWARDING`` = 3); None
    when this is not a bridge port."""

    @property
    def ready(self) -> bool:
        """Operationally up, and forwarding if it is a bridge port: a frame
        sent now is not dropped on the way (carrier, operstate and the port's
        state follow "up" asynchronously, in the kernel's linkwatch work)."""
        return self.operstate == "UP" and self.port_state in (None, BR_STATE_FORWARDING)


def _family(addr: IPAddress | IPInterface | ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _default(version: int) -> tuple[int, str]:
    return (socket.AF_INET, "0.0.0.0/0") if version == 4 else (socket.AF_INET6, "::/0")


def _route_body(attrs: dict[str, Any], **fields: int) -> bytes:
    """``encode_route`` for a route as ``Netns.default_route`` describes it."""
    dst = ipaddress.ip_network(attrs["dst"])
    gateway = attrs.get("gateway")
    return rtnl.encode_route(
        attrs.get("family", _family(dst)),
        dst.prefixlen,
        dst.network_address.packed,
        gateway=ipaddress.ip_address(gateway).packed if gateway else None,
        oif=attrs.get("oif"),
        priority=attrs.get("priority"),
        **fields,
    )


def _pyroute2_compile(method: str, command: str, attrs: dict[str, Any]) -> tuple[int, int, bytes]:
    """(type, flags, body) of the message pyroute2 builds for ``method(command, **attrs)``.

    pyroute2's ``IPBatch`` compiles requests without sending them. It runs
    its own event loop: call this in a worker thread.
    """
    try:
        from pyroute2 import IPBatch
    except ImportError:  # pragma: no cover - a declared dependency
        raise UnsupportedError(
            f"encoding {sorted(attrs)} needs pyroute2, which is not installed",
            "pip install pyroute2",
        ) from None
    batch = IPBatch()
    try:
        getattr(batch, method)(command, **attrs)
        data = bytes(batch.batch)
    finally:
        batch.close()
    length, kind, flags = struct.unpack_from("=IHH", data)
    return kind, flags & ~rtnl.NLM_F_REQUEST, data[16:length]


class Netns:
    """Netlink in one network namespace."""

    def __init__(
        self,
        label: str,
        fd: int | None,
        key: tuple[int, int],
        *,
        connect: Callable[[int | None], socket.socket] = open_rtnl,
        own_fd: bool = False,
    ) -> None:
        self.label = label
        self.fd = fd
        self.key = key
        self._connect = connect
        self.rtnl = Rtnl(connect(fd))
        """The socket every request of this handle goes through."""
        self._own_fd = own_fd

    def new_rtnl(self) -> Rtnl:
        """Another socket in this namespace, for work in another thread."""
        return Rtnl(self._connect(self.fd))

    async def _ask(self, what: str, call: Callable[..., T], *args: Any) -> T:
        """Run one raw request; each stays a cancellation point."""
        await checkpoint()
        try:
            return call(*args)
        except RtnlError as exc:
            raise _translate(exc, what, self.label) from None

    async def request(
        self, what: str, kind: int, flags: int, body: bytes, *, ignore: Collection[int] = ()
    ) -> list[bytes]:
        """Any rtnetlink request, built with ``rtnl``'s primitives: the payloads
        of the answers ([] once an NLM_F_ACK request is acknowledged, or when
        the kernel answers with an errno in ``ignore``). ``what`` names it in
        errors: "``what`` failed: <reason>"."""
        await checkpoint()
        try:
            return self.rtnl.request(kind, flags, body)
        except RtnlError as exc:
            if exc.code in ignore:
                return []
            raise _translate(exc, what, self.label) from None

    async def _compiled(self, method: str, command: str, attrs: Mapping[str, Any]) -> None:
        """A request pyroute2 compiles (attributes ``rtnl`` does not encode),
        sent through this handle's socket; raises ``RtnlError``."""
        kind, flags, body = await anyio.to_thread.run_sync(
            functools.partial(_pyroute2_compile, method, command, dict(attrs))
        )
        self.rtnl.request(kind, flags, body)

    # -- links ---------------------------------------------------------------------------
    async def link(self, ifname: str) -> Link | None:
        await checkpoint()
        try:
            return Link(**self.rtnl.get_link(ifname=ifname))  # type: ignore[arg-type]
        except RtnlError as exc:
            # ERANGE: a name too long to be any interface's (one a marker gave).
            if exc.code in (errno.ENODEV, errno.EINVAL, errno.ERANGE):
                return None
            raise _translate(exc, f"looking up {ifname}", self.label) from None

    async def link_by_index(self, index: int) -> Link | None:
        await checkpoint()
        try:
            return Link(**self.rtnl.get_link(index=index))  # type: ignore[arg-type]
        except RtnlError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _translate(exc, f"looking up interface #{index}", self.label) from None

    async def nsid_of(self, fd: int) -> int | None:
        """The id this namespace gives the namespace open as ``fd`` (None: none)."""
        return await self._ask("looking up a namespace id", self.rtnl.nsid_of, fd)

    async def links(self) -> list[Link]:
        found = await self._ask("listing interfaces", self.rtnl.links)
        return [Link(**fields) for fields in found]  # type: ignore[arg-type]

    async def create(self, ifname: str, kind: str, **attrs: Any) -> None:
        """``ip link add``, attributes under pyroute2's names (``mtu=``, ``link=``,
        ``net_ns_fd=``, ``peer={...}``, ``macvlan_mode=``...); raises
        ``LinkExists`` on EEXIST and says which kernel module is missing on
        EOPNOTSUPP."""
        what = f"creating {kind} interface {ifname}"
        await checkpoint()
        try:
            try:
                self.rtnl.create_link(ifname, kind, attrs)
            except UnknownAttribute:
                await self._compiled("link", "add", {"ifname": ifname, "kind": kind, **attrs})
        except RtnlError as exc:
            if exc.code == errno.EOPNOTSUPP:
                raise unsupported_kind(kind) from None
            raise _translate(exc, what, self.label) from None

    async def set(self, index: int, **attrs: Any) -> None:
        """``ip link set``: ``master=``, ``ifalias=``, ``state="up"``, ``mtu=``,
        ``address=``, ``ifname=``, ``net_ns_fd=``... (pyroute2's names)."""
        what = f"configuring interface #{index}"
        await checkpoint()
        try:
            try:
                self.rtnl.set_link(index, attrs)
            except UnknownAttribute:
                await self._compiled("link", "set", {"index": index, **attrs})
        except RtnlError as exc:
            unset = next((k for k in AF_SPEC_KEYS if k in attrs), None)
            if exc.code == errno.EAFNOSUPPORT and unset is not None:
                # No IPv6 on this kernel, or an interface too small for it
                # (MTU < 1280; < 68 for IPv4): that setting has nothing to set.
                await self.set(index, **{k: v for k, v in attrs.items() if k != unset})
                return
            raise _translate(exc, what, self.label) from None

    async def move(self, index: int, fd: int, ifname: str) -> None:
        """Move an interface into the namespace ``fd``, renaming it on the way
        (one request: no clash with a same-named interface over there)."""
        await self.set(index, net_ns_fd=fd, ifname=ifname)

    async def add_altname(self, index: int, altname: str) -> bool:
        """Add an alternative name; False if this interface already has it."""
        await checkpoint()
        try:
            self.rtnl.add_altname(index, altname)
        except RtnlError as exc:
            if exc.code == errno.EEXIST:
                return False
            raise _translate(exc, f"adding name {altname} to #{index}", self.label) from None
        return True

    async def del_altname(self, index: int, altname: str) -> None:
        await checkpoint()
        try:
            self.rtnl.del_altname(index, altname)
        except RtnlError as exc:
            if exc.code not in (errno.ENOENT, errno.ENODEV, errno.ENOMSG, errno.EINVAL):
                raise _translate(
                    exc, f"removing name {altname} from #{index}", self.label
                ) from None

    async def altnames(self, index: int) -> list[str]:
        payload = await self._ask(
            f"looking up interface #{index}", functools.partial(self.rtnl.link_message, index=index)
        )
        return rtnl.link_altnames(payload)

    async def delete(self, index: int) -> bool:
        """Delete a link; False when it was already gone.

        Inside ``teardown.deferred_deletes()`` the delete is only recorded,
        and carried out with the others at the end of the batch.
        """
        batch = DEFERRED_DELETES.get()
        if batch is not None:
            batch.add(self, index)
            return True
        await checkpoint()
        try:
            self.rtnl.delete_link(index)
        except RtnlError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise _translate(exc, f"deleting interface #{index}", self.label) from None
        return True

    async def delete_named(self, ifname: str) -> bool:
        """Delete the interface called ``ifname``, if there is one."""
        link = await self.link(ifname)
        return link is not None and await self.delete(link.index)

    async def ports(self, master: int) -> list[Link]:
        return [link for link in await self.links() if link.master == master]

    # -- addresses -----------------------------------------------------------------------
    def enable_ipv6(self, ifname: str, *, link_local: bool = False) -> None:
        """Enable IPv6 on ``ifname`` only: Docker disables it in containers
        without an IPv6 network, and new interfaces inherit that. With
        ``link_local``, also give it a link-local address if it was made
        without (``addrgenmode none``): SLAAC and DHCPv6 send from it."""
        conf = f"net/ipv6/conf/{ifname}/"
        if link_local and read_sysctl(self.fd, conf + "addr_gen_mode") == "1":
            write_sysctl(self.fd, conf + "addr_gen_mode", "0")
        write_sysctl(self.fd, conf + "disable_ipv6", "0")

    async def add_address(self, index: int, address: IPInterface) -> None:
        if address.version == 6:
            # An IPv6 address was asked for explicitly.
            link = await self.link_by_index(index)
            if link is not None:
                self.enable_ipv6(link.ifname)
        broadcast = None
        flags = 0
        if address.version == 4 and address.network.prefixlen < 31:
            broadcast = address.network.broadcast_address.packed
        else:
            # Static IPv6 addresses are the user's choice: skip duplicate address
            # detection so the address is usable as soon as we return.
            flags = IFA_F_NODAD
        await checkpoint()
        try:
            self.rtnl.add_address(
                index,
                _family(address),
                address.ip.packed,
                address.network.prefixlen,
                broadcast,
                flags,
            )
        except RtnlError as exc:
            if exc.code != errno.EEXIST:
                raise _translate(exc, f"adding address {address}", self.label) from None

    async def addresses(self, index: int) -> list[IPInterface]:
        return [entry.address for entry in await self.address_entries(index)]

    async def address_entries(self, index: int) -> list[AddressEntry]:
        """Every address on ``index`` with its flags and who made it."""
        found = await self._ask("listing addresses", self.rtnl.addresses, index)
        return [
            AddressEntry(
                ipaddress.ip_interface((ipaddress.ip_address(raw), prefixlen)), flags, proto
            )
            for _family_, raw, prefixlen, flags, proto in found
        ]

    # -- routes --------------------------------------------------------------------------
    async def default_route(self, version: int) -> dict[str, Any] | None:
        """The main table's default route, as attributes ``restore_route`` takes
        (pyroute2's names: ``family dst proto`` and ``gateway oif priority``)."""
        routes = await self.default_routes(version)
        return routes[0] if routes else None

    async def default_routes(self, version: int) -> list[dict[str, Any]]:
        """Every default route of the main table (several when their metrics
        differ), in the kernel's order (the one in use first), as ``default_route``."""
        family, dst = _default(version)
        found = []
        for route in await self._ask("listing routes", self.rtnl.routes, family):
            if (
                route["dst_len"] == 0
                and route["table"] == rtnl.RT_TABLE_MAIN
                and route["type"] == rtnl.RTN_UNICAST
            ):
                attrs: dict[str, Any] = {"family": family, "dst": dst, "proto": route["proto"]}
                gateway = route["gateway"]
                if isinstance(gateway, bytes):
                    attrs["gateway"] = str(ipaddress.ip_address(gateway))
                for key in ("oif", "priority"):
                    if route[key] is not None:
                        attrs[key] = route[key]
                found.append(attrs)
        return found

    async def restore_route(self, attrs: dict[str, Any]) -> None:
        """Put back a route ``default_route`` returned."""
        known = {"family", "dst", "proto", "gateway", "oif", "priority"}
        if not set(attrs) <= known:
            await checkpoint()
            try:
                await self._compiled("route", "replace", attrs)
            except RtnlError as exc:
                raise _translate(exc, "restoring a route", self.label) from None
            return
        body = _route_body(attrs, proto=attrs.get("proto", rtnl.RTPROT_STATIC))
        await self._ask(
            "restoring a route", functools.partial(self.rtnl.add_route, replace=True), body
        )

    async def set_default_route(self, gateway: IPAddress, oif: int) -> None:
        body = rtnl.encode_route(_family(gateway), 0, None, gateway=gateway.packed, oif=oif)
        await self._ask(
            "setting the default route", functools.partial(self.rtnl.add_route, replace=True), body
        )

    async def delete_default_route(self, version: int) -> None:
        family, _dst = _default(version)
        body = rtnl.encode_route(family, 0, None, proto=0, type_=0)
        await checkpoint()
        try:
            self.rtnl.delete_route(body)
        except RtnlError as exc:
            if exc.code != errno.ESRCH:
                raise _translate(exc, "removing the default route", self.label) from None

    async def delete_route(self, attrs: dict[str, Any]) -> bool:
        """Delete exactly the main-table route ``attrs`` describes (as
        ``default_route`` gives them: its gateway, interface and metric must
        match, so another route to the same place stays); False if it is not there."""
        body = _route_body(attrs, proto=0, scope=rtnl.RT_SCOPE_NOWHERE, type_=0)
        await checkpoint()
        try:
            self.rtnl.delete_route(body)
        except RtnlError as exc:
            if exc.code == errno.ESRCH:
                return False
            raise _translate(exc, "removing a route", self.label) from None
        return True

    async def add_onlink_route(self, index: int, dest: IPAddress) -> None:
        body = rtnl.encode_route(
            _family(dest), dest.max_prefixlen, dest.packed, scope=rtnl.RT_SCOPE_LINK, oif=index
        )
        await checkpoint()
        try:
            self.rtnl.add_route(body)
        except RtnlError as exc:
            if exc.code != errno.EEXIST:
                raise _translate(exc, f"adding an on-link route to {dest}", self.label) from None

    async def add_route(
        self,
        index: int,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
        via: IPAddress | None = None,
        metric: int | None = None,
    ) -> None:
        """``ip route add DST [via GW] [metric N] dev #index`` (on-link without ``via``)."""
        body = rtnl.encode_route(
            _family(dst),
            dst.prefixlen,
            dst.network_address.packed,
            scope=rtnl.RT_SCOPE_UNIVERSE if via is not None else rtnl.RT_SCOPE_LINK,
            gateway=via.packed if via is not None else None,
            oif=index,
            priority=metric,
        )
        where = "" if self.label == "host" else f" in {self.label}"
        await checkpoint()
        try:
            self.rtnl.add_route(body)
        except RtnlError as exc:
            if exc.code == errno.EEXIST:
                raise ConflictError(
                    f"a route to {dst} already exists{where}",
                    "remove it, or drop it from the routes asked for",
                ) from None
            if exc.code == errno.ENETUNREACH:
                raise UsageError(
                    f"route {dst} via {via}: the gateway is not reachable{where}",
                    "the gateway must be on the interface's subnet",
                ) from None
            raise _translate(exc, f"adding a route to {dst}", self.label) from None

    def close(self) -> None:
        self.rtnl.close()
        if self._own_fd and self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _translate(exc: Any, what: str, label: str) -> PipeworkError:
    code = exc.code
    where = "" if label == "host" else f" in {label}"
    reason = os.strerror(code) if code else str(exc)
    msg = f"{what}{where} failed: {reason}"
    if code == errno.EEXIST:
        return LinkExists(msg, code)
    if code == errno.ENODEV:
        return NoSuchLink(msg, code)
    if code in (errno.EPERM, errno.EACCES):
        return NotPermittedError(msg, "run pipework as root (it needs CAP_NET_ADMIN)")
    if code == errno.EOPNOTSUPP:
        return UnsupportedError(msg, "the kernel lacks support for this; see `lsmod`")
    if code == errno.ERANGE or (code == errno.EINVAL and "MTU" in what):
        return HostInterfaceError(msg)
    return NetlinkFailure(msg, code)


def unsupported_kind(kind: str) -> UnsupportedError:
    module = KIND_MODULES.get(kind, kind)
    return UnsupportedError(
        f"this kernel has no {kind} support (module {module})",
        f"load it with `modprobe {module}` or pick another link kind",
    )


def current_netns_fd() -> int:
    """An fd for this thread's own namespace (close it after use)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def netns_identity(fd: int | None) -> tuple[int, int]:
    st = os.fstat(fd) if fd is not None else os.stat("/proc/thread-self/ns/net")
    return (st.st_dev, st.st_ino)


class NetlinkPool:
    """One ``Netns`` per namespace, shared and reference-counted.

    The host's handle is opened once and kept; a guest's is closed when the
    last concurrent user releases it, so attaching a thousand guests does
    not hold a thousand sockets.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[Netns, int]] = {}

    def acquire(self, fd: int | None, label: str) -> Netns:
        key = netns_identity(fd)
        entry = self._cache.get(key)
        if entry is None:
            # The handle outlives the caller's fd when other attaches to the
            # same guest share it: it keeps its own copy (a closed fd number
            # may be reused for another namespace meanwhile).
            own = os.dup(fd) if fd is not None else None
            try:
                entry = (Netns(label, own, key, own_fd=own is not None), 0)
            except BaseException:
                if own is not None:
                    os.close(own)
                raise
        self._cache[key] = (entry[0], entry[1] + 1)
        return entry[0]

    def release(self, handle: Netns) -> None:
        key = handle.key
        entry = self._cache.get(key)
        if entry is None:
            return
        if entry[1] <= 1:
            del self._cache[key]
            entry[0].close()
        else:
            self._cache[key] = (entry[0], entry[1] - 1)

    def close(self) -> None:
        for handle, _ in self._cache.values():
            handle.close()
        self._cache.clear()
