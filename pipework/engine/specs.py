"""Immutable request and result types.

An ``AttachSpec`` is validated once, when it is built; everything after it
trusts it. Parsing of the original tool's IPSPEC/MACSPEC words lives here too,
because the long-option CLI, the legacy grammar and the Python API share it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, asdict, dataclass, field, replace
from typing import Any, Literal

from pipework.engine.compat import (
    API_KEY,
    UNCOUNTED_ADDRESS_KEYS,
    UNSET,
    LegacyAddressFields,
    LegacyAttachFields,
    LegacyGuestFields,
    drop_defaults,
)
from pipework.engine.errors import UsageError
from pipework.engine.options import OptionSpec, OptionValue, check_options, given

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


def check_image(image: str) -> str:
    """``--dhcp-image``: a non-empty image name without white space."""
    if not image or any(c.isspace() for c in image):
        raise UsageError(f"--dhcp-image {image!r} is not an image name")
    return image


def parse_mtu(text: str | int) -> int:
    try:
        mtu = int(text)
    except ValueError:
        raise UsageError(f"MTU {text!r} is not a number") from None
    if not 68 <= mtu <= 65535:
        raise UsageError(f"MTU {mtu} is out of range", "use 68 to 65535")
    return mtu


@dataclass(frozen=True)
class AddressSpec(LegacyAddressFields):
    """How the guest interface gets its address: IPSPEC, parsed.

    ``method`` is ``"static"`` for ``ADDR/PREFIX[@GW]`` and ``0/0`` (no
    address), or the name of an address provider (``dhclient``, ``udhcpc-f``,
    ``dhcp``...) with ``options`` from ``CLIENT:OPTS``, and ``settings``
    that provider declares (``engine/options.py``).
    """

    method: str = "static"
    address: IPInterface | None = None
    gateway: IPAddress | None = None
    options: tuple[str, ...] = ()
    dns: InitVar[bool | None] = UNSET
    """0.1.0's keyword for ``settings["dns"]`` (``--dns``: write the DNS
    servers and domain of a DHCP lease into the guest's own resolv.conf)."""
    timeout: InitVar[float | None] = UNSET
    """0.1.0's keyword for ``settings["timeout"]`` (``--dhcp-timeout``: seconds
    to wait for a lease)."""
    image: InitVar[str | None] = UNSET
    """0.1.0's keyword for ``settings["image"]`` (``--dhcp-image``: the image
    of the ``dhcp`` helper container)."""
    settings: Mapping[str, OptionValue] = field(default_factory=dict)
    """The address provider's settings, by the keys it declares; only those set."""
    family: Literal[4, 6] | None = None
    """The address family a dynamic method asks for (``dhclient/6``, or
    ``-a 6``); None: the provider's own (IPv4 for DHCP, IPv6 for SLAAC). A
    static address has its own family."""

    def __post_init__(self, dns: bool | None, timeout: float | None, image: str | None) -> None:
        if self.family is not None and self.family not in (4, 6):
            raise UsageError(f"address family {self.family} is not 4 or 6")
        if (
            self.method == "static"
            and self.family is not None
            and (self.address is None or self.address.version != self.family)
        ):
            raise UsageError(f"/{self.family} is for DHCP methods, not for {self}")
        legacy = {"dns": dns, "timeout": timeout, "image": image}
        settings = {**self.settings, **{k: v for k, v in legacy.items() if v is not UNSET}}
        if self.method == "static" and any(
            v is not None and v is not False and v != "" for v in settings.values()
        ):
            raise UsageError(
                "--dns, --dhcp-timeout and --dhcp-image apply to DHCP addressing only",
                "use IPSPEC dhclient, udhcpc, dhcpcd or dhcp",
            )
        if timeout is not UNSET and timeout is not None:
            settings["timeout"] = parse_timeout(timeout)
        if image is not UNSET and image is not None:
            check_image(image)
        object.__setattr__(self, "settings", given(settings))
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
        word, _, opts = text.partition(":")
        method, slash, number = word.partition("/")
        if not _METHOD_RE.match(method) or method == "static":
            raise UsageError(
                f"{text!r} is neither ADDR/PREFIX[@GATEWAY], 0/0, nor an address method",
                "e.g. 198.18.10.2/24@198.18.10.1, 2001:db8::2/64, 0/0, dhclient or slaac",
            )
        family: Literal[4, 6] | None = None
        if slash:
            if number not in ("4", "6"):
                raise UsageError(f"{word!r}: the family after '/' is 4 or 6", f"e.g. {method}/6")
            family = 4 if number == "4" else 6
        import shlex  # a DHCP client's options only: not on a static attach

        try:
            options = tuple(shlex.split(opts))
        except ValueError as exc:
            raise UsageError(f"cannot split the options of {text!r}: {exc}") from None
        return cls(method=method, options=options, family=family)

    @property
    def word(self) -> str:
        """``METHOD[/FAMILY]``: how this address is obtained, as markers and
        results say it (``static``, ``dhclient/6``, ``slaac``)."""
        return self.method + (f"/{self.family}" if self.family else "")

    def __str__(self) -> str:
        if self.method != "static":
            import shlex

            return self.word + (":" + shlex.join(self.options) if self.options else "")
        if self.address is None:
            return "0/0"
        return f"{self.address}" + (f"@{self.gateway}" if self.gateway else "")


