"""VXLAN, for the backends that make one: its options, checks, and netlink attributes.

Two backends create VXLAN interfaces: the ``vxlan`` link backend (a VXLAN
interface in the guest, its UDP socket on the host) and the Linux bridge
backend (a bridge's VXLAN *uplink*, a topology file's ``bridges: - vxlan:``).
Both take the same settings, checked here once:

- ``vni`` (required): the VXLAN network identifier, 0-16777215;
- ``remote`` (a unicast peer) or ``group`` (a multicast group, which needs
  ``dev``), or neither (the interface learns its peers from what arrives);
- ``port``: the UDP destination port (4789, IANA's; the kernel's own default
  is 8472, so it is always sent);
- ``dev``: the underlay interface on the host (must exist);
- ``local``: the source address; ``ttl``: 1-255 (default: the route's);
- ``learning``: learn remote MACs from what arrives (default true).

The interface is always created by a request sent in the host's namespace,
so the kernel keeps its UDP socket (the underlay) there, wherever the
interface itself lives.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipework.engine import (
    UPLINK_MARKER,
    HostInterfaceError,
    Link,
    Netns,
    OptionSpec,
    UsageError,
    validate_ifname,
)
from pipework.engine.kernel import rtnl

VNI_MAX = (1 << 24) - 1
DEFAULT_PORT = 4789
HEADROOM = {4: 50, 6: 70}
"""Bytes of outer headers per packet: Ethernet 14 + VXLAN 8 + UDP 8 + IPv4 20 (IPv6 40)."""
UPLINK_ALIAS = UPLINK_MARKER
"""The alias of a bridge's VXLAN uplink that pipework made (not an attachment's marker)."""

IFLA_VXLAN_ID = 1
IFLA_VXLAN_GROUP = 2
IFLA_VXLAN_LINK = 3
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_TTL = 5
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFLA_VXLAN_GROUP6 = 16
IFLA_VXLAN_LOCAL6 = 17

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _number(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise UsageError(f"vxlan {name} {value!r} is not a number")
    try:
        number = int(str(value), 10)
    except ValueError:
        raise UsageError(f"vxlan {name} {value!r} is not a number") from None
    if not low <= number <= high:
        raise UsageError(f"vxlan {name} {number} is out of range ({low}-{high})")
    return number


def parse_vni(value: object) -> int:
    return _number("vni", value, 0, VNI_MAX)


def parse_port(value: object) -> int:
    return _number("port", value, 1, 65535)


def parse_ttl(value: object) -> int:
    return _number("ttl", value, 1, 255)


def parse_learning(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text not in (*_TRUE, *_FALSE):
        raise UsageError(f"vxlan learning {value!r} is not a boolean", "use true or false")
    return text in _TRUE


def _address(name: str, value: object) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        raise UsageError(f"vxlan {name} {value!r} is not an IP address") from None


def parse_remote(value: object) -> str:
    address = _address("remote", value)
    if address.is_multicast or address.is_unspecified:
        raise UsageError(
            f"vxlan remote {address} is not a unicast address", "a multicast group is group="
        )
    return str(address)


def parse_group(value: object) -> str:
    address = _address("group", value)
    if not address.is_multicast:
        raise UsageError(
            f"vxlan group {address} is not a multicast address", "a unicast peer is remote="
        )
    return str(address)


def parse_local(value: object) -> str:
    address = _address("local", value)
    if address.is_multicast or address.is_unspecified:
        raise UsageError(f"vxlan local {address} is not a unicast address")
    return str(address)


def parse_dev(value: object) -> str:
    return validate_ifname(str(value), "vxlan dev")


OPTIONS: Mapping[str, OptionSpec] = {
    "vni": OptionSpec(f"the VXLAN network identifier, 0-{VNI_MAX} (required)", parse=parse_vni),
    "remote": OptionSpec("the peer's unicast address", parse=parse_remote),
    "group": OptionSpec("a multicast group (needs dev=)", parse=parse_group),
    "port": OptionSpec(f"the UDP destination port (default {DEFAULT_PORT})", parse=parse_port),
    "dev": OptionSpec("the underlay interface on the host", parse=parse_dev),
    "local": OptionSpec("the source address on the underlay", parse=parse_local),
    "learning": OptionSpec("learn remote MAC addresses (default true)", parse=parse_learning),
    "ttl": OptionSpec("the outer packets' TTL, 1-255", parse=parse_ttl),
}
"""The settings of a VXLAN interface: ``-o KEY=VALUE`` on the command line,
the keys of a topology file's ``vxlan:`` mapping."""


@dataclass(frozen=True)
class Vxlan:
    """One VXLAN interface's settings, checked."""

    vni: int
    remote: str | None = None
    group: str | None = None
    port: int = DEFAULT_PORT
    dev: str | None = None
    local: str | None = None
    learning: bool = True
    ttl: int | None = None

    @property
    def version(self) -> int:
        """The underlay's IP version."""
        address = self.remote or self.group or self.local
        return ipaddress.ip_address(address).version if address else 4

    @property
    def headroom(self) -> int:
        return HEADROOM[self.version]

    def attrs(self, dev_index: int | None) -> dict[str, Any]:
        """``Netns.create`` attributes (rtnl's ``KIND_DATA`` names)."""
        six = "6" if self.version == 6 else ""
        attrs: dict[str, Any] = {
            "vxlan_id": self.vni,
            "vxlan_port": self.port,
            "vxlan_learning": self.learning,
        }
        peer = self.remote or self.group
        if peer is not None:
            attrs["vxlan_group" + six] = peer
        if self.local is not None:
            attrs["vxlan_local" + six] = self.local
        if dev_index is not None:
            attrs["vxlan_link"] = dev_index
        if self.ttl is not None:
            attrs["vxlan_ttl"] = self.ttl
        return attrs

    def describe(self) -> str:
        """For people: ``vni 42 remote 198.18.9.2 port 4789 dev ul0``."""
        parts = [f"vni {self.vni}"]
        parts += [f"remote {self.remote}"] if self.remote else []
        parts += [f"group {self.group}"] if self.group else []
        parts += [f"port {self.port}"]
        parts += [f"dev {self.dev}"] if self.dev else []
        parts += [f"local {self.local}"] if self.local else []
        parts += [] if self.learning else ["nolearning"]
        parts += [f"ttl {self.ttl}"] if self.ttl is not None else []
        return " ".join(parts)


