"""SLAAC against a real router: dnsmasq's router advertisements on a test bridge.

dnsmasq (``DhcpServer(ipv6=...)``) advertises 2001:db8:100::/64 for
autoconfiguration every 4 s, and itself as a default router; the guests
get their addresses and default route from the kernel, as the RAs say.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest
from support import infra
from support.checks import addresses, links, one_line_error, only_loopback, routes
from support.dhcp import SUBNET6

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("host_files_unchanged")]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def slaac_addresses(ns: infra.NetNS, ifname: str = "eth1") -> list[str]:
    return [
        a
        for a in addresses(ns, ifname)
        if ipaddress.ip_interface(a).ip in SUBNET6 and a.endswith("/64")
    ]


def ra_default(ns: infra.NetNS) -> dict:
    found = [r for r in routes(ns, "-6") if r["dst"] == "default" and r.get("dev") == "eth1"]
    assert len(found) == 1, routes(ns, "-6")
    return found[0]


@pytest.fixture(autouse=True)
def _dnsmasq():
    infra.require_binaries("dnsmasq")


def test_slaac_gets_an_address_and_the_default_route_and_a_rerun_is_unchanged(
    host_ns, make_netns, run_pipework, dhcp_server
):
    server = dhcp_server(ipv6="slaac")
    guest = make_netns("s")
    key = f"netns:{guest.name}"
    request = ("brpwtd", key, "slaac", "U:" + guest.name)  # the same MAC: the same address
    result = json.loads(ok(run_pipework("--json", *request, netns=host_ns.name)))
    assert result["status"] == "created" and result["address_method"] == "slaac"
    (address,) = result["addresses"]
    assert ipaddress.ip_interface(address).network == SUBNET6
    assert result["address_sources"] == {address: "slaac"}
    # The router is the bridge's link-local address; the kernel put the route in.
    gateway = ipaddress.ip_address(result["gateway"])
    assert gateway.is_link_local and result["gateways"] == [result["gateway"]]
    route = ra_default(guest)
    assert route["gateway"] == result["gateway"] and route["protocol"] == "ra"
    assert slaac_addresses(guest) == [address]
    assert infra.ping(guest, server.server_ip6)
    # Only this interface accepts router advertisements.
    assert guest.exec("sysctl", "-n", "net.ipv6.conf.eth1.accept_ra").stdout.strip() == "2"
    assert guest.exec("sysctl", "-n", "net.ipv6.conf.lo.accept_ra").stdout.strip() != "2"
    again = ok(run_pipework(*request, netns=host_ns.name))
    assert again.startswith("unchanged: eth1") and f"{address}; via {gateway}" in again
    listing = json.loads(ok(run_pipework("--json", "ls", netns=host_ns.name)))["attachments"]
    mine = next(r for r in listing if r["guest"]["key"] == key)
    assert mine["address_sources"] == {address: "slaac"}
    # The guest turns RAs off: no longer intact, a re-run sets it up again.
    guest.exec("sysctl", "-qw", "net.ipv6.conf.eth1.accept_ra=0")
    assert "not accepting router advertisements" in ok(run_pipework("ls", netns=host_ns.name))
    replaced = json.loads(ok(run_pipework("--json", *request, netns=host_ns.name)))
    assert replaced["status"] == "replaced" and replaced["addresses"] == [address]
    ok(run_pipework("detach", "--all", key, netns=host_ns.name))
    assert only_loopback(guest)


def test_dual_stack_dhcpv4_with_slaac_reaches_the_server_over_both(
    host_ns, make_netns, run_pipework, dhcp_server, dhcp_run_dir
):
    infra.require_binaries("dhclient")
    server = dhcp_server(ipv6="slaac")
    guest = make_netns("d")
    key = f"netns:{guest.name}"
    result = json.loads(
        ok(run_pipework("--json", "brpwtd", key, "dhclient,slaac", netns=host_ns.name))
    )
    v4, v6 = result["addresses"]
    assert server.in_pool(v4) and ipaddress.ip_interface(v6).network == SUBNET6
    assert result["address_sources"] == {v4: "dhclient", v6: "slaac"}
    assert result["gateways"][0] == server.server_ip
    assert ipaddress.ip_address(result["gateways"][1]).is_link_local
    assert infra.ping(guest, server.server_ip) and infra.ping(guest, server.server_ip6)
    assert ok(run_pipework("brpwtd", key, "dhclient,slaac", netns=host_ns.name)).startswith(
        "unchanged"
    )
    ok(run_pipework("detach", "--all", key, netns=host_ns.name))
    assert only_loopback(guest)


def test_static_ipv4_beside_slaac(host_ns, make_netns, run_pipework, dhcp_server):
    dhcp_server(ipv6="slaac")
    guest = make_netns("t")
    key = f"netns:{guest.name}"
    out = ok(run_pipework("brpwtd", key, "198.18.100.200/24,slaac", netns=host_ns.name))
    (v6,) = slaac_addresses(guest)
    assert f"198.18.100.200/24 static, {v6} slaac" in out
    assert "198.18.100.200/24" in addresses(guest, "eth1")
    ok(run_pipework("detach", "--all", key, netns=host_ns.name))


def test_no_router_is_a_timeout_and_leaves_nothing(host_ns, make_netns, run_pipework, dhcp_server):
    dhcp_server()  # DHCPv4 only: no router advertisements
    guest = make_netns("n")
    before = set(links(host_ns))
    result = run_pipework(
        "brpwtd", f"netns:{guest.name}", "slaac", "--dhcp-timeout", "3", netns=host_ns.name
    )
    one_line_error(result, 10, "no router advertisement gave eth1")
    assert "within 3 s" in result.stderr
    assert only_loopback(guest) and set(links(host_ns)) == before


@pytest.mark.parametrize(
    ("ipspec", "extra", "message"),
    [
        ("slaac/4", [], "slaac configures IPv6 only"),
        ("slaac", ["-a", "4"], "slaac configures IPv6 only"),
        ("slaac:-x", [], "slaac takes no options"),
        ("slaac", ["--dns"], "--dns is for DHCP methods"),
        ("slaac", ["--dhcp-image", "busybox"], "--dhcp-image is for DHCP methods"),
    ],
)
def test_what_slaac_refuses(host_ns, make_netns, run_pipework, ipspec, extra, message):
    guest = make_netns("r")
    before = set(links(host_ns))
    result = run_pipework("brpwtr", f"netns:{guest.name}", ipspec, *extra, netns=host_ns.name)
    one_line_error(result, 2, message)
    assert only_loopback(guest) and set(links(host_ns)) == before
