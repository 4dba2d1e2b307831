"""DHCPv6 with the host clients (dhclient/6, dhcpcd/6) against a real dnsmasq
serving stateful DHCPv6 on 2001:db8:100::/64, with the same sandbox, hook
and host-file guarantees as DHCPv4."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time

import pytest
from support import infra
from support.checks import addresses, links, one_line_error, only_loopback
from support.dhcp import client_pids_in

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("host_files_unchanged", "dhcp_run_dir"),
]

CLIENTS = ["dhclient", "dhcpcd"]


@pytest.fixture(autouse=True)
def _clients_installed():
    infra.require_binaries("dhclient", "dhcpcd", "dnsmasq")


def ok(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def ra_route(guest: infra.NetNS, server) -> None:
    """Wait for the router advertisement's on-link route: DHCPv6 gives an
    address (/128), routes come from RAs (every 4 s here)."""
    deadline = time.monotonic() + 10
    while str(server.subnet6) not in guest.exec("ip", "-6", "route").stdout:
        assert time.monotonic() < deadline, "no router advertisement came"
        time.sleep(0.2)


def in_pool6(server, address: str) -> bool:
    low, high = server.pool6
    ip = ipaddress.ip_interface(address)
    return ip.network.prefixlen == 128 and low <= ip.ip <= high


@pytest.mark.parametrize("client", CLIENTS)
def test_one_shot_lease_then_the_same_lease_for_the_same_mac(
    client, host_ns, make_netns, run_pipework, dhcp_server, dhcp_run_dir
):
    server = dhcp_server(ipv6="stateful")
    guest = make_netns("six")
    key = f"netns:{guest.name}"
    request = ("--json", "brpwtd", key, f"{client}/6", "U:" + guest.name)
    att = ok(run_pipework(*request, netns=host_ns.name))
    assert att["status"] == "created" and att["address_method"] == f"{client}/6"
    (address,) = att["addresses"]
    assert in_pool6(server, address), address
    assert att["address_sources"] == {address: f"{client}/6"}
    assert address in addresses(guest, "eth1")
    ra_route(guest, server)
    assert infra.ping(guest, server.server_ip6)
    # The server saw one lease; no client process remains.
    assert [str(lease.ip) for lease in server.leases6()] == [address.split("/")[0]]
    assert client_pids_in(infra.netns_key(guest.path)) == []
    assert ok(run_pipework(*request, netns=host_ns.name))["status"] == "unchanged"
    ok_detach = run_pipework("detach", "--all", key, netns=host_ns.name)
    assert ok_detach.returncode == 0 and only_loopback(guest)
    assert list(dhcp_run_dir.glob("dhcp/*")) == []
    # The same U: string: the same DUID, the same lease.
    again = ok(run_pipework(*request, netns=host_ns.name))
    assert again["addresses"] == [address]
    assert run_pipework("detach", "--all", key, netns=host_ns.name).returncode == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_dual_stack_dhcp_in_one_attachment(client, host_ns, make_netns, run_pipework, dhcp_server):
    server = dhcp_server(ipv6="stateful")
    guest = make_netns("ds")
    key = f"netns:{guest.name}"
    att = ok(run_pipework("--json", "brpwtd", key, f"{client},{client}/6", netns=host_ns.name))
    v4, v6 = att["addresses"]
    assert server.in_pool(v4) and in_pool6(server, v6)
    assert att["address_sources"] == {v4: client, v6: f"{client}/6"}
    ra_route(guest, server)
    assert infra.ping(guest, server.server_ip) and infra.ping(guest, server.server_ip6)
    assert run_pipework("detach", "--all", key, netns=host_ns.name).returncode == 0
    assert only_loopback(guest)


@pytest.mark.parametrize("client", CLIENTS)
def test_no_server_is_a_timeout_and_leaves_nothing(
    client, host_ns, make_netns, run_pipework, dhcp_server, dhcp_run_dir
):
    dhcp_server()  # DHCPv4 only
    guest = make_netns("ns6")
    before = set(links(host_ns))
    started = time.monotonic()
    result = run_pipework(
        "brpwtd", f"netns:{guest.name}", f"{client}/6", "--dhcp-timeout", "4", netns=host_ns.name
    )
    one_line_error(result, 10, "got no DHCP lease for eth1")
    assert "within 4 s" in result.stderr
    assert time.monotonic() - started < 12  # the timeout covers the link-local wait too
    assert only_loopback(guest) and set(links(host_ns)) == before
    assert client_pids_in(infra.netns_key(guest.path)) == []
    assert list(dhcp_run_dir.glob("dhcp/*")) == []


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS)
def test_a_kept_client_renews_and_detach_stops_it(
    client, host_ns, make_netns, run_pipework, dhcp_server, dhcp_run_dir
):
    server = dhcp_server(ipv6="stateful", lease_time="2m")  # dnsmasq's shortest: T1 is 60 s
    guest = make_netns("k6")
    key = f"netns:{guest.name}"
    att = ok(run_pipework("--json", "brpwtd", key, f"{client}-f/6", netns=host_ns.name))
    (address,) = att["addresses"]
    assert in_pool6(server, address)
    assert client_pids_in(infra.netns_key(guest.path))
    (state,) = dhcp_run_dir.glob("dhcp/*")
    assert "family=6" in (state / "lease").read_text()
    deadline = time.monotonic() + 90
    while "event=RENEW6" not in (state / "lease").read_text():  # T1: 60 s
        assert time.monotonic() < deadline, "the kept DHCPv6 client did not renew"
        time.sleep(1)
    assert address in addresses(guest, "eth1")
    assert "kept, running" in run_pipework("ls", netns=host_ns.name).stdout
    assert run_pipework("detach", "--all", key, netns=host_ns.name).returncode == 0
    assert client_pids_in(infra.netns_key(guest.path)) == []
    assert not state.exists()


@pytest.mark.parametrize(
    ("ipspec", "message"),
    [
        ("udhcpc/6", "udhcpc gets IPv4 leases only"),
        ("dhcpcd:-4", "dhcpcd option -4 is set by pipework"),
        ("dhclient/6:-D LLT", "dhclient option -D is set by pipework"),
    ],
)
def test_what_dhcpv6_refuses(host_ns, make_netns, run_pipework, ipspec, message):
    guest = make_netns("r6")
    before = set(links(host_ns))
    result = run_pipework("brpwtr", f"netns:{guest.name}", ipspec, netns=host_ns.name)
    one_line_error(result, 2, message)
    assert only_loopback(guest) and set(links(host_ns)) == before
