"""A fake rtnetlink kernel under pyroute2's real request code, for unit tests.

``FakeSocket`` stands in for the socket below pyroute2's ``AsyncIPRoute``: its
``link`` and ``vlan_filter`` *are* pyroute2's own methods, so each call runs
pyroute2's real request filters and ``NetlinkRequest``, and what reaches
``send()`` are the bytes that would go to the kernel. ``FakeKernel`` decodes
those bytes, logs them as ``Request`` objects, applies them to an in-memory
table of links per namespace, and answers with real ``ifinfmsg`` messages
(encoded, then decoded again, as if read from a socket) or raises a real
``NetlinkError``.

Only what link backends use is modelled: links in two or more namespaces,
create/set/move/delete, bridge ports and their VLANs, alternative names.
"""

from __future__ import annotations

import copy
import errno
import itertools
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pyroute2.iproute.linux import AsyncIPRoute
from pyroute2.netlink import NLM_F_CREATE, NLM_F_DUMP
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELLINKPROP,
    RTM_GETLINK,
    RTM_NEWLINK,
    RTM_NEWLINKPROP,
    RTM_SETLINK,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from pipework.engine import Netns

AF_BRIDGE = 7
IFF_UP = 0x1
ARPHRD_ETHER = 1
#: Kernel attribute numbers (include/uapi/linux/if_link.h, if_bridge.h), kept
#: apart from pyroute2's tables so byte-level checks do not trust them.
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_AF_SPEC = 26
IFLA_NET_NS_FD = 28
IFLA_PROP_LIST = 52
IFLA_ALT_IFNAME = 53
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_BR_VLAN_FILTERING = 7
IFLA_BRIDGE_VLAN_INFO = 2
IFLA_VLAN_ID = 1
IFLA_MACVLAN_MODE = 1
IFLA_IPVLAN_MODE = 1
IFLA_IPOIB_PKEY = 1
IFLA_IPOIB_MODE = 2
VETH_INFO_PEER = 1
#: struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes)
_HEADERS = 32
_NAMES = {
    RTM_NEWLINK: "NEWLINK",
    RTM_DELLINK: "DELLINK",
    RTM_GETLINK: "GETLINK",
    RTM_SETLINK: "SETLINK",
    RTM_NEWLINKPROP: "NEWLINKPROP",
    RTM_DELLINKPROP: "DELLINKPROP",
}


def _attrs(data: bytes) -> dict[int, bytes]:
    """Netlink attributes (type without NLA_F_* flags -> payload); last one wins."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


@dataclass
class Request:
    """One message as it left pyroute2, decoded twice: by pyroute2 (``msg``) and
    from the raw bytes (``wire``/``number``), which trusts no NLA table."""

    ns: str
    data: bytes
    msg: Any
    error: int | None = None

    @property
    def type(self) -> int:
        return struct.unpack_from("=H", self.data, 4)[0]

    @property
    def flags(self) -> int:
        return struct.unpack_from("=H", self.data, 6)[0]

    @property
    def family(self) -> int:
        return self.data[16]

    @property
    def index(self) -> int:
        return struct.unpack_from("=i", self.data, 20)[0]

    @property
    def ifname(self) -> str | None:
        return self.msg.get("IFLA_IFNAME")

    @property
    def kind(self) -> str | None:
        return self.msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")

    def wire(self, *path: int) -> bytes | None:
        """The payload of the attribute at ``path`` (nested types), from the bytes.

        Nests that start with a struct (VETH_INFO_PEER) are not walked: use ``msg``."""
        data: bytes | None = self.data[_HEADERS:]
        for kind in path:
            data = _attrs(data).get(kind) if data is not None else None
        return data

    def number(self, *path: int) -> int | None:
        """The attribute at ``path`` as an unsigned integer (u8/u16/u32, host order,
        which is little-endian on the machines these tests run on)."""
        data = self.wire(*path)
        return None if data is None else int.from_bytes(data, "little")

    def string(self, *path: int) -> str | None:
        data = self.wire(*path)
        return None if data is None else data.rstrip(b"\0").decode()

    def __repr__(self) -> str:
        name = _NAMES.get(self.type, str(self.type))
        what = self.ifname or f"#{self.index}"
        return f"<{self.ns} {name} {what} kind={self.kind} flags={self.flags:#x}>"


@dataclass
class FakeLink:
    index: int
    ifname: str
    kind: str | None = None
    mtu: int = 1500
    max_mtu: int | None = 65535
    mac: str | None = None
    alias: str | None = None
    master: int | None = None
    up: bool = False
    link_type: int = ARPHRD_ETHER
    parent: int | None = None
    vlan_id: int | None = None
    vlan_filtering: int | None = None
    """Bridges only: IFLA_BR_VLAN_FILTERING."""
    port_vlans: dict[int, int] = field(default_factory=dict)
    """Bridge ports only: VID -> BRIDGE_VLAN_INFO_* flags."""
    altnames: list[str] = field(default_factory=list)
    peer: int | None = None
    """veth only: the other end's index."""
    info: dict[str, Any] = field(default_factory=dict)
    """Kind-specific attributes it was created with (macvlan mode...)."""

    def message(self) -> Any:
        """This link as the kernel reports it: a decoded ``ifinfmsg``."""
        attrs: list[list[Any]] = [["IFLA_IFNAME", self.ifname], ["IFLA_MTU", self.mtu]]
        if self.max_mtu is not None:
            attrs.append(["IFLA_MAX_MTU", self.max_mtu])
        if self.mac is not None:
            attrs.append(["IFLA_ADDRESS", self.mac])
        if self.alias is not None:
            attrs.append(["IFLA_IFALIAS", self.alias])
        if self.master is not None:
            attrs.append(["IFLA_MASTER", self.master])
        if self.parent is not None:
            attrs.append(["IFLA_LINK", self.parent])
        if self.kind is not None:
            info: list[list[Any]] = [["IFLA_INFO_KIND", self.kind]]
            data: list[list[Any]] = []
            if self.kind == "vlan":
                data.append(["IFLA_VLAN_ID", self.vlan_id])
            if self.kind == "bridge":
                data.append(["IFLA_BR_VLAN_FILTERING", self.vlan_filtering or 0])
            if data:
                info.append(["IFLA_INFO_DATA", {"attrs": data}])
            attrs.append(["IFLA_LINKINFO", {"attrs": info}])
        if self.altnames:
            names = [["IFLA_ALT_IFNAME", name] for name in self.altnames]
            attrs.append(["IFLA_PROP_LIST", {"attrs": names}])
        msg = ifinfmsg()
        msg["header"]["type"] = RTM_NEWLINK
        msg["family"] = 0
        msg["ifi_type"] = self.link_type
        msg["index"] = self.index
        msg["flags"] = IFF_UP if self.up else 0
        msg["change"] = 0
        msg["attrs"] = attrs
        msg.encode()
        answer = ifinfmsg(msg.data)
        answer.decode()
        return answer


