"""Guest interfaces that hang on the host: veth pairs, and children of a
host interface, each created straight into the guest.

macvlan, ipvlan and IPoIB all work the same way: a child of an existing host
interface (the "parent"), created by one netlink request in the host that
names the guest's namespace as its home. Backends describe the kind and its
attributes; this module finds the parent, checks the MTU, and creates the
child. (A child on a shared 802.1q sub-interface ``PARENT.VID`` is the
macvlan and ipvlan backends' business: backends/shared/vlans.py finds or
makes the sub-interface and hands it over as the parent.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pipework.engine.contract import DetachContext, GuestLink, LinkContext
from pipework.engine.errors import HostInterfaceError
from pipework.engine.kernel.mtu import pick_mtu
from pipework.engine.kernel.netlink import Link, LinkExists, NetlinkFailure
from pipework.engine.marker import Marker


async def parent_link(ctx: LinkContext, kind: str) -> Link:
    """The host interface to stack on, as it is now."""
    name = ctx.host_link.ifname if ctx.host_link is not None else ctx.spec.host
    parent = await ctx.host.link(name)
    if parent is None:
        raise HostInterfaceError(
            f"{name} does not exist", f"a {kind} interface needs an existing host interface"
        )
    return parent


async def create_child(
    ctx: LinkContext,
    kind: str,
    attrs: Mapping[str, Any],
    *,
    parent: Link | None = None,
    state: str = "",
    refused_hint: str | None = None,
) -> GuestLink:
    """Create a ``kind`` child of the host interface (or of ``parent``) as
    ``ctx.temp_ifname`` in the guest; ``state`` goes into the guest's marker.

    The child's MTU may not exceed its parent's: that is checked here, so the
    user gets the reason instead of the kernel's EINVAL.
    """
    if parent is None:
        parent = await parent_link(ctx, kind)
    mtu = pick_mtu(ctx.spec.mtu, parent, ceiling=parent.mtu)
    guest_ns, temp = ctx.guest_ns, ctx.temp_ifname
    try:
        await ctx.journal.step(
            f"{kind} interface in {ctx.guest.name}",
            ctx.host.create(
                temp, kind, link=parent.index, net_ns_fd=ctx.guest.fd, mtu=mtu, **attrs
            ),
            lambda: guest_ns.delete_named(temp),
        )
    except NetlinkFailure as exc:
        if isinstance(exc, LinkExists):
            raise
        raise HostInterfaceError(
            f"{parent.ifname} refused a new {kind} interface: {os.strerror(exc.code)}",
            refused_hint,
        ) from None
    return GuestLink(temp_ifname=ctx.temp_ifname, host=parent.ifname, mtu=mtu, state=state)


async def create_veth(ctx: LinkContext, mtu: int) -> Link:
    """A veth pair: the host end ``ctx.host_ifname`` in the host (down, not
    yet marked) and the guest end ``ctx.temp_ifname`` straight in the guest,
    in one request. Returns the host end."""
    host, name = ctx.host, ctx.host_ifname
    try:
        await ctx.journal.step(
            f"veth {name}",
            host.create(
                name,
                "veth",
                mtu=mtu,
                peer={"ifname": ctx.temp_ifname, "net_ns_fd": ctx.guest.fd, "mtu": mtu},
            ),
            lambda: host.delete_named(name),
        )
    except LinkExists:
        if await host.link(name) is not None:
            raise HostInterfaceError(
                f"host-side interface name {name} is already taken",
                "choose another with -l, or detach the guest that uses it",
            ) from None
        raise
    veth = await host.link(name)
    if veth is None:  # pragma: no cover - deleted by someone else in between
        raise HostInterfaceError(f"{name} vanished right after creation")
    return veth


async def veth_evidence(ctx: DetachContext) -> str | None:
    """``LinkBackend.verify`` for backends whose host side is a veth end.

    The guest writes its own interface's marker, never the host side's: the
    claim holds when the host side it names carries the same attachment's
    marker and, with the guest interface at hand, the two are each other's
    peer across namespaces. (A host side looked at alone is the evidence
    itself: its marker is the host's.)
    """
    marker, guest_link = ctx.marker, ctx.guest_link
    if guest_link is None:
        return None
    if not marker.hostif:
        return "its marker names no host side"
    host_side = await ctx.host.link(marker.hostif)
    if host_side is None or not marker.same_attachment(Marker.parse(host_side.alias)):
        return f"the host has no host side {marker.hostif} marked for it"
    if not (
        guest_link.kind == "veth"
        and guest_link.parent == host_side.index
        and host_side.parent == guest_link.index
        and guest_link.link_netnsid is not None
        and host_side.link_netnsid is not None
    ):
        return f"the host side {host_side.ifname} is not its peer"
    return None