def from_options(values: Mapping[str, object]) -> Vxlan:
    """Check ``values`` (``OPTIONS`` keys; text or typed) as a whole; raise
    ``UsageError`` naming the first problem."""
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise UsageError(
            f"vxlan has no setting {unknown[0]!r}", f"its settings: {', '.join(sorted(OPTIONS))}"
        )
    if "vni" not in values:
        raise UsageError("a vxlan interface needs a VNI", f"add -o vni=N, 0-{VNI_MAX}")
    if "remote" in values and "group" in values:
        raise UsageError("vxlan takes remote or group, not both")
    vxlan = Vxlan(
        vni=parse_vni(values["vni"]),
        remote=parse_remote(values["remote"]) if "remote" in values else None,
        group=parse_group(values["group"]) if "group" in values else None,
        port=parse_port(values["port"]) if "port" in values else DEFAULT_PORT,
        dev=parse_dev(values["dev"]) if "dev" in values else None,
        local=parse_local(values["local"]) if "local" in values else None,
        learning=parse_learning(values["learning"]) if "learning" in values else True,
        ttl=parse_ttl(values["ttl"]) if "ttl" in values else None,
    )
    peer = vxlan.remote or vxlan.group
    local = vxlan.local
    if peer and local and ipaddress.ip_address(peer).version != ipaddress.ip_address(local).version:
        raise UsageError(f"vxlan local {vxlan.local} and {peer} are of different IP versions")
    if vxlan.group and vxlan.dev is None:
        raise UsageError(
            f"a vxlan multicast group ({vxlan.group}) needs its underlay", "add dev=IFNAME"
        )
    return vxlan


async def underlay(host: Netns, vxlan: Vxlan) -> Link | None:
    """The underlay interface ``dev`` as it is now (None when none is named)."""
    if vxlan.dev is None:
        return None
    link = await host.link(vxlan.dev)
    if link is None:
        raise HostInterfaceError(
            f"vxlan underlay {vxlan.dev} does not exist", "name an existing host interface as dev="
        )
    return link


def pick_mtu(vxlan: Vxlan, requested: int | None, dev: Link | None, what: str) -> int | None:
    """The MTU of a VXLAN interface (``what`` names it): ``requested``, or the
    underlay's less the outer headers; None (the kernel's default) without
    either. More than the underlay carries is refused."""
    if dev is None:
        return requested
    limit = dev.mtu - vxlan.headroom
    if requested is not None and requested > limit:
        raise HostInterfaceError(
            f"MTU {requested} is larger than {what} over {dev.ifname} carries"
            f" (at most {limit}: {dev.mtu} - {vxlan.headroom})",
            f"choose an MTU of {limit} or less, or raise {dev.ifname}'s MTU",
        )
    return requested or limit


async def read(host: Netns, link: Link) -> Vxlan:
    """The settings of the VXLAN interface ``link`` in ``host``, as the kernel has them."""
    (answer,) = await host.request(
        f"looking up {link.ifname}", rtnl.RTM_GETLINK, 0, rtnl.get_link_body(link.index)
    )
    data = rtnl.link_info_data(answer)

    def u(key: int, fmt: str) -> int | None:
        raw = data.get(key)
        return struct.unpack(fmt, raw)[0] if raw and len(raw) >= struct.calcsize(fmt) else None

    def ip(key4: int, key6: int) -> str | None:
        raw = data.get(key4) or data.get(key6)
        if not raw or not any(raw):
            return None
        return str(ipaddress.ip_address(raw))

    peer = ip(IFLA_VXLAN_GROUP, IFLA_VXLAN_GROUP6)
    multicast = peer is not None and ipaddress.ip_address(peer).is_multicast
    dev_index = u(IFLA_VXLAN_LINK, "=I")
    dev = await host.link_by_index(dev_index) if dev_index else None
    ttl = u(IFLA_VXLAN_TTL, "=B")
    return Vxlan(
        vni=u(IFLA_VXLAN_ID, "=I") or 0,
        remote=None if multicast else peer,
        group=peer if multicast else None,
        port=u(IFLA_VXLAN_PORT, "!H") or 0,
        dev=dev.ifname if dev is not None else None,
        local=ip(IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6),
        learning=bool(u(IFLA_VXLAN_LEARNING, "=B")),
        ttl=ttl or None,
    )


def differences(want: Vxlan, have: Vxlan) -> list[str]:
    """What differs between two settings, for people (``remote 198.18.9.2 -> 198.18.9.3``)."""
    return [
        f"{name} {getattr(have, name)} -> {getattr(want, name)}".lower()
        for name in ("vni", "remote", "group", "port", "dev", "local", "learning", "ttl")
        if getattr(want, name) != getattr(have, name)
    ]


__all__ = [
    "DEFAULT_PORT",
    "OPTIONS",
    "UPLINK_ALIAS",
    "VNI_MAX",
    "Vxlan",
    "differences",
    "from_options",
    "pick_mtu",
    "read",
    "underlay",
]
