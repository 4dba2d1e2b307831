"""Shared VLAN sub-interfaces, for the backends that stack a child on ``PARENT.VID``.

macvlan and ipvlan (``@VID``) put their child on the 802.1q sub-interface
``PARENT.VID``: used if it exists, or created and marked as ours (alias
``pipework auto-created``). Every attachment that uses one we created adds
an *alternative name* (``pw-<hash>``) to it: the kernel keeps that
reference count, so another process sees it too, and the sub-interface goes
away with the last one.

A guest that dies takes its child with it but not its reference:
``collect_garbage`` (``pipework gc``) drops the references of attachments
whose guest side is gone, and the sub-interface with the last one. Both
backends call it; the gc run's scope makes it run, and report, once.
"""

from __future__ import annotations

import anyio

from pipework.engine import (
    BRIDGE_MARKER,
    DetachContext,
    GcContext,
    HostInterfaceError,
    Link,
    LinkContext,
    LinkExists,
    Lock,
    Marker,
    Netns,
    parent_link,
)
from pipework.engine.specs import IFNAMSIZ, short_hash

USER_PREFIX = "pw-"
"""Alternative names on a shared sub-interface, one per attachment using it."""
CONFIRM_DELAY = 0.5
"""Seconds ``gc`` waits before it looks again at VLAN users that seem stale
(an attach adds its user a moment before its interface exists)."""
GC_KEY = "shared-vlan-users"
"""This module's key in a gc run's scope."""


def vlan_ifname(parent: str, vid: int) -> str:
    """``PARENT.VID``, with the parent's name cut so the whole fits IFNAMSIZ."""
    suffix = f".{vid}"
    return parent[: IFNAMSIZ - len(suffix)] + suffix


SLOTS = ("", "b")
"""An attachment's reference is in one of two slots: a replacement built
beside the one it replaces (``LinkContext.replacing``) takes the other one,
so each drops only its own. The marker state names a slot other than the
first: ``PARENT.VID,b``."""


def user_name(marker: Marker, slot: str = "") -> str:
    if not slot:
        return USER_PREFIX + short_hash(marker.guest, marker.ifname)
    return USER_PREFIX + short_hash(marker.guest, marker.ifname, slot)


def _slot_of(state: str) -> tuple[str, str]:
    """(the sub-interface, the slot) a marker's state names."""
    vlan, _, slot = state.partition(",")
    return vlan, slot if slot in SLOTS else ""


async def parent_for(ctx: LinkContext, kind: str, vid: int | None) -> tuple[Link, str]:
    """The interface a ``kind`` child hangs on: the host interface, or with
    ``vid`` its ``PARENT.VID`` (this attachment counted as one of its users);
    and the marker state that says so (the sub-interface's name, or "")."""
    parent = await parent_link(ctx, kind)
    if vid is None:
        return parent, ""
    slot = ""
    if ctx.replacing is not None and _slot_of(ctx.replacing.state)[1] == "":
        slot = SLOTS[1]
    link = await acquire_vlan(ctx, parent, vid, slot)
    return link, link.ifname + ("," + slot if slot else "")


async def acquire_vlan(ctx: LinkContext, parent: Link, vid: int, slot: str = "") -> Link:
    """``PARENT.VID``: existing, or created and marked as ours; this attachment
    is counted as one of its users (undone by the journal on failure)."""
    host, lock = ctx.host, ctx.lock
    name = vlan_ifname(parent.ifname, vid)
    user = user_name(ctx.marker, slot)
    async with lock(vlan_lock(name)):
        link = await host.link(name)
        created = False
        if link is None:
            try:
                await ctx.journal.step(
                    f"VLAN interface {name}",
                    host.create(name, "vlan", link=parent.index, vlan_id=vid, mtu=parent.mtu),
                    lambda: release_vlan(host, name, user, lock, ours=True),
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
                lambda: release_vlan(host, name, user, lock),
            )
        if not link.up:
            await host.set(link.index, state="up")
        return link


def vlan_lock(name: str) -> str:
    """The lock around every change to the users of ``name`` (a ``PARENT.VID``)."""
    return f"vlan:{name}"


async def release_vlan(
    host: Netns, name: str, user: str, lock: Lock, *, ours: bool = False
) -> None:
    """Drop one user of ``name``; delete it with its last user if pipework
    made it (``ours``: this caller made it, even if it is not marked yet).
    The user's name on the sub-interface is the evidence that this
    attachment uses it (only the host writes it): without it, nothing.
    Under the lock: an attach in another process may be adding its user."""
    async with lock(vlan_lock(name)):
        link = await host.link(name)
        if link is None or not (ours or link.alias == BRIDGE_MARKER):
            return
        names = await host.altnames(link.index)
        if user in names:
            await host.del_altname(link.index, user)
            names.remove(user)
        elif not ours:
            return
        if not any(n.startswith(USER_PREFIX) for n in names):
            await host.delete(link.index)


