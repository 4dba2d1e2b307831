"""Make before break: ``--force`` and repair build the new attachment beside
the old one, and a failing new one leaves the old one whole; the guest's
default route comes back on detach (issue 14, finding 8)."""

from __future__ import annotations

import pytest
from support import infra
from support.checks import addresses, links, routes

from pipework import AddressSpec, AttachSpec, Engine
from pipework.engine import PipeworkError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.usefixtures("dhcp_run_dir"),
]

BRIDGE = "brpwtm"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def spec(guest: infra.NetNS, ipspec: str, **kw: object) -> AttachSpec:
    options = {k: kw.pop(k) for k in ("timeout",) if k in kw}
    return AttachSpec(
        host=BRIDGE,
        guest=f"netns:{guest.name}",
        address=AddressSpec.parse(ipspec, **options),
        **kw,  # type: ignore[arg-type]
    )


def snapshot(guest: infra.NetNS, host: infra.NetNS) -> dict[str, object]:
    eth1 = links(guest)["eth1"]
    peer = {n: e for n, e in links(host).items() if n.startswith("pw")}
    return {
        "index": eth1["ifindex"],
        "alias": eth1.get("ifalias"),
        "mac": eth1["address"],
        "up": "UP" in eth1["flags"],
        "addresses": addresses(guest, "eth1"),
        "routes": routes(guest),
        "host sides": {
            n: (e["ifindex"], e.get("ifalias"), e.get("master")) for n, e in peer.items()
        },
    }


def pings(host: infra.NetNS, address: str) -> bool:
    done = host.exec("ping", "-c", "1", "-W", "2", address, check=False)
    return done.returncode == 0


def give_e0(guest: infra.NetNS) -> None:
    """The reproduction's guest: ``default via 198.18.120.1 dev e0``."""
    for argv in (
        ("link", "add", "e0", "type", "veth", "peer", "name", "e0p"),
        ("addr", "add", "198.18.120.2/24", "dev", "e0"),
        ("link", "set", "e0", "up"),
        ("link", "set", "e0p", "up"),
        ("route", "add", "default", "via", "198.18.120.1", "dev", "e0"),
    ):
        guest.exec("ip", *argv)


async def test_force_with_a_failing_dhcp_keeps_the_old_static_attachment(host_ns, make_netns):
    guest = make_netns("m")
    give_e0(guest)
    host_ns.exec("ip", "link", "add", BRIDGE, "type", "bridge")
    host_ns.exec("ip", "addr", "add", "198.18.121.1/24", "dev", BRIDGE)
    host_ns.exec("ip", "link", "set", BRIDGE, "up")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(guest, "198.18.121.2/24@198.18.121.1"))
        assert pings(host_ns, "198.18.121.2")
        before = snapshot(guest, host_ns)
        # No DHCP server: the new one cannot get a lease.
        with pytest.raises(PipeworkError):
            await engine.attach(spec(guest, "udhcpc", timeout=3, force=True))
        assert snapshot(guest, host_ns) == before  # the same interface, whole
        assert pings(host_ns, "198.18.121.2")
        assert not [n for n in links(guest) if n.startswith("pw")]  # no temporary left
        await engine.detach(f"netns:{guest.name}")
    host_ns.exec("ip", "link", "del", BRIDGE)


async def test_force_replaces_beside_and_takes_the_name(host_ns, make_netns):
    guest = make_netns("m")
    async with Engine(host_netns=host_ns.path) as engine:
        old = await engine.attach(spec(guest, "198.18.122.2/24"))
        new = await engine.attach(spec(guest, "198.18.123.2/24@198.18.123.1", force=True))
        assert new.status == "replaced" and new.ifname == "eth1"
        assert new.host_ifname != old.host_ifname  # built beside the old one
        assert addresses(guest, "eth1") == ["198.18.123.2/24"]
        hosts = {n for n in links(host_ns) if n.startswith("pw")}
        assert hosts == {new.host_ifname}  # the old host side went with the old one
        again = await engine.attach(spec(guest, "198.18.123.2/24@198.18.123.1"))
        assert again.status == "unchanged"
        await engine.detach(f"netns:{guest.name}", prune_bridges=True)
    assert not {n for n in links(host_ns) if n.startswith("pw")}


async def test_repair_with_a_failing_dhcp_keeps_what_was_there(host_ns, make_netns, dhcp_server):
    from support.dhcp import client_pids_in

    server = dhcp_server(bridge=BRIDGE)
    guest = make_netns("m")
    kept = spec(guest, "udhcpc-f", timeout=3, mac="U:" + guest.name)
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(kept)
        (address,) = att.addresses
        # The server goes, then the kept client dies: a re-run must repair it.
        server.stop()
        for entry in client_pids_in(infra.netns_key(guest.path)):
            infra.run(["kill", "-9", entry.split()[1]])
        before = snapshot(guest, host_ns)
        assert (await engine.examine(kept)).action == "repair"
        with pytest.raises(PipeworkError):
            await engine.attach(kept)
        after = snapshot(guest, host_ns)
        assert after == before and address in after["addresses"]
        await engine.detach(f"netns:{guest.name}")


async def test_detach_gives_back_the_default_route_it_replaced(host_ns, make_netns):
    guest = make_netns("m")
    give_e0(guest)
    original = [r for r in routes(guest) if r["dst"] == "default"]
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(guest, "198.18.121.2/24@198.18.121.1"))
        assert [r["dev"] for r in routes(guest) if r["dst"] == "default"] == ["eth1"]
        await engine.detach(f"netns:{guest.name}", prune_bridges=True)
    assert [r for r in routes(guest) if r["dst"] == "default"] == original


async def test_detach_leaves_a_default_route_set_since_alone(host_ns, make_netns):
    guest = make_netns("m")
    give_e0(guest)
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(guest, "198.18.121.2/24@198.18.121.1"))
        # Someone else sets the default route meanwhile: detach keeps it.
        guest.exec("ip", "link", "add", "e9", "type", "veth", "peer", "name", "e9p")
        guest.exec("ip", "addr", "add", "198.18.124.2/24", "dev", "e9")
        guest.exec("ip", "link", "set", "e9", "up")
        guest.exec("ip", "route", "replace", "default", "via", "198.18.124.1", "dev", "e9")
        await engine.detach(f"netns:{guest.name}", prune_bridges=True)
    default = [(r["gateway"], r["dev"]) for r in routes(guest) if r["dst"] == "default"]
    assert default == [("198.18.124.1", "e9")]
