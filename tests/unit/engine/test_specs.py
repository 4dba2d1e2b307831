"""IPSPEC, MACSPEC, names and the AttachSpec invariants."""

import ipaddress

import pytest

from pipework.engine import AddressSpec, AttachSpec, UsageError
from pipework.engine.specs import (
    derive_mac,
    parse_mac,
    parse_macspec,
    parse_mtu,
    parse_pkey,
    parse_vlan,
    validate_ifname,
)


def test_u_mac_matches_the_original_mapping():
    assert derive_mac("myhost.foo.com") == "02:72:6c:cd:9b:8d"
    assert parse_mac("U:myhost.foo.com") == "02:72:6c:cd:9b:8d"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("26:2E:71:98:60:8F", "26:2e:71:98:60:8f"), ("02-aa-bb-cc-dd-ee", "02:aa:bb:cc:dd:ee")],
)
def test_mac_is_normalised(text, expected):
    assert parse_mac(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("01:00:5e:00:00:01", "multicast"),
        ("zz:00:00:00:00:00", "not a MAC"),
        ("02:00:00:00:00", "not a MAC"),
        ("00:00:00:00:00:00", "not a usable"),
        ("U:", "needs a string"),
    ],
)
def test_bad_macs(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        parse_mac(text)


def test_macspec_forms():
    assert parse_macspec("@10") == (None, "10")
    assert parse_macspec("02:aa:bb:cc:dd:ee@4094") == ("02:aa:bb:cc:dd:ee", "4094")
    assert parse_macspec("U:x") == (derive_mac("x"), None)


@pytest.mark.parametrize("text", ["02:aa:bb:cc:dd:ee@", "", "@"])
def test_bad_macspecs(text):
    with pytest.raises(UsageError):
        parse_macspec(text)


@pytest.mark.parametrize("tag", ["0", "x", "12345", "0x8000", "-1"])
def test_a_tag_must_be_a_vlan_or_a_partition_key(tag):
    with pytest.raises(UsageError, match="neither a VLAN ID"):
        AttachSpec(host="br1", guest="web1", tag=tag)


def test_a_tag_is_read_by_the_backend():
    spec = AttachSpec(host="br1", guest="web1", tag="10")
    assert spec.vlan_id("bridge") == 10 and spec.partition_key() == 0x10
    # 8001 is no VLAN ID but a fine partition key (full membership of 0x0001)
    spec = AttachSpec(host="ib0", guest="web1", tag="8001")
    assert spec.vlan is None and spec.partition_key() == 0x8001
    with pytest.raises(UsageError, match="VLAN ID 8001 is out of range"):
        spec.vlan_id("bridge")
    with pytest.raises(UsageError, match="VLAN ID 4095 is out of range"):
        AttachSpec(host="br1", guest="web1", tag="4095").vlan_id("bridge")


def test_explicit_vlan_and_pkey_do_not_mix_up():
    with pytest.raises(UsageError, match="not a VLAN ID"):
        AttachSpec(host="ib0", guest="g", vlan=10).partition_key()
    with pytest.raises(UsageError, match="partition key is for IPoIB"):
        AttachSpec(host="br1", guest="g", pkey=0x8001).vlan_id("bridge")
    with pytest.raises(UsageError, match="twice"):
        AttachSpec(host="br1", guest="g", vlan=11, tag="10")


@pytest.mark.parametrize(
    ("text", "value"), [("8001", 0x8001), ("0x7fff", 0x7FFF), ("FFFF", 0xFFFF)]
)
def test_partition_keys(text, value):
    assert parse_pkey(text) == value


@pytest.mark.parametrize("text", ["0", "8000", "10000", "", "0x", "zz"])
def test_bad_partition_keys(text):
    with pytest.raises(UsageError, match="partition key"):
        parse_pkey(text)


def test_refusals_and_backend_options():
    spec = AttachSpec(host="x", guest="g", mac="02:00:00:00:00:01", tag="5", options={"mode": "l3"})
    with pytest.raises(UsageError, match="cannot carry a VLAN tag"):
        spec.refuse("dummy", vlan=True)
    with pytest.raises(UsageError, match="cannot take a MAC address"):
        spec.refuse("ipvlan", mac=True)
    spec.refuse("phys", direct_phys=True)  # not asked for: fine
    spec.backend_options("ipvlan", {"mode": "l2|l3|l3s"})
    with pytest.raises(UsageError, match="the bridge backend has no option 'mode'"):
        spec.backend_options("bridge", {})


def test_vlan_and_mtu_ranges():
    assert parse_vlan("1") == 1
    assert parse_mtu("9000") == 9000
    for bad in ("0", "4095", "-1"):
        with pytest.raises(UsageError, match="VLAN"):
            parse_vlan(bad)
    for bad in ("67", "65536", "big"):
        with pytest.raises(UsageError, match="MTU"):
            parse_mtu(bad)


def test_static_ipv4_with_gateway():
    spec = AddressSpec.parse("198.18.10.2/24@198.18.10.1")
    assert spec.method == "static"
    assert spec.address == ipaddress.ip_interface("198.18.10.2/24")
    assert spec.gateway == ipaddress.ip_address("198.18.10.1")
    assert str(spec) == "198.18.10.2/24@198.18.10.1"


def test_static_ipv6_with_gateway():
    spec = AddressSpec.parse("2001:db8:10::2/64@2001:db8:10::1")
    assert spec.address is not None and spec.address.version == 6
    assert str(spec.gateway) == "2001:db8:10::1"


def test_zero_means_no_address():
    spec = AddressSpec.parse("0/0")
    assert spec.method == "static" and spec.address is None and str(spec) == "0/0"


def test_missing_prefix_gets_the_original_hint():
    with pytest.raises(UsageError) as err:
        AddressSpec.parse("198.18.10.2")
    assert str(err.value) == (
        "The IP address should include a netmask. (Maybe you meant 198.18.10.2/24 ?)"
    )
    with pytest.raises(UsageError, match="2001:db8::2/64"):
        AddressSpec.parse("2001:db8::2")


def test_dhcp_words_and_options():
    spec = AddressSpec.parse("dhcp:-f")
    assert (spec.method, spec.options) == ("dhcp", ("-f",))
    spec = AddressSpec.parse("udhcpc:-x 'hostname:a b'")
    assert spec.options == ("-x", "hostname:a b")
    assert AddressSpec.parse("dhclient-f").method == "dhclient-f"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("198.18.10.2/33", "prefix"),
        ("198.18.10.2/24@", "ends with"),
        ("198.18.10.2/24@nope", "not an IP"),
        ("198.18.10.2/24@2001:db8::1", "different families"),
        ("198.18.10.2/24@198.18.10.2", "own address"),
        ("224.0.0.1/4", "cannot be an interface"),
        ("9bad", "neither"),
        ("static", "neither"),
        ("dhcp:'unbalanced", "cannot split"),
    ],
)
def test_bad_ipspecs(text, fragment):
    with pytest.raises(UsageError, match=fragment):
        AddressSpec.parse(text)


