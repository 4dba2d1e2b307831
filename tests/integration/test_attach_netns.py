"""The engine against the real kernel, with named network namespaces as guests."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from support import infra
from support.checks import addresses, links, only_loopback, routes

from pipework import AddressSpec, AttachSpec, ConflictError, Engine

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def spec(host: str, guest: infra.NetNS, ip: str, **kw) -> AttachSpec:
    return AttachSpec(host=host, guest=f"netns:{guest.name}", address=AddressSpec.parse(ip), **kw)


async def test_two_namespaces_on_a_new_bridge_ping(host_ns, make_netns):
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        ra = await engine.attach(spec("brpwt1", a, "198.18.10.2/24@198.18.10.1"))
        rb = await engine.attach(spec("brpwt1", b, "198.18.10.3/24"))
    assert ra.status == rb.status == "created"
    assert ra.kind == "bridge" and ra.host == "brpwt1" and ra.addresses == ("198.18.10.2/24",)
    assert infra.ping(a, "198.18.10.3") and infra.ping(b, "198.18.10.2")
    # The gateway became the default route.
    default = [r for r in routes(a) if r["dst"] == "default"]
    assert default and default[0]["gateway"] == "198.18.10.1" and default[0]["dev"] == "eth1"
    # Host side: an auto-created bridge with two marked ports, MTU from the bridge.
    host = links(host_ns)
    assert host["brpwt1"]["linkinfo"]["info_kind"] == "bridge"
    ports = [link for link in host.values() if link.get("master") == "brpwt1"]
    assert len(ports) == 2
    assert all(p["ifalias"].startswith("pipework ") for p in ports)
    assert links(a)["eth1"]["mtu"] == host["brpwt1"]["mtu"]


async def test_ipv6_static_addressing_pings(host_ns, make_netns):
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwt6", a, "2001:db8:10::2/64@2001:db8:10::1"))
        await engine.attach(spec("brpwt6", b, "2001:db8:10::3/64"))
    assert "2001:db8:10::2/64" in addresses(a, "eth1")
    assert infra.ping(a, "2001:db8:10::3") and infra.ping(b, "2001:db8:10::2")
    default = [r for r in routes(a, "-6") if r["dst"] == "default"]
    assert default and default[0]["gateway"] == "2001:db8:10::1"


async def test_gateway_outside_the_subnet_gets_an_onlink_route(host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwt2", a, "198.18.12.2/24@198.18.13.1"))
    table = routes(a)
    assert any(r["dst"] == "198.18.13.1" and r.get("scope") == "link" for r in table)
    assert any(r["dst"] == "default" and r["gateway"] == "198.18.13.1" for r in table)


async def test_zero_address_means_up_without_address(host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        result = await engine.attach(spec("brpwt3", a, "0/0"))
    assert result.addresses == ()
    eth1 = links(a)["eth1"]
    assert "UP" in eth1["flags"]
    assert addresses(a, "eth1") == []


async def test_names_mac_and_mtu(host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        result = await engine.attach(
            spec(
                "brpwt4",
                a,
                "198.18.14.2/24",
                ifname="eth2",
                host_ifname="pwtweb1eth2",
                mac="U:myhost.foo.com",
                mtu=1400,
            )
        )
    assert result.host_ifname == "pwtweb1eth2" and result.mac == "02:72:6c:cd:9b:8d"
    guest = links(a)
    assert guest["eth2"]["address"] == "02:72:6c:cd:9b:8d" and guest["eth2"]["mtu"] == 1400
    assert "pwtweb1eth2" in links(host_ns)


async def test_rerun_is_idempotent_and_conflicts_need_force(host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        first = await engine.attach(spec("brpwt5", a, "198.18.15.2/24"))
        again = await engine.attach(spec("brpwt5", a, "198.18.15.2/24"))
        assert (first.status, again.status) == ("created", "unchanged")
        assert again.mac == first.mac
        with pytest.raises(ConflictError) as err:
            await engine.attach(spec("brpwt5", a, "198.18.15.9/24"))
        assert err.value.exit_code == 7
        assert addresses(a, "eth1") == ["198.18.15.2/24"]
        replaced = await engine.attach(spec("brpwt5", a, "198.18.15.9/24", force=True))
    assert replaced.status == "replaced"
    assert addresses(a, "eth1") == ["198.18.15.9/24"]
    assert len([link for link in links(host_ns).values() if link.get("master") == "brpwt5"]) == 1


async def test_an_interface_pipework_did_not_create_is_never_replaced(host_ns, make_netns):
    a = make_netns("a")
    a.exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "pwtpeer")
    async with Engine(host_netns=host_ns.path) as engine:
        with pytest.raises(ConflictError, match="did not create"):
            await engine.attach(spec("brpwt6", a, "0/0", force=True))
    assert set(links(a)) == {"lo", "eth1", "pwtpeer"}
    assert set(links(host_ns)) == {"lo"}


async def test_detach_removes_only_what_pipework_made(host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwt7", a, "198.18.17.2/24"))
        await engine.attach(spec("brpwt7", a, "198.18.18.2/24", ifname="eth2"))
        removed = await engine.detach(f"netns:{a.name}", "eth2")
        assert [m.ifname for m in removed] == ["eth2"]
        assert set(links(a)) == {"lo", "eth1"}
        removed = await engine.detach(f"netns:{a.name}")
        assert [m.ifname for m in removed] == ["eth1"]
        assert await engine.detach(f"netns:{a.name}") == []  # idempotent
    assert only_loopback(a)
    # The bridge stays: other guests may use it.
    assert set(links(host_ns)) == {"lo", "brpwt7"}


async def test_pid_guest(host_ns, make_netns):
    a = make_netns("a")
    proc = infra.run(["ip", "netns", "pids", a.name]).stdout  # no process yet
    assert proc.strip() == ""
    import subprocess

    sleeper = subprocess.Popen(["ip", "netns", "exec", a.name, "sleep", "60"])
    try:
        for _ in range(100):
            pids = infra.run(["ip", "netns", "pids", a.name]).stdout.split()
            if pids:
                break
            time.sleep(0.05)
        async with Engine(host_netns=host_ns.path) as engine:
            result = await engine.attach(
                AttachSpec(host="brpwt8", guest=f"pid:{pids[0]}", address=AddressSpec.parse("0/0"))
            )
        assert result.guest.runtime == "pid" and result.guest.pid == int(pids[0])
        assert "eth1" in links(a)
    finally:
        sleeper.terminate()
        sleeper.wait()


async def test_netns_path_guest(host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        result = await engine.attach(
            AttachSpec(host="brpwt9", guest=a.path, address=AddressSpec.parse("198.18.19.2/24"))
        )
    assert result.guest.runtime == "path"
    assert addresses(a, "eth1") == ["198.18.19.2/24"]


async def test_gratuitous_arp_reaches_the_neighbours(host_ns, make_netns):
    peer, newcomer = make_netns("p"), make_netns("n")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwta", peer, "198.18.20.1/24"))
        peer.exec("sysctl", "-q", "-w", "net.ipv4.conf.eth1.arp_accept=1")
        result = await engine.attach(spec("brpwta", newcomer, "198.18.20.2/24"))
    # No traffic was sent to the newcomer: only its announcement can teach the
    # peer its MAC address.
    for _ in range(50):
        neigh = json.loads(peer.exec("ip", "-j", "neigh", "show", "198.18.20.2").stdout)
        if neigh and neigh[0].get("lladdr"):
            break
        await anyio.sleep(0.05)
    assert neigh and neigh[0]["lladdr"] == result.mac


async def test_attach_many_runs_concurrently(host_ns, make_netns):
    guests = [make_netns(f"m{i}") for i in range(12)]
    specs = [spec("brpwtm", g, f"198.18.21.{i + 2}/24") for i, g in enumerate(guests)]
    specs.append(spec("brpwtm", guests[0], "198.18.21.99/24"))  # conflicts with the first
    async with Engine(host_netns=host_ns.path) as engine:
        results = await engine.attach_many(specs, limit=4)
    assert [getattr(r, "status", None) for r in results[:12]] == ["created"] * 12
    assert isinstance(results[12], ConflictError)
    assert infra.ping(guests[3], "198.18.21.13")
