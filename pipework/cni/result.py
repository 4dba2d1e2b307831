"""CNI results: the success output of ADD, a delegated IPAM plugin's answer,
and the ``prevResult`` of a chain, in every result format we speak.

One typed ``Result`` in the middle; ``decode`` reads any supported version
(0.1.0/0.2.0 have ``ip4``/``ip6``; 0.3.x and 0.4.0 tag each IP with its
``version``; 1.1.0 adds an interface's ``mtu``), ``encode`` writes the one the
configuration asked for. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipework.cni.protocol import DECODING_FAILURE, CniError, version_key
from pipework.records import EMPTY, Record

if TYPE_CHECKING:
    from pipework.engine.specs import Attachment

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DNS_KEYS = ("nameservers", "domain", "search", "options")


class Interface(Record):
    name: str
    mac: str | None = None
    sandbox: str | None = None
    mtu: int | None = None


class IPConfig(Record):
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None
    """Index into the result's ``interfaces``."""


class Route(Record):
    dst: IPNetwork
    gw: IPAddress | None = None
    priority: int | None = None


class Result(Record):
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Mapping[str, Any] = EMPTY

    def then(self, later: Result) -> Result:
        """This result followed by ``later``'s (a chain: our interface after
        an earlier plugin's), ``later``'s interface indexes shifted."""
        shift = len(self.interfaces)
        ips = tuple(
            ip.replace(interface=None if ip.interface is None else ip.interface + shift)
            for ip in later.ips
        )
        return Result(
            interfaces=self.interfaces + later.interfaces,
            ips=self.ips + ips,
            routes=self.routes + later.routes,
            dns=self.dns or later.dns,
        )

    def gateway(self, version: int) -> IPAddress | None:
        """The first gateway of an address of that family."""
        return next(
            (ip.gateway for ip in self.ips if ip.gateway and ip.address.version == version), None
        )

    # -- writing ------------------------------------------------------------------------
    def encode(self, version: str) -> dict[str, Any]:
        if version_key(version) < (0, 3, 0):
            return self._encode_legacy(version)
        data: dict[str, Any] = {"cniVersion": version}
        with_mtu = version_key(version) >= (1, 1, 0)
        if self.interfaces:
            data["interfaces"] = [_interface(i, with_mtu) for i in self.interfaces]
        if self.ips:
            tagged = version_key(version) < (1, 0, 0)
            data["ips"] = [_ip(ip, tagged) for ip in self.ips]
        if self.routes:
            data["routes"] = [_route(r) for r in self.routes]
        data["dns"] = dict(self.dns)
        return data

    def _encode_legacy(self, version: str) -> dict[str, Any]:
        """0.1.0 / 0.2.0: one ``ip4`` and one ``ip6`` block, routes inside them."""
        data: dict[str, Any] = {"cniVersion": version}
        for family in (4, 6):
            ip = next((ip for ip in self.ips if ip.address.version == family), None)
            if ip is None:
                continue
            block: dict[str, Any] = {"ip": str(ip.address)}
            if ip.gateway is not None:
                block["gateway"] = str(ip.gateway)
            routes = [_route(r) for r in self.routes if r.dst.version == family]
            if routes:
                block["routes"] = routes
            data[f"ip{family}"] = block
        data["dns"] = dict(self.dns)
        return data

    # -- reading -----------------------------------------------------------------------
    @classmethod
    def decode(cls, data: object, what: str = "result") -> Result:
        """Read a result of any supported version; CniError 6 if it is malformed."""
        try:
            if not isinstance(data, dict):
                raise ValueError("it is not an object")
            version = data.get("cniVersion", "1.0.0")
            if isinstance(version, str) and version_key(version) < (0, 3, 0):
                return cls._decode_legacy(data)
            return cls(
                interfaces=tuple(_read_interface(i) for i in data.get("interfaces") or []),
                ips=tuple(_read_ip(ip) for ip in data.get("ips") or []),
                routes=tuple(_read_route(r) for r in data.get("routes") or []),
                dns=_read_dns(data.get("dns")),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CniError(DECODING_FAILURE, f"cannot read the {what}: {exc}") from None

    @classmethod
    def _decode_legacy(cls, data: dict[str, Any]) -> Result:
        ips: list[IPConfig] = []
        routes: list[Route] = []
        for family in ("ip4", "ip6"):
            block = data.get(family)
            if block is None:
                continue
            gateway = block.get("gateway")
            ips.append(
                IPConfig(
                    address=ipaddress.ip_interface(block["ip"]),
                    gateway=ipaddress.ip_address(gateway) if gateway else None,
                )
            )
            routes.extend(_read_route(r) for r in block.get("routes") or [])
        return cls(ips=tuple(ips), routes=tuple(routes), dns=_read_dns(data.get("dns")))


def _interface(interface: Interface, with_mtu: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"name": interface.name}
    if interface.mac:
        data["mac"] = interface.mac
    if with_mtu and interface.mtu:
        data["mtu"] = interface.mtu
    if interface.sandbox:
        data["sandbox"] = interface.sandbox
    return data


def _ip(ip: IPConfig, tagged: bool) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if tagged:
        data["version"] = str(ip.address.version)
    data["address"] = str(ip.address)
    if ip.gateway is not None:
        data["gateway"] = str(ip.gateway)
    if ip.interface is not None:
        data["interface"] = ip.interface
    return data


def _route(route: Route) -> dict[str, Any]:
    data: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        data["gw"] = str(route.gw)
    if route.priority is not None:
        data["priority"] = route.priority
    return data


def _read_interface(data: dict[str, Any]) -> Interface:
    name = data["name"]
    if not isinstance(name, str):
        raise ValueError(f"interface name {name!r} is not a string")
    mtu = data.get("mtu")
    return Interface(name=name, mac=data.get("mac"), sandbox=data.get("sandbox"), mtu=mtu)


def _read_ip(data: dict[str, Any]) -> IPConfig:
    gateway = data.get("gateway")
    interface = data.get("interface")
    if interface is not None and (not isinstance(interface, int) or interface < 0):
        raise ValueError(f"interface index {interface!r} is not valid")
    return IPConfig(
        address=ipaddress.ip_interface(data["address"]),
        gateway=ipaddress.ip_address(gateway) if gateway else None,
        interface=interface,
    )


def _read_route(data: dict[str, Any]) -> Route:
    gw = data.get("gw")
    priority = data.get("priority")
    return Route(
        dst=ipaddress.ip_network(data["dst"], strict=False),
        gw=ipaddress.ip_address(gw) if gw else None,
        priority=priority if isinstance(priority, int) else None,
    )


def _read_dns(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    return {key: data[key] for key in DNS_KEYS if data.get(key)}


def from_attachment(
    attachment: Attachment,
    *,
    sandbox: str,
    host_mac: str | None = None,
    ipam: Result | None = None,
    dns: Mapping[str, Any] | None = None,
) -> Result:
    """The result of an ADD: the host side (if any), then the guest interface.

    Addresses are the kernel's, read back by the engine, with the gateway of
    their family; with a delegated IPAM plugin, its addresses, routes and DNS.
    ``dns`` is the configuration's, used when nothing else gave one.
    """
    interfaces: list[Interface] = []
    if attachment.host_ifname:
        interfaces.append(Interface(name=attachment.host_ifname, mac=host_mac))
    index = len(interfaces)
    interfaces.append(
        Interface(name=attachment.ifname, mac=attachment.mac, sandbox=sandbox, mtu=attachment.mtu)
    )
    if ipam is not None:
        ips = tuple(ip.replace(interface=index) for ip in ipam.ips)
        return Result(tuple(interfaces), ips, ipam.routes, ipam.dns or _read_dns(dns))
    gateways: dict[int, IPAddress] = {}
    for text in attachment.gateways or ((attachment.gateway,) if attachment.gateway else ()):
        gateway = ipaddress.ip_address(text)
        gateways.setdefault(gateway.version, gateway)
    found: list[IPConfig] = []
    for text in attachment.addresses:
        address = ipaddress.ip_interface(text)
        found.append(IPConfig(address, gateways.get(address.version), index))
    routes = []
    for gateway in gateways.values():
        default = "0.0.0.0/0" if gateway.version == 4 else "::/0"
        routes.append(Route(ipaddress.ip_network(default), gateway))
    for text in attachment.routes:
        routes.append(_parse_route(text))
    lease = {"nameservers": list(attachment.dns), "domain": attachment.domain}
    return Result(
        tuple(interfaces), tuple(found), tuple(routes), _read_dns(lease) or _read_dns(dns)
    )


def _parse_route(text: str) -> Route:
    """A route as the engine reports it: ``DEST [via GW] [metric N]``."""
    words = text.split()
    values = dict(zip(words[1::2], words[2::2], strict=False))
    via, metric = values.get("via"), values.get("metric")
    return Route(
        dst=ipaddress.ip_network(words[0], strict=False),
        gw=ipaddress.ip_address(via) if via else None,
        priority=int(metric) if metric else None,
    )