@pytest.mark.parametrize("name", ["eth1", "a" * 15, "web1eth2", "x.y-z_1"])
def test_valid_ifnames(name):
    assert validate_ifname(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("a" * 16, "16 bytes"),
        ("", "empty"),
        ("a/b", "not valid"),
        ("a b", "not valid"),
        ("..", "not valid"),
        ("é" * 8, "16 bytes"),
    ],
)
def test_invalid_ifnames(name, fragment):
    with pytest.raises(UsageError, match=fragment):
        validate_ifname(name)


def test_attachspec_validates_everything_once():
    spec = AttachSpec(host="br1", guest="web1", mac="U:web1", vlan="10", mtu="1400")  # type: ignore[arg-type]
    assert spec.mac == derive_mac("web1") and spec.vlan == 10 and spec.mtu == 1400
    with pytest.raises(UsageError, match="host interface"):
        AttachSpec(host="averyveryverylongname", guest="web1")
    with pytest.raises(UsageError, match="-a 6 does not match"):
        AttachSpec(host="br1", guest="g", address=AddressSpec.parse("198.18.0.1/24"), family=6)
    with pytest.raises(UsageError, match="guest is empty"):
        AttachSpec(host="br1", guest="")


def test_fingerprint_changes_with_configuration():
    base = AttachSpec(host="br1", guest="g", address=AddressSpec.parse("198.18.0.2/24"))
    same = AttachSpec(host="br1", guest="g", address=AddressSpec.parse("198.18.0.2/24"), force=True)
    other = AttachSpec(host="br1", guest="g", address=AddressSpec.parse("198.18.0.3/24"))
    assert base.fingerprint("bridge", "br1") == same.fingerprint("bridge", "br1")
    assert base.fingerprint("bridge", "br1") != other.fingerprint("bridge", "br1")
    assert base.fingerprint("bridge", "br1") != base.fingerprint("ovs", "br1")
