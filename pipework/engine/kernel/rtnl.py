"""Raw rtnetlink: the attach's hot requests, and bulk deletes, without pyroute2.

pyroute2 costs about half a millisecond of Python per request here (its
generic message classes decode every attribute of every answer), several
times the kernel's own work. The few requests an attach makes again and
again (look an interface up, set it, create a veth pair, add and list
addresses, delete) are encoded and decoded here with ``struct``, asking the
kernel to leave statistics out of its answers. ``netlink.Netns`` uses these
for what they cover and pyroute2 for everything else.

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
import os
import secrets
import socket
import struct
from collections.abc import Iterable, Iterator

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
IFLA_GROUP = 27

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLATTR = struct.Struct("=HH")
CHUNK = 200
"""Requests per datagram: their acknowledgements must fit the receive buffer."""


class RtnlError(OSError):
    """A request was refused; ``errno`` says why."""

    @property
    def code(self) -> int:
        """The errno, under the name pyroute2's ``NetlinkError`` uses."""
        return self.errno or 0


def _link_msg(kind: int, seq: int, index: int, group: int | None, flags: int) -> bytes:
    attrs = b""
    if group is not None:
        attrs = _NLATTR.pack(8, IFLA_GROUP) + struct.pack("=I", group)
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in ``data``."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        yield kind, seq, data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


class Rtnl:
    """A blocking NETLINK_ROUTE socket, already inside its namespace."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._seq = secrets.randbelow(1 << 30)

    def close(self) -> None:
        self.sock.close()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

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
        seq = self._next()
        self.sock.send(_link_msg(RTM_GETLINK, seq, 0, None, NLM_F_REQUEST | NLM_F_DUMP))
        found: dict[int, int] = {}
        while True:
            data = self.sock.recv(1 << 20)
            for kind, msg_seq, payload in _messages(data):
                if msg_seq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise RtnlError(-code, os.strerror(-code))
                    continue
                _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(payload)
                found[index] = _group(payload[_IFINFOMSG.size :])

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


def _group(attrs: bytes) -> int:
    offset = 0
    while offset + _NLATTR.size <= len(attrs):
        length, kind = _NLATTR.unpack_from(attrs, offset)
        if length < _NLATTR.size:
            break
        if kind & 0x3FFF == IFLA_GROUP and length >= 8:
            value: int = struct.unpack_from("=I", attrs, offset + _NLATTR.size)[0]
            return value
        offset += (length + 3) & ~3
    return 0


def _fresh_group(used: set[int]) -> int:
    """A random group number nobody uses: far above what people pick by hand."""
    while True:
        group = (1 << 24) + secrets.randbelow((1 << 31) - (1 << 24))
        if group not in used:
            return group


__all__ = ["Rtnl", "RtnlError"]


# -- the attach's hot requests --------------------------------------------------------

RTM_NEWADDR = 20
RTM_GETADDR = 22
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
IFF_UP = 0x1

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
IFLA_MAX_MTU = 51
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_VLAN_ID = 1
VETH_INFO_PEER = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
NLA_F_NESTED = 1 << 15

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
_IFADDRMSG = struct.Struct("=BBBBI")

OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

SET_KEYS = frozenset({"ifname", "ifalias", "state", "address", "mtu", "master", "net_ns_fd"})
"""What ``set_link`` encodes; anything else is pyroute2's job."""
PEER_KEYS = frozenset({"ifname", "net_ns_fd", "mtu"})


