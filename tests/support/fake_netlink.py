"""A fake rtnetlink kernel behind production's own sockets, for unit tests.

``FakeNet`` makes real ``Netns`` handles whose socket factory (``connect``)
hands out ``FakeSocket``s. So every request runs through the production
code (``Netns`` and ``rtnl``, the bridge backend's VLAN requests, the
batched teardown) and what reaches ``FakeSocket.send()`` are the bytes that
would go to the kernel. ``FakeKernel`` decodes those bytes twice: with
pyroute2's message classes (``Request.msg``, a decoder independent of
``rtnl``) and by the kernel's attribute numbers (``Request.wire``); logs
them as ``Request`` objects; applies them to in-memory tables (links with
their addresses, and routes, per namespace); and answers as the kernel
does: messages encoded by pyroute2 (which ``rtnl`` then decodes), an
acknowledgement, NLMSG_DONE after a dump, or an error.

Only what pipework sends is modelled: links in two or more namespaces,
create/set/move/delete, interface groups and the group delete, bridge ports
and their VLANs, alternative names, addresses, routes.
"""

from __future__ import annotations

import copy
import errno
import ipaddress
import itertools
import os
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from pipework.engine import (
    AttachSpec,
    Guest,
    GuestInfo,
    Journal,
    Link,
    LinkContext,
    Lock,
    Marker,
    Netns,
)
from pipework.engine.contract import no_lock

#: Kernel numbers (include/uapi/linux/rtnetlink.h, netlink.h, if_link.h,
#: if_bridge.h, if_addr.h), kept apart from rtnl.py's and pyroute2's tables so
#: the byte-level checks trust neither.
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_NEWLINKPROP = 108
RTM_DELLINKPROP = 109
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_DUMP = 0x300
AF_BRIDGE = 7
IFF_UP = 0x1
ARPHRD_ETHER = 1
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_AF_SPEC = 26
IFLA_GROUP = 27
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
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
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTPROT_STATIC = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

LOOKUPS = frozenset({RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE})
#: The fixed part after the 16-byte nlmsghdr: ifinfomsg, ifaddrmsg, rtmsg.
_BODY = {
    **dict.fromkeys((16, 17, 18, 19, 108, 109), (16, ifinfmsg)),
    **dict.fromkeys((20, 21, 22), (8, ifaddrmsg)),
    **dict.fromkeys((24, 25, 26), (12, rtmsg)),
}
_NAMES = {
    RTM_NEWLINK: "NEWLINK",
    RTM_DELLINK: "DELLINK",
    RTM_GETLINK: "GETLINK",
    RTM_SETLINK: "SETLINK",
    RTM_NEWADDR: "NEWADDR",
    RTM_GETADDR: "GETADDR",
    RTM_NEWROUTE: "NEWROUTE",
    RTM_DELROUTE: "DELROUTE",
    RTM_GETROUTE: "GETROUTE",
    RTM_NEWLINKPROP: "NEWLINKPROP",
    RTM_DELLINKPROP: "DELLINKPROP",
}


class KernelError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code


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


def _nested_flag(data: bytes, kind: int) -> bool:
    """Is the top-level attribute ``kind`` flagged NLA_F_NESTED?"""
    offset = 0
    while offset + 4 <= len(data):
        length, number = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        if number & 0x3FFF == kind:
            return bool(number & 0x8000)
        offset += (length + 3) & ~3
    return False


def _message(msg: Any, kind: int, seq: int, flags: int = 0) -> bytes:
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    return bytes(msg.data)


