"""Removing an empty OVS bridge pipework made (release_host), as OVSDB operations."""

from __future__ import annotations

from pipework.backends.links.ovs.plan import BridgeRow, drop_bridge_ops, may_release


def bridge(ports: set[str], auto: bool = True) -> BridgeRow:
    ids = {"pipework": "auto-created"} if auto else {}
    return BridgeRow("b-uuid", "ovspwt1", frozenset(ports), "netdev", None, ids)


def test_only_an_auto_created_bridge_with_nothing_but_its_own_port_goes():
    assert may_release(bridge({"internal"}), frozenset({"internal"}))
    assert may_release(bridge(set()), frozenset())
    assert not may_release(bridge({"internal", "guest-port"}), frozenset({"internal"}))
    assert not may_release(bridge({"internal"}, auto=False), frozenset({"internal"}))


def test_the_removal_checks_the_ports_it_looked_at_in_the_same_transaction():
    wait, drop, *bump = drop_bridge_ops(bridge({"internal"}))
    assert wait["op"] == "wait" and wait["table"] == "Bridge" and wait["until"] == "=="
    assert wait["where"] == [["_uuid", "==", ["uuid", "b-uuid"]]]
    assert wait["rows"] == [{"ports": ["set", [["uuid", "internal"]]]}]
    assert drop["op"] == "mutate" and drop["table"] == "Open_vSwitch"
    assert drop["mutations"] == [["bridges", "delete", ["set", [["uuid", "b-uuid"]]]]]
    assert bump