def split_ipspec(text: str) -> list[str]:
    """IPSPEC's items, separated by commas (``ADDR/PREFIX@GW,slaac``).

    A method's ``:OPTS`` runs to the end of IPSPEC (a client's options may
    hold commas), so a method with options comes last.
    """
    items: list[str] = []
    rest = text
    while True:
        head, comma, tail = rest.partition(",")
        if ":" in head and not _is_address_item(head):  # METHOD:OPTS, to the end
            items.append(rest)
            break
        items.append(head)
        if not comma:
            break
        rest = tail
    if any(not item for item in items):
        raise UsageError(
            f"IPSPEC {text!r} has an empty item", "separate addresses with one comma each"
        )
    return items


def _is_address_item(item: str) -> bool:
    try:
        ipaddress.ip_address(item.partition("@")[0].split("/", 1)[0])
    except ValueError:
        return False
    return True


def parse_addresses(
    text: str | Sequence[str],
    *,
    dns: bool = False,
    timeout: str | float | None = None,
    image: str | None = None,
) -> tuple[AddressSpec, ...]:
    """IPSPEC with one address or several, comma-separated, each
    ``ADDR/PREFIX[@GATEWAY]``, ``0/0`` or ``METHOD[/FAMILY][:OPTS]``; or a
    list of such items (a topology file's ``addresses:``).

    ``dns``, ``timeout`` and ``image`` (``--dns``, ``--dhcp-timeout``,
    ``--dhcp-image``) go to the dynamic methods; given with none, they are
    refused as for one static address.
    """
    items = split_ipspec(text) if isinstance(text, str) else list(text)
    if not items:
        raise UsageError("the list of addresses is empty", "give one address at least, or 0/0")
    specs = [AddressSpec._parse(item) for item in items]
    if dns or timeout is not None or image is not None:
        dynamic = [i for i, spec in enumerate(specs) if spec.method != "static"] or [0]
        for i in dynamic:
            specs[i] = AddressSpec.parse(str(specs[i]), dns=dns, timeout=timeout, image=image)
    return tuple(specs)


