"""Static addressing: ``ADDR/PREFIX[@GATEWAY]`` for IPv4 and IPv6, and ``0/0``."""

from __future__ import annotations

from collections.abc import Mapping

from pipework.engine import (
    AddressContext,
    AddressProvider,
    AddressResult,
    AddressSpec,
    DetachContext,
    EngineConfig,
    OptionSpec,
    hookimpl,
)


class StaticProvider(AddressProvider):
    name = "static"
    options: Mapping[str, OptionSpec] = {}

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
        previous = await gns.default_route(gateway.version)
        if gateway not in spec.address.network:
            # Not directly reachable: tell the kernel it is on this link.
            await gns.add_onlink_route(ctx.index, gateway)
        await gns.set_default_route(gateway, ctx.index)

        async def restore() -> None:
            if previous is None:
                await gns.delete_default_route(gateway.version)
            else:
                await gns.restore_route(previous)

        ctx.journal.record(f"default route via {gateway}", restore)
        return AddressResult(addresses=(str(spec.address),), gateway=str(gateway))

    async def release(self, ctx: DetachContext) -> None:
        """Nothing to release: addresses and routes go with the interface."""


@hookimpl
def pipework_address_providers(config: EngineConfig) -> list[StaticProvider]:
    return [StaticProvider()]
