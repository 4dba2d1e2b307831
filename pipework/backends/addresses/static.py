"""Static addressing: ``ADDR/PREFIX[@GATEWAY]`` for IPv4 and IPv6, and ``0/0``.

A gateway replaces the guest's default route; its rollback and its detach
give the guest back the route it replaced (backends/shared/routes.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from pipework.engine import (
    AddressContext,
    AddressProvider,
    AddressResult,
    AddressSpec,
    DetachContext,
    EngineConfig,
    GcContext,
    OptionSpec,
    hookimpl,
)


class StaticProvider(AddressProvider):
    name = "static"
    options: Mapping[str, OptionSpec] = {}
    make_before_break = True

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.run_dir = (config or EngineConfig()).run_dir

    def handles(self, address: AddressSpec) -> bool:
        return address.method == "static"

    async def configure(self, ctx: AddressContext) -> AddressResult:
        spec = ctx.address
        if spec.address is None:  # 0/0: connected and up, no address
            return AddressResult()
        gns = ctx.guest_ns
        await gns.add_address(ctx.index, spec.address)
        gateway = spec.gateway
        if gateway is None:
            return AddressResult(addresses=(str(spec.address),))
        if gateway not in spec.address.network:
            # Not directly reachable: tell the kernel it is on this link.
            await gns.add_onlink_route(ctx.index, gateway)
        from pipework.backends.shared.routes import replace_default_route  # few attaches need it

        await replace_default_route(ctx, self.run_dir, gateway)
        return AddressResult(addresses=(str(spec.address),), gateway=str(gateway))

    async def release(self, ctx: DetachContext) -> None:
        """Addresses and routes go with the interface; the default route it
        replaced comes back."""
        from pipework.backends.shared.routes import give_back_default_route

        await give_back_default_route(ctx, self.run_dir)

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """Default-route records of interfaces that are gone (every provider's)."""
        from pipework.backends.shared.routes import collect_records

        return await collect_records(ctx, self.run_dir)


@hookimpl
def pipework_address_providers(config: EngineConfig) -> list[StaticProvider]:
    return [StaticProvider(config)]
