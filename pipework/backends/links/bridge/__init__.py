"""Linux bridge backend: a veth pair, host end enslaved to a bridge.

The bridge is used if it exists, or created for ``br*`` names (any name with
``--kind bridge``), as the original did. ``@VID`` (which the original
refused) turns on the bridge's VLAN filtering, if it is off, and makes VID
the port's only VLAN, untagged, as its PVID: guests on one VID reach each
other and no one else. Other ports keep the default PVID 1. The guest end is created directly in
the guest's namespace under a temporary name; the engine renames it.

A bridge a topology file declares may have a VXLAN uplink (``uplink.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace

from pipework.backends.links.bridge import uplink
from pipework.backends.links.bridge.firewall import (
    FORWARD_FLAG,
    check_bridge_name,
    forward_intact,
    forward_lock,
    forward_users,
    our_rules,
    release_forward,
    remove_forward,
    settle_forward,
)
from pipework.backends.links.bridge.vlans import (
    disable_vlan_filtering,
    enable_vlan_filtering,
    set_port_vlan,
    vlan_filtering,
)
from pipework.backends.shared.vxlan import Vxlan
from pipework.engine import (
    BRIDGE_MARKER,
    ConflictError,
    DetachContext,
    EngineConfig,
    GcContext,
    GuestLink,
    HostChange,
    HostContext,
    HostInterfaceError,
    HostRequest,
    Link,
    LinkBackend,
    LinkContext,
    LinkExists,
    Lock,
    Marker,
    Netns,
    OptionSpec,
    UsageError,
    create_veth,
    hookimpl,
    pick_mtu,
    veth_evidence,
)

ALLOW_FORWARD = "allow_forward"
"""The ``--allow-forward`` setting (``AttachSpec.settings``)."""


class BridgeBackend(LinkBackend):
    name = "bridge"
    default_ifname = "eth1"
    auto_prefix = "br"
    options: Mapping[str, OptionSpec] = {
        ALLOW_FORWARD: OptionSpec(
            "accept traffic across the bridge in a firewall whose FORWARD policy drops it",
            flag="--allow-forward",
        )
    }

    def __init__(self, run_dir: str | None = None) -> None:
        self.run_dir = run_dir
        """Where the firewall check caches its verdict (None: it does not)."""

    async def claim(self, request: HostRequest) -> int:
        link = request.host_link
        if link is not None:
            return 100 if link.kind == "bridge" else 0
        return 10 if request.spec.host.startswith(self.auto_prefix) else 0

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        if spec.direct_phys:
            raise UsageError(f"--direct-phys moves a NIC into the guest; {spec.host} is a bridge")
        spec.vlan_id("Linux bridges")
        if spec.settings.get(ALLOW_FORWARD) and not spec.host.startswith("mac:"):
            check_bridge_name(spec.host)

    async def attach(self, ctx: LinkContext) -> GuestLink:
        spec = ctx.spec
        vlan = spec.vlan_id("Linux bridges")
        found = ctx.host_link
        if vlan is None and _users_bridge(found):
            # The common case: pipework never removes a bridge of the user's
            # (nor changes it without a VLAN): no lock, no extra request.
            assert found is not None
            bridge, veth, mtu = await self._join(ctx, found, vlan)
        else:
            # A bridge pipework made (or makes now) may be pruned by another
            # process once empty, and VLAN filtering turned off once no port
            # needs it: the bridge is made and joined under its lock.
            async with ctx.lock(f"bridge:{_bridge_name(ctx)}"):
                bridge, veth, mtu = await self._join(ctx, await self._ensure_bridge(ctx), vlan)
        await settle_forward(ctx, bridge.ifname, self.run_dir)
        return GuestLink(
            temp_ifname=ctx.temp_ifname,
            host=bridge.ifname,
            host_ifname=veth.ifname,
            mtu=mtu,
            state=FORWARD_FLAG if spec.settings.get(ALLOW_FORWARD) else "",
        )

    async def _join(
        self, ctx: LinkContext, bridge: Link, vlan: int | None
    ) -> tuple[Link, Link, int]:
        """The veth pair, its host end a port of ``bridge`` (on ``vlan``); its MTU."""
        spec = ctx.spec
        host = ctx.host
        if vlan is not None and await enable_vlan_filtering(host, bridge):
            ctx.journal.record(
                f"VLAN filtering on {bridge.ifname}",
                functools.partial(_filtering_off_if_unused, host, bridge.ifname, ctx.lock),
            )
        mtu = pick_mtu(spec.mtu, bridge)
        veth = await create_veth(ctx, mtu)
        # The host end's marker says which VLAN it is on, so that undoing
        # "VLAN filtering on" can tell whether other ports still need it, and
        # whether it was made with --allow-forward (the rule's users).
        flags = [f"vlan={vlan}"] if vlan is not None else []
        flags += [FORWARD_FLAG] if spec.settings.get(ALLOW_FORWARD) else []
        marker = replace(ctx.marker, state=",".join(flags))
        # A port needs no IPv6 address of its own: without one it sends no
        # DAD, router or MLD solicitations for the bridge to flood.
        quiet = {"addr_gen_mode": "none"}
        if vlan is None:  # one request: enslave, mark and bring up
            await host.set(
                veth.index, master=bridge.index, ifalias=marker.format(), state="up", **quiet
            )
        else:  # the port's VLAN is set before it forwards anything
            await host.set(veth.index, master=bridge.index, ifalias=marker.format())
            await set_port_vlan(host, veth.index, vlan)
            await host.set(veth.index, state="up", **quiet)
        return bridge, veth, mtu

    async def _ensure_bridge(self, ctx: LinkContext) -> Link:
        """The bridge, made if missing (under its lock)."""
        name = _bridge_name(ctx)
        host = ctx.host
        bridge = await host.link(name)
        if bridge is not None:
            if bridge.kind != "bridge":
                raise HostInterfaceError(f"{name} exists but is not a Linux bridge")
            if not bridge.up:
                await host.set(bridge.index, state="up")
            return bridge
        lock = ctx.lock
        try:
            await ctx.journal.step(
                f"bridge {name}",
                host.create(name, "bridge"),
                lambda: _remove_if_empty(host, name, lock),
            )
            created = True
        except LinkExists:  # made meanwhile by a pipework older than these locks, or by hand
            created = False
        bridge = await host.link(name)
        if bridge is None:
            raise HostInterfaceError(f"bridge {name} vanished while being created")
        if created:
            await host.set(bridge.index, ifalias=BRIDGE_MARKER, state="up")
        else:
            await host.set(bridge.index, state="up")
        return bridge

    async def prepare_host(self, ctx: HostContext) -> HostChange:
        """A bridge declared in a topology file: create it, or check (and with
        ``force`` fix) its MTU, VLAN filtering and VXLAN uplink."""
        mtu = ctx.settings.get("mtu")
        filtering = ctx.settings.get("vlan_filtering")
        vxlan = uplink.wanted(ctx.settings)
        host = ctx.host
        async with ctx.lock(f"bridge:{ctx.name}"):
            # Before anything is made: the underlay exists, the MTU fits over it.
            vx_mtu = await uplink.plan(host, ctx.name, vxlan, mtu) if vxlan else None
            bridge = await host.link(ctx.name)
            if bridge is None:
                if not ctx.dry_run:
                    await self._create_declared(host, ctx.name, mtu, filtering, vxlan, vx_mtu)
                return HostChange("create")
            if bridge.kind != "bridge":
                raise HostInterfaceError(
                    f"{ctx.name} exists but is not a Linux bridge",
                    "rename or remove it, or declare another bridge name",
                )
            details = []
            if mtu is not None and bridge.mtu != mtu:
                details.append(f"mtu {bridge.mtu} -> {mtu}")
            if filtering is not None and await vlan_filtering(host, bridge.index) != filtering:
                details.append(f"vlan_filtering {not filtering} -> {filtering}".lower())
            if not bridge.up:
                details.append("down -> up")
            vx_details = await uplink.differences(host, bridge, vxlan) if vxlan else []
            details += vx_details
            if not details:
                return HostChange("unchanged")
            if not ctx.dry_run:
                if not ctx.force:
                    raise ConflictError(
                        f"bridge {ctx.name} differs from the file ({', '.join(details)})",
                        "add --force to change it",
                    )
                await self._configure(host, bridge, mtu, filtering)
                if vxlan and vx_details:
                    await uplink.replace(host, bridge, vxlan, vx_mtu)
            return HostChange("update", tuple(details))

    async def _create_declared(
        self,
        host: Netns,
        name: str,
        mtu: int | None,
        filtering: bool | None,
        vxlan: Vxlan | None,
        vx_mtu: int | None,
    ) -> None:
        try:
            await host.create(name, "bridge", **({"mtu": mtu} if mtu else {}))
        except LinkExists:  # another process made it meanwhile: use it as it is
            return
        bridge = await host.link(name)
        if bridge is None:
            raise HostInterfaceError(f"bridge {name} vanished while being created")
        try:
            await host.set(bridge.index, ifalias=BRIDGE_MARKER)
            await self._configure(host, bridge, None, filtering)
            if vxlan is not None:
                await uplink.create(host, bridge, vxlan, vx_mtu)
        except BaseException:
            await uplink.remove(host, bridge)
            await host.delete(bridge.index)
            raise

    @staticmethod
    async def _configure(
        host: Netns, bridge: Link, mtu: int | None, filtering: bool | None
    ) -> None:
        if filtering is True:
            await enable_vlan_filtering(host, bridge)
        elif filtering is False:
            await disable_vlan_filtering(host, bridge.index)
        await host.set(bridge.index, state="up", **({"mtu": mtu} if mtu else {}))

    async def owns_host(self, ctx: HostContext) -> bool:
        """A bridge pipework created carries its mark as alias (host-side)."""
        return _ours(await ctx.host.link(ctx.name))

    async def release_host(self, ctx: HostContext) -> bool:
        """Remove a declared bridge if pipework created it and no port is left
        but its VXLAN uplink, which goes with it."""
        async with ctx.lock(f"bridge:{ctx.name}"):
            bridge = await ctx.host.link(ctx.name)
            if bridge is None or not _ours(bridge):
                return False
            if any(not uplink.is_uplink(port) for port in await ctx.host.ports(bridge.index)):
                return False
            if not ctx.dry_run:
                await uplink.remove(ctx.host, bridge)
                await ctx.host.delete(bridge.index)
            return True

    async def verify(self, ctx: DetachContext) -> str | None:
        return await veth_evidence(ctx)

    async def detach(self, ctx: DetachContext) -> None:
        # Deleting the guest end removed the pair; this covers a guest that
        # vanished while its host end lingered. What was done on the host
        # (the forward rule's use) is read from the host end's marker: the
        # guest's own is a claim.
        if not ctx.marker.hostif:
            return
        veth = await ctx.host.link(ctx.marker.hostif)
        own = Marker.parse(veth.alias) if veth is not None else None
        if veth is None or own is None or not ctx.marker.same_attachment(own):
            return
        if FORWARD_FLAG in own.state.split(","):
            # Its port leaves the bridge under the rule's lock (see release_forward).
            await release_forward(ctx.host, own.host, ctx.lock, leaving=own)
        await ctx.host.delete(veth.index)

    async def healthy(self, ctx: DetachContext) -> bool:
        """An --allow-forward attachment is not whole while the firewall drops
        its traffic (a FORWARD policy set to DROP later): a re-run rebuilds it."""
        return await forward_intact(ctx, self.run_dir)

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """``gc``: pipework's forward rules for bridges that no --allow-forward
        attachment uses."""
        host = ctx.host
        found = []
        for bridge in sorted({owner for _chain, owner in await our_rules(host.fd)}):
            async with ctx.lock(forward_lock(bridge)):  # an attach may be adding a user
                if await forward_users(host, bridge):
                    continue
                found.append(
                    f"forward rule for bridge {bridge} (no --allow-forward attachment left)"
                )
                if not ctx.dry_run:
                    await remove_forward(host.fd, bridge)
        return found


def _bridge_name(ctx: LinkContext) -> str:
    """The bridge's name: as found (a ``mac:`` selector names it by MAC), or as asked."""
    return ctx.host_link.ifname if ctx.host_link is not None else ctx.spec.host


def _users_bridge(link: Link | None) -> bool:
    """An existing Linux bridge, up, that pipework did not make."""
    return link is not None and link.kind == "bridge" and link.up and link.alias != BRIDGE_MARKER


async def _filtering_off_if_unused(host: Netns, name: str, lock: Lock) -> None:
    """Undo "VLAN filtering on", unless another port has joined a VLAN since."""
    async with lock(f"bridge:{name}"):
        bridge = await host.link(name)
        if bridge is None:
            return
        for port in await host.ports(bridge.index):
            marker = Marker.parse(port.alias)
            if marker is not None and marker.state.startswith("vlan="):
                return
        await disable_vlan_filtering(host, bridge.index)


async def _remove_if_empty(host: Netns, name: str, lock: Lock) -> None:
    """Undo "bridge NAME": unless another attachment has joined it since."""
    async with lock(f"bridge:{name}"):
        bridge = await host.link(name)
        if bridge is not None and not await host.ports(bridge.index):
            await host.delete(bridge.index)


def _ours(bridge: Link | None) -> bool:
    return bridge is not None and bridge.kind == "bridge" and bridge.alias == BRIDGE_MARKER


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[BridgeBackend]:
    return [BridgeBackend(config.run_dir)]
