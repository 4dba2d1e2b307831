"""SLAAC: IPv6 addresses and a default route from router advertisements.

IPSPEC ``slaac`` lets the kernel configure the guest interface from the
router advertisements (RAs) on its link, on that interface only: it sets
the interface's ``accept_ra`` (2: also when the guest forwards),
``accept_ra_defrtr``, ``accept_ra_pinfo`` and ``autoconf``, then enables
IPv6 on it. The kernel sends a router solicitation once the link-local
address has passed duplicate address detection; pipework sends its own
as well (every ``SOLICIT_INTERVAL`` seconds while it waits), since the
kernel's may have gone before RAs were accepted.

``configure`` waits, within ``--dhcp-timeout`` (30 s), for a global
address made from an RA to pass duplicate address detection, and reports
it with the router the RA named, if it offered itself as a default router.
From then on the kernel keeps both up to date (lifetimes, renumbering,
router changes): nothing of pipework runs for it. Everything happens in
the guest's namespace, on the attached interface; nothing is kept on the
host, and the interface takes it all with it when it goes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence

import anyio

from pipework.backends.shared.ipv6 import POLL, link_local_ready
from pipework.engine import (
    AddressContext,
    AddressProvider,
    AddressResult,
    AddressSpec,
    AttachSpec,
    DetachContext,
    GuestInfo,
    OptionSpec,
    PipeworkError,
    TimeoutExpiredError,
    UsageError,
    hookimpl,
)
from pipework.engine.kernel.netlink import (
    IFA_F_DADFAILED,
    IFA_F_PERMANENT,
    IFA_F_TENTATIVE,
    AddressEntry,
    Netns,
    read_sysctl,
    socket_in_netns,
    write_sysctl,
)
from pipework.engine.kernel.rtnl import RTPROT_RA
from pipework.engine.specs import parse_timeout

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for an address unless ``--dhcp-timeout`` says otherwise."""
TIMEOUT = "timeout"
SOLICIT_INTERVAL = 2.0
"""Seconds between the router solicitations pipework sends while it waits."""
ND_ROUTER_SOLICIT = 133
ALL_ROUTERS = "ff02::2"

SYSCTLS = {"accept_ra": "2", "accept_ra_defrtr": "1", "accept_ra_pinfo": "1", "autoconf": "1"}
"""What the interface is set to (``net/ipv6/conf/IFNAME/KEY``), before
``disable_ipv6`` = 0."""


def slaac_timeout(address: AddressSpec) -> float:
    value = address.settings.get(TIMEOUT)
    return float(value) if value is not None else DEFAULT_TIMEOUT


def from_router(entry: AddressEntry) -> bool:
    """Is this address the kernel's, made from a router advertisement?

    Linux 6.3 and later say so (``IFA_PROTO``); before, an address is taken
    for SLAAC's when it is a global IPv6 one with lifetimes (not
    permanent) and a prefix shorter than 128 (DHCPv6 gives /128).
    """
    if entry.from_router:
        return True
    address = entry.address
    return (
        entry.proto == 0
        and address.version == 6
        and not address.ip.is_link_local
        and not entry.flags & IFA_F_PERMANENT
        and address.network.prefixlen < 128
    )


def usable(entries: Sequence[AddressEntry]) -> list[AddressEntry]:
    """The SLAAC addresses that have passed duplicate address detection."""
    return [
        e for e in entries if from_router(e) and not e.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
    ]


def router_solicitation() -> bytes:
    """An ICMPv6 router solicitation (RFC 4861 4.1), without options; the
    kernel fills in the checksum of an ICMPv6 raw socket."""
    return bytes([ND_ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0])


