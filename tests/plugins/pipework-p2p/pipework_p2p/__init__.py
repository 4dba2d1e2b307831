"""A routed point-to-point veth: no bridge, the host end stands alone.

This is the complete example from docs/PLUGINS.md: the kind ``p2p`` is
chosen with ``--kind p2p`` or by host names starting with ``p2p``; the
"host interface" word names nothing that exists, it only labels the link.
"""

from __future__ import annotations

from pipework.engine import (
    DetachContext,
    EngineConfig,
    GuestLink,
    HostRequest,
    LinkContext,
    Marker,
    UsageError,
    hookimpl,
)


class PointToPoint:
    name = "p2p"
    default_ifname = "eth1"

    async def claim(self, request: HostRequest) -> int:
        if request.host_link is None and request.spec.host.startswith("p2p"):
            return 10
        return 0

    def check(self, request: HostRequest) -> None:
        if request.spec.vlan is not None or request.spec.direct_phys:
            raise UsageError("a p2p link takes neither a VLAN nor --direct-phys")

    async def attach(self, ctx: LinkContext) -> GuestLink:
        mtu = ctx.spec.mtu or 1500
        await ctx.host.create(
            ctx.host_ifname,
            "veth",
            mtu=mtu,
            peer={"ifname": ctx.temp_ifname, "net_ns_fd": ctx.guest.fd, "mtu": mtu},
        )
        veth = await ctx.host.link(ctx.host_ifname)
        assert veth is not None
        ctx.journal.record(f"veth {ctx.host_ifname}", lambda: ctx.host.delete(veth.index))
        await ctx.host.set(veth.index, ifalias=ctx.marker.format(), state="up")
        return GuestLink(
            temp_ifname=ctx.temp_ifname, host=ctx.spec.host, host_ifname=ctx.host_ifname, mtu=mtu
        )

    async def detach(self, ctx: DetachContext) -> None:
        veth = await ctx.host.link(ctx.marker.hostif)
        if veth is not None and ctx.marker.same_attachment(Marker.parse(veth.alias)):
            await ctx.host.delete(veth.index)


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[PointToPoint]:
    return [PointToPoint()]
