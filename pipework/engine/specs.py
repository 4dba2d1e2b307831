"""Immutable request and result types.

An ``AttachSpec`` is validated once, when it is built; everything after it
trusts it. Parsing of the original tool's IPSPEC/MACSPEC words lives here too,
because the long-option CLI, the legacy grammar and the Python API share it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from pipework.engine.errors import UsageError

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IFNAMSIZ = 15
GUEST_KEY_MAX = 128
"""Longest ``AttachSpec.guest_key``: the marker (an interface alias) holds 255 bytes."""
DEFAULT_IFNAME = "eth1"
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_METHOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.+-]*$")


def validate_ifname(name: str, what: str = "interface name") -> str:
    """Check a user-given interface name the way the kernel would."""
    if not name:
        raise UsageError(f"{what} is empty")
    if len(name.encode()) > IFNAMSIZ:
        raise UsageError(
            f"{what} {name!r} is {len(name.encode())} bytes long",
            f"Linux allows at most {IFNAMSIZ}",
        )
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise UsageError(
            f"{what} {name!r} is not valid", "it may not contain '/', ':' or white space"
        )
    return name


def short_hash(*parts: str) -> str:
    """10 hex digits naming generated interfaces (``pw`` + hash fits IFNAMSIZ)."""
    return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()[:10]


def derive_mac(seed: str) -> str:
    """The original's ``U:STRING`` mapping: ``02:`` + first 5 bytes of md5(STRING + newline)."""
    digest = hashlib.md5((seed + "\n").encode(), usedforsecurity=False).hexdigest()
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


def parse_mac(text: str) -> str:
    """A unicast MAC address, normalised to lower case; ``U:STRING`` is derived."""
    if text.startswith("U:"):
        if len(text) == 2:
            raise UsageError("U: needs a string to derive the MAC address from", "e.g. U:web1")
        return derive_mac(text[2:])
    mac = text.lower().replace("-", ":")
    if not _MAC_RE.match(mac):
        raise UsageError(f"{text!r} is not a MAC address", "write it as 02:aa:bb:cc:dd:ee")
    if int(mac[:2], 16) & 1:
        raise UsageError(
            f"{text} is a multicast MAC address",
            "the lowest bit of the first byte must be 0, e.g. 02:...",
        )
    if mac == "00:00:00:00:00:00":
        raise UsageError("00:00:00:00:00:00 is not a usable MAC address")
    return mac


def parse_vlan(text: str | int) -> int:
    try:
        vid = int(text)
    except ValueError:
        raise UsageError(f"VLAN ID {text!r} is not a number", "use 1 to 4094") from None
    if not 1 <= vid <= 4094:
        raise UsageError(f"VLAN ID {vid} is out of range", "use 1 to 4094")
    return vid


def _vlan_or_none(text: str) -> int | None:
    try:
        return parse_vlan(text)
    except UsageError:
        return None


def parse_pkey(text: str) -> int:
    """An InfiniBand partition key, written in hex (``8001``, ``0x8001``)."""
    digits = text[2:] if text.lower().startswith("0x") else text
    try:
        pkey = int(digits, 16) if 0 < len(digits) <= 4 else -1
    except ValueError:
        pkey = -1
    if pkey < 0 or not pkey & 0x7FFF:
        raise UsageError(
            f"partition key {text!r} is not valid",
            "write it in hex, 0001-7fff (limited) or 8001-ffff (full membership)",
        )
    return pkey


def parse_macspec(text: str) -> tuple[str | None, str | None]:
    """MACSPEC ``[MAC][@TAG]`` -> (mac, tag as written).

    The tag is a VLAN ID for most backends and a hex partition key for
    IPoIB, so only the backend can read it; ``AttachSpec`` checks that it is
    one of the two.
    """
    mac_part, at, tag = text.partition("@")
    if at and not tag:
        raise UsageError(f"MACSPEC {text!r} ends with '@'", "write MAC@VID, e.g. @10")
    mac = parse_mac(mac_part) if mac_part else None
    if mac is None and not tag:
        raise UsageError("MACSPEC is empty")
    return mac, tag or None


