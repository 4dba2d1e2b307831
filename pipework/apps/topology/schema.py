"""The declarative topology of ``pipework apply``: what a file may say.

A topology lists host bridges and attachments; ``topofile.py`` reads it from
YAML or JSON and turns validation errors into ``FILE:LINE: FIELD: message``.
Every field is checked here with the same parsers as the command line
(IPSPEC, MACSPEC, interface names, routes), so a file and a command line
accept exactly the same values.

    version: 1
    bridges:
      - {name: br1, mtu: 9000}
      - {name: ovsbr0, kind: ovs, options: {datapath_type: netdev}}
      - {name: br2, vxlan: {vni: 42, remote: 198.18.9.2, dev: ul0}}
    defaults: {host: br1}
    attachments:
      - {guest: web1, address: 198.18.1.2/24@198.18.1.1, routes: [198.18.2.0/24 via 198.18.1.254]}
      - {guest: netns:blue, host: ovsbr0, ifname: eth2, vlan: 10, mac: U:blue}
    links:
      - endpoints: ["r1:eth1", "r2:eth1"]
        mtu: 9000
      - endpoints:
          - {guest: r2, ifname: eth2, address: 198.18.40.1/30, mac: U:r2e2}
          - "netns:r3:eth1"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipework.apps.grammar import parse_backend_options
from pipework.engine.errors import PipeworkError, UsageError
from pipework.engine.linkspec import LinkEnd, LinkSpec, parse_endpoint
from pipework.engine.options import given
from pipework.engine.specs import (
    AddressSpec,
    AttachSpec,
    RouteSpec,
    check_addresses,
    parse_addresses,
    parse_mac,
    parse_mtu,
    parse_pkey,
    parse_timeout,
    parse_vlan,
    validate_ifname,
)

Name = Annotated[str, Field(min_length=1)]


def _checked(parse: Any, value: Any, *args: Any) -> Any:
    """Run one of the command line's parsers; its UsageError becomes a ValueError,
    which pydantic reports with the field's location."""
    try:
        return parse(value, *args)
    except PipeworkError as exc:
        raise ValueError(str(exc)) from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class VxlanDecl(_Strict):
    """A Linux bridge's VXLAN uplink; the bridge backend checks the values
    (backends/shared/vxlan.py: the same as ``--kind vxlan``'s ``-o`` options)."""

    vni: int
    remote: str | None = None
    group: str | None = None
    port: int | None = None
    dev: Name | None = None
    local: str | None = None
    learning: bool | None = None
    ttl: int | None = None


class BridgeDecl(_Strict):
    """A host bridge the topology needs: created if missing, kept as declared."""

    name: Name
    kind: Name = "bridge"
    """The link backend that owns it: ``bridge`` (Linux) or ``ovs``."""
    mtu: int | None = None
    vlan_filtering: bool | None = None
    """Linux bridges: turn VLAN filtering on (or off)."""
    options: dict[str, str] = Field(default_factory=dict)
    """Backend options for attachments on it (``datapath_type: netdev`` for OVS)."""
    vxlan: VxlanDecl | None = None
    """Linux bridges: a VXLAN uplink, a port to the same segment on other hosts."""

    @model_validator(mode="after")
    def _uplink(self) -> BridgeDecl:
        if self.vxlan is not None and self.kind != "bridge":
            raise ValueError(
                "a vxlan uplink is for Linux bridges (kind: bridge); on Open vSwitch add a"
                " port of type vxlan with ovs-vsctl"
            )
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return str(_checked(validate_ifname, value, "bridge name"))

    @field_validator("mtu")
    @classmethod
    def _mtu(cls, value: int | None) -> int | None:
        return None if value is None else int(_checked(parse_mtu, value))


