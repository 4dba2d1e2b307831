"""vxlan: a VXLAN interface in the guest, its underlay on the host.

``pipework vxlan0 web1 198.18.41.2/24 --kind vxlan -o remote=198.18.9.2 -o vni=42``.
The interface is created by one request sent in the host's namespace that
names the guest's namespace as its home: the kernel keeps the interface's
UDP socket where it was created, so the encapsulated packets leave and
arrive on the host (its routes, its firewall, ``dev=``), and the guest sees
only the inner Ethernet segment. Only ``--kind vxlan`` chooses this backend.

HOSTIF: when it names an existing host interface and ``-o dev=`` is not
given, it is the underlay (``pipework ul0 web1 ... --kind vxlan -o vni=42
-o remote=...``); otherwise it is only a label, shown by ``ls``.

The settings (``-o vni= remote= group= port= dev= local= learning= ttl=``)
are backends/shared/vxlan.py's. With an underlay, the MTU defaults to the
underlay's less the outer headers (50 bytes over IPv4, 70 over IPv6), and
more is refused before anything is made.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping

from pipework.backends.shared import vxlan as shared
from pipework.engine import (
    BreakBeforeMake,
    DetachContext,
    EngineConfig,
    GuestLink,
    HostInterfaceError,
    HostRequest,
    Link,
    LinkBackend,
    LinkContext,
    LinkExists,
    NetlinkFailure,
    Netns,
    OptionSpec,
    hookimpl,
)


def settings(options: Mapping[str, str], host_link: Link | None) -> shared.Vxlan:
    """The request's VXLAN settings; HOSTIF is the underlay when it exists and
    ``dev`` is not given."""
    values: dict[str, object] = dict(options)
    if "dev" not in values and host_link is not None:
        values["dev"] = host_link.ifname
    return shared.from_options(values)


async def holds(ns: Netns, ifname: str, vxlan: shared.Vxlan) -> bool:
    """Is ``ifname`` in ``ns`` (an attachment being replaced) a VXLAN
    interface with ``vxlan``'s VNI and UDP port?"""
    old = await ns.link(ifname)
    if old is None or old.kind != "vxlan":
        return False
    have = await shared.read(ns, old)
    return (have.vni, have.port) == (vxlan.vni, vxlan.port)


class VxlanBackend(LinkBackend):
    name = "vxlan"
    default_ifname = "eth1"
    options: Mapping[str, OptionSpec] = shared.OPTIONS

    async def claim(self, request: HostRequest) -> int:
        return 0  # only --kind vxlan

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        spec.refuse(self.name, vlan=True, direct_phys=True)
        settings(spec.options, request.host_link)

    async def attach(self, ctx: LinkContext) -> GuestLink:
        vxlan = settings(ctx.spec.options, ctx.host_link)
        dev = await shared.underlay(ctx.host, vxlan)
        mtu = shared.pick_mtu(vxlan, ctx.spec.mtu, dev, "a vxlan interface")
        attrs = vxlan.attrs(dev.index if dev is not None else None)
        if mtu is not None:
            attrs["mtu"] = mtu
        guest_ns, temp = ctx.guest_ns, ctx.temp_ifname
        try:
            await ctx.journal.step(
                f"vxlan interface in {ctx.guest.name}",
                ctx.host.create(temp, "vxlan", net_ns_fd=ctx.guest.fd, **attrs),
                lambda: guest_ns.delete_named(temp),
            )
        except LinkExists:
            if await guest_ns.link(temp) is not None or await ctx.host.link(temp) is not None:
                raise
            if ctx.replacing is not None and await holds(guest_ns, ctx.replacing.ifname, vxlan):
                # The attachment this one replaces holds the VNI and port on
                # this host: the engine removes it first, then makes this one.
                # (Another holder: removing the old one would not help, and
                # would lose it.)
                raise BreakBeforeMake from None
            raise HostInterfaceError(
                f"the host already has a vxlan interface with VNI {vxlan.vni}"
                f" on UDP port {vxlan.port}",
                "a VNI and port are used once per host; detach the other or choose another",
            ) from None
        except NetlinkFailure as exc:
            if exc.code == errno.EOPNOTSUPP:
                raise
            raise HostInterfaceError(
                f"the kernel refused a vxlan interface ({vxlan.describe()}): {exc}"
            ) from None
        host = ctx.host_link.ifname if ctx.host_link is not None else ctx.spec.host
        return GuestLink(temp_ifname=temp, host=host, mtu=mtu)

    async def verify(self, ctx: DetachContext) -> str | None:
        """Nothing on the host is ever removed or changed because of a vxlan
        marker: its UDP socket goes with the interface, which is the guest's.
        What ``ls`` reports as a vxlan attachment is at least a VXLAN
        interface whose socket is outside the guest's namespace (which a
        guest cannot make on its own, unless it holds another namespace)."""
        link = ctx.guest_link
        if link is None:
            return None
        if link.kind != "vxlan":
            return "it is not a vxlan interface"
        if link.link_netnsid is None:
            return "its UDP socket is in the guest's own namespace, not the host's"
        return None

    async def detach(self, ctx: DetachContext) -> None:
        """Nothing on the host side: the engine deletes the interface, and its socket with it."""


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[VxlanBackend]:
    return [VxlanBackend()]
