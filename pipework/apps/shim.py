"""The macvlan shim: the host's own macvlan on a parent, so the host reaches
the macvlan children it gave its guests.

A macvlan's parent never hands frames between itself and its children, so
the host cannot talk to its macvlan guests through the parent. The original
README's workaround, as one idempotent request: a macvlan (mode bridge) on
the parent in the host namespace, with an address and routes to the guests'
subnet through it. The parent's own addresses and routes are never touched.

The shim is marked in its alias as ``pipework shim parent=PARENT cfg=DIGEST``
(a format ``Marker.parse`` does not read, so ``ls``, ``detach`` and ``gc`` of
attachments pass it by). The marker is a claim: before removing or replacing
a shim, the kernel must say it is a macvlan whose parent (IFLA_LINK, in this
namespace) is the parent named.

This uses the engine's public parts only (``Engine.host``, ``Engine.lock``,
the journal): a shim belongs to no guest and no backend (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from pipework.engine.errors import (
    ConflictError,
    HostInterfaceError,
    PipeworkError,
    UnverifiedError,
    UsageError,
)
from pipework.engine.journal import Journal
from pipework.engine.kernel import rtnl
from pipework.engine.kernel.mtu import pick_mtu
from pipework.engine.kernel.netlink import ARPHRD_LOOPBACK, write_sysctl
from pipework.engine.marker import PREFIX
from pipework.engine.specs import AddressSpec, RouteSpec, short_hash, validate_ifname
from pipework.records import Record

if TYPE_CHECKING:
    from pipework.engine.engine import Engine
    from pipework.engine.kernel.netlink import Link, Netns
    from pipework.engine.specs import IPInterface

log = logging.getLogger("pipework.shim")

SHIM_PREFIX = f"{PREFIX} shim"
"""The start of a shim's alias; the rest is ``parent=... cfg=...``."""
NAME_PREFIX = "pws-"
"""Derived names: ``pws-`` + 10 hex digits (no attachment's name has a ``-``)."""
ARPHRD_ETHER = 1
NOT_A_PARENT = frozenset({"bridge", "openvswitch", "macvlan", "macvtap", "ipvlan", "ipvtap"})
"""Ethernet devices a shim does not go on: a bridge has an address of its own
to give; a macvlan/ipvlan child is no NIC (the kernel would use its parent)."""


def shim_name(parent: str) -> str:
    """The shim's name on ``parent`` when ``--name`` gives none (14 bytes)."""
    return NAME_PREFIX + short_hash("shim", parent)


class ShimSpec(Record):
    """One request: a shim named ``name`` on ``parent``, with ``address``, routes, MTU."""

    parent: str
    address: IPInterface
    routes: tuple[RouteSpec, ...] = ()
    name: str = ""
    mtu: int | None = None

    @classmethod
    def parse(
        cls,
        parent: str,
        address: str,
        routes: Sequence[str] = (),
        name: str | None = None,
        mtu: int | None = None,
    ) -> ShimSpec:
        """Check everything that needs no kernel; one ``UsageError`` for the first fault."""
        validate_ifname(parent, "parent interface name")
        if name is not None:
            validate_ifname(name, "shim name")
        ip = parse_address(address)
        parsed = tuple(parse_route(text, ip) for text in routes)
        if len({r.dst for r in parsed}) != len(parsed):
            raise UsageError("a route is given twice", "give each destination once")
        if mtu is not None and not 68 <= mtu <= 65535:
            raise UsageError(f"MTU {mtu} is out of range", "use 68 to 65535")
        return cls(parent, ip, parsed, name or shim_name(parent), mtu)

    @property
    def cfg(self) -> str:
        """The request's fingerprint: a re-run with the same one is ``unchanged``."""
        routes = sorted(str(r) for r in self.routes)
        return short_hash(self.parent, str(self.address), *routes, f"mtu={self.mtu or ''}")

    def marker(self) -> str:
        return format_marker(self.parent, self.cfg)


class ShimMarker(Record):
    """What a shim's alias says (a claim: see ``evidence``)."""

    parent: str
    cfg: str


def format_marker(parent: str, cfg: str) -> str:
    return f"{SHIM_PREFIX} parent={quote(parent, safe='')} cfg={quote(cfg, safe='')}"


