"""Several addresses on one interface, through the CLI (in-process and served
by the daemon): dual-stack static, static with DHCP, a topology file's
``addresses:``; what is refused, and what a failure leaves (nothing)."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest
from support import infra
from support.checks import addresses, links, one_line_error, only_loopback, routes
from support.dhcp import give_default_route

pytestmark = pytest.mark.integration

DUAL = "198.18.70.2/24@198.18.70.1,2001:db8:70::2/64@2001:db8:70::1"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def give_default_route6(ns: infra.NetNS) -> None:
    """An IPv6 default route on the veth ``give_default_route`` made."""
    ns.exec("ip", "-6", "addr", "add", "2001:db8:50::2/64", "dev", "pwtup", "nodad")
    ns.exec("ip", "-6", "route", "add", "default", "via", "2001:db8:50::1")


def defaults(ns: infra.NetNS) -> list[tuple[str, str]]:
    return [
        (r.get("gateway", ""), r["dev"])
        for family in ("-4", "-6")
        for r in routes(ns, family)
        if r["dst"] == "default"
    ]


def test_dual_stack_static_pings_over_both_families_and_detach_gives_routes_back(
    host_ns, make_netns, run_pipework
):
    a, b = make_netns("a"), make_netns("b")
    give_default_route(a)
    give_default_route6(a)
    before = defaults(a)
    ga, gb = f"netns:{a.name}", f"netns:{b.name}"
    created = ok(run_pipework("--json", "brpwt70", ga, DUAL, netns=host_ns.name))
    ok(run_pipework("brpwt70", gb, "198.18.70.3/24,2001:db8:70::3/64", netns=host_ns.name))
    result = json.loads(created)
    assert result["status"] == "created"
    assert result["address_method"] == "static,static"
    assert result["addresses"] == ["198.18.70.2/24", "2001:db8:70::2/64"]
    assert result["gateways"] == ["198.18.70.1", "2001:db8:70::1"]
    assert result["address_sources"] == {"198.18.70.2/24": "static", "2001:db8:70::2/64": "static"}
    assert {"198.18.70.2/24", "2001:db8:70::2/64"} <= set(addresses(a, "eth1"))
    assert ("198.18.70.1", "eth1") in defaults(a) and ("2001:db8:70::1", "eth1") in defaults(a)
    assert infra.ping(a, "198.18.70.3") and infra.ping(a, "2001:db8:70::3")
    assert infra.ping(b, "198.18.70.2") and infra.ping(b, "2001:db8:70::2")
    # A re-run is unchanged; the human line names each address's method.
    again = ok(run_pipework("brpwt70", ga, DUAL, netns=host_ns.name))
    assert again.startswith("unchanged: eth1")
    assert "198.18.70.2/24 static, 2001:db8:70::2/64 static" in again
    assert "via 198.18.70.1 and 2001:db8:70::1" in again
    # Another list is another configuration.
    changed = run_pipework("brpwt70", ga, "198.18.70.2/24@198.18.70.1", netns=host_ns.name)
    one_line_error(changed, 7, "is attached with another configuration")
    listing = json.loads(ok(run_pipework("--json", "ls", netns=host_ns.name)))["attachments"]
    mine = next(r for r in listing if r["guest"]["key"] == ga)
    assert mine["address_sources"] == {"198.18.70.2/24": "static", "2001:db8:70::2/64": "static"}
    table = ok(run_pipework("ls", netns=host_ns.name))
    assert "198.18.70.2/24 static,2001:db8:70::2/64 static" in table
    # Detach gives both families their default route back.
    ok(run_pipework("detach", "--all", ga, netns=host_ns.name))
    assert defaults(a) == before
    ok(run_pipework("detach", "--all", gb, netns=host_ns.name))


@pytest.mark.parametrize(
    ("ipspec", "fragment"),
    [
        ("198.18.71.2/24,,2001:db8:71::2/64", "has an empty item"),
        ("0/0,slaac", "0/0 (no address) cannot be combined with other addresses"),
        ("198.18.71.2/24,198.18.71.2/25", "198.18.71.2 is given twice"),
        ("198.18.71.2/24@198.18.71.1,198.18.71.3/24@198.18.71.9", "two IPv4 gateways"),
        ("198.18.71.2/24,dhclient/5", "the family after '/' is 4 or 6"),
        ("198.18.71.2/24,nosuchmethod", "no address provider handles 'nosuchmethod'"),
    ],
)
def test_a_bad_list_is_one_line_and_leaves_nothing(
    host_ns, make_netns, run_pipework, ipspec, fragment
):
    a = make_netns("a")
    before = sorted(links(host_ns))
    result = run_pipework("brpwt71", f"netns:{a.name}", ipspec, netns=host_ns.name)
    code = 8 if "no address provider" in fragment else 2  # UnsupportedError, UsageError
    one_line_error(result, code, fragment)
    assert only_loopback(a) and sorted(links(host_ns)) == before


def test_a_failing_second_address_rolls_back_the_first(
    host_ns, make_netns, run_pipework, dhcp_run_dir, host_files_unchanged
):
    """Static IPv4, then a DHCP client that gets no lease (no server on the
    bridge): the attach fails with the DHCP error, and nothing is left."""
    a = make_netns("a")
    before = sorted(links(host_ns))
    result = run_pipework(
        "--dhcp-timeout", "2", "brpwt72", f"netns:{a.name}", "198.18.72.2/24,dhclient",
        netns=host_ns.name,
    )  # fmt: skip
    one_line_error(result, 10, "got no DHCP lease")
    assert only_loopback(a)
    assert sorted(set(links(host_ns)) - {"brpwt72"}) == before


def test_static_ipv6_beside_a_dhcp_lease(
    host_ns, make_netns, run_pipework, dhcp_server, dhcp_run_dir, host_files_unchanged
):
    server = dhcp_server(ipv6="stateful")
    a = make_netns("a")
    ga = f"netns:{a.name}"
    out = ok(
        run_pipework("--json", server.bridge, ga, "dhclient,2001:db8:100::5/64", netns=host_ns.name)
    )
    result = json.loads(out)
    v4 = next(x for x in result["addresses"] if "." in x)
    assert server.in_pool(v4)
    assert result["address_sources"] == {v4: "dhclient", "2001:db8:100::5/64": "static"}
    assert result["gateway"] == server.server_ip
    assert infra.ping(a, server.server_ip) and infra.ping(a, server.server_ip6)
    again = json.loads(
        ok(
            run_pipework(
                "--json", server.bridge, ga, "dhclient,2001:db8:100::5/64", netns=host_ns.name
            )
        )
    )
    assert again["status"] == "unchanged" and again["addresses"] == result["addresses"]
    ok(run_pipework("detach", "--all", ga, netns=host_ns.name))
    assert only_loopback(a)


def test_a_topology_file_with_addresses(host_ns, make_netns, run_pipework, tmp_path):
    a, b = make_netns("a"), make_netns("b")
    topo = tmp_path / "lab.yaml"
    topo.write_text(
        textwrap.dedent(
            f"""\
            defaults: {{host: brpwt73}}
            attachments:
              - guest: netns:{a.name}
                addresses: [198.18.73.2/24, "2001:db8:73::2/64"]
              - guest: netns:{b.name}
                address: 198.18.73.3/24,2001:db8:73::3/64
            """
        )
    )
    plan = ok(run_pipework("apply", "--plan", str(topo), netns=host_ns.name))
    # The plan says every address and how it is obtained.
    assert f"+ create    attachment eth1 in netns:{a.name} on bridge brpwt73" in plan
    assert "(198.18.73.2/24 static, 2001:db8:73::2/64 static)" in plan
    assert "(198.18.73.3/24 static, 2001:db8:73::3/64 static)" in plan
    ok(run_pipework("apply", str(topo), netns=host_ns.name))
    assert infra.ping(a, "2001:db8:73::3") and infra.ping(b, "198.18.73.2")
    again = ok(run_pipework("apply", "--plan", str(topo), netns=host_ns.name))
    assert "unchanged" in again and "create" not in again
    ok(run_pipework("destroy", str(topo), netns=host_ns.name))
    assert only_loopback(a) and only_loopback(b)


def test_a_dual_stack_link_between_guests(host_ns, make_netns, run_pipework):
    a, b = make_netns("a"), make_netns("b")
    ends = (f"netns:{a.name}:eth1", f"netns:{b.name}:eth1")
    ips = (
        "--ip",
        "198.18.74.1/30,2001:db8:74::1/64",
        "--peer-ip",
        "198.18.74.2/30,2001:db8:74::2/64",
    )
    ok(run_pipework("link", *ends, *ips, netns=host_ns.name))
    assert infra.ping(a, "198.18.74.2") and infra.ping(a, "2001:db8:74::2")
    again = ok(run_pipework("link", *ends, *ips, netns=host_ns.name))
    assert again.startswith("unchanged")
    ok(run_pipework("detach", f"netns:{a.name}", "-i", "eth1", netns=host_ns.name))
    assert only_loopback(a) and only_loopback(b)
