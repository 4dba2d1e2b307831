"""The engine's own link kind: the two ends of a link between guests.

Both ends are in guests, so both markers are claims. What corroborates one
is the kernel: the interface is a veth whose peer lies in the namespace of
the guest its marker names (the namespace id the kernel reports for the
peer, against the one it gives that guest's namespace), and that peer
carries the mirror marker. Only then does pipework act on the peer (stop
its DHCP client); removing a link deletes one end, in its own guest, and the
kernel takes the other with it.

Kept apart from ``guestlinks.py`` (making links) because every engine
registers it: this module is small and loads nothing new.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from pipework.engine.contract import DetachContext, GuestLink, HostRequest, LinkBackend, LinkContext
from pipework.engine.errors import PipeworkError, UsageError
from pipework.engine.marker import LINK_KIND, Marker

if TYPE_CHECKING:
    from pipework.engine.engine import Engine
    from pipework.engine.guests import Guest
    from pipework.engine.kernel.netlink import Link, Netns

_HOW = "pipework link GUEST:IFNAME GUEST:IFNAME"


def on_nsfs(path: str) -> bool:
    """Is ``path`` a namespace file (on nsfs, as the kernel's own are)? Asked
    of a path a marker names before anything opens it."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def mirrors(found: Marker | None, marker: Marker) -> bool:
    """Is ``found`` the marker of ``marker``'s other end?"""
    return (
        found is not None
        and found.kind == LINK_KIND == marker.kind
        and (found.guest, found.ifname, found.host, found.peer)
        == (marker.host, marker.peer, marker.guest, marker.ifname)
    )


class Peer:
    """The other end of a link, open: its guest, namespace, interface, marker."""

    __slots__ = ("guest", "link", "marker", "ns")

    def __init__(self, guest: Guest, ns: Netns, link: Link, marker: Marker) -> None:
        self.guest, self.ns, self.link, self.marker = guest, ns, link, marker


class LinkEnds(LinkBackend):
    """The engine's own kind: the ends of links between guests. No plugin
    provides it and nothing is attached with it; detach, ``ls``, ``gc`` and
    re-runs find it by the markers' kind, as they find a backend."""

    name = LINK_KIND

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def claim(self, request: HostRequest) -> int:
        return 0

    def validate(self, request: HostRequest) -> None:
        raise UsageError("a link between two guests is not attached to a host interface", _HOW)

    async def attach(self, ctx: LinkContext) -> GuestLink:
        raise UsageError("a link between two guests is not attached to a host interface", _HOW)

    @asynccontextmanager
    async def peer(
        self, marker: Marker, ns: Netns, link: Link
    ) -> AsyncIterator[tuple[Peer | None, str | None]]:
        """The peer of the link end ``link`` (in ``ns``), open while inside,
        or None and why the host does not corroborate ``marker``."""
        if link.kind != "veth" or link.link_netnsid is None or link.parent is None:
            yield None, "it is not a veth whose peer is in another namespace"
            return
        if marker.host.startswith("/") and not on_nsfs(marker.host):
            # The guest wrote that path: only a namespace file is opened.
            yield None, f"its peer {marker.host} is not a network namespace file"
            return
        try:
            guest = await self._engine.resolve(marker.host)
        except PipeworkError as exc:
            yield None, f"its peer {marker.host} cannot be found ({exc.message})"
            return
        engine = self._engine
        try:
            if guest.info.key != marker.host or await ns.nsid_of(guest.fd) != link.link_netnsid:
                yield None, f"its peer is not in {guest.name}"
                return
            pns = engine._pool.acquire(guest.fd, guest.name)
            try:
                plink = await pns.link_by_index(link.parent)
                found = Marker.parse(plink.alias) if plink is not None else None
                if plink is None or plink.parent != link.index or not mirrors(found, marker):
                    yield None, f"its peer in {guest.name} is not {marker.peer} of this link"
                    return
                assert found is not None
                yield Peer(guest, pns, plink, found), None
            finally:
                engine._pool.release(pns)
        finally:
            guest.close()

    async def verify(self, ctx: DetachContext) -> str | None:
        if ctx.guest_ns is None or ctx.guest_link is None:
            return None  # nothing of a link is on the host
        async with self.peer(ctx.marker, ctx.guest_ns, ctx.guest_link) as (_, reason):
            return reason

    async def healthy(self, ctx: DetachContext) -> bool:
        if ctx.guest_ns is None or ctx.guest_link is None:
            return False
        async with self.peer(ctx.marker, ctx.guest_ns, ctx.guest_link) as (found, _):
            return found is not None and found.link.up

    async def detach(self, ctx: DetachContext) -> None:
        """Stop what configures the peer (a DHCP client); the engine then
        deletes this end, and the kernel the peer with it."""
        if ctx.guest_ns is None or ctx.guest_link is None:
            return
        async with self.peer(ctx.marker, ctx.guest_ns, ctx.guest_link) as (found, _):
            if found is None:
                return
            provider = self._engine._provider_of(found.marker)
            if provider is not None:
                await provider.release(
                    DetachContext(
                        marker=found.marker,
                        host=ctx.host,
                        guest_ns=found.ns,
                        guest_link=found.link,
                        lock=ctx.lock,
                    )
                )


__all__ = ["LinkEnds", "Peer", "mirrors", "on_nsfs"]