async def verify_child(ctx: DetachContext, kind: str) -> str | None:
    """``LinkBackend.verify`` for a ``kind`` child of a host interface: the
    guest interface is one, and its parent, in another namespace, is the
    host interface (or the ``PARENT.VID`` it sat on, which still counts this
    attachment among its users) that the marker names."""
    marker, link = ctx.marker, ctx.guest_link
    if link is None:
        return None  # a host-side look: release_vlan checks the user's name itself
    vlan, slot = _slot_of(marker.state)
    name = vlan or marker.host
    parent = await ctx.host.link(name)
    if link.kind != kind or link.link_netnsid is None or parent is None:
        return f"it is not a {kind} interface of the host's {name}"
    if link.parent != parent.index:
        return f"it is not a {kind} interface of the host's {name}"
    if vlan and user_name(marker, slot) not in await ctx.host.altnames(parent.index):
        return f"the host's {name} does not count it among its users"
    return None


async def detach_child(ctx: DetachContext) -> None:
    """Remove the child, then release the VLAN sub-interface it sat on."""
    vlan, slot = _slot_of(ctx.marker.state)
    if not vlan and ctx.guest_ns is None:
        # The guest is gone with the child and its marker (Engine.remove()
        # passes the marker the request would have made, without state):
        # the sub-interface still carries this attachment's reference name.
        for slot in SLOTS:
            holder = await ctx.host.link(user_name(ctx.marker, slot))
            if holder is not None:
                await release_vlan(ctx.host, holder.ifname, user_name(ctx.marker, slot), ctx.lock)
        return
    if not vlan:
        return  # the engine deletes the child
    if ctx.guest_ns is not None and ctx.guest_link is not None:
        await ctx.guest_ns.delete(ctx.guest_link.index)
    await release_vlan(ctx.host, vlan, user_name(ctx.marker, slot), ctx.lock)


async def collect_garbage(ctx: GcContext) -> list[str]:
    """VLAN sub-interfaces pipework made, still counted as used by guests that
    are gone: drop those references (and the sub-interface with its last).

    Every backend that stacks on shared sub-interfaces calls this from its
    own ``collect_garbage``; it does the work, and returns its lines, for
    the first caller of a gc run only.
    """
    first = False

    async def run() -> list[str]:
        nonlocal first
        first = True
        return await _stale_users(ctx)

    lines = await ctx.scope.once(GC_KEY, run)
    return list(lines) if first else []


async def _stale_users(ctx: GcContext) -> list[str]:
    host = ctx.host
    shared = [
        link for link in await host.links() if link.kind == "vlan" and link.alias == BRIDGE_MARKER
    ]
    if not shared:
        return []
    stale: dict[str, list[str]] = {}
    live = {user_name(marker, slot) for marker in ctx.live for slot in SLOTS}
    for link in shared:
        users = [n for n in await host.altnames(link.index) if n.startswith(USER_PREFIX)]
        if [n for n in users if n not in live]:
            stale[link.ifname] = users
    if not stale:
        return []
    # An attach names itself a user a moment before its interface exists:
    # look again before calling a user stale.
    await anyio.sleep(CONFIRM_DELAY)
    live = {user_name(marker, slot) for marker in await ctx.rescan() for slot in SLOTS}
    items = []
    for name, users in stale.items():
        gone = [n for n in users if n not in live]
        if not gone:
            continue
        last = len(gone) == len(users)
        items.append(
            f"VLAN interface {name}: {len(gone)} user(s) gone"
            + (", removing it (pipework created it)" if last else "")
        )
        if ctx.dry_run:
            continue
        async with ctx.lock(vlan_lock(name)):  # an attach may be adding its user
            current = await host.link(name)
            if current is None or current.alias != BRIDGE_MARKER:
                continue
            for user in gone:
                await host.del_altname(current.index, user)
            if not [n for n in await host.altnames(current.index) if n.startswith(USER_PREFIX)]:
                await host.delete(current.index)
    return items


__all__ = [
    "USER_PREFIX",
    "acquire_vlan",
    "collect_garbage",
    "detach_child",
    "parent_for",
    "release_vlan",
    "user_name",
    "verify_child",
    "vlan_ifname",
    "vlan_lock",
]