def parse_timeout(text: str | float) -> float:
    """``--dhcp-timeout``: positive seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"timeout {text!r} is not a number of seconds") from None
    if not 0 < seconds <= 86400:
        raise UsageError(f"timeout {text} is out of range", "use more than 0 and at most 86400 s")
    return seconds


def parse_mtu(text: str | int) -> int:
    try:
        mtu = int(text)
    except ValueError:
        raise UsageError(f"MTU {text!r} is not a number") from None
    if not 68 <= mtu <= 65535:
        raise UsageError(f"MTU {mtu} is out of range", "use 68 to 65535")
    return mtu


@dataclass(frozen=True)
class AddressSpec:
    """How the guest interface gets its address: IPSPEC, parsed.

    ``method`` is ``"static"`` for ``ADDR/PREFIX[@GW]`` and ``0/0`` (no
    address), or the name of an address provider (``dhclient``, ``udhcpc-f``,
    ``dhcp``...) with ``options`` from ``CLIENT:OPTS``.
    """

    method: str = "static"
    address: IPInterface | None = None
    gateway: IPAddress | None = None
    options: tuple[str, ...] = ()
    dns: bool = False
    """``--dns``: write the DNS servers and domain of a DHCP lease into the
    guest's own resolv.conf."""
    timeout: float | None = None
    """``--dhcp-timeout``: seconds to wait for a lease (None: the provider's default)."""
    image: str | None = None
    """``--dhcp-image``: the image of the ``dhcp`` helper container."""

    def __post_init__(self) -> None:
        if self.method == "static" and (self.dns or self.timeout is not None or self.image):
            raise UsageError(
                "--dns, --dhcp-timeout and --dhcp-image apply to DHCP addressing only",
                "use IPSPEC dhclient, udhcpc, dhcpcd or dhcp",
            )
        if self.timeout is not None:
            object.__setattr__(self, "timeout", parse_timeout(self.timeout))
        if self.image is not None and (not self.image or any(c.isspace() for c in self.image)):
            raise UsageError(f"--dhcp-image {self.image!r} is not an image name")
        if self.gateway is not None:
            if self.address is None:
                raise UsageError("a gateway needs an address", "write ADDR/PREFIX@GATEWAY")
            if self.gateway.version != self.address.version:
                raise UsageError(
                    f"gateway {self.gateway} and address {self.address} are of different families"
                )
            if self.gateway == self.address.ip:
                raise UsageError(f"the gateway {self.gateway} is the interface's own address")
            if self.gateway.is_multicast or self.gateway.is_unspecified:
                raise UsageError(f"{self.gateway} cannot be a gateway")

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        dns: bool = False,
        timeout: str | float | None = None,
        image: str | None = None,
    ) -> AddressSpec:
        """IPSPEC: ``ADDR/PREFIX[@GATEWAY]``, ``0/0``, ``CLIENT[:OPTS]``.

        ``dns``, ``timeout`` and ``image`` are ``--dns``, ``--dhcp-timeout``
        and ``--dhcp-image``, for DHCP methods only.
        """
        spec = cls._parse(text)
        if dns or timeout is not None or image is not None:
            seconds = parse_timeout(timeout) if timeout is not None else None
            spec = replace(spec, dns=dns, timeout=seconds, image=image)
        return spec

    @classmethod
    def _parse(cls, text: str) -> AddressSpec:
        if text == "0/0":
            return cls()
        addr_part, _, gw_part = text.partition("@")
        try:
            ip = ipaddress.ip_address(addr_part.split("/", 1)[0])
        except ValueError:
            ip = None
        if ip is not None:
            if "/" not in addr_part:
                prefix = 24 if ip.version == 4 else 64
                raise UsageError(
                    "The IP address should include a netmask.",
                    f"Maybe you meant {addr_part}/{prefix} ?",
                )
            try:
                address = ipaddress.ip_interface(addr_part)
            except ValueError:
                raise UsageError(f"{addr_part!r} has an invalid prefix length") from None
            if address.ip.is_multicast or address.ip.is_unspecified:
                raise UsageError(f"{address.ip} cannot be an interface address")
            gateway = None
            if gw_part:
                try:
                    gateway = ipaddress.ip_address(gw_part)
                except ValueError:
                    raise UsageError(f"gateway {gw_part!r} is not an IP address") from None
            elif "@" in text:
                raise UsageError(f"IPSPEC {text!r} ends with '@'", "write ADDR/PREFIX@GATEWAY")
            return cls(address=address, gateway=gateway)
        method, _, opts = text.partition(":")
        if not _METHOD_RE.match(method) or method == "static":
            raise UsageError(
                f"{text!r} is neither ADDR/PREFIX[@GATEWAY], 0/0, nor a DHCP client",
                "e.g. 198.18.10.2/24@198.18.10.1, 2001:db8::2/64, 0/0 or dhclient",
            )
        try:
            options = tuple(shlex.split(opts))
        except ValueError as exc:
            raise UsageError(f"cannot split the options of {text!r}: {exc}") from None
        return cls(method=method, options=options)

    def __str__(self) -> str:
        if self.method != "static":
            return self.method + (":" + shlex.join(self.options) if self.options else "")
        if self.address is None:
            return "0/0"
        return f"{self.address}" + (f"@{self.gateway}" if self.gateway else "")


