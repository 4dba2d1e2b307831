"""Links between guests: the request, the markers' mirror rule, the
overall action, and how ``ls`` pairs the two ends."""

from __future__ import annotations

import pytest

from pipework.engine.errors import UsageError
from pipework.engine.guestlinks import overall
from pipework.engine.inventory import AttachmentRecord, link_pairs
from pipework.engine.linkends import mirrors
from pipework.engine.linkspec import LINK_KIND, LinkEnd, LinkSpec, parse_endpoint
from pipework.engine.marker import Marker
from pipework.engine.specs import AddressSpec, GuestInfo, derive_mac


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1:eth1", ("web1", "eth1")),
        ("netns:r2:eth3", ("netns:r2", "eth3")),
        ("pid:42:e0", ("pid:42", "e0")),
        ("/run/netns/x:eth1", ("/run/netns/x", "eth1")),
        (" r1:eth1 ", ("r1", "eth1")),
    ],
)
def test_endpoints(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("web1", "names no interface"),
        ("web1:", "names no interface"),
        (":eth1", "names no interface"),
        ("netns:r2", "names no interface"),
        ("pid:7", "names no interface"),
        ("web1:averyveryverylongname", "bytes long"),
        ("web1:e th", "not valid"),
    ],
)
def test_bad_endpoints(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_endpoint(text)


def test_a_link_joins_two_guests_and_checks_its_fields():
    with pytest.raises(UsageError, match="both ends of the link are in r1"):
        LinkSpec(LinkEnd.parse("r1:eth1"), LinkEnd.parse("r1:eth2"))
    with pytest.raises(UsageError, match="MTU"):
        LinkSpec(LinkEnd.parse("r1:eth1"), LinkEnd.parse("r2:eth1"), mtu=70000)
    with pytest.raises(UsageError, match="MAC"):
        LinkEnd("r1", "eth1", mac="zz")
    assert LinkEnd("r1", "eth1", mac="U:r1").mac == derive_mac("r1")
    assert LinkEnd("r1", "eth1", mac="02:AA:bb:cc:dd:ee").mac == "02:aa:bb:cc:dd:ee"


def test_each_end_is_an_attachment_whose_fingerprint_names_the_peer():
    spec = LinkSpec(
        LinkEnd.parse("r1:eth1", address=AddressSpec.parse("198.18.40.1/30")),
        LinkEnd.parse("r2:eth3"),
        mtu=9000,
    )
    a = spec.end_spec(0, "netns:r2")
    b = spec.end_spec(1, "netns:r1")
    assert (a.guest, a.ifname, a.kind, a.mtu) == ("r1", "eth1", LINK_KIND, 9000)
    assert str(a.address) == "198.18.40.1/30" and b.address.address is None
    assert a.options == {"peer": "netns:r2/eth3"}
    # Linked elsewhere, or with another MTU, is another configuration.
    fp = a.fingerprint(LINK_KIND, "netns:r2")
    assert fp != spec.end_spec(0, "netns:r9").fingerprint(LINK_KIND, "netns:r9")
    other = LinkSpec(spec.a, spec.b, mtu=1500).end_spec(0, "netns:r2")
    assert fp != other.fingerprint(LINK_KIND, "netns:r2")
    # --force and --no-announce say how, not what.
    same = LinkSpec(spec.a, spec.b, mtu=9000, force=True, announce=False).end_spec(0, "netns:r2")
    assert fp == same.fingerprint(LINK_KIND, "netns:r2")


def _marker(guest: str, ifname: str, peer_guest: str, peer_if: str) -> Marker:
    return Marker(guest=guest, ifname=ifname, kind=LINK_KIND, host=peer_guest, peer=peer_if)


def test_mirrors():
    a = _marker("netns:r1", "eth1", "netns:r2", "eth3")
    assert mirrors(_marker("netns:r2", "eth3", "netns:r1", "eth1"), a)
    assert not mirrors(_marker("netns:r2", "eth1", "netns:r1", "eth1"), a)
    assert not mirrors(_marker("netns:r3", "eth3", "netns:r1", "eth1"), a)
    assert not mirrors(None, a)
    bridge = Marker(guest="netns:r2", ifname="eth3", kind="bridge", host="netns:r1")
    assert not mirrors(bridge, a)


def test_markers_round_trip_with_the_peer_and_old_ones_without_it():
    a = _marker("netns:r1", "eth1", "netns:r2", "eth3")
    assert Marker.parse(a.format()) == a and "peer=eth3" in a.format()
    plain = Marker(guest="g", ifname="eth1", kind="bridge", host="br0")
    assert "peer" not in plain.format()


def test_overall_action():
    assert overall(["unchanged", "unchanged"]) == "unchanged"
    assert overall(["unchanged", "create"]) == "create"
    assert overall(["repair", "create"]) == "repair"
    assert overall(["update", "unchanged"]) == "update"
    assert overall(["update", "conflict"]) == "conflict"


def _record(key, ifname, peer_key, peer_if, *, mtu=1500, kind=LINK_KIND):
    def guest(k):
        return GuestInfo(name=k, key=k, runtime="netns")

    return AttachmentRecord(
        guest=guest(key),
        ifname=ifname,
        kind=kind,
        host=peer_key,
        host_ifname=peer_if,
        mac=None,
        mtu=mtu,
        vlan=None,
        address_method="static",
        addresses=(),
        peer=guest(peer_key) if kind == LINK_KIND else None,
    )


def test_ls_shows_each_link_once_with_both_ends():
    records = [
        _record("netns:r1", "eth1", "netns:r2", "eth1"),
        _record("netns:r2", "eth1", "netns:r1", "eth1"),
        _record("netns:r2", "eth2", "netns:r3", "e0", mtu=9000),
        _record("netns:r9", "eth1", "br0", "pw1", kind="bridge"),
    ]
    pairs = link_pairs(records)
    assert [(a.guest.key, b.guest.key if b else None) for a, b in pairs] == [
        ("netns:r1", "netns:r2"),
        ("netns:r2", None),
    ]
    assert pairs[1][0].mtu == 9000


def test_ls_does_not_pair_ends_that_do_not_name_each_other():
    # r2's eth1 claims r3 as its peer: r1's end is shown alone, and so is r2's.
    records = [
        _record("netns:r1", "eth1", "netns:r2", "eth1"),
        _record("netns:r2", "eth1", "netns:r3", "eth1"),
    ]
    assert [b for _, b in link_pairs(records)] == [None, None]


def test_removing_a_link_end_takes_both_ends_locks_in_the_order_link_takes_them():
    from pipework.engine.engine import _locks_of

    a = _marker("netns:r2", "eth1", "netns:r1", "eth3")
    assert _locks_of(a) == ["guest:netns:r1:eth3", "guest:netns:r2:eth1"]
    plain = Marker(guest="netns:r2", ifname="eth1", kind="bridge", host="br0")
    assert _locks_of(plain) == ["guest:netns:r2:eth1"]


def test_only_namespace_files_are_opened_for_a_peer_a_marker_names(tmp_path):
    from pipework.engine.linkends import on_nsfs

    plain = tmp_path / "plain"
    plain.write_text("")
    assert on_nsfs("/proc/self/ns/net")
    assert not on_nsfs(str(plain)) and not on_nsfs("/dev/null") and not on_nsfs("/nonexistent")
