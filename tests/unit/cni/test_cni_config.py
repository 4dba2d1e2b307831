"""pipework-cni: the environment, the network configuration, identities (no root)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipework.cni import config, protocol
from pipework.cni.config import Invocation, guest_key, load, network_prefix, parse_args
from pipework.cni.protocol import CniError
from pipework.engine.marker import Marker

BASE = {"cniVersion": "1.0.0", "name": "net1", "type": "pipework", "backend": "bridge"}
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c0ffee",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/usr/lib/cni:/opt/cni/bin",
}


def conf(command: str = "ADD", **fields: Any) -> config.NetConf:
    data = {**BASE, "bridge": "br0", **fields}
    return load(json.dumps({k: v for k, v in data.items() if v is not None}).encode(), command)


def error(func: Any, *args: Any, **kwargs: Any) -> CniError:
    with pytest.raises(CniError) as info:
        func(*args, **kwargs)
    return info.value


# -- the environment ----------------------------------------------------------------


def test_invocation_reads_every_variable() -> None:
    inv = Invocation.from_env({**ENV, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web;FOO=bar"})
    inv.require()
    assert (inv.command, inv.container_id, inv.netns, inv.ifname) == (
        "ADD",
        "c0ffee",
        "/run/netns/x",
        "eth0",
    )
    assert inv.path == ("/usr/lib/cni", "/opt/cni/bin")
    assert inv.args == {"IgnoreUnknown": "1", "K8S_POD_NAME": "web", "FOO": "bar"}
    assert inv.env["CNI_PATH"] == ENV["CNI_PATH"]


@pytest.mark.parametrize("command", ["", "ATTACH", "add"])
def test_bad_command_is_code_4(command: str) -> None:
    err = error(Invocation.from_env, {**ENV, "CNI_COMMAND": command})
    assert err.code == protocol.INVALID_ENVIRONMENT
    assert "CNI_COMMAND" in err.msg or repr(command) in err.msg


@pytest.mark.parametrize(
    ("command", "unset", "named"),
    [
        ("ADD", "CNI_NETNS", "CNI_NETNS"),
        ("ADD", "CNI_CONTAINERID", "CNI_CONTAINERID"),
        ("CHECK", "CNI_IFNAME", "CNI_IFNAME"),
        ("DEL", "CNI_CONTAINERID", "CNI_CONTAINERID"),
    ],
)
def test_missing_variable_is_named(command: str, unset: str, named: str) -> None:
    env = {**ENV, "CNI_COMMAND": command, unset: ""}
    err = error(Invocation.from_env(env).require)
    assert err.code == protocol.INVALID_ENVIRONMENT
    assert named in err.msg


def test_del_needs_no_netns() -> None:
    Invocation.from_env({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).require()


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CNI_IFNAME", "a-very-long-interface-name", "CNI_IFNAME"),
        ("CNI_IFNAME", "eth/0", "CNI_IFNAME"),
        ("CNI_CONTAINERID", "bad id", "CNI_CONTAINERID"),
        ("CNI_NETNS", "relative/ns", "CNI_NETNS"),
    ],
)
def test_invalid_variable_is_code_4(variable: str, value: str, says: str) -> None:
    err = error(Invocation.from_env({**ENV, variable: value}).require)
    assert err.code == protocol.INVALID_ENVIRONMENT
    assert says in err.msg


def test_unknown_args_need_ignore_unknown() -> None:
    err = error(parse_args, "FOO=bar")
    assert err.code == protocol.INVALID_ENVIRONMENT and "FOO" in err.msg
    assert parse_args("IgnoreUnknown=true;FOO=bar")["FOO"] == "bar"
    assert parse_args("MAC=02:00:00:00:00:01;K8S_POD_NAMESPACE=ns") == {
        "MAC": "02:00:00:00:00:01",
        "K8S_POD_NAMESPACE": "ns",
    }
    assert error(parse_args, "justaword").code == protocol.INVALID_ENVIRONMENT


# -- the configuration ----------------------------------------------------------------


def test_load_reads_pipework_fields() -> None:
    c = conf(
        address="198.18.0.2/24@198.18.0.1",
        mac="U:web",
        vlan=10,
        mtu=1400,
        options={"x": "y"},
        routes=["198.18.5.0/24 via 198.18.0.1", {"dst": "198.18.6.0/24", "priority": 5}],
        hostNetns="pwhost",
        runDir="/run/pwt",
        dns={"nameservers": ["198.18.0.53"]},
    )
    assert (c.version, c.name, c.backend, c.host) == ("1.0.0", "net1", "bridge", "br0")
    assert (c.address, c.mac, c.vlan, c.mtu, c.host_netns) == (
        "198.18.0.2/24@198.18.0.1",
        "U:web",
        10,
        1400,
        "pwhost",
    )
    assert c.routes == ("198.18.5.0/24 via 198.18.0.1", "198.18.6.0/24 metric 5")
    assert c.run_dir == "/run/pwt"
    assert c.raw.startswith(b"{")


def test_attach_spec_from_configuration_and_environment() -> None:
    inv = Invocation.from_env({**ENV, "CNI_ARGS": "MAC=02:00:00:00:00:02"})
    c = conf(address="198.18.0.2/24", mode="private", routes=["198.18.5.0/24 via 198.18.0.1"])
    spec = c.attach_spec(inv, inv.container_id, inv.ifname)
    assert spec.host == "br0" and spec.kind == "bridge" and spec.ifname == "eth0"
    assert spec.guest == "/run/netns/x"
    assert spec.guest_key == "cni:net1:c0ffee"
    assert str(spec.address) == "198.18.0.2/24"
    assert spec.mac == "02:00:00:00:00:02"  # CNI_ARGS MAC beats nothing
    assert spec.options == {"mode": "private"}
    assert [str(r) for r in spec.routes] == ["198.18.5.0/24 via 198.18.0.1"]


def test_announce_and_link_local_reach_the_spec() -> None:
    inv = Invocation.from_env(ENV)
    plain = conf(address="198.18.0.2/24").attach_spec(inv, inv.container_id, inv.ifname)
    assert plain.announce and not plain.ipv6_link_local
    c = conf(address="198.18.0.2/24", announce=False, ipv6LinkLocal=True)
    spec = c.attach_spec(inv, inv.container_id, inv.ifname)
    assert not spec.announce and spec.ipv6_link_local


def test_mac_precedence_runtime_config_then_args_then_configuration() -> None:
    inv = Invocation.from_env({**ENV, "CNI_ARGS": "MAC=02:00:00:00:00:02"})
    runtime = {"mac": "02:00:00:00:00:03"}
    assert conf(mac="02:00:00:00:00:01", runtimeConfig=runtime).attach_spec(
        inv, "c", "eth0"
    ).mac == ("02:00:00:00:00:03")
    assert conf(mac="02:00:00:00:00:01").attach_spec(inv, "c", "eth0").mac == "02:00:00:00:00:02"
    plain = Invocation.from_env(ENV)
    assert conf(mac="U:myhost.foo.com").attach_spec(plain, "c", "eth0").mac == "02:72:6c:cd:9b:8d"


def test_ipam_section_delegates_and_excludes_address() -> None:
    inv = Invocation.from_env(ENV)
    spec = conf(ipam={"type": "host-local"}).attach_spec(inv, "c", "eth0")
    assert spec.address.method == config.IPAM_METHOD
    err = error(conf, ipam={"type": "host-local"}, address="198.18.0.2/24")
    assert err.code == protocol.INVALID_CONFIG and "both" in err.msg
    assert error(conf, ipam={"subnet": "198.18.0.0/24"}).code == protocol.INVALID_CONFIG


def test_dhcp_address_and_timeout() -> None:
    inv = Invocation.from_env(ENV)
    spec = conf(address="udhcpc-f", dhcpTimeout=5).attach_spec(inv, "c", "eth0")
    assert spec.address.method == "udhcpc-f" and spec.address.timeout == 5
    err = error(conf(address="198.18.0.2/24", dhcpTimeout=5).attach_spec, inv, "c", "eth0")
    assert err.code == protocol.INVALID_CONFIG and "dhcpTimeout" in err.msg


def test_no_address_means_no_address() -> None:
    spec = conf().attach_spec(Invocation.from_env(ENV), "c", "eth0")
    assert spec.address.method == "static" and spec.address.address is None


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"vlna": 10}, protocol.UNSUPPORTED_FIELD, "'vlna'"),
        ({"master": "eth1"}, protocol.UNSUPPORTED_FIELD, "'master'"),
        ({"vlan": "10"}, protocol.INVALID_CONFIG, "'vlan' must be a whole number"),
        ({"vlan": True}, protocol.INVALID_CONFIG, "'vlan'"),
        ({"mtu": 1.5}, protocol.INVALID_CONFIG, "'mtu'"),
        ({"address": 7}, protocol.INVALID_CONFIG, "'address' must be a string"),
        ({"address": ""}, protocol.INVALID_CONFIG, "'address' is empty"),
        ({"options": {"a": 1}}, protocol.INVALID_CONFIG, "option 'a'"),
        ({"routes": [3]}, protocol.INVALID_CONFIG, "route 3"),
        ({"name": "bad name"}, protocol.INVALID_CONFIG, "network name"),
        ({"name": None}, protocol.INVALID_CONFIG, "'name'"),
        ({"backend": None}, protocol.INVALID_CONFIG, "'backend'"),
        ({"cniVersion": None}, protocol.INVALID_CONFIG, "cniVersion"),
        ({"cniVersion": "9.9.9"}, protocol.INCOMPATIBLE_VERSION, "9.9.9"),
        ({"cniVersion": "one"}, protocol.DECODING_FAILURE, "one"),
        ({"host": "br1"}, protocol.INVALID_CONFIG, "given twice"),
        ({"runDir": "run/x"}, protocol.INVALID_CONFIG, "absolute"),
        ({"announce": "no"}, protocol.INVALID_CONFIG, "'announce' must be true or false"),
        ({"ipv6LinkLocal": 1}, protocol.INVALID_CONFIG, "'ipv6LinkLocal' must be true or false"),
    ],
)
def test_bad_configuration(fields: dict[str, Any], code: int, says: str) -> None:
    err = error(conf, **fields) if "name" in fields or "backend" in fields else None
    if err is None:
        err = error(conf, **fields)
    assert err.code == code, err
    assert says in err.msg, err


def test_unsupported_field_names_key_and_value() -> None:
    err = error(conf, vlna=10)
    assert "'vlna'" in err.msg and "10" in err.msg
    assert "backend" in err.details  # lists the fields we know


def test_domain_qualified_keys_and_standard_keys_are_accepted() -> None:
    conf(**{"example.com/setting": 1, "capabilities": {"mac": True}, "args": {"cni": {}}})


def test_host_key_per_backend() -> None:
    assert load(
        json.dumps({**BASE, "backend": "macvlan", "master": "eth1"}).encode(), "ADD"
    ).host == ("eth1")
    assert load(json.dumps({**BASE, "backend": "phys", "device": "eth2"}).encode(), "ADD").host == (
        "eth2"
    )
    assert load(
        json.dumps({**BASE, "backend": "thirdparty", "host": "x0"}).encode(), "ADD"
    ).host == ("x0")
    assert load(json.dumps({**BASE, "backend": "dummy"}).encode(), "ADD").host == "dummy"
    err = error(load, json.dumps({**BASE, "backend": "macvlan"}).encode(), "ADD")
    assert err.code == protocol.INVALID_CONFIG and "'master'" in err.msg


def test_phys_backend_moves_the_device() -> None:
    c = load(json.dumps({**BASE, "backend": "phys", "device": "eth2"}).encode(), "ADD")
    assert c.attach_spec(Invocation.from_env(ENV), "c", "eth0").direct_phys


def test_bad_values_become_code_7_with_the_network_named() -> None:
    inv = Invocation.from_env(ENV)
    for fields in ({"address": "198.18.0.2"}, {"vlan": 5000}, {"mac": "01:00:5e:00:00:01"}):
        err = error(conf(**fields).attach_spec, inv, "c", "eth0")
        assert err.code == protocol.INVALID_CONFIG
        assert err.msg.startswith("network net1: ")


@pytest.mark.parametrize("data", [b"", b"{", b"[1]", b"\xff"])
def test_undecodable_configuration_is_code_6(data: bytes) -> None:
    assert error(load, data, "ADD").code == protocol.DECODING_FAILURE


def test_gc_reads_valid_attachments_and_needs_no_host() -> None:
    data = {
        **BASE,
        "cniVersion": "1.1.0",
        "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
    }
    c = load(json.dumps(data).encode(), "GC")
    assert c.valid_attachments == (("a", "eth0"),)
    data["cni.dev/valid-attachments"] = [{"containerID": "a"}]
    assert error(load, json.dumps(data).encode(), "GC").code == protocol.INVALID_CONFIG


# -- identities ----------------------------------------------------------------------


def test_guest_key_and_shortening() -> None:
    assert guest_key("net1", "abc") == "cni:net1:abc"
    assert guest_key("net1", "abc").startswith(network_prefix("net1"))
    long_net, long_id = "n" * 200, "f" * 300
    key = guest_key(long_net, long_id)
    assert key.startswith(network_prefix(long_net))
    assert len(key) <= 4 + config.NETWORK_PART_MAX + 1 + config.CONTAINER_PART_MAX
    assert guest_key(long_net, long_id) != guest_key(long_net, "f" * 299 + "e")
    assert network_prefix("n" * 200) != network_prefix("n" * 199 + "m")


@pytest.mark.parametrize(
    ("kind", "hostif", "state"),
    [
        ("macvlan", "z" * 15, "q" * 15),  # a child on PARENT.VID
        ("phys", "", "aa:bb:cc:dd:ee:ff,up"),  # the NIC's own MAC, quoted
    ],
)
def test_worst_case_marker_fits_an_interface_alias(kind: str, hostif: str, state: str) -> None:
    """IFALIASZ: the kernel keeps at most 255 bytes of an alias (room is left
    for a VLAN ID, " vlan=4094")."""
    marker = Marker(
        guest=guest_key("n" * 300, "f" * 300),
        ifname="x" * 15,
        kind=kind,
        host="y" * 15,
        hostif=hostif,
        addr="dhclient-f",
        cfg="0" * 12,
        state=state,
    )
    assert len(marker.format().encode()) <= 255 - len(" vlan=4094")
