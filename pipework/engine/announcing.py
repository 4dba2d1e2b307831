"""Gratuitous ARP: the kernel announces, pipework says when.

A guest that never speaks first is reachable at once only if its
neighbours learn its MAC address without waiting for it: the original ran
``arping -c 1 -A`` (about 1 s). pipework lets the guest's own kernel send
the announcement from an interface pipework created:

* the guest interface gets ``arp_notify`` (the IPv4 setting
  ``net.ipv4.conf.IF.arp_notify``) in the request that brings it up;
* once the link is ready, one more request sets the interface's MAC
  address to itself. The kernel announces every IPv4 address of the
  interface on that change (RFC 5227 ARP announcements, from the interface's
  own MAC), as it does on a real MAC change.

No packet socket is opened, so nothing waits for its close (an RCU grace
period, about 14 ms, which the process paid on exit before). Where the
kernel cannot be asked (an interface that refuses a MAC address, as ipvlan
does) and on a NIC passed through (whose MAC pipework does not touch), one
frame goes out from a packet socket in the guest instead
(``kernel/announce.py``), as before, from a worker thread.

"Ready" is both ends operationally up and, for a Linux bridge port, forwarding: the
kernel sets carrier, operstate and the port state after "up",
asynchronously, and a frame sent earlier is dropped. Usually the link is
ready when the attach ends and the announcement goes out inline; otherwise
a background task of the engine polls for it, bounded by ``ANNOUNCE_WAIT``.

The interfaces pipework creates with a static IPv4 address also get IPv6
address generation off (``addrgenmode none``) unless the attachment asks
for link-local IPv6: no ``fe80::`` address, so no duplicate address
detection, router solicitations or MLD reports, which a bridge floods to
every port on every new attachment. An IPv6 address, no address (``0/0``),
DHCP (dhcpcd speaks IPv6 too), SLAAC or an IPAM plugin keep the kernel's
default; so does an attachment with several addresses unless all are static IPv4.
"""

from __future__ import annotations

import ipaddress
import logging

import anyio
import anyio.to_thread

from pipework.engine.errors import PipeworkError
from pipework.engine.kernel.announce import announce
from pipework.engine.kernel.netlink import Link, Netns
from pipework.engine.specs import AttachSpec

log = logging.getLogger("pipework.announce")

ANNOUNCE_WAIT = 2.0
"""Seconds an announcement waits for its link to become ready; it is sent then anyway."""


def announces(spec: AttachSpec) -> bool:
    """Does this attachment announce itself (a static IPv4 address, not ``--no-announce``)?"""
    return spec.announce and static_ipv4(spec) is not None


def static_ipv4(spec: AttachSpec) -> ipaddress.IPv4Interface | None:
    """The attachment's first static IPv4 address, if it has one."""
    for a in spec.addresses:
        if a.method == "static" and isinstance(a.address, ipaddress.IPv4Interface):
            return a.address
    return None


def ipv4_only(spec: AttachSpec) -> bool:
    """Is the attachment's addressing static IPv4 and nothing else?"""
    return all(
        a.method == "static" and a.address is not None and a.address.version == 4
        for a in spec.addresses
    )


def link_settings(spec: AttachSpec, created: bool) -> tuple[dict[str, object], dict[str, object]]:
    """The per-family settings of the guest interface: those for a request
    before it comes up, and those for the request that brings it up.

    IPv6 address generation must be off before "up": an interface whose
    operstate follows its parent at once (a macvlan) gets its link-local
    address at "up", before the kernel reads the rest of that request.
    ``arp_notify`` rides with "up", after which the kernel reads it: no
    announcement at "up", when a bridge port does not forward yet.
    ``created``: pipework made the interface; a NIC passed through keeps
    its own settings.
    """
    if not created:
        return {}, {}
    before: dict[str, object] = {}
    if not spec.ipv6_link_local and ipv4_only(spec):
        before["addr_gen_mode"] = "none"
    return before, {"arp_notify": 1} if announces(spec) else {}


async def ready(host: Netns, link: Link, host_ifname: str | None) -> bool:
    """Can ``link`` (as just read) and its host side carry a frame now?"""
    if not link.ready:
        return False
    if not host_ifname:
        return True
    peer = await host.link(host_ifname)
    return peer is not None and peer.ready


class Announcement:
    """What announcing one attachment needs: its guest interface's index and
    name, its address, whether the kernel may be asked (pipework created the
    interface), and its host side's name (None: it has none)."""

    __slots__ = ("created", "host_ifname", "ip")

    def __init__(self, spec: AttachSpec, created: bool, host_ifname: str | None) -> None:
        address = static_ipv4(spec)
        assert address is not None  # announces(spec)
        self.ip = address.ip
        self.created = created
        self.host_ifname = host_ifname


async def trigger(gns: Netns, link: Link, what: Announcement) -> bool:
    """Announce ``link``'s address now; never raises."""
    if not link.mac:
        return False
    if what.created:
        try:
            await gns.set(link.index, address=link.mac)
            return True
        except PipeworkError as exc:  # refused (ipvlan): a frame instead
            log.debug("announcing on %s by the kernel: %s", link.ifname, exc)
    if gns.fd is None:
        return False
    # Closing a packet socket waits for an RCU grace period: off the loop.
    return await anyio.to_thread.run_sync(announce, gns.fd, link.ifname, link.mac, what.ip)


async def announce_when_ready(gns: Netns, host: Netns, link: Link, what: Announcement) -> None:
    """Wait (bounded) until ``link`` is ready, then announce; never raises."""
    current: Link | None = link
    try:
        with anyio.move_on_after(ANNOUNCE_WAIT):
            polls = 0
            while True:
                polls += 1
                current = await gns.link_by_index(link.index)
                if current is None:
                    return  # gone meanwhile
                if await ready(host, current, what.host_ifname):
                    break
                # Every 2 ms at first; then slower: with many new links the
                # kernel updates their state about once a second, and a
                # thousand tasks polling every 2 ms would crowd the loop.
                await anyio.sleep(0.002 if polls <= 10 else min(0.002 * 2 ** (polls - 10), 0.05))
        if current is not None:
            await trigger(gns, current, what)
    except PipeworkError as exc:
        log.debug("announcing on %s: %s", link.ifname, exc)


__all__ = [
    "ANNOUNCE_WAIT",
    "Announcement",
    "announce_when_ready",
    "announces",
    "link_settings",
    "ready",
    "trigger",
]
