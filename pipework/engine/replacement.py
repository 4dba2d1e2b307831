"""Make before break: what building a replacement beside the attachment it
replaces needs (``--force``, a repair; ``Engine._create`` with ``beside``).

The new attachment is built under temporary names while the old one still
stands; once it is ready, the old one is removed and the new one takes the
final name. Its host side takes the other of two derived names, its routes
that the old one already has wait until the old one is gone, and the kernel
must be able to rename an interface that is up (Linux 6.2 and later).
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from pipework.engine.errors import ConflictError
from pipework.engine.kernel.netlink import NetlinkFailure, Netns
from pipework.engine.marker import Marker
from pipework.engine.specs import RouteSpec, short_hash


class BreakBeforeMake(Exception):
    """Raised by a backend's ``attach`` (after rolling back its own steps)
    when its replacement cannot stand beside the attachment it replaces
    (``ctx.replacing``) this time: a VXLAN of the same VNI and port. The
    engine then removes the old one and builds the new one again."""


class NoLiveRename(BreakBeforeMake):
    """This kernel renames no interface that is up: replace the old way."""


async def live_rename(gns: Netns, index: int, marker: Marker) -> str:
    """Give a replacement, up, a second temporary name: the kernel must be
    able to rename it while it is up to give it its final name once the old
    one is gone. ``NoLiveRename`` if it cannot."""
    device = "pwu" + short_hash(marker.guest, marker.ifname, "tmp")
    try:
        await gns.set(index, ifname=device)
    except NetlinkFailure as exc:
        if exc.code == errno.EBUSY:
            raise NoLiveRename from None
        raise
    return device


async def add_routes(
    gns: Netns, index: int, routes: Sequence[RouteSpec], *, defer: bool = False
) -> list[RouteSpec]:
    """Add ``routes`` through ``index``; with ``defer``, return those that
    exist already (the attachment being replaced has them) instead of failing."""
    deferred = []
    for route in routes:
        try:
            await gns.add_route(index, route.dst, route.via, route.metric)
        except ConflictError:
            if not defer:
                raise
            deferred.append(route)
    return deferred


def other_hostif(marker: Marker) -> str:
    """The second derived host-side name, for a replacement built beside the
    attachment that has the first (and the first, beside the second)."""
    first = "pw" + short_hash(marker.guest, marker.ifname)
    return "pw" + short_hash(marker.guest, marker.ifname, "b") if marker.hostif == first else first


__all__ = ["BreakBeforeMake", "NoLiveRename", "add_routes", "live_rename", "other_hostif"]