class AttachmentFields(_Strict):
    """Everything an attachment may say; ``defaults:`` takes the same fields."""

    host: Name | None = None
    """The host interface (a bridge, a NIC, ``mac:…``), as HOSTIF on the command line."""
    kind: Name | None = None
    ifname: Name | None = None
    host_ifname: Name | None = None
    address: str | None = None
    """IPSPEC: ``ADDR/PREFIX[@GATEWAY]``, ``0/0`` (the default), an address
    method (``dhclient``, ``dhclient/6``, ``slaac``), or several, comma-separated."""
    addresses: list[str] | None = None
    """Several addresses of the interface, one IPSPEC item each (instead of ``address``)."""
    mac: str | None = None
    """A MAC address or ``U:STRING``."""
    vlan: int | None = None
    pkey: str | None = None
    mtu: int | None = None
    mode: str | None = None
    options: dict[str, str] | None = None
    routes: list[str] | None = None
    """Extra routes in the guest: ``DEST [via GATEWAY] [metric N]``."""
    direct_phys: bool | None = None
    dns: bool | None = None
    dhcp_timeout: float | None = None
    dhcp_image: str | None = None
    announce: bool | None = None
    """Gratuitous ARP for a static IPv4 address once the link is ready (default true)."""
    ipv6_link_local: bool | None = None
    """Keep IPv6 link-local addressing on the interface (default false, unless IPv6)."""

    @field_validator("ifname", "host_ifname")
    @classmethod
    def _ifname(cls, value: str | None) -> str | None:
        return None if value is None else str(_checked(validate_ifname, value))

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            _checked(check_addresses, _checked(parse_addresses, value))
        return value

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _checked(check_addresses, [_checked(AddressSpec.parse, item) for item in value])
            if not value:
                raise ValueError("the list of addresses is empty; give one address at least")
        return value

    @model_validator(mode="after")
    def _one_address_field(self) -> AttachmentFields:
        if self.address is not None and self.addresses is not None:
            raise ValueError("give address or addresses, not both")
        return self

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        return None if value is None else str(_checked(parse_mac, value))

    @field_validator("vlan")
    @classmethod
    def _vlan(cls, value: int | None) -> int | None:
        return None if value is None else int(_checked(parse_vlan, value))

    @field_validator("pkey")
    @classmethod
    def _pkey(cls, value: str | None) -> str | None:
        if value is not None:
            _checked(parse_pkey, value)
        return value

    @field_validator("mtu")
    @classmethod
    def _mtu(cls, value: int | None) -> int | None:
        return None if value is None else int(_checked(parse_mtu, value))

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for route in value:
                _checked(RouteSpec.parse, route)
        return value

    @field_validator("dhcp_timeout")
    @classmethod
    def _timeout(cls, value: float | None) -> float | None:
        return None if value is None else float(_checked(parse_timeout, value))


class AttachmentDecl(AttachmentFields):
    """One attachment: an interface in ``guest`` on ``host``."""

    guest: Name
    """A container name or ID, ``netns:NAME``, ``pid:N`` or a namespace path."""


class EndpointDecl(_Strict):
    """One end of a link: ``GUEST:IFNAME`` as a string (containerlab's brief
    form), or a mapping with the end's own address, MAC and routes."""

    guest: Name
    ifname: Name
    address: str | None = None
    """IPSPEC, as for an attachment (static, or a DHCP client)."""
    mac: str | None = None
    routes: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _brief(cls, value: Any) -> Any:
        if isinstance(value, str):
            guest, ifname = _checked(parse_endpoint, value)
            return {"guest": guest, "ifname": ifname}
        return value

    @field_validator("ifname")
    @classmethod
    def _ifname(cls, value: str) -> str:
        return str(_checked(validate_ifname, value))

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return AttachmentFields._address(value)

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        return AttachmentFields._mac(value)

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: list[str] | None) -> list[str] | None:
        return AttachmentFields._routes(value)

    def end(self) -> LinkEnd:
        address, *extra = parse_addresses(self.address or "0/0")
        return LinkEnd(
            guest=self.guest,
            ifname=self.ifname,
            address=address,
            extra_addresses=tuple(extra),
            mac=self.mac,
            routes=tuple(RouteSpec.parse(r) for r in self.routes or ()),
        )


