"""Announcements and IPv6 autoconfiguration on the interfaces pipework creates,
seen from outside: a neighbour's ARP cache, the guest's and the host side's
IPv6 addresses (engine/announcing.py)."""

from __future__ import annotations

import json
import time

import pytest
from support import infra
from support.checks import links

from pipework import AddressSpec, AttachSpec, ConflictError, Engine

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def spec(host: str, guest: infra.NetNS, ip: str, **kw) -> AttachSpec:
    return AttachSpec(host=host, guest=f"netns:{guest.name}", address=AddressSpec.parse(ip), **kw)


def learned(peer: infra.NetNS, ip: str, seconds: float = 2.5) -> str | None:
    """The MAC address ``peer`` has for ``ip``, waiting up to ``seconds`` for one."""
    deadline = time.monotonic() + seconds
    while True:
        neigh = json.loads(peer.exec("ip", "-j", "neigh", "show", ip).stdout)
        if neigh and neigh[0].get("lladdr"):
            return str(neigh[0]["lladdr"])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def ipv6_addresses(ns: infra.NetNS, ifname: str) -> list[str]:
    out = json.loads(ns.exec("ip", "-j", "-6", "addr", "show", "dev", ifname).stdout)
    return [a["local"] for entry in out for a in entry.get("addr_info", [])]


def listening_peer(host: infra.NetNS, make_netns, bridge: str, ip: str) -> infra.NetNS:
    """A guest on ``bridge`` that takes new neighbours from gratuitous ARPs."""
    peer = make_netns("p")
    argv = ["ip", "netns", "exec", host.name, "ip", "link"]
    infra.run([*argv, "add", bridge, "type", "bridge"])
    infra.run([*argv, "set", bridge, "up"])
    infra.run(
        [*argv, "add", f"{bridge}p", "type", "veth", "peer", "name", "eth1", "netns", peer.name]
    )
    infra.run([*argv, "set", f"{bridge}p", "master", bridge, "up"])
    peer.exec("ip", "addr", "add", ip, "dev", "eth1")
    peer.exec("ip", "link", "set", "eth1", "up")
    peer.exec("sysctl", "-q", "-w", "net.ipv4.conf.eth1.arp_accept=1")
    return peer


def test_the_cli_announces_and_a_neighbour_learns_the_mac(host_ns, make_netns, run_pipework):
    peer = listening_peer(host_ns, make_netns, "brpwtn1", "198.18.40.1/24")
    guest = make_netns("n")
    done = run_pipework("brpwtn1", f"netns:{guest.name}", "198.18.40.2/24", netns=host_ns.name)
    assert done.returncode == 0, done.stderr
    mac = links(guest)["eth1"]["address"]
    # Nothing was sent to the newcomer, and it sent nothing but its announcement.
    assert learned(peer, "198.18.40.2") == mac
    # The kernel sent it (arp_notify on the interface, a MAC set to itself).
    sysctl = guest.exec("sysctl", "-n", "net.ipv4.conf.eth1.arp_notify").stdout.strip()
    assert sysctl == "1"


def test_no_announce_teaches_nobody(host_ns, make_netns, run_pipework):
    peer = listening_peer(host_ns, make_netns, "brpwtn2", "198.18.41.1/24")
    guest = make_netns("n")
    done = run_pipework(
        "brpwtn2", f"netns:{guest.name}", "198.18.41.2/24", "--no-announce", netns=host_ns.name
    )
    assert done.returncode == 0, done.stderr
    assert learned(peer, "198.18.41.2", seconds=0.6) is None
    # Traffic still flows: the guest answers when asked.
    assert infra.ping(peer, "198.18.41.2")


async def test_every_guest_of_a_batch_is_announced(host_ns, make_netns):
    peer = listening_peer(host_ns, make_netns, "brpwtn3", "198.18.42.1/24")
    guests = [make_netns(f"b{i}") for i in range(8)]
    specs = [spec("brpwtn3", g, f"198.18.42.{i + 10}/24") for i, g in enumerate(guests)]
    async with Engine(host_netns=host_ns.path) as engine:
        results = await engine.attach_many(specs)
    macs = {f"198.18.42.{i + 10}": getattr(r, "mac", None) for i, r in enumerate(results)}
    assert all(macs.values()), results
    assert {ip: learned(peer, ip) for ip in macs} == macs


async def test_an_ipv4_attachment_has_no_ipv6_autoconfiguration(host_ns, make_netns):
    guest = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        result = await engine.attach(spec("brpwtn4", guest, "198.18.43.2/24"))
    time.sleep(0.2)  # a link-local address would be there by now
    assert ipv6_addresses(guest, "eth1") == []
    # Nor on the host side, a bridge port.
    host_side = next(
        name for name, link in links(host_ns).items() if link.get("master") == "brpwtn4"
    )
    assert ipv6_addresses(host_ns, host_side) == []
    assert result.addresses == ("198.18.43.2/24",)


