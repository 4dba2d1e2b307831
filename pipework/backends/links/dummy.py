"""dummy: an interface inside the guest that is connected to nothing.

``pipework dummy0 web1 198.18.0.9/32``: as in the original, a host interface
name starting with ``dummy`` that does not exist asks for a dummy interface
in the guest (handy for a service address or a loopback-like /32). Every
addressing option works with it; a VLAN does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipework.engine import (
    DetachContext,
    EngineConfig,
    GuestLink,
    HostRequest,
    LinkBackend,
    LinkContext,
    OptionSpec,
    hookimpl,
)


class DummyBackend(LinkBackend):
    name = "dummy"
    default_ifname = "eth1"
    auto_prefix = "dummy"
    options: Mapping[str, OptionSpec] = {}

    async def claim(self, request: HostRequest) -> int:
        exists = request.host_link is not None
        return 10 if not exists and request.spec.host.startswith(self.auto_prefix) else 0

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        spec.refuse(self.name, vlan=True, direct_phys=True)

    async def attach(self, ctx: LinkContext) -> GuestLink:
        guest_ns, temp = ctx.guest_ns, ctx.temp_ifname
        await ctx.journal.step(
            f"dummy interface in {ctx.guest.name}",
            guest_ns.create(temp, "dummy"),
            lambda: guest_ns.delete_named(temp),
        )
        return GuestLink(temp_ifname=ctx.temp_ifname, host="", mtu=ctx.spec.mtu)

    async def detach(self, ctx: DetachContext) -> None:
        """Nothing on the host side: the engine deletes the interface."""


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[DummyBackend]:
    return [DummyBackend()]
