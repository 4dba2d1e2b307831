"""Links straight between guests (``pipework link``): a veth pair whose ends
are made in the two guests, against the real kernel and a private dockerd.

Every CLI run is in a test-owned namespace playing the host (``host_ns``):
a link puts nothing there, and the tests check that too.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from support import infra
from support.checks import links, one_line_error, only_loopback
from support.dhcp import client_pids_in

from pipework.engine import AddressSpec, Engine
from pipework.engine.linkspec import LinkEnd, LinkSpec
from pipework.engine.marker import Marker
from pipework.engine.specs import derive_mac

pytestmark = pytest.mark.integration


def ns_ref(ns: infra.NetNS, ifname: str = "eth1") -> str:
    return f"netns:{ns.name}:{ifname}"


def link(run_pipework, host_ns, *args: str) -> subprocess.CompletedProcess[str]:
    return run_pipework("link", *args, netns=host_ns.name)


def host_untouched(host_ns: infra.NetNS) -> bool:
    return only_loopback(host_ns)


def test_two_netns_guests_ping_with_mtu_macs_and_rerun(host_ns, make_netns, run_pipework):
    r1, r2 = make_netns("r"), make_netns("r")
    args = (
        ns_ref(r1),
        ns_ref(r2, "eth3"),
        "--ip",
        "198.18.40.1/30",
        "--peer-ip",
        "198.18.40.2/30",
        "--mtu",
        "9000",
        "--mac",
        "02:00:c6:12:28:01",
        "--peer-mac",
        "U:r2",
    )
    result = link(run_pipework, host_ns, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"created: link eth1 in netns:{r1.name}")
    assert infra.ping(r1, "198.18.40.2") and infra.ping(r2, "198.18.40.1")
    one, two = links(r1)["eth1"], links(r2)["eth3"]
    assert (one["mtu"], two["mtu"]) == (9000, 9000)
    assert (one["address"], two["address"]) == ("02:00:c6:12:28:01", derive_mac("r2"))
    assert one["linkinfo"]["info_kind"] == "veth" and one["link_netnsid"] is not None
    # Both ends carry markers that name the link.
    m1, m2 = Marker.parse(one["ifalias"]), Marker.parse(two["ifalias"])
    assert m1 and m2 and (m1.kind, m1.host, m1.peer) == ("link", f"netns:{r2.name}", "eth3")
    assert (m2.host, m2.peer) == (f"netns:{r1.name}", "eth1")
    assert host_untouched(host_ns)
    again = link(run_pipework, host_ns, *args)
    assert again.returncode == 0 and again.stdout.startswith("unchanged: link"), again.stderr
    # Another configuration needs --force; with it, the link is replaced.
    other = link(run_pipework, host_ns, *args[:-4], "--mtu", "1400")
    one_line_error(other, 7, "is attached with another configuration")
    assert links(r1)["eth1"]["mtu"] == 9000
    forced = link(run_pipework, host_ns, *args[:-6], "--mtu", "1400", "--force")
    assert forced.returncode == 0 and forced.stdout.startswith("replaced: link"), forced.stderr
    assert links(r2)["eth3"]["mtu"] == 1400 and infra.ping(r1, "198.18.40.2")
    # ls shows the link once, with both ends.
    listed = run_pipework("--json", "ls", netns=host_ns.name)
    data = json.loads(listed.stdout)
    mine = [lk for lk in data["links"] if lk["ends"][0]["guest"]["key"] in m2.host + m1.host]
    assert len(mine) == 1 and len(mine[0]["ends"]) == 2 and mine[0]["mtu"] == 1400
    table = run_pipework("ls", netns=host_ns.name).stdout
    assert f"netns:{r1.name}:eth1" in table and f"netns:{r2.name}:eth3" in table
    # Detach from the second end: both go.
    gone = run_pipework("detach", f"netns:{r2.name}", "-i", "eth3", netns=host_ns.name)
    assert gone.returncode == 0, gone.stderr
    assert "went with it" in gone.stdout
    assert only_loopback(r1) and only_loopback(r2) and host_untouched(host_ns)


def test_two_containers_and_a_container_with_a_netns(
    host_ns, make_container, make_netns, run_pipework
):
    web1, db1, r3 = make_container(), make_container(), make_netns("r")
    result = link(
        run_pipework,
        host_ns,
        f"{web1.name}:eth1",
        f"{db1.name}:eth1",
        "--ip",
        "198.18.40.5/30",
        "--peer-ip",
        "198.18.40.6/30",
    )
    assert result.returncode == 0, result.stderr
    mixed = link(
        run_pipework,
        host_ns,
        f"{db1.id[:12]}:eth2",
        ns_ref(r3),
        "--ip",
        "198.18.40.9/30",
        "--peer-ip",
        "198.18.40.10/30",
        "--json",
    )
    assert mixed.returncode == 0, mixed.stderr
    data = json.loads(mixed.stdout)
    assert data["status"] == "created"
    assert [e["guest"]["runtime"] for e in data["ends"]] == ["docker", "netns"]
    assert data["ends"][0]["host"] == f"netns:{r3.name}"
    assert infra.ping(web1, "198.18.40.6") and infra.ping(db1, "198.18.40.5")
    assert infra.ping(db1, "198.18.40.10") and infra.ping(r3, "198.18.40.9")
    # Detach from the first end removes both; the other link stays.
    gone = run_pipework("detach", web1.name, "-i", "eth1", netns=host_ns.name)
    assert gone.returncode == 0, gone.stderr
    assert only_loopback(web1) and "eth1" not in links(db1) and "eth2" in links(db1)
    # Killing a container takes its end with it, and the peer's: gc finds nothing left.
    db1.daemon.cli("kill", db1.id)
    deadline = time.monotonic() + 10
    while "eth1" in links(r3) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert only_loopback(r3)
    gc = run_pipework("gc", netns=host_ns.name)
    assert gc.returncode == 0, gc.stderr
    listed = json.loads(run_pipework("--json", "ls", netns=host_ns.name).stdout)
    assert not [a for a in listed["attachments"] if a["guest"]["key"] in (web1.id, db1.id)]
    assert host_untouched(host_ns)


def test_dhcp_on_one_end_served_from_the_other(host_ns, make_netns, dhcp_run_dir):
    """A DHCP server in one guest answers the client pipework runs on the
    other end; detaching from the server's side stops that client too."""
    infra.require_binaries("dnsmasq", "udhcpc")
    server, client = make_netns("d"), make_netns("c")
    workdir = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-dhcp-"))
    dnsmasq = subprocess.Popen(
        [
            "ip", "netns", "exec", server.name, "dnsmasq", "--keep-in-foreground",
            "--conf-file=/dev/null", "--port=0", "--interface=eth1", "--bind-dynamic",
            "--dhcp-range=198.18.43.10,198.18.43.50,2m", f"--dhcp-leasefile={workdir}/leases",
            f"--pid-file={workdir}/pid", "--dhcp-authoritative",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    spec = LinkSpec(
        LinkEnd(f"netns:{client.name}", "eth1", AddressSpec.parse("udhcpc-f")),
        LinkEnd(f"netns:{server.name}", "eth1", AddressSpec.parse("198.18.43.1/24")),
    )

    async def run() -> None:
        async with Engine(host_netns=host_ns.path) as engine:
            result = await engine.link(spec)
            (address,) = result.a.addresses
            assert address.startswith("198.18.43.") and result.a.address_method == "udhcpc-f"
            assert client_pids_in(infra.netns_key(client.path)), "no kept client"
            assert infra.ping(client, "198.18.43.1")
            assert (await engine.link(spec)).status == "unchanged"
            await engine.detach(f"netns:{server.name}", "eth1")

    try:
        anyio.run(run)
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(10)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    assert client_pids_in(infra.netns_key(client.path)) == []
    assert only_loopback(client) and only_loopback(server)
    # No lease state, no record of the default route the lease replaced.
    assert not [p for p in dhcp_run_dir.rglob("*") if p.is_file() and "locks" not in p.parts]


def test_bad_input_is_one_line_and_leaves_nothing(host_ns, make_netns, run_pipework):
    r1, r2 = make_netns("r"), make_netns("r")
    one_line_error(
        link(run_pipework, host_ns, f"netns:{r1.name}", ns_ref(r2)), 2, "names no interface"
    )
    one_line_error(link(run_pipework, host_ns, "web1", ns_ref(r2)), 2, "names no interface")
    one_line_error(
        link(run_pipework, host_ns, ns_ref(r1), ns_ref(r1, "eth2")), 2, "both ends of the link"
    )
    # The same guest under two names.
    same = link(run_pipework, host_ns, ns_ref(r1), f"/run/netns/{r1.name}:eth2")
    one_line_error(same, 2, "are the same guest")
    # An end in the host's own namespace (gc would take it for a host side).
    host_end = link(run_pipework, host_ns, ns_ref(r1), f"/run/netns/{host_ns.name}:eth9")
    one_line_error(host_end, 2, "the host's own network namespace")
    one_line_error(link(run_pipework, host_ns, ns_ref(r1), ns_ref(r2), "--mtu", "70000"), 2, "MTU")
    one_line_error(
        link(run_pipework, host_ns, ns_ref(r1), ns_ref(r2), "--ip", "198.18.40.1"), 2, "netmask"
    )
    one_line_error(
        link(run_pipework, host_ns, ns_ref(r1), "netns:pwt-nosuch:eth1"), 3, "pwt-nosuch"
    )
    # An interface pipework did not make is in the way.
    r2.exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "other")
    one_line_error(link(run_pipework, host_ns, ns_ref(r1), ns_ref(r2)), 7, "did not create it")
    assert only_loopback(r1) and host_untouched(host_ns)
    assert set(links(r2)) == {"lo", "eth1", "other"}
    r2.exec("ip", "link", "del", "eth1")
    # A step that fails halfway (a route through a gateway the link cannot
    # reach) is rolled back in both guests.
    failed = link(
        run_pipework,
        host_ns,
        ns_ref(r1),
        ns_ref(r2),
        "--ip",
        "198.18.40.1/30",
        "--peer-ip",
        "198.18.40.2/30",
        "--peer-route",
        "198.18.44.0/24 via 198.18.77.1",
    )
    assert failed.returncode != 0 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert only_loopback(r1) and only_loopback(r2) and host_untouched(host_ns)


def test_forged_link_markers_are_left_alone(host_ns, make_netns, run_pipework):
    """A guest can write any alias: a link marker on a veth whose peer is not
    in the guest it names (here: in the "host") is reported and left alone."""
    victim, liar = make_netns("v"), make_netns("l")
    forged = Marker(
        guest=f"netns:{liar.name}",
        ifname="eth1",
        kind="link",
        host=f"netns:{victim.name}",
        peer="eth1",
        cfg="0123456789ab",
    )
    mirror = replace(forged, guest=forged.host, host=forged.guest)
    host_ns.exec("ip", "link", "add", "pwtkeep", "type", "veth", "peer", "name", "eth1")
    host_ns.exec("ip", "link", "set", "eth1", "netns", liar.name)
    liar.exec("ip", "link", "set", "eth1", "alias", forged.format())
    victim.exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "x")
    victim.exec("ip", "link", "set", "eth1", "alias", mirror.format())
    result = run_pipework("detach", f"netns:{liar.name}", "-i", "eth1", netns=host_ns.name)
    assert result.returncode == 7, result.stderr
    assert "left alone" in result.stderr
    assert "pwtkeep" in links(host_ns) and "eth1" in links(victim)
    listed = run_pipework("ls", f"netns:{liar.name}", netns=host_ns.name)
    assert "UNVERIFIED" in listed.stdout
    # And linking over it is refused, not a removal.
    refused = link(run_pipework, host_ns, ns_ref(liar), ns_ref(victim), "--force")
    assert refused.returncode == 7 and "leaves it alone" in refused.stderr, refused.stderr
    assert "pwtkeep" in links(host_ns) and "eth1" in links(victim)
    host_ns.exec("ip", "link", "del", "pwtkeep")
    victim.exec("ip", "link", "del", "eth1")


def test_a_peer_path_in_a_forged_marker_is_never_opened(
    host_ns, make_netns, run_pipework, tmp_path
):
    """A link marker may name its peer by a path: only a namespace file is
    opened. A FIFO there would hang an open without O_NONBLOCK; a device
    could act on being opened. Neither is touched: the end is unverified."""
    import os

    liar, other = make_netns("l"), make_netns("o")
    fifo = tmp_path / "peer"
    os.mkfifo(fifo)
    forged = Marker(
        guest=f"netns:{liar.name}", ifname="eth1", kind="link", host=str(fifo), peer="x"
    )
    liar.exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "x", "netns", other.name)
    liar.exec("ip", "link", "set", "eth1", "alias", forged.format())
    listed = run_pipework("ls", f"netns:{liar.name}", netns=host_ns.name, timeout=20)
    assert listed.returncode == 0 and "UNVERIFIED" in listed.stdout, listed.stderr
    refused = run_pipework("detach", f"netns:{liar.name}", "-i", "eth1", netns=host_ns.name)
    one_line_error(refused, 7, "is not a network namespace file")
    assert "eth1" in links(liar) and "x" in links(other)
    liar.exec("ip", "link", "del", "eth1")