def _header(kind: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


@dataclass
class Request:
    """One message as it left production, decoded twice: by pyroute2 (``msg``)
    and from the raw bytes (``wire``/``number``/``string``), by number."""

    ns: str
    data: bytes
    error: int | None = None
    msg: Any = None

    def __post_init__(self) -> None:
        size, cls = _BODY[self.type]
        self.msg = cls(self.data)
        self.msg.decode()
        self._fixed = 16 + size

    @property
    def type(self) -> int:
        return struct.unpack_from("=H", self.data, 4)[0]

    @property
    def flags(self) -> int:
        return struct.unpack_from("=H", self.data, 6)[0]

    @property
    def seq(self) -> int:
        return struct.unpack_from("=I", self.data, 8)[0]

    @property
    def family(self) -> int:
        return self.data[16]

    @property
    def index(self) -> int | None:
        """ifi_index or ifa_index (both at byte 20); None for routes."""
        if self.type in (RTM_NEWADDR, RTM_GETADDR):
            return struct.unpack_from("=I", self.data, 20)[0]
        if self._fixed == 32:
            return struct.unpack_from("=i", self.data, 20)[0]
        return None

    @property
    def ifi(self) -> tuple[int, int]:
        """(ifi_flags, ifi_change) of a link message."""
        return struct.unpack_from("=II", self.data, 24)

    @property
    def body(self) -> bytes:
        """The fixed part (ifinfomsg, ifaddrmsg, rtmsg), raw."""
        return self.data[16 : self._fixed]

    @property
    def ifname(self) -> str | None:
        return self.string(IFLA_IFNAME) if self._fixed == 32 else None

    @property
    def kind(self) -> str | None:
        if self._fixed != 32:
            return None
        return self.string(IFLA_LINKINFO, IFLA_INFO_KIND)

    @property
    def attrs(self) -> bytes:
        return self.data[self._fixed :]

    def wire(self, *path: int) -> bytes | None:
        """The payload of the attribute at ``path`` (nested types), from the bytes.

        Nests that start with a struct (VETH_INFO_PEER) are not walked: use ``peer``."""
        data: bytes | None = self.attrs
        for kind in path:
            data = _attrs(data).get(kind) if data is not None else None
        return data

    def nested(self, *path: int) -> bool:
        """Is the attribute at ``path`` flagged NLA_F_NESTED?"""
        parent = self.wire(*path[:-1]) if len(path) > 1 else self.attrs
        return parent is not None and _nested_flag(parent, path[-1])

    def number(self, *path: int) -> int | None:
        """The attribute at ``path`` as an unsigned integer (u8/u16/u32, host order,
        which is little-endian on the machines these tests run on)."""
        data = self.wire(*path)
        return None if data is None else int.from_bytes(data, "little")

    def string(self, *path: int) -> str | None:
        data = self.wire(*path)
        return None if data is None else data.rstrip(b"\0").decode()

    def peer(self) -> Request | None:
        """A veth's VETH_INFO_PEER, read as a link message of its own."""
        if self.kind != "veth":
            return None
        raw = self.wire(IFLA_LINKINFO, IFLA_INFO_DATA, VETH_INFO_PEER)
        if raw is None:
            return None
        return Request(ns=self.ns, data=_header(RTM_NEWLINK, 0, raw))

    def __repr__(self) -> str:
        name = _NAMES.get(self.type, str(self.type))
        what = self.ifname or (f"#{self.index}" if self.index is not None else "")
        return f"<{self.ns} {name} {what} kind={self.kind} flags={self.flags:#x}>"


@dataclass
class FakeAddress:
    family: int
    address: str
    prefixlen: int
    broadcast: str | None = None
    flags: int = 0


@dataclass
class FakeRoute:
    family: int
    dst: str | None
    dst_len: int
    oif: int
    gateway: str | None = None
    priority: int = 0
    table: int = RT_TABLE_MAIN
    proto: int = RTPROT_STATIC
    scope: int = RT_SCOPE_UNIVERSE
    type: int = RTN_UNICAST

    def key(self) -> tuple[Any, ...]:
        return (self.family, self.table, self.dst_len, self.dst, self.priority)


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
    group: int = 0
    addresses: list[FakeAddress] = field(default_factory=list)

    def encode(self, seq: int, flags: int = 0) -> bytes:
        """This link as the kernel reports it: an RTM_NEWLINK, encoded by pyroute2."""
        attrs: list[list[Any]] = [["IFLA_IFNAME", self.ifname], ["IFLA_MTU", self.mtu]]
        attrs.append(["IFLA_GROUP", self.group])
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
        msg["family"] = 0
        msg["ifi_type"] = self.link_type
        msg["index"] = self.index
        msg["flags"] = IFF_UP if self.up else 0
        msg["change"] = 0
        msg["attrs"] = attrs
        return _message(msg, RTM_NEWLINK, seq, flags)


@dataclass
class _Fault:
    code: int
    when: Callable[[Request], bool]
    times: int | None


class FakeKernel:
    """Links and routes by namespace, changed only by the requests it decodes."""

    def __init__(self) -> None:
        self.namespaces: dict[str, dict[int, FakeLink]] = {}
        self.routes: dict[str, list[FakeRoute]] = {}
        self.fds: dict[int, str] = {}
        self.log: list[Request] = []
        self.sockets: list[FakeSocket] = []
        self.datagrams: list[tuple[str, int]] = []
        """(namespace, messages in it) of each datagram sent."""
        self._faults: list[_Fault] = []
        self._index = itertools.count(1)

    # -- set-up and inspection, for tests ----------------------------------------
    def namespace(self, name: str, fd: int) -> None:
        self.namespaces[name] = {}
        self.routes[name] = []
        self.fds[fd] = name

    def connect(self, fd: int | None) -> FakeSocket:
        """What ``Netns`` calls for a socket in the namespace ``fd``."""
        if fd not in self.fds:
            raise OSError(errno.EBADF, "not a namespace of this fake kernel")
        sock = FakeSocket(self, self.fds[fd])
        self.sockets.append(sock)
        return sock

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
        """Every request but lookups (GETLINK, GETADDR, GETROUTE), in order."""
        return [r for r in self.log if r.type not in LOOKUPS and ns in (None, r.ns)]

    # -- the kernel side -----------------------------------------------------------
    def handle(self, ns: str, data: bytes) -> bytes:
        """Every message of one datagram; the answers, in one datagram."""
        out = b""
        offset = count = 0
        while offset + 16 <= len(data):
            length = struct.unpack_from("=I", data, offset)[0]
            out += self._one(ns, data[offset : offset + length])
            offset += (length + 3) & ~3
            count += 1
        self.datagrams.append((ns, count))
        return out

    def _one(self, ns: str, data: bytes) -> bytes:
        request = Request(ns=ns, data=bytes(data))
        self.log.append(request)
        assert request.flags & NLM_F_REQUEST, request
        try:
            for fault in self._faults:
                if fault.times != 0 and fault.when(request):
                    if fault.times is not None:
                        fault.times -= 1
                    raise KernelError(fault.code)
            answers = self._apply(request)
        except KernelError as exc:
            request.error = exc.code
            return self._ack(request, exc.code)
        if request.flags & NLM_F_DUMP == NLM_F_DUMP:
            return b"".join(answers) + _header(NLMSG_DONE, request.seq, b"\0\0\0\0", 0x2)
        if request.flags & NLM_F_ACK:
            assert not answers, request
            return self._ack(request, 0)
        assert answers, request
        return b"".join(answers)

    def _ack(self, request: Request, code: int) -> bytes:
        return _header(NLMSG_ERROR, request.seq, struct.pack("=i", -code) + request.data[:16])

    def _apply(self, r: Request) -> list[bytes]:
        ns = r.ns
        table = self.namespaces[ns]
        dump = r.flags & NLM_F_DUMP == NLM_F_DUMP
        if r.type == RTM_GETLINK:
            if dump:
                return [table[i].encode(r.seq, 0x2) for i in sorted(table)]
            return [self._lookup(table, r).encode(r.seq)]
        if r.type == RTM_GETADDR:
            assert dump, r
            return self._addresses(ns, r)
        if r.type == RTM_GETROUTE:
            assert dump, r
            return [self._route_message(x, r.seq) for x in self.routes[ns] if x.family == r.family]
        if r.family == AF_BRIDGE and r.type in (RTM_SETLINK, RTM_DELLINK):
            self._port_vlan(self._by_index(table, r.index or 0), r)
        elif r.type == RTM_NEWLINK and r.flags & NLM_F_CREATE:
            self._create(r)
        elif r.type == RTM_NEWLINK:
            self._set(ns, self._by_index(table, r.index or 0), r)
        elif r.type == RTM_DELLINK and r.index == 0 and r.number(IFLA_GROUP) is not None:
            members = [x for x in table.values() if x.group == r.number(IFLA_GROUP)]
            if not members:
                raise KernelError(errno.ENODEV)
            for link in members:
                if link.index in table:
                    self._delete(link)
        elif r.type == RTM_DELLINK:
            self._delete(self._by_index(table, r.index or 0))
        elif r.type in (RTM_NEWLINKPROP, RTM_DELLINKPROP):
            self._altname(table, r)
        elif r.type == RTM_NEWADDR:
            self._add_address(table, r)
        elif r.type == RTM_NEWROUTE:
            self._add_route(ns, r)
        elif r.type == RTM_DELROUTE:
            self._delete_route(ns, r)
        else:
            raise KernelError(errno.EOPNOTSUPP)
        return []

    # -- links ----------------------------------------------------------------------
    def _by_index(self, table: dict[int, FakeLink], index: int) -> FakeLink:
        if index not in table:
            raise KernelError(errno.ENODEV)
        return table[index]

    def _lookup(self, table: dict[int, FakeLink], r: Request) -> FakeLink:
        if r.index:
            return self._by_index(table, r.index)
        name = r.ifname
        for link in table.values():
            if name == link.ifname or name in link.altnames:
                return link
        raise KernelError(errno.ENODEV)

    def _target(self, ns: str, fd: int | None) -> str:
        if fd is None:
            return ns
        if fd not in self.fds:
            raise KernelError(errno.EBADF)
        return self.fds[fd]

    def _new(self, ns: str, ifname: str | None, kind: str | None, mtu: int | None) -> FakeLink:
        if ifname is None:
            raise KernelError(errno.EINVAL)
        if self.find(ns, ifname) is not None:
            raise KernelError(errno.EEXIST)
        link = self.add(ns, ifname, kind=kind)
        if mtu:
            link.mtu = mtu
        return link

    def _create(self, r: Request) -> None:
        msg = r.msg
        assert r.flags & NLM_F_EXCL and r.flags & NLM_F_ACK, r
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        info = dict(data["attrs"]) if data is not None else {}
        info.pop("VETH_INFO_PEER", None)
        parent = None
        if r.number(IFLA_LINK) is not None:
            parent = self._by_index(self.namespaces[r.ns], r.number(IFLA_LINK) or 0)
            if (r.number(IFLA_MTU) or 0) > parent.mtu:
                raise KernelError(errno.EINVAL)  # a child's MTU is capped by its parent's
        ns = self._target(r.ns, r.number(IFLA_NET_NS_FD))
        peer = r.peer()
        peer_ns = self._target(r.ns, peer.number(IFLA_NET_NS_FD)) if peer is not None else None
        if peer is not None and self.find(peer_ns, peer.ifname):  # type: ignore[arg-type]
            raise KernelError(errno.EEXIST)
        link = self._new(ns, r.ifname, r.kind, r.number(IFLA_MTU))
        link.info = info
        if parent is not None:
            link.parent = parent.index
        if r.kind == "vlan":
            link.vlan_id = r.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_VLAN_ID)
        if peer is not None:
            other = self._new(peer_ns, peer.ifname, "veth", peer.number(IFLA_MTU))  # type: ignore[arg-type]
            link.peer, other.peer = other.index, link.index

    def _set(self, ns: str, link: FakeLink, r: Request) -> None:
        table = self.namespaces[ns]
        name = r.string(IFLA_IFNAME)
        target = self._target(ns, r.number(IFLA_NET_NS_FD))
        if target != ns:  # a move, renamed on the way when IFLA_IFNAME is given
            if self.find(target, name or link.ifname) is not None:
                raise KernelError(errno.EEXIST)
            del table[link.index]
            self.namespaces[target][link.index] = link
            link.master = None
            self.routes[ns] = [x for x in self.routes[ns] if x.oif != link.index]
        elif name is not None and name != link.ifname and self.find(ns, name) is not None:
            raise KernelError(errno.EEXIST)
        if name is not None:
            link.ifname = name
        mtu = r.number(IFLA_MTU)
        if mtu is not None:
            if link.max_mtu is not None and mtu > link.max_mtu:
                raise KernelError(errno.EINVAL)
            link.mtu = mtu
        mac = r.wire(IFLA_ADDRESS)
        if mac is not None:
            link.mac = ":".join(f"{b:02x}" for b in mac)
        alias = r.string(IFLA_IFALIAS)
        if alias is not None:
            link.alias = alias or None
        master = r.number(IFLA_MASTER)
        if master is not None:
            bridge = self._by_index(table, master)
            if bridge.kind != "bridge":
                raise KernelError(errno.EOPNOTSUPP)
            link.master = bridge.index
            link.port_vlans = {1: 0x2 | 0x4}  # every new port: PVID 1, untagged
        if r.number(IFLA_GROUP) is not None:
            link.group = r.number(IFLA_GROUP) or 0
        filtering = r.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_BR_VLAN_FILTERING)
        if filtering is not None:
            if r.kind != link.kind:
                raise KernelError(errno.EOPNOTSUPP)
            link.vlan_filtering = filtering
        flags, change = r.ifi
        if change & IFF_UP:
            link.up = bool(flags & IFF_UP)

    def _port_vlan(self, link: FakeLink, r: Request) -> None:
        if link.master is None:
            raise KernelError(errno.EINVAL)
        flags, vid = struct.unpack("=HH", r.wire(IFLA_AF_SPEC, IFLA_BRIDGE_VLAN_INFO) or b"")
        if r.type == RTM_SETLINK:
            link.port_vlans[vid] = flags
        elif link.port_vlans.pop(vid, None) is None:
            raise KernelError(errno.ENOENT)

    def _altname(self, table: dict[int, FakeLink], r: Request) -> None:
        link = self._by_index(table, r.index or 0)
        name = r.string(IFLA_PROP_LIST, IFLA_ALT_IFNAME)
        if r.type == RTM_NEWLINKPROP:
            if any(name == x.ifname or name in x.altnames for x in table.values()):
                raise KernelError(errno.EEXIST)
            link.altnames.append(name)  # type: ignore[arg-type]
        elif name not in link.altnames:
            raise KernelError(errno.ENOENT)
        else:
            link.altnames.remove(name)

    def _delete(self, link: FakeLink) -> None:
        """Delete a link and what goes with it: its veth peer, its children
        (VLANs, macvlans...), its routes; a bridge's ports are let go."""
        for ns, table in self.namespaces.items():
            if table.pop(link.index, None) is None:
                continue
            self.routes[ns] = [x for x in self.routes[ns] if x.oif != link.index]
            for other in list(table.values()):
                if other.master == link.index:
                    other.master = None
                    other.port_vlans = {}
        for table in list(self.namespaces.values()):
            for other in list(table.values()):
                if link.index in (other.parent, other.peer) and other.index in table:
                    self._delete(other)

    # -- addresses ------------------------------------------------------------------
    def _add_address(self, table: dict[int, FakeLink], r: Request) -> None:
        assert r.flags & NLM_F_CREATE and r.flags & NLM_F_EXCL, r
        link = self._by_index(table, r.index or 0)
        family, prefixlen = r.body[0], r.body[1]
        local = r.wire(IFA_LOCAL) or r.wire(IFA_ADDRESS)
        if local is None:
            raise KernelError(errno.EINVAL)
        address = str(ipaddress.ip_address(local))
        if any(a.address == address for a in link.addresses):
            raise KernelError(errno.EEXIST)
        brd = r.wire(IFA_BROADCAST)
        flags = r.number(IFA_FLAGS) or r.body[2]
        link.addresses.append(
            FakeAddress(
                family,
                address,
                prefixlen,
                str(ipaddress.ip_address(brd)) if brd else None,
                flags,
            )
        )
        network = ipaddress.ip_interface(f"{address}/{prefixlen}").network
        if network.prefixlen < network.max_prefixlen:
            self.routes[r.ns].append(
                FakeRoute(
                    family,
                    str(network.network_address),
                    prefixlen,
                    link.index,
                    proto=RTPROT_KERNEL,
                    scope=RT_SCOPE_LINK,
                )
            )

    def _addresses(self, ns: str, r: Request) -> list[bytes]:
        out = []
        for link in self.namespaces[ns].values():
            for a in link.addresses:
                msg = ifaddrmsg()
                msg["family"] = a.family
                msg["prefixlen"] = a.prefixlen
                msg["flags"] = a.flags & 0xFF
                msg["scope"] = 0
                msg["index"] = link.index
                attrs = [["IFA_ADDRESS", a.address]]
                if a.family == socket.AF_INET:
                    attrs.append(["IFA_LOCAL", a.address])
                msg["attrs"] = attrs
                out.append(_message(msg, 20, r.seq, 0x2))
        return out

    # -- routes ---------------------------------------------------------------------
    def _route(self, r: Request) -> FakeRoute:
        family, dst_len, _src, _tos, table, proto, scope, type_ = struct.unpack_from(
            "=BBBBBBBB", r.body
        )
        dst = r.wire(RTA_DST)
        gateway = r.wire(RTA_GATEWAY)
        return FakeRoute(
            family=family,
            dst=str(ipaddress.ip_address(dst)) if dst else None,
            dst_len=dst_len,
            oif=r.number(RTA_OIF) or 0,
            gateway=str(ipaddress.ip_address(gateway)) if gateway else None,
            priority=r.number(RTA_PRIORITY) or 0,
            table=r.number(RTA_TABLE) or table,
            proto=proto,
            scope=scope,
            type=type_,
        )

    def _reachable(self, ns: str, route: FakeRoute) -> bool:
        """Is the gateway on a subnet of the route's interface (an address, or
        an on-link route there)?"""
        gateway = ipaddress.ip_address(route.gateway)  # type: ignore[arg-type]
        link = self.namespaces[ns][route.oif]
        subnets = [
            ipaddress.ip_interface(f"{a.address}/{a.prefixlen}").network for a in link.addresses
        ]
        subnets += [
            ipaddress.ip_network(f"{x.dst}/{x.dst_len}")
            for x in self.routes[ns]
            if x.oif == route.oif and x.scope == RT_SCOPE_LINK and x.dst is not None
        ]
        return any(gateway.version == net.version and gateway in net for net in subnets)

    def _add_route(self, ns: str, r: Request) -> None:
        assert r.flags & NLM_F_CREATE, r
        route = self._route(r)
        self._by_index(self.namespaces[ns], route.oif)
        if route.gateway is not None and not self._reachable(ns, route):
            raise KernelError(errno.ENETUNREACH)
        routes = self.routes[ns]
        same = [i for i, x in enumerate(routes) if x.key() == route.key()]
        if same and r.flags & NLM_F_REPLACE:
            routes[same[0]] = route
        elif same:
            raise KernelError(errno.EEXIST)
        else:
            routes.append(route)

    def _delete_route(self, ns: str, r: Request) -> None:
        wanted = self._route(r)
        for i, x in enumerate(self.routes[ns]):
            if (x.family, x.table, x.dst_len, x.dst) != (
                wanted.family,
                wanted.table,
                wanted.dst_len,
                wanted.dst,
            ):
                continue
            if wanted.proto and wanted.proto != x.proto:
                continue
            # As the kernel: an interface, gateway or metric given must match.
            if (wanted.oif and wanted.oif != x.oif) or (
                wanted.gateway is not None and wanted.gateway != x.gateway
            ):
                continue
            if wanted.priority and wanted.priority != x.priority:
                continue
            del self.routes[ns][i]
            return
        raise KernelError(errno.ESRCH)

    def _route_message(self, route: FakeRoute, seq: int) -> bytes:
        msg = rtmsg()
        msg["family"] = route.family
        msg["dst_len"] = route.dst_len
        msg["table"] = route.table
        msg["proto"] = route.proto
        msg["scope"] = route.scope
        msg["type"] = route.type
        attrs: list[list[Any]] = [["RTA_TABLE", route.table], ["RTA_OIF", route.oif]]
        if route.dst is not None and route.dst_len:
            attrs.append(["RTA_DST", route.dst])
        if route.gateway is not None:
            attrs.append(["RTA_GATEWAY", route.gateway])
        if route.priority:
            attrs.append(["RTA_PRIORITY", route.priority])
        msg["attrs"] = attrs
        return _message(msg, RTM_NEWROUTE, seq, 0x2)