def parse_marker(alias: str | None) -> ShimMarker | None:
    """The shim marker in ``alias``, or None: exactly ``parent`` and ``cfg``
    after the prefix, nothing else (an alias that is also an attachment's
    marker is not a shim's)."""
    if not alias or not alias.startswith(SHIM_PREFIX + " "):
        return None
    values: dict[str, str] = {}
    for item in alias[len(SHIM_PREFIX) + 1 :].split(" "):
        key, sep, value = item.partition("=")
        if not sep or key in values or key not in ("parent", "cfg"):
            return None
        values[key] = unquote(value)
    if values.keys() != {"parent", "cfg"} or not values["parent"]:
        return None
    return ShimMarker(values["parent"], values["cfg"])


def parse_address(text: str) -> IPInterface:
    """ADDR/PREFIX, IPv4 or IPv6, nothing else (no gateway, no DHCP, no 0/0)."""
    try:
        ipaddress.ip_address(text.partition("@")[0].split("/", 1)[0])
    except ValueError:
        raise UsageError(
            f"shim address {text!r} is not ADDR/PREFIX", "e.g. 198.18.42.254/32"
        ) from None
    spec = AddressSpec.parse(text)  # its errors: a missing netmask, a bad prefix...
    if spec.method != "static" or spec.address is None or spec.gateway is not None:
        raise UsageError(
            f"shim address {text!r} is not ADDR/PREFIX",
            "a shim has one static address and no gateway, e.g. 198.18.42.254/32",
        )
    if spec.address.ip.is_loopback:
        raise UsageError(f"{spec.address.ip} cannot be a shim's address")
    return spec.address


def parse_route(text: str, address: IPInterface) -> RouteSpec:
    """``--route DEST/PREFIX [via GATEWAY] [metric N]``, of the address's family."""
    route = RouteSpec.parse(text)
    if route.dst.version != address.version:
        raise UsageError(
            f"route {route} is IPv{route.dst.version}, the shim's address IPv{address.version}",
            "give routes of the address's family",
        )
    return route


class ShimRecord(Record):
    """A shim as ``create`` returns it and ``ls`` lists it."""

    name: str
    parent: str
    addresses: tuple[str, ...]
    routes: tuple[str, ...]
    mtu: int
    mac: str | None
    status: str
    """``created``, ``unchanged``, ``replaced``; in ``ls``: ``ok`` or ``unverified``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "parent": self.parent,
            "addresses": list(self.addresses),
            "routes": list(self.routes),
            "mtu": self.mtu,
            "mac": self.mac,
            "status": self.status,
        }

    def describe(self) -> str:
        details = [", ".join(self.addresses) or "no address"]
        if self.routes:
            details.append("routes " + ", ".join(self.routes))
        details.append(f"mtu {self.mtu}")
        if self.mac:
            details.append(f"mac {self.mac}")
        return f"{self.status}: shim {self.name} on {self.parent} ({'; '.join(details)})"


# -- the kernel's word ---------------------------------------------------------------------
def check_parent(parent: Link) -> None:
    """A shim goes on an Ethernet device that is nobody's port and no child."""
    what = parent.kind or ("loopback" if parent.link_type == ARPHRD_LOOPBACK else "device")
    if parent.link_type != ARPHRD_ETHER or parent.kind in NOT_A_PARENT:
        hint = "give the NIC the macvlan guests hang on"
        if parent.kind == "bridge":
            hint = f"a bridge takes the host's address itself: ip addr add ADDR dev {parent.ifname}"
        raise HostInterfaceError(
            f"{parent.ifname} is a {what}, not an Ethernet NIC a shim can go on", hint
        )
    if parent.master is not None:
        raise HostInterfaceError(
            f"{parent.ifname} is a port of interface #{parent.master}: its frames go to its master",
            "a shim goes on the NIC the macvlan guests hang on",
        )


def evidence(link: Link, parent: Link | None) -> str | None:
    """Why ``link`` is not a shim on ``parent`` by the kernel's word, or None
    if it is (a macvlan whose IFLA_LINK is ``parent``, in this namespace)."""
    if link.kind != "macvlan":
        return f"it is a {link.kind or 'device'}, not a macvlan"
    if link.link_netnsid is not None or link.parent is None:
        return "its parent is not in this namespace"
    if parent is None or link.parent != parent.index:
        return "its parent is another interface" if parent else "its parent is gone"
    return None


DEFAULT_METRIC = {4: 0, 6: 1024}
"""The metric the kernel gives a route added without one (IP6_RT_PRIO_USER)."""


