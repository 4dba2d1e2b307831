"""``gc`` of the shared VLAN sub-interfaces macvlan and ipvlan stack on
(backends/shared/vlans.py): references of attachments whose guest side is
gone are dropped, the sub-interface with the last one (fake kernel)."""

from __future__ import annotations

import hashlib

import pytest
from support.fake_netlink import FakeNet

from pipework.backends.links.ipvlan import IpvlanBackend
from pipework.backends.links.macvlan import MacvlanBackend
from pipework.backends.shared import vlans
from pipework.engine import BRIDGE_MARKER, GcContext, Marker
from pipework.engine.batch import BatchScope

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vlans, "CONFIRM_DELAY", 0)


def marker(guest: str) -> Marker:
    return Marker(guest=guest, ifname="eth1", kind="macvlan", host="eth0.10")


def user(guest: str) -> str:
    return "pw-" + hashlib.sha1(f"{guest}\0eth1".encode()).hexdigest()[:10]


def context(net: FakeNet, live: set[str], dry_run: bool = False, again: set[str] | None = None):
    rescans = []

    async def rescan() -> frozenset[Marker]:
        rescans.append(1)
        return frozenset(marker(g) for g in (live if again is None else again))

    ctx = GcContext(
        host=net.host,
        dry_run=dry_run,
        live=frozenset(marker(g) for g in live),
        rescan=rescan,
        scope=BatchScope(),
    )
    return ctx, rescans


def shared_vlan(net: FakeNet, *guests: str, alias: str | None = BRIDGE_MARKER):
    eth0 = net.kernel.add("host", "eth0", up=True)
    return net.kernel.add(
        "host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10, up=True,
        alias=alias, altnames=[user(g) for g in guests],
    )  # fmt: skip


async def test_a_gone_users_reference_is_dropped_once_for_both_backends(net: FakeNet) -> None:
    vlan = shared_vlan(net, "netns:a", "netns:b")
    ctx, rescans = context(net, live={"netns:b"})
    lines = await MacvlanBackend().collect_garbage(ctx)
    assert lines == ["VLAN interface eth0.10: 1 user(s) gone"]
    assert await IpvlanBackend().collect_garbage(ctx) == []  # same run: done already
    assert vlan.altnames == [user("netns:b")] and len(rescans) == 1
    assert "eth0.10" in net.kernel.names("host")


async def test_the_last_reference_takes_the_sub_interface(net: FakeNet) -> None:
    shared_vlan(net, "netns:a")
    ctx, _ = context(net, live=set())
    assert await IpvlanBackend().collect_garbage(ctx) == [
        "VLAN interface eth0.10: 1 user(s) gone, removing it (pipework created it)"
    ]
    assert net.kernel.names("host") == ["eth0"]


async def test_a_dry_run_changes_nothing(net: FakeNet) -> None:
    vlan = shared_vlan(net, "netns:a")
    ctx, _ = context(net, live=set(), dry_run=True)
    assert await vlans.collect_garbage(ctx) == [
        "VLAN interface eth0.10: 1 user(s) gone, removing it (pipework created it)"
    ]
    assert vlan.altnames == [user("netns:a")] and "eth0.10" in net.kernel.names("host")


async def test_a_user_that_appears_on_the_second_look_is_kept(net: FakeNet) -> None:
    vlan = shared_vlan(net, "netns:a")
    ctx, rescans = context(net, live=set(), again={"netns:a"})  # it was mid-attach
    assert await vlans.collect_garbage(ctx) == []
    assert vlan.altnames == [user("netns:a")] and rescans == [1]


async def test_nothing_to_look_at_without_a_shared_sub_interface(net: FakeNet) -> None:
    shared_vlan(net, "netns:a", alias=None)  # the user's own eth0.10
    ctx, rescans = context(net, live=set())
    assert await vlans.collect_garbage(ctx) == [] and rescans == []
