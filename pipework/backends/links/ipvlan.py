"""ipvlan: a child of an existing host interface that shares its MAC address.

Chosen with ``--kind ipvlan`` (the original had no ipvlan). Useful where the
upstream switch allows one MAC per port. Modes (``--mode`` or ``-o mode=``):
``l2`` (default), ``l3`` and ``l3s``. ``@VID`` works as for macvlan. A MAC
address cannot be given: every child uses its parent's.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipework.engine import (
    DetachContext,
    EngineConfig,
    GuestLink,
    HostRequest,
    LinkContext,
    OptionSpec,
    create_child,
    detach_child,
    hookimpl,
)

#: IFLA_IPVLAN_MODE values.
MODES = {"l2": 0, "l3": 1, "l3s": 2}


class IpvlanBackend:
    name = "ipvlan"
    default_ifname = "eth1"
    options: Mapping[str, OptionSpec] = {"mode": OptionSpec("|".join(MODES), choices=tuple(MODES))}

    async def claim(self, request: HostRequest) -> int:
        return 0  # only on request: --kind ipvlan

    def check(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        spec.refuse(self.name, mac=True, direct_phys=True)
        spec.vlan_id(self.name)

    async def attach(self, ctx: LinkContext) -> GuestLink:
        spec = ctx.spec
        return await create_child(
            ctx,
            "ipvlan",
            {"ipvlan_mode": MODES[spec.choice(self.name, "mode", list(MODES), "l2") or "l2"]},
            vlan=spec.vlan_id(self.name),
        )

    async def detach(self, ctx: DetachContext) -> None:
        await detach_child(ctx)


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[IpvlanBackend]:
    return [IpvlanBackend()]
