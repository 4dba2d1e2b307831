"""Raw rtnetlink: every request pipework sends, encoded and decoded with ``struct``.

This is the kernel layer's wire format and transport; ``netlink.Netns`` is
the only caller (``teardown`` uses ``Rtnl.delete``). One ``Rtnl`` wraps one
blocking NETLINK_ROUTE socket, already inside its namespace: the kernel
answers these requests at once, and no other task can interleave between a
send and its receive.

Why not pyroute2: it costs about half a millisecond of Python per request
(its generic message classes decode every attribute of every answer),
several times the kernel's own work, and importing it costs 100 ms or more.
Here link lookups ask the kernel to leave statistics out of its answers, and
decode only what ``netlink.Link`` holds. pyroute2 is used only for link
attributes this module does not know (``netlink._pyroute2_compile``).

Public primitives, for code that sends a request this module has no
function for (``Netns.request``; the bridge backend's VLAN requests):
``ifinfomsg``, ``attr``, ``nested``, ``str_attr``, ``u32_attr``,
``attributes``, ``link_info_data`` and the constants below.

Bulk deletes: deleting an interface makes the kernel wait for an RCU grace
period (``synchronize_net``, about 18-21 ms measured here), once per
request. The kernel deletes a whole *interface group* in one request and
waits once. So a batch of deletes becomes: give every interface a fresh
group number (all the requests in one datagram), then delete that group.
The group number is random, and checked to be unused in the namespace
first, so the group delete can only hit the interfaces we put in it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Mapping

# -- message types and flags (include/uapi/linux/rtnetlink.h, netlink.h) ------------------
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
RTM_GETNSID = 90
RTM_NEWLINKPROP = 108
NETNSA_NSID = 1
NETNSA_FD = 3
RTM_DELLINKPROP = 109
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_DUMP = 0x300
NLA_F_NESTED = 1 << 15
IFF_UP = 0x1

# -- link attributes (if_link.h) ----------------------------------------------------------
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_AF_SPEC = 26
IFLA_GROUP = 27
IFLA_NET_NS_FD = 28
IFLA_LINK_NETNSID = 37
IFLA_EXT_MASK = 29
IFLA_MAX_MTU = 51
IFLA_PROP_LIST = 52
IFLA_ALT_IFNAME = 53
IFLA_PERM_ADDRESS = 54
IFLA_PARENT_DEV_NAME = 56
IFLA_PARENT_DEV_BUS_NAME = 57
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
IFLA_BRPORT_STATE = 1
BR_STATE_FORWARDING = 3
IFLA_INET_CONF = 1
IPV4_DEVCONF_ARP_NOTIFY = 22
IFLA_INET6_ADDR_GEN_MODE = 8
ADDR_GEN_MODES = {"eui64": 0, "none": 1, "stable_secret": 2, "random": 3}
"""IPv6 address generation modes (``ip link set DEV addrgenmode MODE``)."""
AF_SPEC_KEYS = ("addr_gen_mode", "arp_notify")
"""Link attributes that are per-family settings (IFLA_AF_SPEC), IPv6's first:
a kernel without IPv6, or an interface too small for it, refuses those."""
IFLA_VLAN_ID = 1
VETH_INFO_PEER = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3

# -- address and route attributes (if_addr.h, rtnetlink.h) --------------------------------
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFA_PROTO = 11
IFA_PROTO_KERNEL_RA = 2
"""An address the kernel made from a router advertisement (SLAAC), Linux 6.3+."""
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RTPROT_RA = 9
"""A route the kernel made from a router advertisement."""
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RTN_UNICAST = 1

OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLATTR = struct.Struct("=HH")
CHUNK = 200
"""Requests per datagram: their acknowledgements must fit the receive buffer."""

ADDRESS_FORMATS = {4: "in_addr", 6: "in6_addr"}
"""Formats in ``KIND_DATA`` for an IP address of that version, given as text."""

#: Kind-specific link attributes (IFLA_INFO_DATA), under pyroute2's names
#: (``Netns.create(..., macvlan_mode="vepa")``): name -> (type, format, named values).
KIND_DATA: dict[str, dict[str, tuple[int, str, Mapping[str, int] | None]]] = {
    "vlan": {"vlan_id": (IFLA_VLAN_ID, "=H", None)},
    "macvlan": {
        "macvlan_mode": (1, "=I", {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8}),
    },
    "ipvlan": {"ipvlan_mode": (1, "=H", {"l2": 0, "l3": 1, "l3s": 2})},
    "ipoib": {"pkey": (1, "=H", None), "mode": (2, "=H", {"datagram": 0, "connected": 1})},
    # IFLA_VXLAN_* (if_link.h); the group is also the unicast remote, the port
    # is in network byte order, addresses are given as text.
    "vxlan": {
        "vxlan_id": (1, "=I", None),
        "vxlan_group": (2, ADDRESS_FORMATS[4], None),
        "vxlan_link": (3, "=I", None),
        "vxlan_local": (4, ADDRESS_FORMATS[4], None),
        "vxlan_ttl": (5, "=B", None),
        "vxlan_learning": (7, "=B", None),
        "vxlan_port": (15, "!H", None),
        "vxlan_group6": (16, ADDRESS_FORMATS[6], None),
        "vxlan_local6": (17, ADDRESS_FORMATS[6], None),
    },
}
_U32_KEYS = {"mtu": IFLA_MTU, "master": IFLA_MASTER, "net_ns_fd": IFLA_NET_NS_FD, "link": IFLA_LINK}


class RtnlError(OSError):
    """A request was refused; ``errno`` says why."""

    @property
    def code(self) -> int:
        return self.errno or 0


class UnknownAttribute(KeyError):
    """A link attribute this module cannot encode (pyroute2 may)."""


# -- encoding -----------------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    data = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def nested(kind: int, *children: bytes) -> bytes:
    """An attribute holding ``children`` (flagged NLA_F_NESTED)."""
    return attr(kind | NLA_F_NESTED, b"".join(children))


def str_attr(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def u32_attr(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def ifinfomsg(
    index: int = 0, *, family: int = socket.AF_UNSPEC, flags: int = 0, change: int = 0
) -> bytes:
    """The fixed part of a link message."""
    return _IFINFOMSG.pack(family, 0, index, flags, change)


def get_link_body(index: int = 0, ifname: str | None = None) -> bytes:
    """An RTM_GETLINK request by index or name, statistics left out of the answer."""
    body = ifinfomsg(index)
    if ifname is not None:
        body += str_attr(IFLA_IFNAME, ifname)
    return body + u32_attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)


def _mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _kind_data(kind: str, name: str, value: object) -> bytes:
    try:
        number, fmt, names = KIND_DATA[kind][name]
    except KeyError:
        raise UnknownAttribute(name) from None
    if fmt in ADDRESS_FORMATS.values():
        try:
            address = ipaddress.ip_address(str(value))
        except ValueError:
            raise UnknownAttribute(f"{name}={value}") from None
        if ADDRESS_FORMATS[address.version] != fmt:
            raise UnknownAttribute(f"{name}={value}")
        return attr(number, address.packed)
    if isinstance(value, str):
        if names is None or value not in names:
            raise UnknownAttribute(f"{name}={value}")
        value = names[value]
    return attr(number, struct.pack(fmt, int(value)))  # type: ignore[call-overload]


def encode_link(attrs: Mapping[str, object]) -> tuple[int, int, bytes]:
    """(ifi_flags, ifi_change, attributes) for link attributes under pyroute2's
    names: ``ifname ifalias address state mtu master net_ns_fd link``, ``kind``
    with its ``KIND_DATA``, a veth's ``peer`` (a dict of the same), and two
    per-family settings: ``addr_gen_mode`` (IPv6, a name of ``ADDR_GEN_MODES``)
    and ``arp_notify`` (IPv4, 0 or 1).

    Raises ``UnknownAttribute`` for anything else."""
    flags = change = 0
    body = b""
    kind = attrs.get("kind")
    data = b""
    peer = b""
    af_spec = b""
    for key, value in attrs.items():
        if key == "addr_gen_mode":
            if value not in ADDR_GEN_MODES:
                raise UnknownAttribute(f"addr_gen_mode={value}")
            mode = bytes([ADDR_GEN_MODES[str(value)]])
            af_spec += nested(socket.AF_INET6, attr(IFLA_INET6_ADDR_GEN_MODE, mode))
        elif key == "arp_notify":
            notify = u32_attr(IPV4_DEVCONF_ARP_NOTIFY, 1 if value else 0)
            af_spec += nested(socket.AF_INET, nested(IFLA_INET_CONF, notify))
        elif key == "state":
            if value not in ("up", "down"):
                raise UnknownAttribute(f"state={value}")
            change |= IFF_UP
            flags |= IFF_UP if value == "up" else 0
        elif key == "ifname":
            body += str_attr(IFLA_IFNAME, str(value))
        elif key == "ifalias":
            body += str_attr(IFLA_IFALIAS, str(value))
        elif key == "address":
            body += attr(IFLA_ADDRESS, _mac_bytes(str(value)))
        elif key in _U32_KEYS:
            body += u32_attr(_U32_KEYS[key], int(value))  # type: ignore[call-overload]
        elif key == "kind":
            continue
        elif key == "peer" and kind == "veth" and isinstance(value, Mapping):
            if "kind" in value or "peer" in value:
                raise UnknownAttribute("peer")
            peer_flags, peer_change, peer_attrs = encode_link(value)
            peer = attr(
                VETH_INFO_PEER, ifinfomsg(flags=peer_flags, change=peer_change) + peer_attrs
            )
        elif isinstance(kind, str):
            data += _kind_data(kind, key, value)
        else:
            raise UnknownAttribute(key)
    if kind is not None:
        info = str_attr(IFLA_INFO_KIND, str(kind))
        if data or peer:
            info += nested(IFLA_INFO_DATA, data + peer)
        body += nested(IFLA_LINKINFO, info)
    if af_spec:
        body += nested(IFLA_AF_SPEC, af_spec)
    return flags, change, body


def encode_route(
    family: int,
    dst_len: int,
    dst: bytes | None,
    *,
    table: int = RT_TABLE_MAIN,
    proto: int = RTPROT_STATIC,
    scope: int = RT_SCOPE_UNIVERSE,
    type_: int = RTN_UNICAST,
    gateway: bytes | None = None,
    oif: int | None = None,
    priority: int | None = None,
) -> bytes:
    """An rtmsg and its attributes (as pyroute2 fills them in for ``route()``)."""
    body = _RTMSG.pack(family, dst_len, 0, 0, table, proto, scope, type_, 0)
    if dst is not None and dst_len:
        body += attr(RTA_DST, dst)
    if oif is not None:
        body += u32_attr(RTA_OIF, oif)
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway)
    if priority is not None:
        body += u32_attr(RTA_PRIORITY, priority)
    return body


def _link_msg(kind: int, seq: int, index: int, group: int | None, flags: int) -> bytes:
    """A whole link message with only an index and perhaps a group (bulk deletes)."""
    attrs = b"" if group is None else u32_attr(IFLA_GROUP, group)
    body = ifinfomsg(index) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


# -- decoding -----------------------------------------------------------------------------
def iter_attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type without flag bits, payload) of each attribute in ``data``."""
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size:
            break
        yield kind & 0x3FFF, data[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3


def attributes(data: bytes) -> dict[int, bytes]:
    """The attributes in ``data`` by type (the last one of a type wins)."""
    return dict(iter_attributes(data))


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in ``data``."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        yield kind, seq, data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _text(payload: bytes | None) -> str | None:
    return None if payload is None else payload.split(b"\0", 1)[0].decode(errors="replace")


def _u32_of(payload: bytes | None) -> int | None:
    return None if payload is None or len(payload) < 4 else struct.unpack_from("=I", payload)[0]


def _link_attrs(payload: bytes) -> dict[int, bytes]:
    return attributes(payload[_IFINFOMSG.size :])


def link_info_data(payload: bytes) -> dict[int, bytes]:
    """The kind-specific attributes (IFLA_INFO_DATA) of an RTM_NEWLINK answer."""
    info = attributes(_link_attrs(payload).get(IFLA_LINKINFO, b""))
    return attributes(info.get(IFLA_INFO_DATA, b""))


def link_altnames(payload: bytes) -> list[str]:
    """The alternative names (IFLA_PROP_LIST) of an RTM_NEWLINK answer."""
    props = _link_attrs(payload).get(IFLA_PROP_LIST, b"")
    return [_text(value) or "" for kind, value in iter_attributes(props) if kind == IFLA_ALT_IFNAME]


def link_fields(payload: bytes) -> dict[str, object]:
    """An RTM_NEWLINK answer -> the fields of ``netlink.Link``."""
    _family, link_type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = _link_attrs(payload)
    info = attributes(attrs.get(IFLA_LINKINFO, b""))
    kind = _text(info.get(IFLA_INFO_KIND))
    vlan_id = None
    if kind == "vlan":
        raw = attributes(info.get(IFLA_INFO_DATA, b"")).get(IFLA_VLAN_ID)
        vlan_id = struct.unpack_from("=H", raw)[0] if raw and len(raw) >= 2 else None
    mac = attrs.get(IFLA_ADDRESS)
    perm = attrs.get(IFLA_PERM_ADDRESS)
    netnsid = attrs.get(IFLA_LINK_NETNSID)
    operstate = attrs.get(IFLA_OPERSTATE)
    state = operstate[0] if operstate else 0
    port_state = None
    if _text(info.get(IFLA_INFO_SLAVE_KIND)) == "bridge":
        raw = attributes(info.get(IFLA_INFO_SLAVE_DATA, b"")).get(IFLA_BRPORT_STATE)
        port_state = raw[0] if raw else None
    return {
        "index": index,
        "ifname": _text(attrs.get(IFLA_IFNAME)),
        "kind": kind,
        "mtu": _u32_of(attrs.get(IFLA_MTU)) or 0,
        "mac": _mac_text(mac),
        "alias": _text(attrs.get(IFLA_IFALIAS)),
        "master": _u32_of(attrs.get(IFLA_MASTER)),
        "up": bool(flags & IFF_UP),
        "operstate": OPERSTATES[state] if state < len(OPERSTATES) else "UNKNOWN",
        "link_type": link_type,
        "max_mtu": _u32_of(attrs.get(IFLA_MAX_MTU)),
        "parent": _u32_of(attrs.get(IFLA_LINK)),
        "vlan_id": vlan_id,
        "link_netnsid": struct.unpack_from("=i", netnsid)[0]
        if netnsid and len(netnsid) >= 4
        else None,
        "perm_mac": _mac_text(perm) if perm and any(perm) else None,
        "parent_dev": _text(attrs.get(IFLA_PARENT_DEV_NAME)),
        "parent_bus": _text(attrs.get(IFLA_PARENT_DEV_BUS_NAME)),
        "port_state": port_state,
    }


def _mac_text(raw: bytes | None) -> str | None:
    return ":".join(f"{b:02x}" for b in raw) if raw is not None else None


def route_fields(payload: bytes) -> dict[str, object]:
    """An RTM_NEWROUTE answer: the rtmsg fields, and the attributes pipework reads
    (``dst``, ``gateway`` as bytes; ``oif``, ``priority``; ``table`` from RTA_TABLE)."""
    family, dst_len, _src, _tos, table, proto, scope, type_, _flags = _RTMSG.unpack_from(payload)
    attrs = attributes(payload[_RTMSG.size :])
    return {
        "family": family,
        "dst_len": dst_len,
        "table": _u32_of(attrs.get(RTA_TABLE)) or table,
        "proto": proto,
        "scope": scope,
        "type": type_,
        "dst": attrs.get(RTA_DST),
        "gateway": attrs.get(RTA_GATEWAY),
        "oif": _u32_of(attrs.get(RTA_OIF)),
        "priority": _u32_of(attrs.get(RTA_PRIORITY)),
    }


# -- the socket ---------------------------------------------------------------------------
class Rtnl:
    """A blocking NETLINK_ROUTE socket, already inside its namespace."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._seq = int.from_bytes(os.urandom(4), "little") >> 2  # 30 bits (secrets: ~1 ms import)

    def close(self) -> None:
        self.sock.close()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; the payloads of the answers (a dump: all of them).

        A request with NLM_F_ACK returns [] once acknowledged; a refusal
        raises ``RtnlError``."""
        seq = self._next()
        msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0)
        self.sock.send(msg + body)
        answers: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 20)
            for msg_kind, msg_seq, payload in _messages(data):
                if msg_seq != seq:
                    continue
                if msg_kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise RtnlError(-code, os.strerror(-code))
                    return answers
                if msg_kind == NLMSG_DONE:
                    return answers
                answers.append(payload)
                if flags & NLM_F_DUMP != NLM_F_DUMP:
                    return answers

    def nsid_of(self, fd: int) -> int | None:
        """The id this namespace gives the namespace open as ``fd`` (what a
        veth shows as its peer's ``link_netnsid``); None if it gave none."""
        body = struct.pack("=Bxxx", socket.AF_UNSPEC) + u32_attr(NETNSA_FD, fd)
        answers = self.request(RTM_GETNSID, 0, body)
        if not answers:
            return None
        nsid = attributes(answers[0][4:]).get(NETNSA_NSID)
        value = struct.unpack_from("=i", nsid)[0] if nsid and len(nsid) >= 4 else -1
        return None if value < 0 else int(value)

    # -- links ------------------------------------------------------------------------
    def link_message(self, *, index: int = 0, ifname: str | None = None) -> bytes:
        """The kernel's RTM_NEWLINK answer for one interface, undecoded."""
        return self.request(RTM_GETLINK, 0, get_link_body(index, ifname))[0]

    def get_link(self, *, index: int = 0, ifname: str | None = None) -> dict[str, object]:
        return link_fields(self.link_message(index=index, ifname=ifname))

    def links(self) -> list[dict[str, object]]:
        """Every interface of the namespace (a dump, statistics left out)."""
        body = ifinfomsg() + u32_attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [link_fields(p) for p in self.request(RTM_GETLINK, NLM_F_DUMP, body)]

    def set_link(self, index: int, attrs: Mapping[str, object]) -> None:
        """``ip link set``: ``attrs`` as ``encode_link`` takes them."""
        flags, change, body = encode_link(attrs)
        self.request(RTM_NEWLINK, NLM_F_ACK, ifinfomsg(index, flags=flags, change=change) + body)

    def create_link(self, ifname: str, kind: str, attrs: Mapping[str, object]) -> None:
        """``ip link add``: ``attrs`` as ``encode_link`` takes them."""
        flags, change, body = encode_link({"ifname": ifname, "kind": kind, **attrs})
        self.request(
            RTM_NEWLINK,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            ifinfomsg(flags=flags, change=change) + body,
        )

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, NLM_F_ACK, ifinfomsg(index))

    def _altname(self, kind: int, flags: int, index: int, altname: str) -> None:
        body = ifinfomsg(index) + nested(IFLA_PROP_LIST, str_attr(IFLA_ALT_IFNAME, altname))
        self.request(kind, NLM_F_ACK | flags, body)

    def add_altname(self, index: int, altname: str) -> None:
        self._altname(RTM_NEWLINKPROP, NLM_F_CREATE | NLM_F_APPEND, index, altname)

    def del_altname(self, index: int, altname: str) -> None:
        self._altname(RTM_DELLINKPROP, 0, index, altname)

    # -- addresses ----------------------------------------------------------------------
    def add_address(
        self,
        index: int,
        family: int,
        address: bytes,
        prefixlen: int,
        broadcast: bytes | None,
        ifa_flags: int,
    ) -> None:
        body = _IFADDRMSG.pack(family, prefixlen, ifa_flags & 0xFF, 0, index)
        body += attr(IFA_LOCAL, address) + attr(IFA_ADDRESS, address)
        if broadcast is not None:
            body += attr(IFA_BROADCAST, broadcast)
        if ifa_flags:
            body += u32_attr(IFA_FLAGS, ifa_flags)
        self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def addresses(self, index: int) -> list[tuple[int, bytes, int, int, int]]:
        """(family, address, prefix length, flags, protocol) of every address
        on ``index``: the flags are ``IFA_FLAGS`` (IFA_F_*), the protocol
        who made it (``IFA_PROTO``, 0 when the kernel does not say)."""
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
        found = []
        for payload in self.request(RTM_GETADDR, NLM_F_DUMP, body):
            family, prefixlen, flags, _scope, msg_index = _IFADDRMSG.unpack_from(payload)
            if msg_index != index:
                continue
            attrs = attributes(payload[_IFADDRMSG.size :])
            address = attrs.get(IFA_ADDRESS) or attrs.get(IFA_LOCAL)
            if address is not None:
                wide = _u32_of(attrs.get(IFA_FLAGS))
                proto = attrs.get(IFA_PROTO)
                found.append(
                    (
                        family,
                        address,
                        prefixlen,
                        flags if wide is None else wide,
                        proto[0] if proto else 0,
                    )
                )
        return found

    # -- routes -------------------------------------------------------------------------
    def routes(self, family: int) -> list[dict[str, object]]:
        """Every route of ``family`` (all tables), as ``route_fields`` decodes them."""
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        return [route_fields(p) for p in self.request(RTM_GETROUTE, NLM_F_DUMP, body)]

    def add_route(self, body: bytes, *, replace: bool = False) -> None:
        """RTM_NEWROUTE with ``encode_route``'s ``body``: add, or replace."""
        flags = NLM_F_REPLACE if replace else NLM_F_EXCL
        self.request(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | flags, body)

    def delete_route(self, body: bytes) -> None:
        self.request(RTM_DELROUTE, NLM_F_ACK, body)

    # -- bulk deletes -------------------------------------------------------------------
    def _acks(self, pending: set[int]) -> dict[int, int]:
        """Read until every sequence number in ``pending`` is answered: seq -> errno."""
        answers: dict[int, int] = {}
        while pending:
            data = self.sock.recv(1 << 20)
            for kind, seq, payload in _messages(data):
                if kind == NLMSG_ERROR and seq in pending:
                    (code,) = struct.unpack_from("=i", payload)
                    answers[seq] = -code
                    pending.discard(seq)
        return answers

    def _send_all(self, messages: list[tuple[int, bytes]]) -> dict[int, int]:
        answers: dict[int, int] = {}
        for start in range(0, len(messages), CHUNK):
            chunk = messages[start : start + CHUNK]
            self.sock.send(b"".join(msg for _, msg in chunk))
            answers.update(self._acks({seq for seq, _ in chunk}))
        return answers

    def groups(self) -> dict[int, int]:
        """Every interface of the namespace: index -> group."""
        found: dict[int, int] = {}
        for payload in self.request(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()):
            index = _IFINFOMSG.unpack_from(payload)[2]
            found[index] = _u32_of(_link_attrs(payload).get(IFLA_GROUP)) or 0
        return found

    def delete(self, indexes: Iterable[int]) -> int:
        """Delete the interfaces ``indexes``; return how many were still there.

        One interface: a plain delete. More: through a fresh interface group,
        so the kernel waits for one grace period instead of one each.
        """
        wanted = sorted(set(indexes))
        if not wanted:
            return 0
        if len(wanted) == 1:
            seq = self._next()
            code = self._send_all([(seq, _link_msg(RTM_DELLINK, seq, wanted[0], None, _ACK))])[seq]
            return _count(code, 1)
        used = set(self.groups().values())
        group = _fresh_group(used)
        sets = []
        for index in wanted:
            seq = self._next()
            sets.append((seq, _link_msg(RTM_NEWLINK, seq, index, group, _ACK)))
        answers = self._send_all(sets)
        grouped = sum(_count(code, 1) for code in answers.values())
        if not grouped:
            return 0
        seq = self._next()
        code = self._send_all([(seq, _link_msg(RTM_DELLINK, seq, 0, group, _ACK))])[seq]
        _count(code, 1)
        return grouped


_ACK = NLM_F_REQUEST | NLM_F_ACK


def _count(code: int, n: int) -> int:
    """``n`` if the request succeeded, 0 if the interface was already gone."""
    if code == 0:
        return n
    if code == errno.ENODEV:
        return 0
    raise RtnlError(code, os.strerror(code))


def _fresh_group(used: set[int]) -> int:
    """A random group number nobody uses: far above what people pick by hand."""
    import secrets  # a teardown only: not loaded by every attach

    while True:
        group = (1 << 24) + secrets.randbelow((1 << 31) - (1 << 24))
        if group not in used:
            return group


__all__ = [
    "KIND_DATA",
    "Rtnl",
    "RtnlError",
    "UnknownAttribute",
    "attr",
    "attributes",
    "encode_link",
    "encode_route",
    "get_link_body",
    "ifinfomsg",
    "iter_attributes",
    "link_altnames",
    "link_fields",
    "link_info_data",
    "nested",
    "route_fields",
    "str_attr",
    "u32_attr",
]
