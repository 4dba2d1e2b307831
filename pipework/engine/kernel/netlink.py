"""The only module that imports pyroute2.

One ``Netns`` handle per network namespace, cached by the namespace's inode,
wraps a pyroute2 ``AsyncIPRoute`` and speaks in plain values (names, indexes,
``ipaddress`` objects), translating netlink errors into ``PipeworkError``.

Two costs are engineered away here (measurements in docs/ARCHITECTURE.md):

* ``import pyroute2`` runs a package ``__init__`` that imports every
  submodule. We import only ``pyroute2.iproute.linux`` by pre-seeding
  ``sys.modules["pyroute2"]`` with a *lazy* package module: the real
  ``__init__`` still runs, in full, the first time anyone touches an
  attribute of ``pyroute2`` itself, so other code that does
  ``from pyroute2 import IPRoute`` keeps working.
* ``AsyncIPRoute(netns=...)`` forks a helper to create the socket inside the
  namespace. We instead ``setns()`` the calling thread into the namespace,
  create the netlink socket (a socket stays bound to the namespace it was
  created in) and ``setns()`` back: microseconds, no fork.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import importlib.util
import ipaddress
import os
import socket
import sys
import types
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio
from anyio.lowlevel import checkpoint

from pipework.engine.errors import (
    ConflictError,
    HostInterfaceError,
    NotPermittedError,
    PipeworkError,
    UnsupportedError,
    UsageError,
)
from pipework.engine.kernel.rtnl import PEER_KEYS, SET_KEYS, LinkRequests, RtnlError
from pipework.engine.specs import IPAddress, IPInterface

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
IFA_F_NODAD = 0x02
RT_SCOPE_LINK = 253

#: Kernel modules that provide a link kind, for "this kernel has no X support".
KIND_MODULES = {"vlan": "8021q", "ipoib": "ib_ipoib", "veth": "veth"}
ARPHRD_INFINIBAND = 32
ARPHRD_LOOPBACK = 772
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4


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


class _LazyPackage(types.ModuleType):
    """A package module whose ``__init__`` runs on first attribute access."""

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("__"):
            # ``from pyroute2 import config`` asks the package for a submodule
            # first: import just that submodule.
            sub = importlib.util.find_spec(f"{self.__name__}.{name}")
            if sub is not None:
                return importlib.import_module(f"{self.__name__}.{name}")
        spec = self.__spec__
        assert spec is not None and spec.loader is not None
        self.__class__ = types.ModuleType  # type: ignore[assignment]  # run __init__ once
        spec.loader.exec_module(self)
        return getattr(self, name)


_ipr_module: Any = None


def _pyroute2() -> Any:
    """``pyroute2.iproute.linux``, loaded without the package's eager ``__init__``."""
    global _ipr_module
    if _ipr_module is None:
        if "pyroute2" not in sys.modules:
            spec = importlib.util.find_spec("pyroute2")
            if spec is None or spec.submodule_search_locations is None:
                raise UnsupportedError("pyroute2 is not installed", "pip install pyroute2")
            pkg = _LazyPackage("pyroute2")
            pkg.__spec__ = spec
            pkg.__path__ = list(spec.submodule_search_locations)
            pkg.__file__ = spec.origin
            pkg.__loader__ = spec.loader
            pkg.__package__ = "pyroute2"
            sys.modules["pyroute2"] = pkg
        import pyroute2.iproute.linux as linux

        _ipr_module = linux
    return _ipr_module


def _netlink_error_type() -> Any:
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError


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

    @classmethod
    def from_msg(cls, msg: Any) -> Link:
        kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
        return cls(
            index=msg["index"],
            ifname=msg.get("ifname"),
            kind=kind,
            mtu=msg.get("mtu") or 0,
            mac=msg.get("address"),
            alias=msg.get("ifalias"),
            master=msg.get("master"),
            up=bool(msg["flags"] & 1),
            operstate=msg.get("operstate") or "UNKNOWN",
            link_type=msg["ifi_type"],
            max_mtu=msg.get("max_mtu"),
            parent=msg.get("link"),
            vlan_id=(
                msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_VLAN_ID")
                if kind == "vlan"
                else None
            ),
        )


