"""Physical pass-through (``--direct-phys``): the NIC itself moves into the guest.

The interface leaves the host, is renamed to the guest interface name, and
its marker (alias) records its original name and MAC address. Detach brings
it back under that name with that MAC, in the state (up or down) it was in.
If the guest's namespace disappears first, the kernel returns a physical NIC
to the host by itself; ``detach`` then finds it by its marker and restores
its name and MAC. (A veth is destroyed with the namespace instead.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pipework.engine import (
    ARPHRD_LOOPBACK,
    DetachContext,
    EngineConfig,
    GuestLink,
    HostInterfaceError,
    HostRequest,
    Link,
    LinkBackend,
    LinkContext,
    LinkExists,
    Marker,
    Netns,
    OptionSpec,
    UsageError,
    current_netns_fd,
    hookimpl,
)

#: Kinds that are not a NIC to hand over (other backends own them).
KIND_NAMES = {
    "bridge": "a bridge",
    "openvswitch": "an Open vSwitch device",
    "tun": "a tun/tap device (an Open vSwitch bridge?)",
}
NOT_A_NIC = frozenset(KIND_NAMES)


DIRECT_PHYS = "direct_phys"
"""The ``--direct-phys`` setting (``AttachSpec.settings``): it chooses this backend."""


class PhysBackend(LinkBackend):
    name = "phys"
    default_ifname = "eth1"
    options: Mapping[str, OptionSpec] = {
        DIRECT_PHYS: OptionSpec("move the NIC itself into the guest", flag="--direct-phys")
    }

    make_before_break = False  # one NIC cannot be in the guest twice

    async def claim(self, request: HostRequest) -> int:
        # Above everything, so that --direct-phys on a bridge reaches
        # check() and is refused with the reason.
        return 200 if request.spec.settings.get(DIRECT_PHYS) else 0

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        spec.refuse(self.name, vlan=True)
        link = request.host_link
        if link is None:
            return  # attach() says so, unless a re-run finds it in the guest already
        if link.kind in NOT_A_NIC or link.link_type == ARPHRD_LOOPBACK:
            raise UsageError(
                f"--direct-phys moves a NIC into the guest; {link.ifname} is"
                f" {KIND_NAMES.get(link.kind or '', 'the loopback')}",
                "name a network card, or drop --direct-phys",
            )

    async def attach(self, ctx: LinkContext) -> GuestLink:
        name = ctx.host_link.ifname if ctx.host_link is not None else ctx.spec.host
        async with ctx.lock(f"phys:{name}"):
            nic = await ctx.host.link(name)
            if nic is None:
                raise HostInterfaceError(
                    f"{name} does not exist", "--direct-phys needs an existing network card"
                )
            guest_ns, names = ctx.guest_ns, (ctx.temp_ifname, ctx.ifname)
            await ctx.journal.step(
                f"{name} back to the host",
                ctx.host.move(nic.index, ctx.guest.fd, ctx.temp_ifname),
                lambda: _give_back(guest_ns, names, ctx.host, nic),
            )
        return GuestLink(
            temp_ifname=ctx.temp_ifname,
            host=name,
            mtu=ctx.spec.mtu,
            owned=False,
            state=f"{nic.mac or ''},{'up' if nic.up else 'down'}",
        )

    async def detach(self, ctx: DetachContext) -> None:
        mac, _, updown = ctx.marker.state.partition(",")
        original = _original(ctx.marker.host, mac, updown == "up")
        if ctx.guest_ns is not None and ctx.guest_link is not None:
            await _give_back(ctx.guest_ns, (ctx.guest_link.ifname,), ctx.host, original)
            return
        # The guest is gone: a NIC comes home by itself, still carrying our marker.
        for link in await ctx.host.links():
            if ctx.marker.same_attachment(Marker.parse(link.alias)):
                await ctx.host.set(link.index, state="down")
                await _restore(ctx.host, link.index, original)


def _original(name: str, mac: str, up: bool) -> Link:
    return Link(
        index=0, ifname=name, kind=None, mtu=0, mac=mac or None, alias=None, master=None,
        up=up, operstate="", link_type=0, max_mtu=None,
    )  # fmt: skip


async def _give_back(guest_ns: Netns, names: tuple[str, ...], host: Netns, nic: Link) -> None:
    """Move the NIC from the guest back to the host, as it was."""
    for ifname in names:
        link = await guest_ns.link(ifname)
        if link is None:
            continue
        await guest_ns.set(link.index, state="down")
        fd = host.fd if host.fd is not None else current_netns_fd()
        try:
            await guest_ns.move(link.index, fd, nic.ifname)
        except LinkExists:
            raise HostInterfaceError(
                f"cannot give {link.ifname} back: the host has another {nic.ifname} now",
                f"rename the host's {nic.ifname}, then detach again",
            ) from None
        finally:
            if fd != host.fd:
                os.close(fd)
        back = await host.link(nic.ifname)
        if back is not None:
            await _restore(host, back.index, nic)
        return


async def _restore(host: Netns, index: int, nic: Link) -> None:
    attrs: dict[str, object] = {"ifname": nic.ifname, "ifalias": ""}
    if nic.mac:
        attrs["address"] = nic.mac
    if nic.up:
        attrs["state"] = "up"
    await host.set(index, **attrs)


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[PhysBackend]:
    return [PhysBackend()]