def _attr(kind: int, payload: bytes) -> bytes:
    data = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _str(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _attrs(data: bytes) -> dict[int, bytes]:
    """Top-level attributes of a message body (type without flag bits -> payload)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _text(payload: bytes | None) -> str | None:
    return None if payload is None else payload.split(b"\0", 1)[0].decode(errors="replace")


def _u32_of(payload: bytes | None) -> int | None:
    return None if payload is None or len(payload) < 4 else struct.unpack_from("=I", payload)[0]


def link_fields(payload: bytes) -> dict[str, object]:
    """An RTM_NEWLINK answer -> the fields of ``netlink.Link``."""
    _family, link_type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = _attrs(payload[_IFINFOMSG.size :])
    info = _attrs(attrs.get(IFLA_LINKINFO, b""))
    kind = _text(info.get(IFLA_INFO_KIND))
    vlan_id = None
    if kind == "vlan":
        data = _attrs(info.get(IFLA_INFO_DATA, b""))
        raw = data.get(IFLA_VLAN_ID)
        vlan_id = struct.unpack_from("=H", raw)[0] if raw and len(raw) >= 2 else None
    mac = attrs.get(IFLA_ADDRESS)
    operstate = attrs.get(IFLA_OPERSTATE)
    state = operstate[0] if operstate else 0
    return {
        "index": index,
        "ifname": _text(attrs.get(IFLA_IFNAME)),
        "kind": kind,
        "mtu": _u32_of(attrs.get(IFLA_MTU)) or 0,
        "mac": ":".join(f"{b:02x}" for b in mac) if mac is not None else None,
        "alias": _text(attrs.get(IFLA_IFALIAS)),
        "master": _u32_of(attrs.get(IFLA_MASTER)),
        "up": bool(flags & IFF_UP),
        "operstate": OPERSTATES[state] if state < len(OPERSTATES) else "UNKNOWN",
        "link_type": link_type,
        "max_mtu": _u32_of(attrs.get(IFLA_MAX_MTU)),
        "parent": _u32_of(attrs.get(IFLA_LINK)),
        "vlan_id": vlan_id,
    }


def _mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def encode_link_attrs(attrs: dict[str, object]) -> tuple[int, int, bytes]:
    """(ifi_flags, ifi_change, attributes) for the keys of ``SET_KEYS``."""
    flags = change = 0
    body = b""
    for key, value in attrs.items():
        if key == "state":
            change |= IFF_UP
            flags |= IFF_UP if value == "up" else 0
        elif key == "ifname":
            body += _str(IFLA_IFNAME, str(value))
        elif key == "ifalias":
            body += _str(IFLA_IFALIAS, str(value))
        elif key == "address":
            body += _attr(IFLA_ADDRESS, _mac_bytes(str(value)))
        elif key == "mtu":
            body += _u32(IFLA_MTU, int(value))  # type: ignore[call-overload]
        elif key == "master":
            body += _u32(IFLA_MASTER, int(value))  # type: ignore[call-overload]
        elif key == "net_ns_fd":
            body += _u32(IFLA_NET_NS_FD, int(value))  # type: ignore[call-overload]
        else:
            raise KeyError(key)
    return flags, change, body


class LinkRequests(Rtnl):
    """The hot requests, on a socket of their own (blocking: the kernel answers
    these at once, and no other task can interleave between send and receive)."""

    def _ask(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; the payloads of the answers (a dump: all of them)."""
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
                if not flags & NLM_F_DUMP:
                    return answers

    def get_link(self, *, index: int = 0, ifname: str | None = None) -> dict[str, object]:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if ifname is not None:
            body += _str(IFLA_IFNAME, ifname)
        body += _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return link_fields(self._ask(RTM_GETLINK, 0, body)[0])

    def links(self) -> list[dict[str, object]]:
        """Every interface of the namespace (a dump, statistics left out)."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        body += _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [link_fields(p) for p in self._ask(RTM_GETLINK, NLM_F_DUMP, body)]

    def set_link(self, index: int, attrs: dict[str, object]) -> None:
        flags, change, body = encode_link_attrs(attrs)
        self._ask(RTM_NEWLINK, NLM_F_ACK, _IFINFOMSG.pack(0, 0, index, flags, change) + body)

    def create_link(
        self, ifname: str, kind: str, mtu: int | None, peer: dict[str, object] | None
    ) -> None:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, ifname)
        if mtu is not None:
            body += _u32(IFLA_MTU, mtu)
        info = _str(IFLA_INFO_KIND, kind)
        if peer is not None:
            _flags, _change, peer_attrs = encode_link_attrs(peer)
            peer_msg = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + peer_attrs
            info += _attr(IFLA_INFO_DATA | NLA_F_NESTED, _attr(VETH_INFO_PEER, peer_msg))
        body += _attr(IFLA_LINKINFO | NLA_F_NESTED, info)
        self._ask(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def delete_link(self, index: int) -> None:
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        self._ask(RTM_DELLINK, NLM_F_ACK, body)

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
        body += _attr(IFA_LOCAL, address) + _attr(IFA_ADDRESS, address)
        if broadcast is not None:
            body += _attr(IFA_BROADCAST, broadcast)
        if ifa_flags:
            body += _u32(IFA_FLAGS, ifa_flags)
        self._ask(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def addresses(self, index: int) -> list[tuple[int, bytes, int]]:
        """(family, address, prefix length) of every address on ``index``."""
        body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index)
        found = []
        for payload in self._ask(RTM_GETADDR, NLM_F_DUMP, body):
            family, prefixlen, _flags, _scope, msg_index = _IFADDRMSG.unpack_from(payload)
            if msg_index != index:
                continue
            attrs = _attrs(payload[_IFADDRMSG.size :])
            address = attrs.get(IFA_ADDRESS) or attrs.get(IFA_LOCAL)
            if address is not None:
                found.append((family, address, prefixlen))
        return found