class FakeSocket:
    """The raw NETLINK_ROUTE socket ``rtnl.Rtnl`` uses, wired to a ``FakeKernel``."""

    def __init__(self, kernel: FakeKernel, ns: str) -> None:
        self.kernel = kernel
        self.ns = ns
        self.closed = False
        self._pending: deque[bytes] = deque()

    def setsockopt(self, *args: Any) -> None:
        pass

    def send(self, data: bytes) -> int:
        assert not self.closed
        self._pending.append(self.kernel.handle(self.ns, bytes(data)))
        return len(data)

    def recv(self, size: int) -> bytes:
        assert not self.closed
        if not self._pending:
            raise AssertionError("recv() would block: no answer pending")
        return self._pending.popleft()

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
        connect = self.kernel.connect
        self.host = Netns("host", self.host_fd, (0, 1), connect=connect)  # type: ignore[arg-type]
        self.guest_ns = Netns("blue", self.guest_fd, (0, 2), connect=connect)  # type: ignore[arg-type]

    def link_context(
        self,
        spec: AttachSpec,
        marker: Marker,
        *,
        host_link: Link | None = None,
        guest: str = "blue",
        temp_ifname: str = "pwttemp",
        lock: Lock = no_lock,
    ) -> LinkContext:
        """What the engine hands a link backend for ``spec``: the guest is
        this fake's guest namespace, the host side named by ``marker``."""
        return LinkContext(
            spec=spec,
            guest=Guest(GuestInfo(name=guest, key=marker.guest, runtime="netns"), self.guest_fd),
            host=self.host,
            guest_ns=self.guest_ns,
            journal=Journal(),
            host_link=host_link,
            ifname=marker.ifname,
            temp_ifname=temp_ifname,
            host_ifname=marker.hostif,
            marker=marker,
            lock=lock,
        )

    def close(self) -> None:
        self.host.close()
        self.guest_ns.close()
        os.close(self.host_fd)
        os.close(self.guest_fd)
