"""pipework-cni: versions, error codes, results in every format, the entry point (no root)."""

from __future__ import annotations

import io
import ipaddress
import json
import subprocess
import sys
from typing import Any

import pytest

from pipework.cni import main, protocol
from pipework.cni.commands import compare
from pipework.cni.config import Invocation
from pipework.cni.protocol import CniError, check_version, error_for, version_info
from pipework.cni.result import Interface, IPConfig, Result, Route, from_attachment
from pipework.engine import errors
from pipework.engine.kernel.netlink import NetlinkFailure
from pipework.engine.specs import Attachment, GuestInfo

# -- versions --------------------------------------------------------------------------


def test_version_info_answers_the_version_asked_about() -> None:
    assert version_info("0.4.0") == {
        "cniVersion": "0.4.0",
        "supportedVersions": list(protocol.SUPPORTED_VERSIONS),
    }
    assert version_info(None)["cniVersion"] == "1.1.0"
    assert {"1.0.0", "1.1.0"} <= set(protocol.SUPPORTED_VERSIONS)


@pytest.mark.parametrize(
    ("version", "command", "code"),
    [
        ("0.3.1", "CHECK", protocol.INCOMPATIBLE_VERSION),
        ("1.0.0", "GC", protocol.INCOMPATIBLE_VERSION),
        ("1.0.0", "STATUS", protocol.INCOMPATIBLE_VERSION),
        ("2.0.0", "ADD", protocol.INCOMPATIBLE_VERSION),
        ("1.0", "ADD", protocol.DECODING_FAILURE),
        ("", "ADD", protocol.INVALID_CONFIG),
        (100, "ADD", protocol.INVALID_CONFIG),
    ],
)
def test_version_negotiation_refuses(version: object, command: str, code: int) -> None:
    with pytest.raises(CniError) as info:
        check_version(version, command)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("version", "command"),
    [("0.4.0", "CHECK"), ("1.1.0", "GC"), ("1.1.0", "STATUS"), ("0.1.0", "ADD"), ("1.0.0", "DEL")],
)
def test_version_negotiation_accepts(version: str, command: str) -> None:
    assert check_version(version, command) == version


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.UsageError("bad"), protocol.INVALID_CONFIG),
        (errors.GuestNotFoundError("gone"), protocol.UNKNOWN_CONTAINER),
        (errors.GuestNotRunningError("stopped"), protocol.UNKNOWN_CONTAINER),
        (errors.RuntimeUnavailableError("ovs down"), protocol.TRY_AGAIN),
        (errors.TimeoutExpiredError("no lease"), protocol.TRY_AGAIN),
        (NetlinkFailure("busy", 16), protocol.TRY_AGAIN),
        (NetlinkFailure("no such device", 19), 101),
        (errors.ConflictError("other config"), 107),
        (errors.HostInterfaceError("not a bridge"), 106),
        (errors.UnsupportedError("no ipvlan"), 108),
        (errors.NotPermittedError("not root"), 177),
        (ValueError("bug"), protocol.INTERNAL),
    ],
)
def test_engine_errors_map_to_codes(exc: Exception, code: int) -> None:
    assert error_for(exc).code == code


def test_error_object_shape() -> None:
    error = error_for(errors.ConflictError("eth0 is taken", "choose another name"))
    assert error.to_dict("1.0.0") == {
        "cniVersion": "1.0.0",
        "code": 107,
        "msg": "eth0 is taken",
        "details": "choose another name",
    }
    assert "details" not in CniError(7, "x").to_dict("1.0.0")


# -- results ------------------------------------------------------------------------------

RESULT = Result(
    interfaces=(
        Interface("pwabc", "aa:aa:aa:aa:aa:aa"),
        Interface("eth0", "02:00:00:00:00:01", "/run/netns/x", 1500),
    ),
    ips=(
        IPConfig(ipaddress.ip_interface("198.18.0.2/24"), ipaddress.ip_address("198.18.0.1"), 1),
        IPConfig(ipaddress.ip_interface("2001:db8::2/64"), None, 1),
    ),
    routes=(Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("198.18.0.1")),),
    dns={"nameservers": ["198.18.0.53"]},
)


