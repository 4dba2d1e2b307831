"""The original command line, with options anywhere."""

import pytest

from pipework.apps.grammar import parse_legacy
from pipework.engine import UsageError


def test_original_form():
    spec = parse_legacy(["br1", "web1", "198.18.10.2/24@198.18.10.1"])
    assert (spec.host, spec.guest, spec.ifname) == ("br1", "web1", None)
    assert str(spec.address) == "198.18.10.2/24@198.18.10.1"


def test_original_option_positions():
    spec = parse_legacy(["br1", "-i", "eth2", "-l", "web1eth2", "web1", "198.18.11.2/24"])
    assert (spec.ifname, spec.host_ifname, spec.guest) == ("eth2", "web1eth2", "web1")


def test_options_anywhere_and_long_forms():
    spec = parse_legacy(
        [
            "--direct-phys",
            "eth2",
            "web1",
            "198.18.0.2/24",
            "--ifname=eth3",
            "-a",
            "4",
            "--mtu",
            "1400",
        ]
    )
    assert spec.direct_phys and spec.ifname == "eth3" and spec.family == 4 and spec.mtu == 1400
    spec = parse_legacy(["br1", "web1", "0/0", "-ieth4", "--kind", "bridge", "--force"])
    assert spec.ifname == "eth4" and spec.kind == "bridge" and spec.force


def test_macspec_positional():
    spec = parse_legacy(["ovsbr0", "web1", "dhcp", "U:myhost.foo.com@10"])
    assert spec.mac == "02:72:6c:cd:9b:8d" and spec.vlan == 10
    assert parse_legacy(["ovs0", "web1", "dhcp", "@20"]).vlan == 20
    ib = parse_legacy(["ib0", "web1", "dhcp", "@8001"])
    assert ib.tag == "8001" and ib.partition_key() == 0x8001


def test_backend_options():
    spec = parse_legacy(["eth2", "web1", "0/0", "--mode", "private", "-o", "x=1", "-oy=2"])
    assert dict(spec.options) == {"mode": "private", "x": "1", "y": "2"}
    spec = parse_legacy(["ovs0", "web1", "0/0", "--opt=datapath_type=netdev", "--pkey", "8001"])
    assert dict(spec.options) == {"datapath_type": "netdev"} and spec.pkey == 0x8001


def test_double_dash_ends_options():
    spec = parse_legacy(["--", "br1", "-weird", "0/0"])
    assert spec.guest == "-weird"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "missing HOSTIF"),
        (["br1"], "missing GUEST"),
        (["br1", "web1"], "missing IPSPEC"),
        (["br1", "web1", "0/0", "@10", "extra"], "too many"),
        (["br1", "web1", "0/0", "-x"], "unknown option -x"),
        (["br1", "web1", "0/0", "-i"], "needs a value"),
        (["br1", "web1", "0/0", "-a", "5"], "4 or 6"),
        (["br1", "web1", "0/0", "-i", "a", "-i", "b"], "twice"),
        (["br1", "web1", "0/0", "02:aa:bb:cc:dd:ee", "--mac", "02:aa:bb:cc:dd:ef"], "twice"),
        (["br1", "web1", "0/0", "@10", "--vlan", "11"], "twice"),
        (["br1", "-l", "waytoolongname16", "web1", "0/0"], "16 bytes"),
        (["br1", "web1", "198.18.0.1"], "netmask"),
        (["br1", "web1", "0/0", "-o"], "needs a value"),
        (["br1", "web1", "0/0", "-o", "=x"], "not KEY=VALUE"),
        (["br1", "web1", "0/0", "-o", "a=1", "-o", "a=2"], "option a is given twice"),
        (["br1", "web1", "0/0", "--mode", "l2", "-o", "mode=l3"], "mode is given twice"),
        (["br1", "web1", "0/0", "--pkey", "8000"], "partition key"),
    ],
)
def test_usage_errors(args, fragment):
    with pytest.raises(UsageError, match=fragment) as err:
        parse_legacy(args)
    assert err.value.exit_code == 2


def test_announcement_and_link_local_flags():
    plain = parse_legacy(["br1", "web1", "198.18.0.2/24"])
    assert plain.announce and not plain.ipv6_link_local
    spec = parse_legacy(["br1", "--no-announce", "web1", "198.18.0.2/24", "--ipv6-link-local"])
    assert not spec.announce and spec.ipv6_link_local
    with pytest.raises(UsageError, match="unknown option --no-announce=1"):
        parse_legacy(["br1", "web1", "198.18.0.2/24", "--no-announce=1"])
