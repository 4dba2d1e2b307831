"""The macvlan shim's pure parts: the request, its marker, and the kernel's
word on what an interface is (apps/shim.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipework.apps.shim import (
    NAME_PREFIX,
    ShimMarker,
    ShimSpec,
    check_parent,
    evidence,
    format_marker,
    normal,
    parse_marker,
    shim_name,
)
from pipework.engine.errors import HostInterfaceError, UsageError
from pipework.engine.kernel.netlink import Link
from pipework.engine.marker import BRIDGE_MARKER, Marker
from pipework.engine.specs import RouteSpec


def link(index: int, ifname: str, kind: str | None = "veth", **kw: object) -> Link:
    fields: dict[str, object] = {
        "mtu": 1500,
        "mac": "02:00:00:00:00:01",
        "alias": None,
        "master": None,
        "up": True,
        "operstate": "UP",
        "link_type": 1,
        "max_mtu": 65535,
    }
    fields.update(kw)
    return Link(index=index, ifname=ifname, kind=kind, **fields)  # type: ignore[arg-type]


# -- the request ---------------------------------------------------------------------------
def test_the_issues_example_parses() -> None:
    spec = ShimSpec.parse("eth2", "198.18.42.254/32", ["198.18.42.0/24"])
    assert spec.parent == "eth2" and spec.name == shim_name("eth2")
    assert spec.address == ipaddress.ip_interface("198.18.42.254/32")
    assert [str(r) for r in spec.routes] == ["198.18.42.0/24"]
    assert spec.mtu is None


def test_ipv6_and_routes_with_a_gateway_and_a_metric() -> None:
    spec = ShimSpec.parse(
        "eth2", "2001:db8:42::fe/128", ["2001:db8:42::/64", "2001:db8:43::/64 via 2001:db8:42::2"]
    )
    assert spec.address.version == 6
    assert str(spec.routes[1]) == "2001:db8:43::/64 via 2001:db8:42::2"


def test_the_derived_name_fits_and_is_no_attachments() -> None:
    name = shim_name("enp3s0f1")
    assert name.startswith(NAME_PREFIX) and len(name) == 14
    assert shim_name("enp3s0f1") == name != shim_name("eth2")
    assert ShimSpec.parse("eth2", "198.18.42.254/32", name="mine").name == "mine"


def test_the_fingerprint_covers_what_shapes_the_shim_and_not_the_route_order() -> None:
    base = ShimSpec.parse("eth2", "198.18.42.254/32", ["198.18.42.0/24", "198.18.43.0/24"])
    same = ShimSpec.parse("eth2", "198.18.42.254/32", ["198.18.43.0/24", "198.18.42.0/24"])
    assert base.cfg == same.cfg
    for other in (
        ShimSpec.parse("eth3", "198.18.42.254/32", ["198.18.42.0/24", "198.18.43.0/24"]),
        ShimSpec.parse("eth2", "198.18.42.253/32", ["198.18.42.0/24", "198.18.43.0/24"]),
        ShimSpec.parse("eth2", "198.18.42.254/32", ["198.18.42.0/24"]),
        ShimSpec.parse("eth2", "198.18.42.254/32", ["198.18.42.0/24", "198.18.43.0/24"], mtu=1400),
    ):
        assert other.cfg != base.cfg


@pytest.mark.parametrize(
    ("address", "routes", "kw", "fragment"),
    [
        ("198.18.42.254", [], {}, "should include a netmask"),
        ("198.18.42.254/33", [], {}, "invalid prefix length"),
        ("banana", [], {}, "is not ADDR/PREFIX"),
        ("", [], {}, "is not ADDR/PREFIX"),
        ("0/0", [], {}, "is not ADDR/PREFIX"),
        ("dhclient", [], {}, "is not ADDR/PREFIX"),
        ("198.18.42.254/32@198.18.42.1", [], {}, "is not ADDR/PREFIX"),
        ("127.0.0.2/8", [], {}, "cannot be a shim's address"),
        ("224.0.0.1/32", [], {}, "cannot be an interface address"),
        ("198.18.42.254/32", ["198.18.42.1/24"], {}, "has host bits set"),
        ("198.18.42.254/32", ["nonsense"], {}, "does not appear to be"),
        ("198.18.42.254/32", ["0.0.0.0/0"], {}, "is a default route"),
        ("198.18.42.254/32", ["2001:db8::/64"], {}, "is IPv6, the shim's address IPv4"),
        ("198.18.42.254/32", ["198.18.42.0/24", "198.18.42.0/24"], {}, "given twice"),
        ("198.18.42.254/32", [], {"mtu": 67}, "MTU 67 is out of range"),
        ("198.18.42.254/32", [], {"name": "x" * 16}, "is 16 bytes long"),
        ("198.18.42.254/32", [], {"name": "a/b"}, "is not valid"),
    ],
)
def test_bad_input_is_one_usage_error(address, routes, kw, fragment) -> None:
    with pytest.raises(UsageError, match=fragment):
        ShimSpec.parse("eth2", address, routes, **kw)


def test_a_bad_parent_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="parent interface name"):
        ShimSpec.parse("eth2:0", "198.18.42.254/32")


def test_the_kernels_default_metric_is_no_metric() -> None:
    assert normal(RouteSpec.parse("2001:db8::/64 metric 1024")) == RouteSpec.parse("2001:db8::/64")
    assert normal(RouteSpec.parse("198.18.0.0/24 metric 0")) == RouteSpec.parse("198.18.0.0/24")
    assert normal(RouteSpec.parse("198.18.0.0/24 metric 5")).metric == 5


# -- the marker ----------------------------------------------------------------------------
def test_the_marker_round_trips_and_is_no_attachments_marker() -> None:
    spec = ShimSpec.parse("eth2", "198.18.42.254/32", ["198.18.42.0/24"])
    alias = spec.marker()
    assert alias == f"pipework shim parent=eth2 cfg={spec.cfg}"
    assert parse_marker(alias) == ShimMarker("eth2", spec.cfg)
    assert Marker.parse(alias) is None  # ls, detach, gc of attachments pass it by
    assert len(alias.encode()) <= 255


@pytest.mark.parametrize(
    "alias",
    [
        None,
        "",
        BRIDGE_MARKER,
        "pipework shim",
        "pipework shim ",
        "pipework shim parent=eth2",
        "pipework shim cfg=abc",
        "pipework shim parent= cfg=abc",
        "pipework shim parent=eth2 cfg=abc extra=1",
        "pipework shim parent=eth2 parent=eth3 cfg=abc",
        "pipework shim parent=eth2  cfg=abc",
        "pipework shim parent=eth2 cfg=abc guest=x ifname=eth1 kind=bridge host=br1",
        "pipework guest=x ifname=eth1 kind=bridge host=br1",
        "pipeworkshim parent=eth2 cfg=abc",
        "shim parent=eth2 cfg=abc",
    ],
)
def test_anything_but_exactly_a_shim_marker_is_none(alias) -> None:
    assert parse_marker(alias) is None


@given(st.text(max_size=40).filter(lambda s: s != ""), st.text(max_size=12))
def test_marker_values_are_quoted(parent, cfg) -> None:
    alias = format_marker(parent, cfg)
    assert " " not in alias[len("pipework shim ") :].replace(" cfg=", "", 1)
    assert parse_marker(alias) == ShimMarker(parent, cfg)
    assert Marker.parse(alias) is None


@given(st.text(max_size=120))
def test_random_aliases_never_raise(alias) -> None:
    parse_marker(alias)
    parse_marker("pipework shim " + alias)


# -- the kernel's word ---------------------------------------------------------------------
def test_a_shim_goes_on_an_ethernet_device() -> None:
    check_parent(link(2, "eth2"))
    check_parent(link(2, "bond0", kind="bond"))
    check_parent(link(2, "eth2.10", kind="vlan"))
    check_parent(link(2, "eth2", kind=None))  # a physical NIC has no kind


@pytest.mark.parametrize(
    ("parent", "fragment"),
    [
        (link(1, "lo", kind=None, link_type=772), "lo is a loopback"),
        (link(3, "br0", kind="bridge"), "a bridge takes the host's address itself"),
        (link(3, "ovs0", kind="openvswitch"), "ovs0 is a openvswitch"),
        (link(4, "mv0", kind="macvlan"), "mv0 is a macvlan"),
        (link(4, "ipv0", kind="ipvlan"), "ipv0 is a ipvlan"),
        (link(5, "ib0", kind="ipoib", link_type=32), "not an Ethernet NIC"),
        (link(6, "tun0", kind="tun", link_type=65534), "not an Ethernet NIC"),
        (link(7, "eth3", master=3), "eth3 is a port of interface #3"),
    ],
)
def test_other_parents_are_refused(parent, fragment) -> None:
    with pytest.raises(HostInterfaceError, match=fragment):
        check_parent(parent)


def test_evidence_is_the_kernels_word() -> None:
    parent = link(2, "eth2")
    assert evidence(link(9, "pws-x", kind="macvlan", parent=2), parent) is None
    assert "not a macvlan" in str(evidence(link(9, "pws-x", kind="veth", parent=2), parent))
    assert "not a macvlan" in str(evidence(link(9, "pws-x", kind=None), parent))
    other_ns = link(9, "pws-x", kind="macvlan", parent=2, link_netnsid=0)
    assert "not in this namespace" in str(evidence(other_ns, parent))
    assert "another interface" in str(evidence(link(9, "p", kind="macvlan", parent=3), parent))
    assert "gone" in str(evidence(link(9, "p", kind="macvlan", parent=3), None))