def test_encode_1_1_0_has_interface_mtu() -> None:
    data = RESULT.encode("1.1.0")
    assert data["cniVersion"] == "1.1.0"
    assert data["interfaces"][1] == {
        "name": "eth0",
        "mac": "02:00:00:00:00:01",
        "mtu": 1500,
        "sandbox": "/run/netns/x",
    }
    assert data["ips"][0] == {"address": "198.18.0.2/24", "gateway": "198.18.0.1", "interface": 1}
    assert data["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}]
    assert data["dns"] == {"nameservers": ["198.18.0.53"]}


def test_encode_1_0_0_has_no_mtu_and_0_4_0_tags_versions() -> None:
    assert "mtu" not in RESULT.encode("1.0.0")["interfaces"][1]
    assert "version" not in RESULT.encode("1.0.0")["ips"][0]
    old = RESULT.encode("0.4.0")
    assert [ip["version"] for ip in old["ips"]] == ["4", "6"]


def test_encode_legacy_0_2_0() -> None:
    assert RESULT.encode("0.2.0") == {
        "cniVersion": "0.2.0",
        "ip4": {
            "ip": "198.18.0.2/24",
            "gateway": "198.18.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}],
        },
        "ip6": {"ip": "2001:db8::2/64"},
        "dns": {"nameservers": ["198.18.0.53"]},
    }


@pytest.mark.parametrize("version", protocol.SUPPORTED_VERSIONS)
def test_decode_reads_what_encode_writes(version: str) -> None:
    back = Result.decode(RESULT.encode(version))
    assert [ip.address for ip in back.ips] == [ip.address for ip in RESULT.ips]
    assert back.routes == RESULT.routes
    assert back.dns == RESULT.dns
    if protocol.version_key(version) >= (0, 3, 0):
        assert [i.name for i in back.interfaces] == ["pwabc", "eth0"]


@pytest.mark.parametrize(
    "data", [[], {"ips": [{"address": "nope"}]}, {"interfaces": [{"mac": "x"}]}, {"ips": 3}]
)
def test_decode_refuses_malformed_results(data: Any) -> None:
    with pytest.raises(CniError) as info:
        Result.decode(data)
    assert info.value.code == protocol.DECODING_FAILURE


def test_chain_appends_our_interface_after_the_earlier_ones() -> None:
    earlier = Result(
        interfaces=(Interface("lo0", sandbox="/run/netns/x"),),
        ips=(IPConfig(ipaddress.ip_interface("198.18.1.2/24"), None, 0),),
    )
    merged = earlier.then(RESULT)
    assert [i.name for i in merged.interfaces] == ["lo0", "pwabc", "eth0"]
    assert [ip.interface for ip in merged.ips] == [0, 2, 2]


def attachment(**fields: Any) -> Attachment:
    values: dict[str, Any] = {
        "guest": GuestInfo(name="/run/netns/x", key="cni:n:c", runtime="path"),
        "ifname": "eth0",
        "kind": "bridge",
        "host": "br0",
        "host_ifname": "pw0123456789",
        "mac": "02:00:00:00:00:01",
        "mtu": 1500,
        "vlan": None,
        "address_method": "static",
        "addresses": ("198.18.0.2/24",),
        "gateway": "198.18.0.1",
    }
    values.update(fields)
    return Attachment(**values)


def test_result_from_a_static_attachment() -> None:
    result = from_attachment(attachment(), sandbox="/run/netns/x", host_mac="aa:aa:aa:aa:aa:aa")
    data = result.encode("1.0.0")
    assert data["interfaces"] == [
        {"name": "pw0123456789", "mac": "aa:aa:aa:aa:aa:aa"},
        {"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/x"},
    ]
    assert data["ips"] == [{"address": "198.18.0.2/24", "gateway": "198.18.0.1", "interface": 1}]
    assert data["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}]
    assert data["dns"] == {}


def test_result_from_a_dhcp_attachment_with_routes_and_no_host_side() -> None:
    att = attachment(
        host_ifname=None,
        address_method="udhcpc-f",
        addresses=("2001:db8::5/64", "198.18.100.37/24"),
        gateway="198.18.100.1",
        dns=("198.18.100.53",),
        domain="pwt.test",
        routes=("198.18.7.0/24 via 198.18.100.1 metric 9",),
    )
    data = from_attachment(att, sandbox="/s", dns={"nameservers": ["9.9.9.9"]}).encode("1.1.0")
    assert [i["name"] for i in data["interfaces"]] == ["eth0"]
    assert data["ips"] == [
        {"address": "2001:db8::5/64", "interface": 0},
        {"address": "198.18.100.37/24", "gateway": "198.18.100.1", "interface": 0},
    ]
    assert data["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "198.18.100.1"},
        {"dst": "198.18.7.0/24", "gw": "198.18.100.1", "priority": 9},
    ]
    assert data["dns"] == {"nameservers": ["198.18.100.53"], "domain": "pwt.test"}


def test_result_from_ipam_and_configured_dns() -> None:
    ipam = Result(
        ips=(
            IPConfig(ipaddress.ip_interface("198.18.3.4/24"), ipaddress.ip_address("198.18.3.1")),
        ),
        routes=(Route(ipaddress.ip_network("198.18.0.0/15")),),
    )
    result = from_attachment(
        attachment(gateway=None), sandbox="/s", ipam=ipam, dns={"nameservers": ["198.18.3.53"]}
    )
    assert [ip.interface for ip in result.ips] == [1]
    assert result.routes == ipam.routes
    assert result.dns == {"nameservers": ["198.18.3.53"]}


# -- CHECK's comparison with prevResult ------------------------------------------------------


def test_compare_with_prev_result() -> None:
    inv = Invocation.from_env(
        {"CNI_COMMAND": "CHECK", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}
    )
    compare(RESULT, "02:00:00:00:00:01", ("198.18.0.2/24", "2001:db8::2/64"), inv)
    with pytest.raises(errors.PipeworkError, match="MAC address"):
        compare(RESULT, "02:00:00:00:00:09", ("198.18.0.2/24", "2001:db8::2/64"), inv)
    with pytest.raises(errors.PipeworkError, match="lacks the address 2001:db8::2/64"):
        compare(RESULT, "02:00:00:00:00:01", ("198.18.0.2/24",), inv)
    other = Invocation.from_env(
        {"CNI_COMMAND": "CHECK", "CNI_NETNS": "/run/netns/y", "CNI_IFNAME": "eth0"}
    )
    with pytest.raises(errors.PipeworkError, match="lists no interface"):
        compare(RESULT, "02:00:00:00:00:01", (), other)


# -- the entry point ------------------------------------------------------------------------


def run(env: dict[str, str], stdin: bytes) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main.run(env, io.BytesIO(stdin), out, err)
    return code, json.loads(out.getvalue()) if out.getvalue() else None, err.getvalue()


def test_version_command() -> None:
    code, data, _ = run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    assert code == 0 and data["cniVersion"] == "1.0.0"
    code, data, _ = run({"CNI_COMMAND": "VERSION"}, b"")
    assert code == 0 and data["cniVersion"] == "1.1.0"


@pytest.mark.parametrize(
    ("env", "stdin", "code"),
    [
        ({}, b"{}", protocol.INVALID_ENVIRONMENT),
        ({"CNI_COMMAND": "ADD"}, b"not json", protocol.DECODING_FAILURE),
        ({"CNI_COMMAND": "ADD"}, b'{"cniVersion": "0.9.0", "name": "n"}', 1),
        (
            {"CNI_COMMAND": "ADD"},
            b'{"cniVersion": "1.0.0", "name": "n", "type": "pipework", "backend": "bridge",'
            b' "bridge": "br0"}',
            protocol.INVALID_ENVIRONMENT,
        ),
    ],
)
def test_errors_are_objects_on_stdout_and_one_line_on_stderr(
    env: dict[str, str], stdin: bytes, code: int
) -> None:
    status, data, err = run(env, stdin)
    assert status == 1
    assert data["code"] == code and data["msg"]
    assert data["cniVersion"] in protocol.SUPPORTED_VERSIONS
    assert err.startswith("pipework-cni: ") and err.count("\n") == 1


def test_error_object_uses_the_configuration_version() -> None:
    _, data, _ = run({"CNI_COMMAND": "ADD"}, b'{"cniVersion": "0.4.0", "name": "n"}')
    assert data["cniVersion"] == "0.4.0"


def test_version_does_not_load_the_engine() -> None:
    """Start-up matters (a runtime execs the plugin per call): VERSION and bad
    invocations must not pay for anyio, pyroute2 or the plugins."""
    probe = (
        "import io, sys; from pipework.cni import main;"
        "main.run({'CNI_COMMAND': 'VERSION'}, io.BytesIO(b''), io.StringIO(), io.StringIO());"
        "print(sorted(m for m in ('anyio', 'pluggy', 'pyroute2', 'pipework.engine.engine')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_del_enters_cni_netns_only_if_it_still_is_a_namespace(tmp_path):
    import os

    from pipework.cni.commands import is_netns

    (tmp_path / "file").touch()
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for path in (
        "",
        str(tmp_path / "missing"),
        *(str(tmp_path / n) for n in ("file", "dir", "fifo")),
    ):
        assert not is_netns(path), path
    assert is_netns("/proc/self/ns/net")
