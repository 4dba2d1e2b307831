"""Guest interfaces that hang on the host: veth pairs, and children of a
host interface, each created straight into the guest.

macvlan, ipvlan and IPoIB all work the same way: a child of an existing host
interface (the "parent"), created by one netlink request in the host that
names the guest's namespace as its home. Backends describe the kind and its
attributes; this module finds the parent, puts an 802.1q sub-interface in
between when a VLAN is asked for, checks the MTU, and creates the child.

Shared VLAN sub-interfaces
    ``PARENT.VID`` is used if it exists, or created and marked as ours
    (alias ``pipework auto-created``). Every attachment that uses one we
    created adds an *alternative name* (``pw-<hash>``) to it: the kernel
    keeps that reference count, so another process sees it too, and the
    sub-interface goes away with the last one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pipework.engine.contract import DetachContext, GuestLink, LinkContext
from pipework.engine.errors import HostInterfaceError
from pipework.engine.kernel.mtu import pick_mtu
from pipework.engine.kernel.netlink import Link, LinkExists, NetlinkFailure, Netns
from pipework.engine.marker import BRIDGE_MARKER, Marker
from pipework.engine.specs import IFNAMSIZ, short_hash

USER_PREFIX = "pw-"
"""Alternative names on a shared sub-interface, one per attachment using it."""


def vlan_ifname(parent: str, vid: int) -> str:
    """``PARENT.VID``, with the parent's name cut so the whole fits IFNAMSIZ."""
    suffix = f".{vid}"
    return parent[: IFNAMSIZ - len(suffix)] + suffix


def user_name(marker: Marker) -> str:
    return USER_PREFIX + short_hash(marker.guest, marker.ifname)


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
    vlan: int | None = None,
    refused_hint: str | None = None,
) -> GuestLink:
    """Create a ``kind`` child of the host interface as ``ctx.temp_ifname`` in
    the guest, on ``PARENT.VID`` when ``vlan`` is given.

    The child's MTU may not exceed its parent's: that is checked here, so the
    user gets the reason instead of the kernel's EINVAL.
    """
    parent = await parent_link(ctx, kind)
    state = ""
    if vlan is not None:
        parent = await acquire_vlan(ctx, parent, vlan)
        state = parent.ifname
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


async def acquire_vlan(ctx: LinkContext, parent: Link, vid: int) -> Link:
    """``PARENT.VID``: existing, or created and marked as ours; this attachment
    is counted as one of its users (undone by the journal on failure)."""
    host = ctx.host
    name = vlan_ifname(parent.ifname, vid)
    user = user_name(ctx.marker)
    async with ctx.lock(f"vlan:{name}"):
        link = await host.link(name)
        created = False
        if link is None:
            try:
                await ctx.journal.step(
                    f"VLAN interface {name}",
                    host.create(name, "vlan", link=parent.index, vlan_id=vid, mtu=parent.mtu),
                    lambda: release_vlan(host, name, user, ours=True),
                )
                created = True
            except LinkExists:  # another process won the race: share its sub-interface
                pass
            link = await host.link(name)
            if link is None:
                raise HostInterfaceError(f"VLAN interface {name} vanished while being created")
            if created:
                await host.set(link.index, ifalias=BRIDGE_MARKER)
        if link.kind != "vlan" or link.parent != parent.index or link.vlan_id != vid:
            raise HostInterfaceError(
                f"{name} exists but is not VLAN {vid} of {parent.ifname}",
                "rename or remove it, or attach without a VLAN",
            )
        if created or link.alias == BRIDGE_MARKER:
            await ctx.journal.step(
                f"use of {name}",
                host.add_altname(link.index, user),
                lambda: release_vlan(host, name, user),
            )
        if not link.up:
            await host.set(link.index, state="up")
        return link


async def release_vlan(host: Netns, name: str, user: str, *, ours: bool = False) -> None:
    """Drop one user of ``name``; delete it with its last user if pipework
    made it (``ours``: this caller made it, even if it is not marked yet)."""
    link = await host.link(name)
    if link is None or not (ours or link.alias == BRIDGE_MARKER):
        return
    await host.del_altname(link.index, user)
    if not any(n.startswith(USER_PREFIX) for n in await host.altnames(link.index)):
        await host.delete(link.index)


async def detach_child(ctx: DetachContext) -> None:
    """Remove the child, then release the VLAN sub-interface it sat on."""
    vlan = ctx.marker.state
    if not vlan and ctx.guest_ns is None:
        # The guest is gone with the child and its marker (Engine.remove()
        # passes the marker the request would have made, without state):
        # the sub-interface still carries this attachment's reference name.
        holder = await ctx.host.link(user_name(ctx.marker))
        vlan = holder.ifname if holder is not None else ""
    if not vlan:
        return  # the engine deletes the child
    if ctx.guest_ns is not None and ctx.guest_link is not None:
        await ctx.guest_ns.delete(ctx.guest_link.index)
    await release_vlan(ctx.host, vlan, user_name(ctx.marker))