def normal(route: RouteSpec) -> RouteSpec:
    """``route`` with the kernel's default metric written as none."""
    if route.metric == DEFAULT_METRIC[route.dst.version]:
        return RouteSpec(route.dst, route.via)
    return route


async def _routes(host: Netns, index: int, version: int) -> list[RouteSpec]:
    """Routes of the main table through interface ``index`` that pipework
    could have added (static ones), without the kernel's default metric."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    body = rtnl.encode_route(family, 0, None, table=0, proto=0, scope=0, type_=0)
    found = []
    for payload in await host.request("listing routes", rtnl.RTM_GETROUTE, rtnl.NLM_F_DUMP, body):
        route = rtnl.route_fields(payload)
        dst = route["dst"]
        if (
            route["oif"] != index
            or route["table"] != rtnl.RT_TABLE_MAIN
            or route["proto"] != rtnl.RTPROT_STATIC
            or not isinstance(dst, bytes)
        ):
            continue
        net = ipaddress.ip_network((ipaddress.ip_address(dst), int(str(route["dst_len"]))))
        gateway = route["gateway"]
        via = ipaddress.ip_address(gateway) if isinstance(gateway, bytes) else None
        priority = route["priority"]
        metric = priority if isinstance(priority, int) else None
        found.append(normal(RouteSpec(net, via, metric)))
    return found


async def _read(host: Netns, link: Link, parent: str, status: str) -> ShimRecord:
    addresses = [a for a in await host.addresses(link.index) if not a.ip.is_link_local]
    routes = [str(r) for v in (4, 6) for r in await _routes(host, link.index, v)]
    return ShimRecord(
        link.ifname,
        parent,
        tuple(str(a) for a in addresses),
        tuple(routes),
        link.mtu,
        link.mac,
        status,
    )


async def _intact(host: Netns, link: Link, spec: ShimSpec) -> bool:
    """Up, with the address and every route asked for (others may be added)."""
    if not link.up:
        return False
    addresses = await host.addresses(link.index)
    routes = set(await _routes(host, link.index, spec.address.version))
    return spec.address in addresses and {normal(r) for r in spec.routes} <= routes


# -- the operations ------------------------------------------------------------------------
def _privileged() -> None:
    from pipework.engine.engine import require_privileges

    require_privileges()


async def _parent(host: Netns, name: str) -> Link:
    parent = await host.link(name)
    if parent is None:
        raise HostInterfaceError(
            f"no interface named {name} on the host", "see `ip link` for the NICs there are"
        )
    check_parent(parent)
    return parent


async def create(engine: Engine, spec: ShimSpec, *, force: bool = False) -> ShimRecord:
    """Make sure the shim ``spec`` asks for is in place: ``created``,
    ``unchanged``, or (a different or broken one of ours) ``replaced``; a
    different one is a ``ConflictError`` without ``force``. A failure leaves
    nothing behind (a shim replaced with ``force`` is not restored)."""
    _privileged()
    host = engine.host
    parent = await _parent(host, spec.parent)
    mtu = pick_mtu(spec.mtu, parent, ceiling=parent.mtu)
    async with engine.lock(f"shim:{spec.name}"):
        status = "created"
        found = await host.link(spec.name)
        if found is not None:
            marker = parse_marker(found.alias)
            if marker is None:
                raise ConflictError(
                    f"{spec.name} already exists on the host and pipework did not create it",
                    "choose another name with --name",
                )
            # Ours on another parent is still ours: the kernel must say it is a
            # macvlan whose parent is in this namespace.
            if found.parent == parent.index:
                lower: Link | None = parent
            else:
                lower = await host.link_by_index(found.parent) if found.parent else None
            reason = evidence(found, lower)
            if reason is not None:
                raise UnverifiedError(
                    f"{spec.name} carries a pipework shim marker, but {reason}",
                    "pipework leaves it alone; remove it by hand if it is unwanted",
                )
            if marker.cfg == spec.cfg and await _intact(host, found, spec):
                return await _read(host, found, spec.parent, "unchanged")
            if marker.cfg != spec.cfg and not force:
                raise ConflictError(
                    f"shim {spec.name} is in place with another configuration",
                    "add --force to replace it, or choose another name with --name",
                )
            await host.delete(found.index)
            status = "replaced"
        link = await _build(host, spec, parent, mtu)
        return await _read(host, link, spec.parent, status)


async def _build(host: Netns, spec: ShimSpec, parent: Link, mtu: int) -> Link:
    journal = Journal()
    async with journal.transaction():
        await journal.step(
            f"create shim {spec.name}",
            host.create(
                spec.name,
                "macvlan",
                link=parent.index,
                macvlan_mode="bridge",
                mtu=mtu,
            ),
            lambda: host.delete_named(spec.name),
        )
        link = await host.link(spec.name)
        if link is None:  # pragma: no cover - deleted under our feet
            raise PipeworkError(f"shim {spec.name} vanished while it was being set up")
        # Router advertisements on the LAN must not give the host addresses or
        # a default route through the shim; an IPv4 shim has no IPv6 at all.
        for key in ("accept_ra", "autoconf"):
            try:
                write_sysctl(host.fd, f"net/ipv6/conf/{spec.name}/{key}", "0")
            except PipeworkError as exc:  # no IPv6 on this kernel: no advertisement either
                log.debug("%s", exc)
        # (Before "up", which the kernel carries out before an address setting.)
        settings = {"addr_gen_mode": "none"} if spec.address.version == 4 else {}
        await journal.step(
            f"mark {spec.name}", host.set(link.index, ifalias=spec.marker(), **settings), _nothing
        )
        await journal.step(f"bring {spec.name} up", host.set(link.index, state="up"), _nothing)
        await journal.step(
            f"address {spec.address}", host.add_address(link.index, spec.address), _nothing
        )
        for route in spec.routes:
            await journal.step(
                f"route {route}",
                host.add_route(link.index, route.dst, route.via, route.metric),
                _nothing,  # a route through the shim goes with it
            )
    ready = await host.link_by_index(link.index)
    return ready or link


async def _nothing() -> None:
    """The inverse of a step undone by deleting the shim."""


async def remove(engine: Engine, parent: str, name: str | None = None) -> list[str]:
    """Remove pipework's shims on ``parent`` (or only ``name``); the names
    removed. Only an interface carrying a shim marker that the kernel says is
    a macvlan on ``parent`` goes; a named one that is not is an error."""
    validate_ifname(parent, "parent interface name")
    if name is not None:
        validate_ifname(name, "shim name")
    _privileged()
    host = engine.host
    parent_link = await host.link(parent)
    if parent_link is None:
        return []  # a macvlan dies with its parent: nothing of its can be left
    if name is not None:
        candidates = [link] if (link := await host.link(name)) is not None else []
    else:
        candidates = [link for link in await host.links() if parse_marker(link.alias)]
    removed = []
    for link in candidates:
        async with engine.lock(f"shim:{link.ifname}"):
            current = await host.link_by_index(link.index)
            if current is None or current.ifname != link.ifname:
                continue
            marker = parse_marker(current.alias)
            if marker is None:
                raise ConflictError(
                    f"{current.ifname} is no pipework shim (it carries no shim marker)",
                    "pipework removes only what it made",
                )
            reason = evidence(current, parent_link)
            if reason is not None:
                if name is None and marker.parent != parent:
                    continue  # another parent's shim
                message = (
                    f"{current.ifname} carries a pipework shim marker for {parent}, but {reason}"
                )
                if name is not None:
                    raise UnverifiedError(message, "pipework leaves it alone")
                log.warning("%s: left alone", message)
                continue
            if await host.delete(current.index):
                removed.append(current.ifname)
    return removed


async def list_shims(engine: Engine) -> list[ShimRecord]:
    """Every interface of the host carrying a shim marker: ``ok`` when the
    kernel says it is a macvlan on a parent here, else ``unverified``."""
    host = engine.host
    found = []
    for link in await host.links():
        marker = parse_marker(link.alias)
        if marker is None:
            continue
        parent = await host.link_by_index(link.parent) if link.parent else None
        reason = evidence(link, parent)
        name = parent.ifname if parent is not None and reason is None else marker.parent
        found.append(await _read(host, link, name, "ok" if reason is None else "unverified"))
    return found


__all__ = [
    "NAME_PREFIX",
    "SHIM_PREFIX",
    "ShimMarker",
    "ShimRecord",
    "ShimSpec",
    "check_parent",
    "create",
    "evidence",
    "format_marker",
    "list_shims",
    "parse_address",
    "parse_marker",
    "parse_route",
    "remove",
    "shim_name",
]