def check_addresses(addresses: Sequence[AddressSpec]) -> None:
    """Raise ``UsageError`` for a list of addresses one interface cannot take."""
    if len(addresses) < 2:
        return
    if any(a.method == "static" and a.address is None for a in addresses):
        raise UsageError("0/0 (no address) cannot be combined with other addresses")
    seen: set[str] = set()
    gateways: dict[int, AddressSpec] = {}
    for a in addresses:
        key = str(a.address.ip) if a.address is not None else f"{a.method}/{a.family or ''}"
        if key in seen:
            raise UsageError(
                f"{a.address.ip if a.address is not None else a} is given twice",
                "give each address or method once",
            )
        seen.add(key)
        if a.gateway is not None:
            other = gateways.setdefault(a.gateway.version, a)
            if other is not a:
                raise UsageError(
                    f"two IPv{a.gateway.version} gateways: {other.gateway} and {a.gateway}",
                    "an interface takes one default route per family",
                )


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
class AttachSpec(LegacyAttachFields):
    """One request: plumb an interface into ``guest`` from host interface ``host``.

    ``host`` is the original's HOSTIF (a bridge or NIC name, or a
    ``mac:`` selector); ``kind`` forces a link backend instead of choosing
    by what ``host`` is. ``ifname=None`` takes the backend's default
    (``eth1``, or ``ib0`` for IPoIB). What only a backend understands is in
    ``options`` (``-o KEY=VALUE``) and ``settings`` (options with a flag of
    their own), by the keys the backend declares (``engine/options.py``).
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
    pkey: InitVar[int | None] = UNSET
    """0.1.0's keyword for ``settings["pkey"]`` (``--pkey``, the ipoib backend's)."""
    kind: str | None = None
    direct_phys: InitVar[bool | None] = UNSET
    """0.1.0's keyword for ``settings["direct_phys"]`` (``--direct-phys``, the phys backend's)."""
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
    allow_forward: InitVar[bool | None] = UNSET
    """0.1.0's keyword for ``settings["allow_forward"]`` (``--allow-forward``,
    the bridge backend's)."""
    settings: Mapping[str, OptionValue] = field(default_factory=dict)
    """The link backend's settings, by the keys it declares; only those set."""
    announce: bool = True
    """Announce a static IPv4 address with a gratuitous ARP once the link is
    ready (``--no-announce``: don't). Not part of the fingerprint: it says
    how, not what."""
    ipv6_link_local: bool = False
    """Keep IPv6 address generation on an interface pipework creates (an
    ``fe80::`` address, with its duplicate address detection and router
    solicitations). Off by default unless the address is IPv6:
    engine/announcing.py."""
    extra_addresses: tuple[AddressSpec, ...] = ()
    """More addresses of the same interface, after ``address``, each with its
    own provider (IPSPEC ``ADDR/PREFIX@GW,2001:db8::2/64``, ``dhclient,slaac``;
    a topology file's ``addresses:``). ``addresses`` is all of them."""

    @property
    def addresses(self) -> tuple[AddressSpec, ...]:
        """Every address of the interface: ``address``, then ``extra_addresses``."""
        return (self.address, *self.extra_addresses)

    def __post_init__(
        self, pkey: int | None, direct_phys: bool | None, allow_forward: bool | None
    ) -> None:
        legacy = {"pkey": pkey, "direct_phys": direct_phys, "allow_forward": allow_forward}
        settings = {**self.settings, **{k: v for k, v in legacy.items() if v is not UNSET}}
        if pkey is not UNSET and pkey is not None:
            settings["pkey"] = parse_pkey(f"{pkey:x}")
        object.__setattr__(self, "settings", given(settings))
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
        object.__setattr__(self, "extra_addresses", tuple(self.extra_addresses))
        if self.family is not None:
            if self.family not in (4, 6):
                raise UsageError(f"address family {self.family} is not 4 or 6")
            for spec in self.addresses:
                addr = spec.address
                if addr is not None and addr.version != self.family:
                    raise UsageError(f"-a {self.family} does not match the address {addr}")
                if spec.method != "static" and spec.family not in (None, self.family):
                    raise UsageError(f"-a {self.family} does not match {spec}")
            if self.family == 6:  # -a 6: the dynamic methods' family (IPv4 is their default)
                given_six = [
                    replace(a, family=6) if a.method != "static" and a.family is None else a
                    for a in self.addresses
                ]
                object.__setattr__(self, "address", given_six[0])
                object.__setattr__(self, "extra_addresses", tuple(given_six[1:]))
        check_addresses(self.addresses)
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

    def backend_options(self, kind: str, known: Mapping[str, str | OptionSpec]) -> None:
        """Raise ``UsageError`` for ``-o`` keys a backend does not know, and for
        values of the options and settings it declares that it refuses.

        ``known`` is the backend's ``options`` declaration (or, as before
        declarations existed, each accepted ``-o`` key with a one-line
        description). See ``engine/options.py``.
        """
        declared = {k: v if isinstance(v, OptionSpec) else OptionSpec(v) for k, v in known.items()}
        check_options(kind, declared, self.options, self.settings)

    def choice(
        self, kind: str, key: str, choices: Sequence[str], default: str | None
    ) -> str | None:
        """The backend option ``key`` (``-o key=`` or ``--mode``), one of ``choices``."""
        value = self.options.get(key, default)
        if value is not None and value not in choices:
            raise UsageError(f"{kind} has no {key} {value!r}", f"use one of {', '.join(choices)}")
        return value

    def fingerprint(
        self,
        backend: str,
        host: str,
        declared: Mapping[str, OptionSpec] | None = None,
        address_declared: Mapping[str, OptionSpec] | None = None,
        extra_declared: Sequence[Mapping[str, OptionSpec]] = (),
    ) -> str:
        """A short digest of everything that shapes the result, for idempotence
        (the marker's ``cfg``).

        The core fields in fixed places, the ``-o`` options and the routes,
        then the settings that are set, as ``KEY=VALUE``, sorted: an option
        nobody gives changes no one's fingerprint. Left out: what the backend
        (``declared``) or the address provider (``address_declared``)
        declares with ``fingerprint=False``, and ``--dhcp-timeout`` and
        ``--dhcp-image`` (as in 0.1.0). Extra addresses come last, each with
        its counted settings (``extra_declared``: their providers' options).

        For a request without settings this is 0.1.0's fingerprint; 0.1.0
        put ``--pkey``, ``--direct-phys``, ``--dns`` and ``--allow-forward``
        elsewhere, and ``compat.same_configuration`` still recognises its
        markers. The layout is frozen: a change makes every attachment
        "another configuration".
        """
        address_declared = address_declared or {}
        parts = [
            backend,
            host,
            str(self.address),
            self.mac or "",
            str(self.vlan or ""),
            self.tag or "",
            "",  # 0.1.0's --pkey, now a setting
            str(self.mtu or ""),
            self.host_ifname or "",
            "",  # 0.1.0's --direct-phys, now a setting
            *(f"{k}={v}" for k, v in sorted(self.options.items())),
            *(f"route={route}" for route in self.routes),
            *_counted("settings", self.settings, declared or {}),
            *_counted(
                "address-settings",
                {k: v for k, v in self.address.settings.items() if k not in UNCOUNTED_ADDRESS_KEYS},
                address_declared,
            ),
            # Last, and only when asked for: earlier attachments keep their fingerprint.
            *(["ipv6-link-local"] if self.ipv6_link_local else []),
        ]
        for i, extra in enumerate(self.extra_addresses):
            counted = {k: v for k, v in extra.settings.items() if k not in UNCOUNTED_ADDRESS_KEYS}
            known = extra_declared[i] if i < len(extra_declared) else {}
            parts += ["address", str(extra), *_counted("address-settings", counted, known)]
        return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()[:12]