@dataclass
class _Fault:
    code: int
    when: Callable[[Request], bool]
    times: int | None


class FakeKernel:
    """Links by namespace, changed only by the requests it decodes."""

    def __init__(self) -> None:
        self.namespaces: dict[str, dict[int, FakeLink]] = {}
        self.fds: dict[int, str] = {}
        self.log: list[Request] = []
        self._faults: list[_Fault] = []
        self._index = itertools.count(1)

    # -- set-up and inspection, for tests ----------------------------------------
    def namespace(self, name: str, fd: int) -> None:
        self.namespaces[name] = {}
        self.fds[fd] = name

    def add(self, ns: str, ifname: str, **attrs: Any) -> FakeLink:
        """Put a link in place directly (no request is logged)."""
        link = FakeLink(index=next(self._index), ifname=ifname, **attrs)
        if link.mac is None:
            link.mac = f"02:00:00:00:00:{link.index:02x}"
        if link.kind == "bridge" and link.vlan_filtering is None:
            link.vlan_filtering = 0
        self.namespaces[ns][link.index] = link
        return link

    def find(self, ns: str, ifname: str) -> FakeLink | None:
        return next((x for x in self.namespaces[ns].values() if x.ifname == ifname), None)

    def names(self, ns: str) -> list[str]:
        return sorted(link.ifname for link in self.namespaces[ns].values())

    def snapshot(self) -> dict[str, dict[int, FakeLink]]:
        return copy.deepcopy(self.namespaces)

    def fail(
        self, code: int, when: Callable[[Request], bool] = lambda r: True, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` requests matching ``when`` with ``code``."""
        self._faults.append(_Fault(code, when, times))

    def changes(self, ns: str | None = None) -> list[Request]:
        """Every request but GETLINK (lookups), in order."""
        return [r for r in self.log if r.type != RTM_GETLINK and ns in (None, r.ns)]

    # -- the kernel side -----------------------------------------------------------
    def handle(self, ns: str, data: bytes) -> list[Any]:
        msg = ifinfmsg(data)
        msg.decode()
        request = Request(ns=ns, data=bytes(data), msg=msg)
        self.log.append(request)
        for fault in self._faults:
            if fault.times != 0 and fault.when(request):
                if fault.times is not None:
                    fault.times -= 1
                request.error = fault.code
                raise NetlinkError(fault.code)
        try:
            return self._apply(request)
        except NetlinkError as exc:
            request.error = exc.code
            raise

    def _apply(self, r: Request) -> list[Any]:
        table = self.namespaces[r.ns]
        if r.type == RTM_GETLINK:
            if r.flags & NLM_F_DUMP == NLM_F_DUMP:
                return [table[i].message() for i in sorted(table)]
            return [self._lookup(table, r).message()]
        if r.family == AF_BRIDGE and r.type in (RTM_SETLINK, RTM_DELLINK):
            self._port_vlan(self._by_index(table, r.index), r)
            return []
        if r.type == RTM_NEWLINK and r.flags & NLM_F_CREATE:
            self._create(r)
        elif r.type == RTM_NEWLINK:
            self._set(r.ns, self._by_index(table, r.index), r)
        elif r.type == RTM_DELLINK:
            self._delete(self._by_index(table, r.index))
        elif r.type == RTM_NEWLINKPROP:
            link = self._by_index(table, r.index)
            name = r.msg.get_nested("IFLA_PROP_LIST", "IFLA_ALT_IFNAME")
            if any(name == x.ifname or name in x.altnames for x in table.values()):
                raise NetlinkError(errno.EEXIST)
            link.altnames.append(name)
        elif r.type == RTM_DELLINKPROP:
            link = self._by_index(table, r.index)
            name = r.msg.get_nested("IFLA_PROP_LIST", "IFLA_ALT_IFNAME")
            if name not in link.altnames:
                raise NetlinkError(errno.ENOENT)
            link.altnames.remove(name)
        else:
            raise NetlinkError(errno.EOPNOTSUPP)
        return []

    def _by_index(self, table: dict[int, FakeLink], index: int) -> FakeLink:
        if index not in table:
            raise NetlinkError(errno.ENODEV)
        return table[index]

    def _lookup(self, table: dict[int, FakeLink], r: Request) -> FakeLink:
        if r.index:
            return self._by_index(table, r.index)
        name = r.ifname
        for link in table.values():
            if name == link.ifname or name in link.altnames:
                return link
        raise NetlinkError(errno.ENODEV)

    def _target(self, ns: str, attrs: Any) -> str:
        fd = attrs.get("IFLA_NET_NS_FD")
        if fd is None:
            return ns
        if fd not in self.fds:
            raise NetlinkError(errno.EBADF)
        return self.fds[fd]

    def _new(self, ns: str, ifname: str, kind: str | None, mtu: int | None) -> FakeLink:
        if self.find(ns, ifname) is not None:
            raise NetlinkError(errno.EEXIST)
        link = self.add(ns, ifname, kind=kind)
        if mtu:
            link.mtu = mtu
        return link

    def _create(self, r: Request) -> None:
        msg = r.msg
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        info = dict(data["attrs"]) if data is not None else {}
        parent = None
        if msg.get("IFLA_LINK") is not None:
            parent = self._by_index(self.namespaces[r.ns], msg.get("IFLA_LINK"))
            if msg.get("IFLA_MTU") and msg.get("IFLA_MTU") > parent.mtu:
                raise NetlinkError(errno.EINVAL)  # a child's MTU is capped by its parent's
        ns = self._target(r.ns, msg)
        peer_msg = info.pop("VETH_INFO_PEER", None)
        peer_ns = self._target(r.ns, peer_msg) if peer_msg is not None else None
        if peer_msg is not None and self.find(peer_ns, peer_msg.get("IFLA_IFNAME")):
            raise NetlinkError(errno.EEXIST)
        link = self._new(ns, msg.get("IFLA_IFNAME"), r.kind, msg.get("IFLA_MTU"))
        link.info = info
        if parent is not None:
            link.parent = parent.index
        if r.kind == "vlan":
            link.vlan_id = info.get("IFLA_VLAN_ID")
        if peer_msg is not None:
            peer = self._new(peer_ns, peer_msg.get("IFLA_IFNAME"), "veth", peer_msg.get("IFLA_MTU"))
            link.peer, peer.peer = peer.index, link.index

    def _set(self, ns: str, link: FakeLink, r: Request) -> None:
        msg = r.msg
        table = self.namespaces[ns]
        name = msg.get("IFLA_IFNAME")
        target = self._target(ns, msg)
        if target != ns:  # a move, renamed on the way when IFLA_IFNAME is given
            if self.find(target, name or link.ifname) is not None:
                raise NetlinkError(errno.EEXIST)
            del table[link.index]
            self.namespaces[target][link.index] = link
            link.master = None
        elif name is not None and name != link.ifname and self.find(ns, name) is not None:
            raise NetlinkError(errno.EEXIST)
        if name is not None:
            link.ifname = name
        if msg.get("IFLA_MTU") is not None:
            if link.max_mtu is not None and msg.get("IFLA_MTU") > link.max_mtu:
                raise NetlinkError(errno.EINVAL)
            link.mtu = msg.get("IFLA_MTU")
        if msg.get("IFLA_ADDRESS") is not None:
            link.mac = msg.get("IFLA_ADDRESS")
        if msg.get("IFLA_IFALIAS") is not None:
            link.alias = msg.get("IFLA_IFALIAS") or None
        if msg.get("IFLA_MASTER") is not None:
            bridge = self._by_index(table, msg.get("IFLA_MASTER"))
            if bridge.kind != "bridge":
                raise NetlinkError(errno.EOPNOTSUPP)
            link.master = bridge.index
            link.port_vlans = {1: 0x2 | 0x4}  # every new port: PVID 1, untagged
        filtering = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_VLAN_FILTERING")
        if filtering is not None:
            link.vlan_filtering = filtering
        if msg["change"] & IFF_UP:
            link.up = bool(msg["flags"] & IFF_UP)

    def _port_vlan(self, link: FakeLink, r: Request) -> None:
        if link.master is None:
            raise NetlinkError(errno.EINVAL)
        info = r.msg.get_nested("IFLA_AF_SPEC", "IFLA_BRIDGE_VLAN_INFO")
        if r.type == RTM_SETLINK:
            link.port_vlans[info["vid"]] = info["flags"]
        elif link.port_vlans.pop(info["vid"], None) is None:
            raise NetlinkError(errno.ENOENT)

    def _delete(self, link: FakeLink) -> None:
        """Delete a link and what goes with it: its veth peer, its children
        (VLANs, macvlans...); a bridge's ports are let go."""
        for table in self.namespaces.values():
            if table.pop(link.index, None) is None:
                continue
            for other in list(table.values()):
                if other.master == link.index:
                    other.master = None
                    other.port_vlans = {}
        for table in list(self.namespaces.values()):
            for other in list(table.values()):
                if link.index in (other.parent, other.peer) and other.index in table:
                    self._delete(other)


class _Pool:
    """Sequence numbers, as pyroute2's AddrPool hands them out."""

    def __init__(self) -> None:
        self._next = itertools.count(1)

    def alloc(self) -> int:
        return next(self._next)

    def free(self, seq: int, ban: int = 0) -> None:
        pass


class _Queue:
    def ensure_tag(self, tag: int) -> None:
        pass

    def free_tag(self, tag: int) -> None:
        pass


class _Marshal:
    def __init__(self) -> None:
        self.seq_map: dict[int, Any] = {}


class FakeSocket:
    """What ``AsyncIPRoute`` needs from its socket, wired to a ``FakeKernel``.

    ``link`` and ``vlan_filter`` are pyroute2's real methods: only the
    transport below ``NetlinkRequest`` is fake.
    """

    link = AsyncIPRoute.link
    vlan_filter = AsyncIPRoute.vlan_filter

    def __init__(self, kernel: FakeKernel, ns: str) -> None:
        self.kernel = kernel
        self.ns = ns
        self.addr_pool = _Pool()
        self.status = {"nlm_echo": False}
        self.epid = 4242
        self.marshal = _Marshal()
        self.msg_queue = _Queue()
        self.batch = None
        self.request_proxy = None
        self.callbacks: list[Any] = []
        self.closed = False
        self._answers: dict[int, list[Any] | NetlinkError] = {}

    async def setup_endpoint(self) -> None:
        pass

    def send(self, data: bytes) -> int:
        seq = struct.unpack_from("=I", data, 8)[0]
        try:
            self._answers[seq] = self.kernel.handle(self.ns, data)
        except NetlinkError as exc:
            self._answers[seq] = exc
        return len(data)

    async def get(self, msg_seq: int = 0, **_: Any) -> AsyncIterator[Any]:
        answer = self._answers.pop(msg_seq)
        if isinstance(answer, NetlinkError):
            raise answer
        for msg in answer:
            yield msg

    def close(self) -> None:
        self.closed = True


class FakeNet:
    """A kernel with a "host" and a "guest" namespace, a ``Netns`` on each.

    The namespaces' fds are open file descriptors (of /dev/null): real
    numbers to pass as IFLA_NET_NS_FD, which the kernel maps back to names.
    """

    def __init__(self) -> None:
        self.kernel = FakeKernel()
        self.host_fd = os.open(os.devnull, os.O_RDONLY)
        self.guest_fd = os.open(os.devnull, os.O_RDONLY)
        self.kernel.namespace("host", self.host_fd)
        self.kernel.namespace("guest", self.guest_fd)
        self.host = Netns(FakeSocket(self.kernel, "host"), "host", self.host_fd, (0, 1))
        self.guest_ns = Netns(FakeSocket(self.kernel, "guest"), "blue", self.guest_fd, (0, 2))

    def close(self) -> None:
        os.close(self.host_fd)
        os.close(self.guest_fd)