def solicit(netns_fd: int | None, index: int) -> None:
    """Send a router solicitation to all routers on interface ``index``."""
    sock = socket_in_netns(netns_fd, socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.sendto(router_solicitation(), (ALL_ROUTERS, 0, 0, index))
    except OSError:
        pass  # the kernel solicits too; the wait tells
    finally:
        sock.close()


async def router_of(netns: Netns, index: int) -> str | None:
    """The default router an RA gave the interface ``index``, if any."""
    for route in await netns.default_routes(6):
        if route.get("oif") == index and route.get("proto") == RTPROT_RA and "gateway" in route:
            return str(route["gateway"])
    return None


async def result(netns: Netns, index: int, entries: Sequence[AddressEntry]) -> AddressResult:
    """The SLAAC addresses among ``entries`` and the router, as a result."""
    gateway = await router_of(netns, index)
    return AddressResult(
        addresses=tuple(str(e.address) for e in usable(entries)),
        gateway=gateway,
        gateways=(gateway,) if gateway else (),
    )


class SlaacProvider(AddressProvider):
    name = "slaac"
    options: Mapping[str, OptionSpec] = {
        TIMEOUT: OptionSpec(
            "seconds to wait for an address [30]",
            flag="--dhcp-timeout",
            parse=parse_timeout,
            fingerprint=False,
        ),
    }
    # A replacement beside the old interface would see its own addresses
    # (the same MAC: the same EUI-64 addresses) fail duplicate address
    # detection against the old one's.
    make_before_break = False

    def handles(self, address: AddressSpec) -> bool:
        return address.method == "slaac"

    def validate(self, spec: AttachSpec, guest: GuestInfo) -> None:
        address = spec.address
        if address.family == 4 or (spec.family == 4 and address.family is None):
            raise UsageError(
                "slaac configures IPv6 only", "give an IPv4 address or a DHCP method beside it"
            )
        if address.options:
            raise UsageError(
                f"slaac takes no options (got {' '.join(address.options)!r})",
                "write slaac alone; --dhcp-timeout sets how long it waits",
            )
        others = sorted(key for key in address.settings if key not in self.options)
        if others:
            flags = {"dns": "--dns", "image": "--dhcp-image"}
            named = ", ".join(flags.get(key, key) for key in others)
            raise UsageError(
                f"{named} is for DHCP methods; slaac does not take it",
                "pipework does not write DNS servers from router advertisements; "
                "add dhclient/6 --dns for DHCPv6's",
            )

    async def configure(self, ctx: AddressContext) -> AddressResult:
        gns = ctx.guest_ns
        link = await gns.link_by_index(ctx.index)
        if link is None:
            raise PipeworkError(f"{ctx.ifname} is gone from {ctx.guest.name}")
        conf = f"net/ipv6/conf/{link.ifname}/"
        for key, value in SYSCTLS.items():
            write_sysctl(gns.fd, conf + key, value)
        gns.enable_ipv6(link.ifname, link_local=True)  # last: RAs are accepted by then
        seconds = slaac_timeout(ctx.address)
        with anyio.move_on_after(seconds):
            return await self._wait(ctx, gns)
        raise TimeoutExpiredError(
            f"no router advertisement gave {ctx.ifname} in {ctx.guest.name} an IPv6 address "
            f"within {seconds:g} s",
            f"does a router on {ctx.spec.host} advertise a prefix for autoconfiguration "
            "(radvd, dnsmasq enable-ra)? --dhcp-timeout sets how long to wait",
        )

    async def _wait(self, ctx: AddressContext, gns: Netns) -> AddressResult:
        solicited = float("-inf")
        while True:
            entries = await gns.address_entries(ctx.index)
            if usable(entries):
                return await result(gns, ctx.index, entries)
            failed = [e for e in entries if from_router(e) and e.flags & IFA_F_DADFAILED]
            if failed:
                raise PipeworkError(
                    f"{failed[0].address} from a router advertisement is already in use "
                    f"on the link of {ctx.ifname} in {ctx.guest.name}",
                    "another interface has the same MAC address; give this one its own",
                )
            now = time.monotonic()
            if now - solicited >= SOLICIT_INTERVAL and link_local_ready(entries):
                solicit(gns.fd, ctx.index)
                solicited = now
            await anyio.sleep(POLL)

    async def release(self, ctx: DetachContext) -> None:
        """Nothing to do: the addresses and the route go with the interface."""

    async def _current(self, ctx: DetachContext) -> AddressResult | None:
        gns, link = ctx.guest_ns, ctx.guest_link
        if gns is None or link is None:
            return None
        conf = f"net/ipv6/conf/{link.ifname}/"
        if any(read_sysctl(gns.fd, conf + key) != value for key, value in SYSCTLS.items()):
            return None
        if read_sysctl(gns.fd, conf + "disable_ipv6") != "0":
            return None
        return await result(gns, link.index, await gns.address_entries(link.index))

    async def inspect(self, ctx: DetachContext) -> AddressResult | None:
        """The addresses and router as the kernel has them now; None (a re-run
        sets it up again) when the interface no longer accepts RAs."""
        return await self._current(ctx)

    async def describe(self, ctx: DetachContext) -> str | None:
        current = await self._current(ctx)
        if current is None:
            return "not accepting router advertisements (a re-run sets it up again)"
        if not current.addresses:
            return "accepting router advertisements, no address yet"
        return "accepting router advertisements" + (
            f", router {current.gateway}" if current.gateway else ", no default router"
        )


@hookimpl
def pipework_address_providers() -> list[SlaacProvider]:
    return [SlaacProvider()]