@dataclass(frozen=True)
class RouteSpec:
    """An extra route in the guest, through the attached interface.

    Written ``DEST [via GATEWAY] [metric N]`` (``198.18.2.0/24 via
    198.18.1.254``). The route lives on the interface, so it goes with it;
    the default route is ``ADDR/PREFIX@GATEWAY``'s business.
    """

    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: IPAddress | None = None
    metric: int | None = None

    def __post_init__(self) -> None:
        if self.dst.prefixlen == 0:
            raise UsageError(
                f"route {self} is a default route", "give the gateway as ADDR/PREFIX@GATEWAY"
            )
        if self.via is not None and self.via.version != self.dst.version:
            raise UsageError(f"route {self}: the gateway is of another address family")
        if self.metric is not None and not 0 <= self.metric <= 0xFFFFFFFF:
            raise UsageError(f"route {self}: metric {self.metric} is out of range")

    @classmethod
    def parse(cls, text: str) -> RouteSpec:
        words = text.split()
        if not words:
            raise UsageError("a route is empty", "write DEST [via GATEWAY] [metric N]")
        try:
            dst = ipaddress.ip_network(words[0], strict=True)
        except ValueError as exc:
            raise UsageError(
                f"route {text!r}: {exc}", "write DEST/PREFIX, e.g. 198.18.2.0/24"
            ) from None
        values: dict[str, str] = {}
        rest = words[1:]
        while rest:
            key = rest.pop(0)
            if key not in ("via", "metric") or not rest or key in values:
                raise UsageError(
                    f"route {text!r} is not DEST [via GATEWAY] [metric N]",
                    "e.g. 198.18.2.0/24 via 198.18.1.254",
                )
            values[key] = rest.pop(0)
        via = None
        if "via" in values:
            try:
                via = ipaddress.ip_address(values["via"])
            except ValueError:
                raise UsageError(
                    f"route {text!r}: {values['via']!r} is not an IP address"
                ) from None
        metric = None
        if "metric" in values:
            if not values["metric"].isdigit():
                raise UsageError(f"route {text!r}: metric {values['metric']!r} is not a number")
            metric = int(values["metric"])
        return cls(dst=dst, via=via, metric=metric)

    def __str__(self) -> str:
        text = str(self.dst)
        if self.via is not None:
            text += f" via {self.via}"
        if self.metric is not None:
            text += f" metric {self.metric}"
        return text


