"""ipvlan: a child of an existing host interface that shares its MAC address.

Chosen with ``--kind ipvlan`` (the original had no ipvlan). Useful where the
upstream switch allows one MAC per port. Modes (``--mode`` or ``-o mode=``):
``l2`` (default), ``l3`` and ``l3s``. ``@VID`` works as for macvlan. A MAC
address cannot be given: every child uses its parent's.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipework.backends.shared import vlans
from pipework.engine import (
    DetachContext,
    EngineConfig,
    GcContext,
    GuestLink,
    HostRequest,
    LinkBackend,
    LinkContext,
    OptionSpec,
    create_child,
    hookimpl,
)

#: IFLA_IPVLAN_MODE values.
MODES = {"l2": 0, "l3": 1, "l3s": 2}


class IpvlanBackend(LinkBackend):
    name = "ipvlan"
    default_ifname = "eth1"
    options: Mapping[str, OptionSpec] = {"mode": OptionSpec("|".join(MODES), choices=tuple(MODES))}

    async def claim(self, request: HostRequest) -> int:
        return 0  # only on request: --kind ipvlan

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        spec.refuse(self.name, mac=True, direct_phys=True)
        spec.vlan_id(self.name)

    async def attach(self, ctx: LinkContext) -> GuestLink:
        spec = ctx.spec
        parent, state = await vlans.parent_for(ctx, "ipvlan", spec.vlan_id(self.name))
        return await create_child(
            ctx,
            "ipvlan",
            {"ipvlan_mode": MODES[spec.choice(self.name, "mode", list(MODES), "l2") or "l2"]},
            parent=parent,
            state=state,
        )

    async def verify(self, ctx: DetachContext) -> str | None:
        return await vlans.verify_child(ctx, "ipvlan")

    async def detach(self, ctx: DetachContext) -> None:
        await vlans.detach_child(ctx)

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """References on shared VLAN sub-interfaces left by guests that are gone
        (done once per gc with macvlan's: they share the sub-interfaces)."""
        return await vlans.collect_garbage(ctx)


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[IpvlanBackend]:
    return [IpvlanBackend()]