def _counted(
    group: str, values: Mapping[str, OptionValue], declared: Mapping[str, OptionSpec]
) -> list[str]:
    """``GROUP`` (no ``=`` in it, so no ``-o`` option looks like it) and then
    ``KEY=VALUE`` for each value that counts, sorted; nothing if none does."""
    items = sorted(
        f"{key}={'true' if value is True else value}"
        for key, value in values.items()
        if key not in declared or declared[key].fingerprint
    )
    return [group, *items] if items else []


drop_defaults(AddressSpec, "dns", "timeout", "image")
drop_defaults(AttachSpec, "pkey", "direct_phys", "allow_forward")


@dataclass(frozen=True)
class GuestInfo(LegacyGuestFields):
    """Who the guest is, for results and messages."""

    name: str
    key: str
    runtime: str
    pid: int | None = None
    api: InitVar[str | None] = UNSET
    """0.1.0's keyword for ``details["api"]``."""
    details: Mapping[str, str] = field(default_factory=dict)
    """What the guest's resolver knows about it for other plugins, by key:
    ``api``, the Docker-compatible API that manages the guest
    (``unix:///run/podman/podman.sock``), for plugins that start helper
    containers beside it (absent for other guests)."""

    def __post_init__(self, api: str | None) -> None:
        if api is not UNSET:
            details = {**self.details, API_KEY: api}
            object.__setattr__(self, "details", {k: v for k, v in details.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """As in the JSON output: ``name``, ``key``, ``runtime``, ``pid``,
        ``api`` (None if unknown), then any other details."""
        return {
            "name": self.name,
            "key": self.key,
            "runtime": self.runtime,
            "pid": self.pid,
            API_KEY: None,
            **self.details,
        }


drop_defaults(GuestInfo, "api")


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
    gateways: tuple[str, ...] = ()
    """Every default gateway set (one per family at most; ``gateway`` is the first)."""
    address_sources: tuple[tuple[str, str], ...] = ()
    """``(ADDRESS/PREFIX, METHOD)`` for each address: how it was obtained
    (``static``, ``dhclient``, ``dhclient/6``, ``slaac``...)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["guest"] = self.guest.to_dict()
        data["addresses"] = list(self.addresses)
        data["gateways"] = list(self.gateways)
        data["address_sources"] = dict(self.address_sources)
        data["dns"] = list(self.dns)
        data["routes"] = list(self.routes)
        return data


def with_methods(addresses: Sequence[str], method: str, sources: Mapping[str, str]) -> list[str]:
    """The addresses, each with the method that got it (``198.18.1.2/24
    static``) when the interface has several methods."""
    if "," not in method:
        return list(addresses)
    return [f"{a} {sources[a]}" if a in sources else a for a in addresses]