@dataclass(frozen=True)
class AttachSpec:
    """One request: plumb an interface into ``guest`` from host interface ``host``.

    ``host`` is the original's HOSTIF (a bridge or NIC name, or a
    ``mac:`` selector); ``kind`` forces a link backend instead of choosing
    by what ``host`` is. ``ifname=None`` takes the backend's default
    (``eth1``, or ``ib0`` for IPoIB).
    """

    host: str
    guest: str
    address: AddressSpec = field(default_factory=AddressSpec)
    ifname: str | None = None
    host_ifname: str | None = None
    mac: str | None = None
    vlan: int | None = None
    mtu: int | None = None
    tag: str | None = None
    """MACSPEC's ``@`` suffix as written: a VLAN ID, or an IPoIB partition key."""
    pkey: int | None = None
    kind: str | None = None
    direct_phys: bool = False
    family: Literal[4, 6] | None = None
    force: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    routes: tuple[RouteSpec, ...] = ()
    """Extra routes in the guest through this interface, added after the address."""
    guest_key: str | None = None
    """The guest's identity in markers, generated names and provider state,
    instead of the key its resolver gives (an orchestrator's ID for a guest
    given by path: the CNI plugin uses its network and container ID). Not
    part of the fingerprint: it says who, not how."""
    allow_forward: bool = False
    """Linux bridges: accept traffic across the bridge in a host firewall
    whose FORWARD policy drops it (the Docker FORWARD trap)."""

    def __post_init__(self) -> None:
        if not self.host:
            raise UsageError("the host interface is empty")
        if self.guest_key is not None and not (
            0 < len(self.guest_key) <= GUEST_KEY_MAX and self.guest_key.isprintable()
        ):
            raise UsageError(
                f"guest key {self.guest_key!r} is not valid",
                f"use 1 to {GUEST_KEY_MAX} printable characters",
            )
        if not self.host.startswith("mac:"):
            validate_ifname(self.host, "host interface")
        if not self.guest:
            raise UsageError("the guest is empty")
        if self.ifname is not None:
            validate_ifname(self.ifname, "guest interface name")
        if self.host_ifname is not None:
            validate_ifname(self.host_ifname, "host-side interface name")
        if self.mac is not None:
            object.__setattr__(self, "mac", parse_mac(self.mac))
        if self.vlan is not None:
            object.__setattr__(self, "vlan", parse_vlan(self.vlan))
        if self.pkey is not None:
            object.__setattr__(self, "pkey", parse_pkey(f"{self.pkey:x}"))
        if self.tag is not None:
            # ``vlan`` may already hold the tag's VLAN: dataclasses.replace()
            # runs this again on a spec it made.
            if self.pkey is not None or self.vlan not in (None, _vlan_or_none(self.tag)):
                raise UsageError("the VLAN is given twice (MACSPEC and --vlan)")
            try:
                object.__setattr__(self, "vlan", parse_vlan(self.tag))
            except UsageError:
                try:
                    parse_pkey(self.tag)
                except UsageError:
                    raise UsageError(
                        f"@{self.tag} is neither a VLAN ID (1 to 4094) nor a partition key",
                        "IPoIB partition keys are hex: 0001-7fff or 8001-ffff",
                    ) from None
        if self.mtu is not None:
            object.__setattr__(self, "mtu", parse_mtu(self.mtu))
        if self.kind is not None and not _METHOD_RE.match(self.kind):
            raise UsageError(f"{self.kind!r} is not a link kind name")
        if self.family is not None:
            if self.family not in (4, 6):
                raise UsageError(f"address family {self.family} is not 4 or 6")
            addr = self.address.address
            if addr is not None and addr.version != self.family:
                raise UsageError(f"-a {self.family} does not match the address {addr}")
        if self.routes:
            # Accept any iterable of RouteSpec or "DEST via GW" strings.
            items: Sequence[Any] = tuple(self.routes)
            routes = tuple(r if isinstance(r, RouteSpec) else RouteSpec.parse(r) for r in items)
            seen = {(r.dst, r.metric) for r in routes}
            if len(seen) != len(routes):
                raise UsageError("a route to the same destination is given twice")
            object.__setattr__(self, "routes", routes)

    def vlan_id(self, kind: str) -> int | None:
        """The VLAN ID, for backends that take one (not a partition key)."""
        if self.pkey is not None:
            raise UsageError(f"a partition key is for IPoIB, not for {kind}")
        if self.tag is not None and self.vlan is None:
            parse_vlan(self.tag)  # raises "out of range"
        return self.vlan

    def partition_key(self) -> int | None:
        """The IPoIB partition key (``@PKEY`` in hex, or ``pkey``)."""
        if self.tag is not None:
            return parse_pkey(self.tag)
        if self.vlan is not None:
            raise UsageError(
                "IPoIB takes a partition key, not a VLAN ID", "write @PKEY in hex, e.g. @8001"
            )
        return self.pkey

    def refuse(
        self, kind: str, *, vlan: bool = False, mac: bool = False, direct_phys: bool = False
    ) -> None:
        """Raise ``UsageError`` for options a backend of ``kind`` cannot honour."""
        if vlan and (self.vlan is not None or self.tag is not None or self.pkey is not None):
            raise UsageError(f"{kind} interfaces cannot carry a VLAN tag", "drop @VID / --vlan")
        if mac and self.mac is not None:
            raise UsageError(f"{kind} interfaces cannot take a MAC address", "drop the MAC")
        if direct_phys and self.direct_phys:
            raise UsageError(
                f"--direct-phys moves a NIC into the guest; it does not apply to {kind}"
            )

    def backend_options(self, kind: str, known: Mapping[str, str]) -> None:
        """Raise ``UsageError`` for ``-o`` keys a backend does not know.

        ``known`` maps each accepted key to a one-line description.
        """
        for key in self.options:
            if key not in known:
                accepted = ", ".join(sorted(known)) or "none"
                raise UsageError(
                    f"the {kind} backend has no option {key!r}", f"its options: {accepted}"
                )

    def choice(
        self, kind: str, key: str, choices: Sequence[str], default: str | None
    ) -> str | None:
        """The backend option ``key`` (``-o key=`` or ``--mode``), one of ``choices``."""
        value = self.options.get(key, default)
        if value is not None and value not in choices:
            raise UsageError(f"{kind} has no {key} {value!r}", f"use one of {', '.join(choices)}")
        return value

    def fingerprint(self, backend: str, host: str) -> str:
        """A short digest of everything that shapes the result, for idempotence."""
        parts = [
            backend,
            host,
            str(self.address),
            self.mac or "",
            str(self.vlan or ""),
            self.tag or "",
            str(self.pkey or ""),
            str(self.mtu or ""),
            self.host_ifname or "",
            "direct" if self.direct_phys else "",
            *(f"{k}={v}" for k, v in sorted(self.options.items())),
            # Appended only when set, so that older fingerprints stay valid.
            *(["dns"] if self.address.dns else []),
            *(f"route={route}" for route in self.routes),
            *(["allow-forward"] if self.allow_forward else []),
        ]
        return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()[:12]


@dataclass(frozen=True)
class GuestInfo:
    """Who the guest is, for results and messages."""

    name: str
    key: str
    runtime: str
    pid: int | None = None
    api: str | None = None
    """The Docker-compatible API that manages the guest (``unix:///run/podman/podman.sock``),
    for plugins that start helper containers beside it; None for other guests."""


Status = Literal["created", "unchanged", "replaced"]


@dataclass(frozen=True)
class Attachment:
    """The result of one attach, as found in the kernel afterwards."""

    guest: GuestInfo
    ifname: str
    kind: str
    host: str
    host_ifname: str | None
    mac: str | None
    mtu: int | None
    vlan: int | None
    address_method: str
    addresses: tuple[str, ...]
    gateway: str | None
    status: Status = "created"
    dns: tuple[str, ...] = ()
    """DNS servers from a DHCP lease (written to the guest only with ``--dns``)."""
    domain: str | None = None
    """The DNS domain from a DHCP lease."""
    routes: tuple[str, ...] = ()
    """The extra routes asked for (``DEST [via GW] [metric N]``)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["addresses"] = list(self.addresses)
        data["dns"] = list(self.dns)
        data["routes"] = list(self.routes)
        return data