def _family(addr: IPAddress | IPInterface) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


class Netns:
    """Netlink in one network namespace."""

    def __init__(
        self,
        ipr: Any,
        label: str,
        fd: int | None,
        key: tuple[int, int],
        *,
        lean: LinkRequests | None = None,
    ) -> None:
        self._raw = ipr
        """The pyroute2 socket; None until a request the lean path lacks needs it."""
        self._lean = lean
        """Raw requests for the attach's hot path (``rtnl.py``), if given."""
        self._ready = False
        self._ready_lock: Any = None
        self.label = label
        self.fd = fd
        self.key = key
        self._own_fd = False

    async def _api(self) -> Any:
        """The pyroute2 socket, its asyncio endpoint set up exactly once.

        pyroute2 sets the endpoint up lazily on the first request; two
        concurrent first requests would each create one on the same socket
        and lose each other's answers.
        """
        if not self._ready:
            if self._ready_lock is None:
                self._ready_lock = anyio.Lock()
            async with self._ready_lock:
                if not self._ready:
                    if self._raw is None:
                        self._raw = _open_pyroute2(self.fd)
                    await self._raw.setup_endpoint()
                    self._ready = True
        return self._raw

    async def _call(self, what: str, coro: Awaitable[T]) -> T:
        try:
            return await coro
        except _netlink_error_type() as exc:
            raise _translate(exc, what, self.label) from None

    # -- links ---------------------------------------------------------------
    async def link(self, ifname: str) -> Link | None:
        if self._lean is not None:
            await checkpoint()  # each request stays a cancellation point, as with pyroute2
            try:
                return Link(**self._lean.get_link(ifname=ifname))  # type: ignore[arg-type]
            except RtnlError as exc:
                if exc.code in (errno.ENODEV, errno.EINVAL):
                    return None
                raise _translate(exc, f"looking up {ifname}", self.label) from None
        try:
            msgs = await (await self._api()).link("get", ifname=ifname)
        except _netlink_error_type() as exc:
            if exc.code in (errno.ENODEV, errno.EINVAL):
                return None
            raise _translate(exc, f"looking up {ifname}", self.label) from None
        return Link.from_msg(msgs[0])

    async def link_by_index(self, index: int) -> Link | None:
        if self._lean is not None:
            await checkpoint()
            try:
                return Link(**self._lean.get_link(index=index))  # type: ignore[arg-type]
            except RtnlError as exc:
                if exc.code == errno.ENODEV:
                    return None
                raise _translate(exc, f"looking up interface #{index}", self.label) from None
        try:
            msgs = await (await self._api()).link("get", index=index)
        except _netlink_error_type() as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _translate(exc, f"looking up interface #{index}", self.label) from None
        return Link.from_msg(msgs[0])

    async def links(self) -> list[Link]:
        if self._lean is not None:
            await checkpoint()
            try:
                return [Link(**fields) for fields in self._lean.links()]  # type: ignore[arg-type]
            except RtnlError as exc:
                raise _translate(exc, "listing interfaces", self.label) from None
        result = await self._call("listing interfaces", (await self._api()).link("dump"))
        return [Link.from_msg(m) async for m in result]

    async def create(self, ifname: str, kind: str, **attrs: Any) -> None:
        """``ip link add``; raises ``LinkExists`` on EEXIST and says which
        kernel module is missing on EOPNOTSUPP."""
        peer = attrs.get("peer")
        if (
            self._lean is not None
            and kind in ("veth", "bridge")
            and set(attrs) <= {"mtu", "peer"}
            and (peer is None or set(peer) <= PEER_KEYS)
        ):
            await checkpoint()
            try:
                self._lean.create_link(ifname, kind, attrs.get("mtu"), peer)
            except RtnlError as exc:
                if exc.code == errno.EOPNOTSUPP:
                    raise unsupported_kind(kind) from None
                raise _translate(exc, f"creating {kind} interface {ifname}", self.label) from None
            return
        try:
            await (await self._api()).link("add", ifname=ifname, kind=kind, **attrs)
        except _netlink_error_type() as exc:
            if exc.code == errno.EOPNOTSUPP:
                raise unsupported_kind(kind) from None
            raise _translate(exc, f"creating {kind} interface {ifname}", self.label) from None

    async def move(self, index: int, fd: int, ifname: str) -> None:
        """Move an interface into the namespace ``fd``, renaming it on the way
        (one request: no clash with a same-named interface over there)."""
        await self.set(index, net_ns_fd=fd, ifname=ifname)

    async def add_altname(self, index: int, altname: str) -> bool:
        """Add an alternative name; False if this interface already has it."""
        try:
            await (await self._api()).link("property_add", index=index, altname=altname)
        except _netlink_error_type() as exc:
            if exc.code == errno.EEXIST:
                return False
            raise _translate(exc, f"adding name {altname} to #{index}", self.label) from None
        return True

    async def del_altname(self, index: int, altname: str) -> None:
        try:
            await (await self._api()).link("property_del", index=index, altname=altname)
        except _netlink_error_type() as exc:
            if exc.code not in (errno.ENOENT, errno.ENODEV, errno.ENOMSG, errno.EINVAL):
                raise _translate(
                    exc, f"removing name {altname} from #{index}", self.label
                ) from None

    async def altnames(self, index: int) -> list[str]:
        msgs = await self._call(
            f"looking up interface #{index}", (await self._api()).link("get", index=index)
        )
        props = msgs[0].get("IFLA_PROP_LIST") if msgs else None
        return list(props.altnames()) if props is not None else []

    async def vlan_filtering(self, index: int) -> bool:
        """Is VLAN filtering on on the bridge ``index``?"""
        msgs = await self._call(
            f"looking up interface #{index}", (await self._api()).link("get", index=index)
        )
        return bool(msgs[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_VLAN_FILTERING"))

    async def enable_vlan_filtering(self, bridge: Link) -> bool:
        """Turn on VLAN filtering on a bridge; False if it was on already."""
        msgs = await self._call(
            f"looking up {bridge.ifname}", (await self._api()).link("get", index=bridge.index)
        )
        if msgs[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_VLAN_FILTERING"):
            return False
        try:
            await (await self._api()).link(
                "set", index=bridge.index, kind="bridge", br_vlan_filtering=1
            )
        except _netlink_error_type() as exc:
            if exc.code == errno.EOPNOTSUPP:
                raise UnsupportedError(
                    "this kernel has no bridge VLAN filtering support"
                    " (CONFIG_BRIDGE_VLAN_FILTERING)",
                    "attach without a VLAN, or use Open vSwitch (an ovs* bridge)",
                ) from None
            raise _translate(
                exc, f"turning on VLAN filtering on {bridge.ifname}", self.label
            ) from None
        return True

    async def disable_vlan_filtering(self, index: int) -> None:
        await self._call(
            f"turning off VLAN filtering on #{index}",
            (await self._api()).link("set", index=index, kind="bridge", br_vlan_filtering=0),
        )

    async def set_port_vlan(self, index: int, vid: int) -> None:
        """Make ``vid`` the bridge port's only VLAN: untagged, and its PVID."""
        api = await self._api()
        flags = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
        await self._call(
            f"putting port #{index} on VLAN {vid}",
            api.vlan_filter("add", index=index, vlan_info={"vid": vid, "flags": flags}),
        )
        if vid != 1:  # the bridge's default PVID, which every new port gets
            try:
                await api.vlan_filter("del", index=index, vlan_info={"vid": 1})
            except _netlink_error_type() as exc:
                if exc.code not in (errno.ENOENT, errno.EINVAL):
                    raise _translate(exc, f"removing VLAN 1 from #{index}", self.label) from None

    async def set(self, index: int, **attrs: Any) -> None:
        if self._lean is not None and set(attrs) <= SET_KEYS:
            await checkpoint()
            try:
                self._lean.set_link(index, attrs)
            except RtnlError as exc:
                raise _translate(exc, f"configuring interface #{index}", self.label) from None
            return
        await self._call(
            f"configuring interface #{index}", (await self._api()).link("set", index=index, **attrs)
        )

    async def delete(self, index: int) -> bool:
        """Delete a link; False when it was already gone.

        Inside ``teardown.deferred_deletes()`` the delete is only recorded,
        and carried out with the others at the end of the batch.
        """
        batch = DEFERRED_DELETES.get()
        if batch is not None:
            batch.add(self, index)
            return True
        if self._lean is not None:
            await checkpoint()
            try:
                self._lean.delete_link(index)
            except RtnlError as exc:
                if exc.code == errno.ENODEV:
                    return False
                raise _translate(exc, f"deleting interface #{index}", self.label) from None
            return True
        try:
            await (await self._api()).link("del", index=index)
        except _netlink_error_type() as exc:
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

    # -- addresses and routes ------------------------------------------------
    async def add_address(self, index: int, address: IPInterface) -> None:
        if address.version == 6:
            # Docker disables IPv6 in containers without an IPv6 network, and
            # new interfaces inherit that: enable it on this interface only,
            # since an IPv6 address was asked for explicitly.
            link = await self.link_by_index(index)
            if link is not None:
                write_sysctl(self.fd, f"net/ipv6/conf/{link.ifname}/disable_ipv6", "0")
        attrs: dict[str, Any] = {
            "index": index,
            "address": str(address.ip),
            "prefixlen": address.network.prefixlen,
        }
        if address.version == 4 and address.network.prefixlen < 31:
            attrs["broadcast"] = str(address.network.broadcast_address)
        else:
            # Static IPv6 addresses are the user's choice: skip duplicate address
            # detection so the address is usable as soon as we return.
            attrs["flags"] = IFA_F_NODAD
        if self._lean is not None:
            broadcast = attrs.get("broadcast")
            await checkpoint()
            try:
                self._lean.add_address(
                    index,
                    _family(address),
                    address.ip.packed,
                    address.network.prefixlen,
                    ipaddress.ip_address(broadcast).packed if broadcast else None,
                    attrs.get("flags", 0),
                )
            except RtnlError as exc:
                if exc.code != errno.EEXIST:
                    raise _translate(exc, f"adding address {address}", self.label) from None
            return
        try:
            await (await self._api()).addr("add", **attrs)
        except _netlink_error_type() as exc:
            if exc.code != errno.EEXIST:
                raise _translate(exc, f"adding address {address}", self.label) from None

    async def addresses(self, index: int) -> list[IPInterface]:
        if self._lean is not None:
            await checkpoint()
            try:
                found = self._lean.addresses(index)
            except RtnlError as exc:
                raise _translate(exc, "listing addresses", self.label) from None
            return [
                ipaddress.ip_interface((ipaddress.ip_address(raw), prefixlen))
                for _family_, raw, prefixlen in found
            ]
        result = await self._call(
            "listing addresses", (await self._api()).addr("dump", index=index)
        )
        out: list[IPInterface] = []
        async for msg in result:
            if msg.get("index") == index:
                out.append(ipaddress.ip_interface(f"{msg.get('address')}/{msg['prefixlen']}"))
        return out

    async def default_route(self, version: int) -> dict[str, Any] | None:
        """The main table's default route, as attributes ``restore_route`` takes."""
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        api = await self._api()
        result = await self._call("listing routes", api.route("dump", family=family))
        async for msg in result:
            if msg["dst_len"] == 0 and msg.get("table") == 254 and msg["type"] == 1:
                attrs = {"family": family, "dst": "0.0.0.0/0" if version == 4 else "::/0"}
                attrs["proto"] = msg["proto"]
                for key in ("gateway", "oif", "priority"):
                    if msg.get(key) is not None:
                        attrs[key] = msg.get(key)
                return attrs
        return None

    async def restore_route(self, attrs: dict[str, Any]) -> None:
        await self._call("restoring a route", (await self._api()).route("replace", **attrs))

    async def set_default_route(self, gateway: IPAddress, oif: int) -> None:
        await self._call(
            "setting the default route",
            (await self._api()).route(
                "replace",
                dst="0.0.0.0/0" if gateway.version == 4 else "::/0",
                gateway=str(gateway),
                family=_family(gateway),
                oif=oif,
            ),
        )

    async def delete_default_route(self, version: int) -> None:
        dst = "0.0.0.0/0" if version == 4 else "::/0"
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        try:
            await (await self._api()).route("del", dst=dst, family=family)
        except _netlink_error_type() as exc:
            if exc.code != errno.ESRCH:
                raise _translate(exc, "removing the default route", self.label) from None

    async def add_onlink_route(self, index: int, dest: IPAddress) -> None:
        prefix = 32 if dest.version == 4 else 128
        try:
            await (await self._api()).route(
                "add", dst=f"{dest}/{prefix}", oif=index, scope=RT_SCOPE_LINK, family=_family(dest)
            )
        except _netlink_error_type() as exc:
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
        attrs: dict[str, Any] = {
            "dst": str(dst),
            "oif": index,
            "family": socket.AF_INET if dst.version == 4 else socket.AF_INET6,
        }
        if via is not None:
            attrs["gateway"] = str(via)
        else:
            attrs["scope"] = RT_SCOPE_LINK
        if metric is not None:
            attrs["priority"] = metric
        where = "" if self.label == "host" else f" in {self.label}"
        try:
            await (await self._api()).route("add", **attrs)
        except _netlink_error_type() as exc:
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
        if self._raw is not None:
            self._raw.close()
        if self._lean is not None:
            self._lean.close()
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


def _open_pyroute2(fd: int | None) -> Any:
    """A pyroute2 socket in the namespace ``fd``, for what the lean path lacks."""
    sock = socket_in_netns(fd, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    # groups=0: no multicast subscriptions. Subscribing makes bind() and
    # close() wait for RCU grace periods (~30 ms measured) and floods the
    # socket with notifications we never read.
    return _pyroute2().AsyncIPRoute(use_socket=sock, groups=0)


def unsupported_kind(kind: str) -> UnsupportedError:
    module = KIND_MODULES.get(kind, kind)
    return UnsupportedError(
        f"this kernel has no {kind} support (module {module})",
        f"load it with `modprobe {module}` or pick another link kind",
    )


def pick_mtu(requested: int | None, parent: Link, ceiling: int | None = None) -> int:
    """The MTU for an interface on ``parent``: ``requested``, or the parent's.

    ``ceiling`` is the most the parent allows its children (a macvlan's
    parent MTU); by default its own maximum.
    """
    mtu = requested or parent.mtu
    limit = ceiling if ceiling is not None else parent.max_mtu
    if limit and mtu > limit:
        raise HostInterfaceError(
            f"MTU {mtu} is larger than {parent.ifname} allows (at most {limit})",
            f"choose --mtu {limit} or less, or raise {parent.ifname}'s MTU",
        )
    return mtu


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
            # The hot requests go through a raw socket (rtnl.py); pyroute2 is
            # loaded and its socket opened only when something else is asked.
            raw = socket_in_netns(fd, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            # The handle outlives the caller's fd when other attaches to the
            # same guest share it: it keeps its own copy (a closed fd number
            # may be reused for another namespace meanwhile).
            handle = Netns(
                None, label, os.dup(fd) if fd is not None else None, key, lean=LinkRequests(raw)
            )
            handle._own_fd = fd is not None
            entry = (handle, 0)
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