class LinkDecl(_Strict):
    """A veth pair straight between two guests."""

    endpoints: list[EndpointDecl] = Field(min_length=2, max_length=2)
    mtu: int | None = None
    announce: bool | None = None
    ipv6_link_local: bool | None = None

    @field_validator("mtu")
    @classmethod
    def _mtu(cls, value: int | None) -> int | None:
        return None if value is None else int(_checked(parse_mtu, value))

    @model_validator(mode="after")
    def _two_guests(self) -> LinkDecl:
        a, b = self.endpoints
        if a.guest == b.guest:
            raise ValueError(f"both endpoints are in {a.guest}: a link joins two different guests")
        return self

    def spec(self, *, force: bool = False) -> LinkSpec:
        a, b = self.endpoints
        return LinkSpec(
            a.end(),
            b.end(),
            mtu=self.mtu,
            force=force,
            announce=True if self.announce is None else self.announce,
            ipv6_link_local=bool(self.ipv6_link_local),
        )


class Topology(_Strict):
    """A whole topology file."""

    version: Literal[1] = 1
    bridges: list[BridgeDecl] = Field(default_factory=list)
    defaults: AttachmentFields = Field(default_factory=AttachmentFields)
    attachments: list[AttachmentDecl] = Field(default_factory=list)
    links: list[LinkDecl] = Field(default_factory=list)

    def bridge(self, name: str | None) -> BridgeDecl | None:
        return next((b for b in self.bridges if b.name == name), None)

    def spec(self, index: int, *, force: bool = False) -> AttachSpec:
        """The ``AttachSpec`` of attachment ``index``: its fields, then
        ``defaults``, then what its bridge declares. Raises ``UsageError``."""
        decl = self.attachments[index]
        own = decl.model_dump(exclude_none=True)
        defaults = self.defaults.model_dump(exclude_none=True)
        if "address" in own or "addresses" in own:  # the attachment's own, whichever field
            defaults.pop("address", None)
            defaults.pop("addresses", None)
        values: dict[str, Any] = {**defaults, **own}
        bridge = self.bridge(values.get("host"))
        if bridge is not None:
            values.setdefault("kind", bridge.kind)
            if bridge.mtu is not None:
                values.setdefault("mtu", bridge.mtu)
            values["options"] = {**bridge.options, **values.get("options", {})}
        kind = values.get("kind")
        host = values.get("host") or kind
        if not host:
            raise UsageError(
                "an attachment needs a host (a bridge or NIC) or a kind",
                "add host: br1 to it or to defaults",
            )
        address, *extra = parse_addresses(
            values.get("addresses") or values.get("address", "0/0"),
            dns=values.get("dns", False),
            timeout=values.get("dhcp_timeout"),
            image=values.get("dhcp_image"),
        )
        return AttachSpec(
            host=host,
            guest=values["guest"],
            address=address,
            extra_addresses=tuple(extra),
            ifname=values.get("ifname"),
            host_ifname=values.get("host_ifname"),
            mac=values.get("mac"),
            vlan=values.get("vlan"),
            mtu=values.get("mtu"),
            kind=kind,
            options=parse_backend_options(
                [f"{k}={v}" for k, v in values.get("options", {}).items()], values.get("mode")
            ),
            force=force,
            announce=values.get("announce", True),
            ipv6_link_local=values.get("ipv6_link_local", False),
            settings=given(
                {
                    "pkey": parse_pkey(values["pkey"]) if "pkey" in values else None,
                    "direct_phys": values.get("direct_phys", False),
                }
            ),
            routes=tuple(RouteSpec.parse(r) for r in values.get("routes", ())),
        )


def bridge_settings(bridge: BridgeDecl) -> Mapping[str, Any]:
    """What a backend's ``prepare_host`` is asked to ensure for ``bridge``."""
    return bridge.model_dump(include={"mtu", "vlan_filtering", "vxlan"}, exclude_none=True)


__all__ = [
    "AttachmentDecl",
    "AttachmentFields",
    "BridgeDecl",
    "EndpointDecl",
    "LinkDecl",
    "Topology",
    "VxlanDecl",
    "bridge_settings",
]
