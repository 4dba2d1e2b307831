"""VXLAN settings (backends/shared/vxlan.py), the vxlan backend's checks and a
topology file's bridge uplink: what is refused, in one line, before anything."""

from __future__ import annotations

import pytest

from pipework.apps.topology.loader import parse
from pipework.apps.topology.schema import bridge_settings
from pipework.backends.links.bridge.uplink import uplink_name, wanted
from pipework.backends.links.vxlan import VxlanBackend, settings
from pipework.backends.shared import vxlan
from pipework.engine import AttachSpec, HostRequest, UsageError


def request(host_link=None, **options: str) -> HostRequest:
    spec = AttachSpec(host="vxlan0", guest="web1", kind="vxlan", options=options)
    return HostRequest(spec=spec, host_link=host_link, host=None)  # type: ignore[arg-type]


def test_the_defaults_and_the_attributes():
    got = vxlan.from_options({"vni": "42", "remote": "198.18.9.2"})
    assert got == vxlan.Vxlan(vni=42, remote="198.18.9.2")
    assert got.attrs(None) == {
        "vxlan_id": 42,
        "vxlan_port": 4789,
        "vxlan_learning": True,
        "vxlan_group": "198.18.9.2",
    }
    six = vxlan.from_options(
        {"vni": 0, "group": "ff05::42", "dev": "ul0", "local": "2001:db8::1", "learning": "no"}
    )
    assert six.headroom == 70 and six.attrs(3) == {
        "vxlan_id": 0,
        "vxlan_port": 4789,
        "vxlan_learning": False,
        "vxlan_group6": "ff05::42",
        "vxlan_local6": "2001:db8::1",
        "vxlan_link": 3,
    }
    alone = vxlan.from_options({"vni": vxlan.VNI_MAX, "port": "8472", "ttl": 64})
    assert alone.describe() == "vni 16777215 port 8472 ttl 64" and alone.headroom == 50


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"vni": "16777216"}, "vxlan vni 16777216 is out of range (0-16777215)"),
        ({"vni": "-1"}, "vxlan vni -1 is out of range (0-16777215)"),
        ({"vni": "0x10"}, "vxlan vni '0x10' is not a number"),
        ({"vni": True}, "vxlan vni True is not a number"),
        ({"remote": "198.18.9.2"}, "a vxlan interface needs a VNI"),
        (
            {"vni": "1", "remote": "198.18.9.2", "group": "239.1.1.1", "dev": "x"},
            "vxlan takes remote or group, not both",
        ),
        ({"vni": "1", "remote": "239.1.1.1"}, "vxlan remote 239.1.1.1 is not a unicast address"),
        ({"vni": "1", "remote": "0.0.0.0"}, "vxlan remote 0.0.0.0 is not a unicast address"),
        ({"vni": "1", "group": "198.18.9.2"}, "vxlan group 198.18.9.2 is not a multicast address"),
        (
            {"vni": "1", "group": "239.1.1.1"},
            "a vxlan multicast group (239.1.1.1) needs its underlay",
        ),
        ({"vni": "1", "remote": "nowhere"}, "vxlan remote 'nowhere' is not an IP address"),
        (
            {"vni": "1", "remote": "2001:db8::2", "local": "198.18.9.1"},
            "vxlan local 198.18.9.1 and 2001:db8::2 are of different IP versions",
        ),
        ({"vni": "1", "port": "0"}, "vxlan port 0 is out of range (1-65535)"),
        ({"vni": "1", "port": "65536"}, "vxlan port 65536 is out of range (1-65535)"),
        ({"vni": "1", "ttl": "256"}, "vxlan ttl 256 is out of range (1-255)"),
        ({"vni": "1", "learning": "maybe"}, "vxlan learning 'maybe' is not a boolean"),
        ({"vni": "1", "dev": "a-name-far-too-long"}, "vxlan dev"),
        ({"vni": "1", "colour": "red"}, "vxlan has no setting 'colour'"),
    ],
)
def test_bad_settings_are_one_line(values, message):
    with pytest.raises(UsageError) as info:
        vxlan.from_options(values)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_the_backend_refuses_what_it_cannot_honour():
    backend = VxlanBackend()
    backend.validate(request(vni="42", remote="198.18.9.2"))
    for bad, message in [
        ({"vni": "16777216", "remote": "198.18.9.2"}, "out of range (0-16777215)"),
        ({"vni": "1", "colour": "red"}, "the vxlan backend has no option 'colour'"),
        ({"vni": "1", "group": "239.1.1.1"}, "needs its underlay"),
    ]:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            backend.validate(request(**bad))
    spec = AttachSpec(host="vxlan0", guest="web1", kind="vxlan", vlan=5, options={"vni": "1"})
    with pytest.raises(UsageError, match="cannot carry a VLAN tag"):
        backend.validate(HostRequest(spec=spec, host_link=None, host=None))  # type: ignore[arg-type]


class _Link:
    ifname = "ul0"


def test_hostif_is_the_underlay_only_when_it_exists_and_dev_is_not_given():
    assert settings({"vni": "1"}, None).dev is None
    assert settings({"vni": "1"}, _Link()).dev == "ul0"  # type: ignore[arg-type]
    assert settings({"vni": "1", "dev": "ul1"}, _Link()).dev == "ul1"  # type: ignore[arg-type]
    # A multicast group needs an underlay: an existing HOSTIF is one.
    assert settings({"vni": "1", "group": "239.1.1.1"}, _Link()).dev == "ul0"  # type: ignore[arg-type]


def test_uplink_names_fit_ifnamsiz():
    assert uplink_name("br1") == "br1-vx"
    assert uplink_name("twelve-chars") == "twelve-chars-vx"
    long = uplink_name("thirteen-char")
    assert long.startswith("vx") and len(long) == 12


def test_a_bridge_declares_its_uplink():
    text = "bridges:\n  - name: br1\n    vxlan: {vni: 42, remote: 198.18.9.2, dev: ul0}\n"
    (bridge,) = parse(text, "topo.yaml").topology.bridges
    settings_ = bridge_settings(bridge)
    assert settings_ == {"vxlan": {"vni": 42, "remote": "198.18.9.2", "dev": "ul0"}}
    assert wanted(settings_) == vxlan.Vxlan(vni=42, remote="198.18.9.2", dev="ul0")
    assert wanted({"mtu": 1400}) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "bridges:\n  - name: br1\n    vxlan: {remote: 198.18.9.2}\n",
            "topo.yaml:3: bridges[0].vxlan.vni: this field is required",
        ),
        (
            "bridges:\n  - name: br1\n    vxlan: {vni: 1, colour: red}\n",
            "topo.yaml:3: bridges[0].vxlan.colour: unknown field 'colour'",
        ),
        (
            "bridges:\n  - name: ovs1\n    kind: ovs\n    vxlan: {vni: 1}\n",
            "topo.yaml:2: bridges[0]: a vxlan uplink is for Linux bridges (kind: bridge)",
        ),
    ],
)
def test_bad_uplinks_in_a_file_are_one_located_line(text, message):
    with pytest.raises(UsageError) as info:
        parse(text, "topo.yaml")
    assert str(info.value).startswith(message), str(info.value)
