"""A bridge's VXLAN uplink: containers on two hosts on one segment.

A topology file's ``bridges: - {name: br1, vxlan: {vni: 42, remote: ...}}``
asks for a VXLAN interface on the host, a port of the bridge: ``BRIDGE-vx``
(``vx`` + a hash when that does not fit), marked ``pipework vxlan-uplink``
in its alias. Its settings are backends/shared/vxlan.py's; its MTU is the
bridge's declared MTU, or the underlay's less the outer headers (and no more
than that). It goes with the bridge (``release_host``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipework.backends.shared import vxlan as shared
from pipework.engine import HostInterfaceError, Link, LinkExists, Netns
from pipework.engine.specs import IFNAMSIZ, short_hash

SETTING = "vxlan"
"""The key in a declared bridge's settings (``HostContext.settings``)."""


def uplink_name(bridge: str) -> str:
    name = f"{bridge}-vx"
    return name if len(name.encode()) <= IFNAMSIZ else "vx" + short_hash(bridge)


def wanted(settings: Mapping[str, Any]) -> shared.Vxlan | None:
    """The uplink a declaration asks for (checked), or None."""
    values = settings.get(SETTING)
    return None if values is None else shared.from_options(values)


def is_uplink(link: Link) -> bool:
    return link.kind == "vxlan" and link.alias == shared.UPLINK_ALIAS


async def uplinks(host: Netns, bridge: Link) -> list[Link]:
    """The bridge's ports that are pipework's VXLAN uplinks."""
    return [port for port in await host.ports(bridge.index) if is_uplink(port)]


async def stray(host: Netns, bridge: Link) -> Link | None:
    """The bridge's uplink by name, if it is pipework's but off the bridge
    (someone ran ``ip link set BRIDGE-vx nomaster``)."""
    link = await host.link(uplink_name(bridge.ifname))
    if link is None or not is_uplink(link) or link.master == bridge.index:
        return None
    return link


async def plan(host: Netns, bridge: str, want: shared.Vxlan, mtu: int | None) -> int | None:
    """Check what creating the uplink needs before anything is made (the
    underlay exists, the bridge's MTU fits over it); the uplink's MTU."""
    dev = await shared.underlay(host, want)
    return shared.pick_mtu(want, mtu, dev, f"bridge {bridge}'s vxlan uplink")


async def differences(host: Netns, bridge: Link, want: shared.Vxlan) -> list[str]:
    """What differs between the bridge's uplink and ``want``, for people."""
    found = await uplinks(host, bridge)
    if not found:
        was = "off the bridge" if await stray(host, bridge) is not None else "none"
        return [f"vxlan uplink {was} -> {want.describe()}"]
    have = await shared.read(host, found[0])
    return [f"vxlan {change}" for change in shared.differences(want, have)]


async def create(host: Netns, bridge: Link, want: shared.Vxlan, mtu: int | None) -> None:
    """Make the uplink and enslave it; nothing is left if this fails."""
    name = uplink_name(bridge.ifname)
    dev = await shared.underlay(host, want)
    attrs = want.attrs(dev.index if dev is not None else None)
    if mtu is not None:
        attrs["mtu"] = mtu
    try:
        await host.create(name, "vxlan", **attrs)
    except LinkExists:
        if await host.link(name) is not None:
            raise HostInterfaceError(
                f"{name} exists and is not bridge {bridge.ifname}'s vxlan uplink",
                "rename or remove it",
            ) from None
        raise HostInterfaceError(
            f"the host already has a vxlan interface with VNI {want.vni} on UDP port {want.port}",
            "a VNI and port are used once per host; remove the other or choose another",
        ) from None
    link = await host.link(name)
    if link is None:  # pragma: no cover - deleted by someone else in between
        raise HostInterfaceError(f"{name} vanished right after creation")
    try:
        await host.set(
            link.index,
            master=bridge.index,
            ifalias=shared.UPLINK_ALIAS,
            state="up",
            addr_gen_mode="none",
        )
    except BaseException:
        await host.delete(link.index)
        raise


async def replace(host: Netns, bridge: Link, want: shared.Vxlan, mtu: int | None) -> None:
    """Remove the bridge's uplinks (another VNI, a missing one), make ``want``'s."""
    for old in await uplinks(host, bridge):
        await host.delete(old.index)
    off = await stray(host, bridge)
    if off is not None:  # ours (a host alias only root writes), taken off the bridge
        await host.delete(off.index)
    await create(host, bridge, want, mtu)


async def remove(host: Netns, bridge: Link) -> None:
    for old in await uplinks(host, bridge):
        await host.delete(old.index)


__all__ = ["SETTING", "create", "differences", "is_uplink", "plan", "remove", "replace", "wanted"]
