"""Bridge VLAN filtering: the bridge's switch, and a port's one VLAN.

Only the bridge backend uses these, so they live here and build their
requests from the kernel layer's primitives (``Netns.request`` and
``rtnl``'s encoders): IFLA_BR_VLAN_FILTERING in the bridge's link info, and
the AF_BRIDGE messages ``bridge vlan add/del`` sends.
"""

from __future__ import annotations

import errno
import socket
import struct

from pipework.engine import Link, Netns, UnsupportedError
from pipework.engine.kernel import rtnl

IFLA_BR_VLAN_FILTERING = 7
"""In a bridge's IFLA_INFO_DATA (if_link.h)."""
IFLA_BRIDGE_VLAN_INFO = 2
"""In a port's IFLA_AF_SPEC, family AF_BRIDGE (if_bridge.h): ``struct bridge_vlan_info``."""
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
DEFAULT_PVID = 1
"""The VLAN every new port of a bridge gets."""


def _filtering_body(index: int, on: bool) -> bytes:
    data = rtnl.attr(IFLA_BR_VLAN_FILTERING, bytes([int(on)]))
    info = rtnl.str_attr(rtnl.IFLA_INFO_KIND, "bridge") + rtnl.nested(rtnl.IFLA_INFO_DATA, data)
    return rtnl.ifinfomsg(index) + rtnl.nested(rtnl.IFLA_LINKINFO, info)


def _port_vlan_body(index: int, vid: int, flags: int) -> bytes:
    info = rtnl.attr(IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", flags, vid))
    return rtnl.ifinfomsg(index, family=socket.AF_BRIDGE) + rtnl.attr(rtnl.IFLA_AF_SPEC, info)


async def vlan_filtering(host: Netns, index: int) -> bool:
    """Is VLAN filtering on on the bridge ``index``?"""
    (answer,) = await host.request(
        f"looking up interface #{index}", rtnl.RTM_GETLINK, 0, rtnl.get_link_body(index)
    )
    value = rtnl.link_info_data(answer).get(IFLA_BR_VLAN_FILTERING)
    return bool(value and value[0])


async def enable_vlan_filtering(host: Netns, bridge: Link) -> bool:
    """Turn on VLAN filtering on a bridge; False if it was on already."""
    if await vlan_filtering(host, bridge.index):
        return False
    try:
        await host.request(
            f"turning on VLAN filtering on {bridge.ifname}",
            rtnl.RTM_NEWLINK,
            rtnl.NLM_F_ACK,
            _filtering_body(bridge.index, True),
        )
    except UnsupportedError:  # EOPNOTSUPP
        raise UnsupportedError(
            "this kernel has no bridge VLAN filtering support (CONFIG_BRIDGE_VLAN_FILTERING)",
            "attach without a VLAN, or use Open vSwitch (an ovs* bridge)",
        ) from None
    return True


async def disable_vlan_filtering(host: Netns, index: int) -> None:
    await host.request(
        f"turning off VLAN filtering on #{index}",
        rtnl.RTM_NEWLINK,
        rtnl.NLM_F_ACK,
        _filtering_body(index, False),
    )


async def set_port_vlan(host: Netns, index: int, vid: int) -> None:
    """Make ``vid`` the bridge port's only VLAN: untagged, and its PVID."""
    flags = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
    await host.request(
        f"putting port #{index} on VLAN {vid}",
        rtnl.RTM_SETLINK,
        rtnl.NLM_F_ACK,
        _port_vlan_body(index, vid, flags),
    )
    if vid != DEFAULT_PVID:
        await host.request(
            f"removing VLAN {DEFAULT_PVID} from #{index}",
            rtnl.RTM_DELLINK,
            rtnl.NLM_F_ACK,
            _port_vlan_body(index, DEFAULT_PVID, 0),
            ignore=(errno.ENOENT, errno.EINVAL),
        )
