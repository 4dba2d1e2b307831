"""IPoIB: a child of an InfiniBand interface, on a partition key.

Chosen when the host interface is of type 32 (ARPHRD_INFINIBAND), as the
original did. ``@PKEY`` (hex, e.g. ``@8001``) or ``--pkey`` selects the
partition; without one the kernel uses the parent's. The guest interface is
``ib0`` unless ``-i`` says otherwise. IPoIB hardware addresses belong to the
adapter, so a MAC address is refused. ``-o mode=datagram|connected`` picks
the transport mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipework.engine import (
    ARPHRD_INFINIBAND,
    DetachContext,
    EngineConfig,
    GuestLink,
    HostRequest,
    LinkBackend,
    LinkContext,
    OptionSpec,
    UsageError,
    create_child,
    hookimpl,
    parse_pkey,
)

MODES = ("datagram", "connected")


def _pkey(value: object) -> int:
    """A ``--pkey`` setting: the partition key, a number (``parse_pkey`` reads hex)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"partition key {value!r} is not a number")
    return parse_pkey(f"{value:x}")


class IpoibBackend(LinkBackend):
    name = "ipoib"
    default_ifname = "ib0"
    options: Mapping[str, OptionSpec] = {
        "mode": OptionSpec("|".join(MODES), choices=MODES),
        "pkey": OptionSpec("the partition key (also @PKEY)", flag="--pkey", parse=_pkey),
    }

    async def claim(self, request: HostRequest) -> int:
        link = request.host_link
        return 100 if link is not None and link.link_type == ARPHRD_INFINIBAND else 0

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        if spec.mac is not None:
            raise UsageError(
                "IPoIB interfaces cannot take a MAC address (the InfiniBand adapter sets it)",
                "drop the MAC from MACSPEC; @PKEY alone selects the partition",
            )
        spec.refuse(self.name, direct_phys=True)
        spec.partition_key()

    async def attach(self, ctx: LinkContext) -> GuestLink:
        spec = ctx.spec
        attrs: dict[str, Any] = {}
        pkey = spec.partition_key()
        if pkey is not None:
            attrs["pkey"] = pkey
        if "mode" in spec.options:
            attrs["mode"] = spec.options["mode"]
        return await create_child(ctx, "ipoib", attrs)

    async def detach(self, ctx: DetachContext) -> None:
        """Nothing on the host side: the engine deletes the child."""


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[IpoibBackend]:
    return [IpoibBackend()]
