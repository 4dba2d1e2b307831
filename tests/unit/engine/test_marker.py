"""Ownership markers survive the round trip through an interface alias."""

from pipework.engine import Marker
from pipework.engine.specs import short_hash


def test_round_trip_with_odd_characters():
    marker = Marker(
        guest="netns:a b",
        ifname="eth1",
        kind="bridge",
        host="br1",
        hostif="pw1",
        addr="dhcp",
        cfg="x",
    )
    alias = marker.format()
    assert alias.startswith("pipework ") and len(alias) < 256
    assert Marker.parse(alias) == marker


def test_foreign_aliases_are_not_ours():
    assert Marker.parse(None) is None
    assert Marker.parse("uplink to rack 3") is None
    assert Marker.parse("pipework auto-created") is None
    assert Marker.parse("pipework guest=x") is None


def test_generated_names_are_deterministic_and_short():
    a = "pw" + short_hash("0123" * 16, "eth1")
    assert a == "pw" + short_hash("0123" * 16, "eth1")
    assert a != "pw" + short_hash("0123" * 16, "eth2")
    assert len(a) <= 15
