"""DHCPv6 without root: v6 lease reports, the per-family state directory, the
family a request asks for, the clients' DHCPv6 command lines and refusals."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pipework import AddressSpec, AttachSpec
from pipework.backends.addresses.dhcp.clients import Dhclient, Dhcpcd, Run
from pipework.backends.addresses.dhcp.toolbox import (
    Lease,
    StateDir,
    check_request,
    family_of,
    recorded_request,
    request_record,
    wanted_family,
)
from pipework.engine import DetachContext, GuestInfo, UsageError
from pipework.engine.marker import Marker

GUEST = GuestInfo(key="netns:g", name="netns:g", runtime="netns")


def attach(ipspec: str, family: int | None = None) -> AttachSpec:
    return AttachSpec(host="br1", guest="netns:g", address=AddressSpec.parse(ipspec), family=family)  # type: ignore[arg-type]


def test_a_v6_report_is_a_v6_lease_without_router():
    lease = Lease.from_report(
        {"state": "bound", "family": "6", "address": "2001:db8:1::15/128",
         "routers": "198.18.1.1", "dns": "2001:db8:1::53", "lease": "120", "server": ""}
    )  # fmt: skip
    assert lease is not None
    assert lease.address == ipaddress.ip_interface("2001:db8:1::15/128")
    assert lease.routers == () and lease.gateway is None
    assert lease.result().dns == ("2001:db8:1::53",) and lease.result().gateway is None


def test_a_v4_report_of_an_earlier_version_still_reads():
    lease = Lease.from_report(
        {"state": "bound", "address": "198.18.1.5/24", "routers": "198.18.1.1"}
    )
    assert lease is not None and lease.gateway == ipaddress.ip_address("198.18.1.1")


@pytest.mark.parametrize(
    "fields",
    [
        {"state": "bound", "family": "6", "address": "198.18.1.5/24"},
        {"state": "bound", "family": "6", "address": "2001:db8::1/128", "dns": "x"},
    ],
)
def test_a_malformed_v6_report_is_refused(fields):
    with pytest.raises(ValueError):
        Lease.from_report(fields)


def test_v6_state_has_a_directory_of_its_own_and_v4_keeps_its_path(tmp_path: Path):
    v4 = StateDir.of(str(tmp_path), "netns:g", "eth1")
    assert StateDir.of(str(tmp_path), "netns:g", "eth1", 4).path == v4.path
    assert StateDir.of(str(tmp_path), "netns:g", "eth1", None).path == v4.path
    assert StateDir.of(str(tmp_path), "netns:g", "eth1", 6).path != v4.path


@pytest.mark.parametrize(
    ("ipspec", "family", "expected"),
    [("dhclient", None, 4), ("dhclient/6", None, 6), ("dhclient", 6, 6), ("dhclient/4", None, 4)],
)
def test_wanted_family(ipspec, family, expected):
    assert wanted_family(attach(ipspec, family)) == expected


@pytest.mark.parametrize(
    ("addr", "expected"), [("dhclient/6", 6), ("dhcpcd", 4), ("", 4), ("x,y/6", 4)]
)
def test_the_family_a_detach_releases_comes_from_the_marker(addr, expected):
    ctx = DetachContext(
        marker=Marker(guest="netns:g", ifname="eth1", kind="bridge", host="br1", addr=addr),
        host=None,
        guest_ns=None,
        guest_link=None,
    )  # type: ignore[arg-type]
    assert family_of(ctx) == expected


def test_the_request_record_keeps_the_family():
    spec = AddressSpec.parse("dhcpcd-f/6")
    assert recorded_request({"request": request_record(spec)}, "dhcpcd-f").family == 6
    with pytest.raises(ValueError, match="family"):
        recorded_request({"request": {**request_record(spec), "family": 5}}, "dhcpcd-f")


def test_udhcpc_and_the_helper_refuse_ipv6_the_others_take_it():
    with pytest.raises(UsageError, match="udhcpc gets IPv4 leases only"):
        check_request(attach("udhcpc/6"), GUEST)
    check_request(attach("dhclient/6"), GUEST, ipv6=True)


def run(tmp_path: Path, family: int) -> Run:
    return Run(binary="/usr/sbin/x", ifname="eth1", hostname="g", state=StateDir(tmp_path),
               hook="/h", keep=False, timeout=5, options=(), family=family)  # fmt: skip


def test_dhclient_v6_command_line_and_configuration(tmp_path: Path):
    client = Dhclient()
    r = run(tmp_path, 6)
    client.prepare(r)
    argv = client.argv(r)
    assert argv[1:5] == ["-6", "-N", "-D", "LL"] and "-4" not in argv
    assert "dhcp6.name-servers" in (tmp_path / "dhclient.conf").read_text()
    assert client.argv(run(tmp_path, 4))[1] == "-4"


def test_dhcpcd_v6_configuration(tmp_path: Path):
    client = Dhcpcd()
    client.prepare(run(tmp_path, 6))
    conf = (tmp_path / "dhcpcd.conf").read_text().splitlines()
    assert {"ipv6only", "noipv6rs", "ia_na", "duid ll"} <= set(conf) and "ipv4only" not in conf


@pytest.mark.parametrize(
    ("client", "options", "message"),
    [
        (Dhclient(), ["-6"], "the family"),
        (Dhclient(), ["-D", "LLT"], "the DUID"),
        (Dhclient(), ["-P"], "IA_NA"),
        (Dhcpcd(), ["--ipv4only"], "the family"),
        (Dhcpcd(), ["-6"], "the family"),
    ],
)
def test_what_pipework_sets_itself_is_refused(client, options, message):
    with pytest.raises(UsageError, match=message):
        client.syntax.check(options)
