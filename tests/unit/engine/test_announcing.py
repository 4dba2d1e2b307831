"""Which interfaces announce themselves and which keep IPv6 autoconfiguration
(engine/announcing.py), and the netlink layer's fallback when the kernel has
no IPv6 for an interface."""

from __future__ import annotations

import errno

import pytest

from pipework.engine import announcing
from pipework.engine.announcing import (
    Announcement,
    announce_when_ready,
    announces,
    link_settings,
    trigger,
)
from pipework.engine.errors import PipeworkError
from pipework.engine.kernel.netlink import Link, Netns
from pipework.engine.kernel.rtnl import RtnlError
from pipework.engine.specs import AddressSpec, AttachSpec


def spec(ip: str, **kw: object) -> AttachSpec:
    return AttachSpec(host="br1", guest="netns:g", address=AddressSpec.parse(ip), **kw)  # type: ignore[arg-type]


NONE = {"addr_gen_mode": "none"}
NOTIFY = {"arp_notify": 1}


@pytest.mark.parametrize(
    ("ip", "kw", "created", "before", "with_up"),
    [
        ("198.18.0.2/24", {}, True, NONE, NOTIFY),
        ("198.18.0.2/24", {"announce": False}, True, NONE, {}),
        ("198.18.0.2/24", {"ipv6_link_local": True}, True, {}, NOTIFY),
        ("198.18.0.2/24", {}, False, {}, {}),  # a NIC passed through: announced by a frame
        ("2001:db8::2/64", {}, True, {}, {}),
        ("0/0", {}, True, {}, {}),
        ("udhcpc", {}, True, {}, {}),
        ("dhcpcd", {}, True, {}, {}),
    ],
)
def test_link_settings(ip, kw, created, before, with_up):
    assert link_settings(spec(ip, **kw), created) == (before, with_up)
    if created:
        assert announces(spec(ip, **kw)) == bool(with_up)


def test_the_fingerprint_counts_link_local_only_when_asked():
    plain = spec("198.18.0.2/24").fingerprint("bridge", "br1")
    assert spec("198.18.0.2/24", announce=False).fingerprint("bridge", "br1") == plain
    assert spec("198.18.0.2/24", ipv6_link_local=True).fingerprint("bridge", "br1") != plain


class RefusingRtnl:
    """Refuses IPv6 settings (or any per-family settings) with EAFNOSUPPORT."""

    def __init__(self, refuse: tuple[str, ...]) -> None:
        self.refuse = refuse
        self.sent: list[dict[str, object]] = []

    def set_link(self, index: int, attrs: dict[str, object]) -> None:
        self.sent.append(dict(attrs))
        if any(key in attrs for key in self.refuse):
            raise RtnlError(errno.EAFNOSUPPORT, "Address family not supported")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("refuse", "last"),
    [
        (("addr_gen_mode",), {"state": "up", "arp_notify": 1}),
        (("addr_gen_mode", "arp_notify"), {"state": "up"}),
    ],
)
async def test_settings_the_kernel_cannot_take_are_dropped_one_by_one(refuse, last):
    ns = Netns.__new__(Netns)
    ns.label = "guest"
    ns.rtnl = RefusingRtnl(refuse)  # type: ignore[assignment]
    await ns.set(3, state="up", addr_gen_mode="none", arp_notify=1)
    assert ns.rtnl.sent[-1] == last  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_other_refusals_still_fail():
    from pipework.engine.errors import PipeworkError

    class Refusing(RefusingRtnl):
        def set_link(self, index: int, attrs: dict[str, object]) -> None:
            raise RtnlError(errno.EPERM, "Operation not permitted")

    ns = Netns.__new__(Netns)
    ns.label = "guest"
    ns.rtnl = Refusing(())  # type: ignore[assignment]
    with pytest.raises(PipeworkError, match="not permitted"):
        await ns.set(3, state="up", addr_gen_mode="none")


# -- the wait for a link that was not ready when its attach ended -------------------


def link(operstate: str = "UP", port_state: int | None = None) -> Link:
    return Link(
        index=4, ifname="eth1", kind="veth", mtu=1500, mac="02:00:00:00:00:01", alias=None,
        master=None, up=True, operstate=operstate, link_type=1, max_mtu=None,
        port_state=port_state,
    )  # fmt: skip


class FakeNs:
    """A namespace whose link states come from a script, one per lookup."""

    fd = 99
    label = "guest"

    def __init__(self, states: list[Link | None], refuse: bool = False) -> None:
        self.states = states
        self.refuse = refuse
        self.set_calls: list[tuple[int, dict[str, object]]] = []

    async def link_by_index(self, index: int) -> Link | None:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    async def link(self, ifname: str) -> Link | None:
        return await self.link_by_index(0)

    async def set(self, index: int, **attrs: object) -> None:
        self.set_calls.append((index, attrs))
        if self.refuse:
            raise PipeworkError("configuring interface #4 in guest failed: Operation not supported")


def what(created: bool = True, host_ifname: str | None = None) -> Announcement:
    return Announcement(spec("198.18.0.2/24"), created, host_ifname)


@pytest.mark.anyio
async def test_it_announces_once_both_ends_are_ready():
    guest = FakeNs([link("DOWN"), link("UP"), link("UP")])
    host = FakeNs([link("UP", port_state=0), link("UP", port_state=3)])
    await announce_when_ready(guest, host, link("DOWN"), what(host_ifname="pwhost"))  # type: ignore[arg-type]
    assert guest.set_calls == [(4, {"address": "02:00:00:00:00:01"})]
    assert guest.states == [link("UP")] and host.states == [link("UP", port_state=3)]


@pytest.mark.anyio
async def test_a_link_gone_meanwhile_is_not_announced():
    guest = FakeNs([link("DOWN"), None])
    await announce_when_ready(guest, FakeNs([link()]), link("DOWN"), what())  # type: ignore[arg-type]
    assert guest.set_calls == []


@pytest.mark.anyio
async def test_after_the_wait_it_announces_anyway(monkeypatch):
    monkeypatch.setattr(announcing, "ANNOUNCE_WAIT", 0.05)
    guest = FakeNs([link("LOWERLAYERDOWN")])
    await announce_when_ready(guest, FakeNs([link()]), link("DOWN"), what())  # type: ignore[arg-type]
    assert len(guest.set_calls) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("created", "refuse", "asked", "frames"),
    [
        (True, False, 1, 0),  # the kernel announces
        (True, True, 1, 1),  # refused (ipvlan has no MAC of its own): a frame
        (False, False, 0, 1),  # a NIC passed through: its MAC is left alone
    ],
)
async def test_the_kernel_is_asked_or_a_frame_is_sent(monkeypatch, created, refuse, asked, frames):
    sent: list[tuple[object, ...]] = []
    monkeypatch.setattr(announcing, "announce", lambda *args: sent.append(args) or True)
    guest = FakeNs([link()], refuse=refuse)
    assert await trigger(guest, link(), what(created))  # type: ignore[arg-type]
    assert len(guest.set_calls) == asked
    assert [args[:3] for args in sent] == [(99, "eth1", "02:00:00:00:00:01")] * frames
