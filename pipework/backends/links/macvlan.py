"""macvlan: a child of an existing host interface, with its own MAC address.

The catch-all backend for an existing interface that is not a bridge (the
original's "phys" mode): ``pipework eth2 web1 198.18.0.5/24``. The child is
created directly in the guest's namespace. ``@VID`` stacks it on the 802.1q
sub-interface ``PARENT.VID`` (created if needed, removed with its last user
if pipework created it).

Modes (``--mode`` or ``-o mode=``): ``bridge`` (default; children of one
parent reach each other), ``private``, ``vepa`` and ``passthru``. As with
any macvlan, the host itself cannot reach its children through the parent.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipework.backends.shared import vlans
from pipework.engine import (
    ARPHRD_INFINIBAND,
    ARPHRD_LOOPBACK,
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

MODES = ("bridge", "private", "vepa", "passthru")
#: Interfaces other backends own, or that cannot carry a macvlan.
NOT_A_PARENT = frozenset({"bridge", "openvswitch", "tun"})


class MacvlanBackend(LinkBackend):
    name = "macvlan"
    default_ifname = "eth1"
    options: Mapping[str, OptionSpec] = {"mode": OptionSpec("|".join(MODES), choices=MODES)}

    async def claim(self, request: HostRequest) -> int:
        link = request.host_link
        if link is None or link.kind in NOT_A_PARENT:
            return 0
        if link.link_type in (ARPHRD_INFINIBAND, ARPHRD_LOOPBACK):
            return 0
        return 1  # any other existing interface, as the original's "phys"

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        spec.refuse(self.name, direct_phys=True)
        spec.vlan_id(self.name)

    async def attach(self, ctx: LinkContext) -> GuestLink:
        spec = ctx.spec
        parent, state = await vlans.parent_for(ctx, "macvlan", spec.vlan_id(self.name))
        return await create_child(
            ctx,
            "macvlan",
            {"macvlan_mode": spec.choice(self.name, "mode", MODES, "bridge")},
            parent=parent,
            state=state,
            refused_hint="a passthru macvlan takes its parent whole: all children of one"
            " parent must use one mode, and passthru allows one child",
        )

    async def verify(self, ctx: DetachContext) -> str | None:
        return await vlans.verify_child(ctx, "macvlan")

    async def detach(self, ctx: DetachContext) -> None:
        await vlans.detach_child(ctx)

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """References on shared VLAN sub-interfaces left by guests that are gone."""
        return await vlans.collect_garbage(ctx)


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[MacvlanBackend]:
    return [MacvlanBackend()]