async def test_ipv6_link_local_when_asked_and_with_an_ipv6_address(host_ns, make_netns):
    asked, six = make_netns("l"), make_netns("s")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwtn5", asked, "198.18.44.2/24", ipv6_link_local=True))
        await engine.attach(spec("brpwtn5", six, "2001:db8:44::2/64"))
    assert [a for a in ipv6_addresses(asked, "eth1") if a.startswith("fe80:")]
    addresses = ipv6_addresses(six, "eth1")
    assert "2001:db8:44::2" in addresses and [a for a in addresses if a.startswith("fe80:")]


def test_the_cli_flag_keeps_link_local(host_ns, make_netns, run_pipework):
    guest = make_netns("c")
    done = run_pipework(
        "brpwtn6", f"netns:{guest.name}", "198.18.45.2/24", "--ipv6-link-local", netns=host_ns.name
    )
    assert done.returncode == 0, done.stderr
    assert [a for a in ipv6_addresses(guest, "eth1") if a.startswith("fe80:")]


async def test_link_local_is_part_of_the_configuration(host_ns, make_netns):
    guest = make_netns("f")
    async with Engine(host_netns=host_ns.path) as engine:
        first = await engine.attach(spec("brpwtn7", guest, "198.18.46.2/24"))
        again = await engine.attach(spec("brpwtn7", guest, "198.18.46.2/24"))
        with pytest.raises(ConflictError, match="another configuration"):
            await engine.attach(spec("brpwtn7", guest, "198.18.46.2/24", ipv6_link_local=True))
        # --no-announce says how, not what: the same attachment.
        quiet = await engine.attach(spec("brpwtn7", guest, "198.18.46.2/24", announce=False))
    assert (first.status, again.status, quiet.status) == ("created", "unchanged", "unchanged")


async def test_an_interface_too_small_for_ipv6_still_attaches(host_ns, make_netns):
    # Below 1280 bytes the kernel gives an interface no IPv6 at all, and
    # refuses IPv6 settings for it: the attach goes on without them.
    peer = listening_peer(host_ns, make_netns, "brpwtn8", "198.18.47.1/24")
    guest = make_netns("m")
    async with Engine(host_netns=host_ns.path) as engine:
        result = await engine.attach(spec("brpwtn8", guest, "198.18.47.2/24", mtu=1000))
    assert links(guest)["eth1"]["mtu"] == 1000
    assert result.addresses == ("198.18.47.2/24",)
    assert learned(peer, "198.18.47.2") == result.mac


def listening_nic(host: infra.NetNS, ip: str) -> None:
    """A veth end ``pwtnic0`` that plays a NIC; its peer ``pwtnicp`` stays on
    the host with ``ip`` and takes new neighbours from gratuitous ARPs."""
    host.exec("ip", "link", "add", "pwtnic0", "type", "veth", "peer", "name", "pwtnicp")
    host.exec("ip", "link", "set", "pwtnic0", "up")
    host.exec("ip", "link", "set", "pwtnicp", "up")
    host.exec("ip", "addr", "add", ip, "dev", "pwtnicp")
    host.exec("sysctl", "-q", "-w", "net.ipv4.conf.pwtnicp.arp_accept=1")


def test_a_macvlan_child_is_announced_by_its_kernel(host_ns, make_netns, run_pipework):
    listening_nic(host_ns, "198.18.49.1/24")
    guest = make_netns("v")
    done = run_pipework(
        "pwtnic0", f"netns:{guest.name}", "198.18.49.2/24", "--kind", "macvlan",
        netns=host_ns.name,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert learned(host_ns, "198.18.49.2") == links(guest)["eth1"]["address"]
    notify = guest.exec("sysctl", "-n", "net.ipv4.conf.eth1.arp_notify").stdout.strip()
    assert notify == "1" and ipv6_addresses(guest, "eth1") == []


async def test_a_nic_passed_through_is_announced_by_a_frame(host_ns, make_netns, run_pipework):
    listening_nic(host_ns, "198.18.48.1/24")
    guest = make_netns("d")
    done = run_pipework(
        "--direct-phys", "pwtnic0", "-i", "lan0", f"netns:{guest.name}", "198.18.48.2/24",
        netns=host_ns.name,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert learned(host_ns, "198.18.48.2") == links(guest)["lan0"]["address"]
    # pipework changed neither the NIC's MAC nor its IPv4 and IPv6 settings.
    notify = guest.exec("sysctl", "-n", "net.ipv4.conf.lan0.arp_notify").stdout.strip()
    mode = guest.exec("sysctl", "-n", "net.ipv6.conf.lan0.addr_gen_mode").stdout.strip()
    assert (notify, mode) == ("0", "0")
    async with Engine(host_netns=host_ns.path) as engine:
        removed = await engine.detach(f"netns:{guest.name}")
    assert [m.kind for m in removed] == ["phys"] and "pwtnic0" in links(host_ns)
