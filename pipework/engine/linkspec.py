"""A link straight between two guests: a veth pair whose ends are created
in the two guests' namespaces, with no bridge and nothing on the host.

``LinkSpec`` is the request (``pipework link``, a topology file's
``links:``); each end is a ``LinkEnd``. The engine attaches each end as it
would an interface, from an ``AttachSpec`` made here: the same address
providers, routes, MAC rules and fingerprint, with the link's own kind
(``LINK_KIND``) and the peer in place of a host interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipework.engine.errors import UsageError
from pipework.engine.marker import LINK_KIND
from pipework.engine.specs import (
    AddressSpec,
    AttachSpec,
    RouteSpec,
    parse_mac,
    parse_mtu,
    validate_ifname,
)

_PREFIXES = ("netns", "pid")
"""Guest references that contain a colon of their own (``netns:NAME``)."""


def parse_endpoint(text: str) -> tuple[str, str]:
    """``GUEST:IFNAME`` (``web1:eth1``, ``netns:r2:eth3``): the interface name
    is what follows the last colon."""
    guest, sep, ifname = text.strip().rpartition(":")
    if not sep or not guest or not ifname or guest in _PREFIXES:
        raise UsageError(
            f"endpoint {text!r} names no interface",
            "write GUEST:IFNAME, e.g. web1:eth1 or netns:r2:eth3",
        )
    validate_ifname(ifname, f"interface name of endpoint {text!r}")
    return guest, ifname


@dataclass(frozen=True)
class LinkEnd:
    """One end of a link: an interface ``ifname`` in ``guest``."""

    guest: str
    ifname: str
    address: AddressSpec = field(default_factory=AddressSpec)
    mac: str | None = None
    """A MAC address or ``U:STRING`` (None: the kernel's random one)."""
    routes: tuple[RouteSpec, ...] = ()
    """Extra routes in this guest through this end."""
    extra_addresses: tuple[AddressSpec, ...] = ()
    """More addresses of this end, after ``address`` (``AttachSpec.extra_addresses``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_addresses", tuple(self.extra_addresses))
        if not self.guest:
            raise UsageError("an endpoint's guest is empty")
        validate_ifname(self.ifname, "endpoint interface name")
        if self.mac is not None:
            object.__setattr__(self, "mac", parse_mac(self.mac))

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        address: AddressSpec | Sequence[AddressSpec] | None = None,
        mac: str | None = None,
        routes: tuple[RouteSpec, ...] = (),
    ) -> LinkEnd:
        """``GUEST:IFNAME``, with its address (or its several addresses)."""
        guest, ifname = parse_endpoint(text)
        first, *extra = (
            [address] if isinstance(address, AddressSpec) else address or [AddressSpec()]
        )
        return cls(guest, ifname, first, mac, routes, tuple(extra))

    def __str__(self) -> str:
        return f"{self.guest}:{self.ifname}"


@dataclass(frozen=True)
class LinkSpec:
    """A veth pair between ``a`` and ``b``, both ends with MTU ``mtu``."""

    a: LinkEnd
    b: LinkEnd
    mtu: int | None = None
    force: bool = False
    """Replace what stands at either end with another configuration."""
    announce: bool = True
    """Announce each end's static IPv4 address once it is up."""
    ipv6_link_local: bool = False
    """Keep IPv6 link-local addressing on both ends."""

    def __post_init__(self) -> None:
        if self.mtu is not None:
            object.__setattr__(self, "mtu", parse_mtu(self.mtu))
        if self.a.guest == self.b.guest:
            raise UsageError(
                f"both ends of the link are in {self.a.guest}",
                "a link joins two different guests",
            )

    @property
    def ends(self) -> tuple[LinkEnd, LinkEnd]:
        return self.a, self.b

    def end_spec(self, which: int, peer_key: str) -> AttachSpec:
        """The request for end ``which`` as an attachment whose "host" is the
        peer: ``peer_key`` (the other guest's key) and its interface name
        make the marker's ``host`` and ``peer``."""
        end, other = self.ends[which], self.ends[1 - which]
        return AttachSpec(
            host=LINK_KIND,
            guest=end.guest,
            address=end.address,
            extra_addresses=end.extra_addresses,
            ifname=end.ifname,
            mac=end.mac,
            mtu=self.mtu,
            kind=LINK_KIND,
            force=self.force,
            routes=end.routes,
            # The peer is part of what this end is: linked elsewhere is
            # "another configuration".
            options={"peer": f"{peer_key}/{other.ifname}"},
            announce=self.announce,
            ipv6_link_local=self.ipv6_link_local,
        )

    def __str__(self) -> str:
        return f"{self.a} -- {self.b}"


__all__ = ["LINK_KIND", "LinkEnd", "LinkSpec", "parse_endpoint"]
