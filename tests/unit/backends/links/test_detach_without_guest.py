"""Detaching a VLAN child after its guest is gone (Engine.remove, CNI DEL):
the marker is a reconstruction without the backend's state, and the shared
sub-interface is found by this attachment's reference name (fake kernel)."""

from __future__ import annotations

import hashlib

import pytest
from support.fake_netlink import (
    IFLA_ALT_IFNAME,
    IFLA_PROP_LIST,
    RTM_DELLINK,
    RTM_DELLINKPROP,
    FakeNet,
)

from pipework.backends.links.macvlan import MacvlanBackend
from pipework.engine import BRIDGE_MARKER, DetachContext, Marker

pytestmark = pytest.mark.anyio

GUEST = "cni:net1:c0ffee"


def user(guest: str, ifname: str) -> str:
    return "pw-" + hashlib.sha1(f"{guest}\0{ifname}".encode()).hexdigest()[:10]


def rebuilt(ifname: str = "eth0") -> Marker:
    """What Engine.remove() passes when nothing of the attachment is left to read."""
    return Marker(guest=GUEST, ifname=ifname, kind="macvlan", host="eth0", addr="static")


@pytest.mark.parametrize("others", [[], ["pw-0123456789"]], ids=["last-user", "not-last"])
async def test_the_reference_of_a_gone_guest_is_dropped(net: FakeNet, others: list[str]) -> None:
    eth0 = net.kernel.add("host", "eth0", up=True)
    vlan = net.kernel.add(
        "host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10, up=True,
        alias=BRIDGE_MARKER, altnames=[user(GUEST, "eth0"), *others],
    )  # fmt: skip
    net.kernel.log.clear()
    ctx = DetachContext(marker=rebuilt(), host=net.host, guest_ns=None, guest_link=None)
    await MacvlanBackend().detach(ctx)

    changes = [c for c in net.kernel.changes() if c.type in (RTM_DELLINKPROP, RTM_DELLINK)]
    assert (changes[0].type, changes[0].index) == (RTM_DELLINKPROP, vlan.index)
    assert changes[0].string(IFLA_PROP_LIST, IFLA_ALT_IFNAME) == user(GUEST, "eth0")
    if others:
        assert len(changes) == 1 and vlan.altnames == others
    else:
        assert [(c.type, c.index) for c in changes[1:]] == [(RTM_DELLINK, vlan.index)]
        assert net.kernel.names("host") == ["eth0"]


async def test_without_a_reference_nothing_is_touched(net: FakeNet) -> None:
    eth0 = net.kernel.add("host", "eth0", up=True)
    net.kernel.add(
        "host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10, up=True,
        alias=BRIDGE_MARKER, altnames=[user("cni:net1:other", "eth0")],
    )  # fmt: skip
    net.kernel.log.clear()
    ctx = DetachContext(marker=rebuilt(), host=net.host, guest_ns=None, guest_link=None)
    await MacvlanBackend().detach(ctx)
    assert net.kernel.changes() == []
    assert net.kernel.names("host") == ["eth0", "eth0.10"]
