"""Link backends against the real kernel: macvlan, phys, VLANs on Linux
bridges, and (where this kernel has them) ipvlan, dummy, 802.1q and IPoIB.

A veth end inside the test's host namespace stands in for a physical NIC.
"""

from __future__ import annotations

import json
import os

import pytest
from support import infra, kernel
from support.checks import addresses, links, only_loopback
from support.faults import attach_with_each_fault

from pipework import AddressSpec, AttachSpec, Engine, HostInterfaceError

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def nic(host_ns: infra.NetNS, name: str = "pwtnic0", mtu: int = 1500) -> str:
    """A veth pair in the host namespace, both ends up; returns the "NIC" end
    (its peer is NAME with its last character replaced by ``p``)."""
    peer = name[:-1] + "p"
    host_ns.exec("ip", "link", "add", name, "mtu", str(mtu), "type", "veth", "peer", "name", peer)
    host_ns.exec("ip", "link", "set", name, "up")
    host_ns.exec("ip", "link", "set", peer, "up")
    return name


def spec(host: str, guest: infra.NetNS, ip: str = "0/0", **kw) -> AttachSpec:
    return AttachSpec(host=host, guest=f"netns:{guest.name}", address=AddressSpec.parse(ip), **kw)


def attach_json(run_pipework, host_ns, *args: str) -> dict:
    result = run_pipework(*args, "--json", netns=host_ns.name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line(result, code: int, fragment: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


# -- macvlan -------------------------------------------------------------------------


def test_two_containers_on_macvlan_children_of_one_parent(host_ns, make_container, run_pipework):
    parent = nic(host_ns, mtu=1400)
    a, b = make_container(), make_container()
    ra = attach_json(run_pipework, host_ns, parent, a.name, "198.18.70.2/24")
    rb = attach_json(run_pipework, host_ns, parent, b.name, "198.18.70.3/24")
    assert ra["kind"] == rb["kind"] == "macvlan" and ra["host"] == parent
    assert ra["host_ifname"] is None and ra["mtu"] == 1400  # MTU from the parent
    assert infra.ping(a, "198.18.70.3") and infra.ping(b, "198.18.70.2")
    info = links(a)["eth1"]["linkinfo"]
    assert info["info_kind"] == "macvlan" and info["info_data"]["mode"] == "bridge"
    # Nothing new on the host side: the children live in the containers.
    assert set(links(host_ns)) == {"lo", parent, "pwtnicp"}


@pytest.mark.parametrize("mode", ["private", "vepa"])
async def test_macvlan_modes_that_keep_siblings_apart(host_ns, make_netns, mode):
    parent = nic(host_ns)
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(parent, a, "198.18.71.2/24", options={"mode": mode}))
        await engine.attach(spec(parent, b, "198.18.71.3/24", options={"mode": mode}))
    assert links(a)["eth1"]["linkinfo"]["info_data"]["mode"] == mode
    # private never forwards between siblings; vepa needs a hairpin switch,
    # and the veth peer is none.
    assert not infra.ping(a, "198.18.71.3", timeout=2)


async def test_macvlan_passthru_takes_the_whole_parent(host_ns, make_netns):
    parent = nic(host_ns)
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(parent, a, "198.18.72.2/24", options={"mode": "passthru"}))
        assert links(a)["eth1"]["linkinfo"]["info_data"]["mode"] == "passthru"
        # A passthru parent has room for one child only.
        with pytest.raises(HostInterfaceError, match=f"{parent} refused a new macvlan interface"):
            await engine.attach(spec(parent, b, "198.18.72.3/24", options={"mode": "passthru"}))
    assert only_loopback(b)


async def test_macvlan_detach_removes_the_child_and_keeps_the_parent(host_ns, make_netns):
    parent = nic(host_ns)
    a = make_netns("a")
    before = links(host_ns)
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(parent, a, "198.18.73.2/24"))
        removed = await engine.detach(f"netns:{a.name}")
    assert [m.ifname for m in removed] == ["eth1"]
    assert only_loopback(a) and links(host_ns).keys() == before.keys()


def test_mtu_larger_than_the_parent_is_refused(host_ns, make_netns, run_pipework):
    parent = nic(host_ns, mtu=1400)
    guest = make_netns("g")
    result = run_pipework(parent, f"netns:{guest.name}", "0/0", "--mtu", "1500", netns=host_ns.name)
    one_line(result, 6, f"MTU 1500 is larger than {parent} allows (at most 1400)")
    assert only_loopback(guest)


async def test_macvlan_rollback_after_every_step(host_ns, make_netns, monkeypatch):
    parent = nic(host_ns)
    guest = make_netns("g")
    before = set(links(host_ns))

    def check(step: str) -> None:
        assert only_loopback(guest), f"fault after {step}"
        assert set(links(host_ns)) == before, f"fault after {step}"

    gw = spec(parent, guest, "198.18.74.2/24@198.18.74.1")
    faulted = await attach_with_each_fault(monkeypatch, host_ns.path, gw, check)
    assert len(faulted) == 3, faulted  # the macvlan child, the guest interface, the route
    assert "eth1" in links(guest)


async def test_macvlan_on_a_vlan_sub_interface(host_ns, make_netns):
    kernel.require("vlan")
    parent = nic(host_ns)
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(parent, a, "198.18.75.2/24", tag="10"))
        await engine.attach(spec(parent, b, "198.18.75.3/24", tag="10"))
        sub = links(host_ns)[f"{parent}.10"]
        assert sub["linkinfo"]["info_data"]["id"] == 10
        assert infra.ping(a, "198.18.75.3")
        await engine.detach(f"netns:{a.name}")
        assert f"{parent}.10" in links(host_ns)  # b still uses it
        await engine.detach(f"netns:{b.name}")
    assert f"{parent}.10" not in links(host_ns)


async def test_a_vlan_sub_interface_the_user_made_is_left_alone(host_ns, make_netns):
    kernel.require("vlan")
    parent = nic(host_ns)
    host_ns.exec(
        "ip", "link", "add", "link", parent, "name", f"{parent}.20", "type", "vlan", "id", "20"
    )
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(parent, a, "198.18.76.2/24", tag="20"))
        await engine.detach(f"netns:{a.name}")
    assert f"{parent}.20" in links(host_ns)


# -- ipvlan, dummy, IPoIB (kernel permitting) ------------------------------------


@pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
async def test_ipvlan_children_reach_each_other(host_ns, make_netns, mode):
    kernel.require("ipvlan")
    parent = nic(host_ns)
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        ra = await engine.attach(
            spec(parent, a, "198.18.77.2/24", kind="ipvlan", options={"mode": mode})
        )
        await engine.attach(
            spec(parent, b, "198.18.77.3/24", kind="ipvlan", options={"mode": mode})
        )
    assert ra.kind == "ipvlan" and ra.mac == links(host_ns)[parent]["address"]
    assert infra.ping(a, "198.18.77.3")


async def test_dummy_takes_every_kind_of_address(host_ns, make_netns):
    kernel.require("dummy")
    guest = make_netns("g")
    async with Engine(host_netns=host_ns.path) as engine:
        r4 = await engine.attach(spec("dummy0", guest, "198.18.78.1/32"))
        await engine.attach(spec("dummy0", guest, "2001:db8:78::1/128", ifname="eth2"))
        await engine.attach(spec("dummy0", guest, "0/0", ifname="eth3"))
    assert r4.kind == "dummy" and r4.host_ifname is None
    assert addresses(guest, "eth1") == ["198.18.78.1/32"]
    assert addresses(guest, "eth2") == ["2001:db8:78::1/128"]
    assert links(guest)["eth3"]["linkinfo"]["info_kind"] == "dummy"
    assert only_loopback(host_ns)


async def test_ipoib_child_on_a_partition(make_netns):
    """Needs real InfiniBand: PIPEWORK_TEST_IB names a host IB interface the
    test may add (and then remove) a child of, in the machine's namespace."""
    kernel.require("ipoib")
    parent = os.environ.get("PIPEWORK_TEST_IB")
    if not parent or parent not in kernel.infiniband_interfaces():
        pytest.skip("set PIPEWORK_TEST_IB to an InfiniBand interface to test IPoIB")
    guest = make_netns("g")
    async with Engine() as engine:
        result = await engine.attach(spec(parent, guest, "198.18.83.2/24", tag="8001"))
        assert result.kind == "ipoib" and result.ifname == "ib0"
        info = links(guest)["ib0"]["linkinfo"]
        assert info["info_kind"] == "ipoib" and info["info_data"]["pkey"] == 0x8001
        await engine.detach(f"netns:{guest.name}")
    assert only_loopback(guest)


@pytest.mark.parametrize(
    ("feature", "args", "message"),
    [
        ("ipvlan", ["--kind", "ipvlan"], "this kernel has no ipvlan support (module ipvlan)"),
        ("dummy", [], "this kernel has no dummy support (module dummy)"),
        ("vlan", ["@10"], "this kernel has no vlan support (module 8021q)"),
        ("ipoib", ["--kind", "ipoib"], "this kernel has no ipoib support (module ib_ipoib)"),
        (
            "bridge VLAN filtering",
            ["@10", "--kind", "bridge"],
            "this kernel has no bridge VLAN filtering support",
        ),
    ],
)
def test_missing_kernel_support_is_one_clear_line(
    host_ns, make_netns, run_pipework, feature, args, message
):
    if kernel.supports(feature):
        pytest.skip(f"this kernel has {feature} support: the tests above use it")
    parent = nic(host_ns) if feature != "dummy" else "dummy0"
    host = "brpwtv" if feature == "bridge VLAN filtering" else parent
    guest = make_netns("g")
    before = set(links(host_ns))
    result = run_pipework(host, f"netns:{guest.name}", "198.18.79.2/24", *args, netns=host_ns.name)
    one_line(result, 8, message)
    assert set(links(host_ns)) == before and only_loopback(guest)


# -- physical pass-through -------------------------------------------------------------


async def test_direct_phys_moves_the_nic_and_gives_it_back(host_ns, make_netns, run_pipework):
    parent = nic(host_ns)
    host_ns.exec("ip", "addr", "add", "198.18.80.1/24", "dev", "pwtnicp")
    original_mac = links(host_ns)[parent]["address"]
    guest = make_netns("g")
    result = attach_json(
        run_pipework, host_ns, "--direct-phys", parent, "-i", "lan0",
        f"netns:{guest.name}", "198.18.80.2/24", "02:00:5e:10:00:01",
    )  # fmt: skip
    assert result["kind"] == "phys" and result["host"] == parent and result["ifname"] == "lan0"
    assert parent not in links(host_ns)
    moved = links(guest)["lan0"]
    assert moved["address"] == "02:00:5e:10:00:01" and f"host={parent}" in moved["ifalias"]
    assert infra.ping(host_ns, "198.18.80.2")
    again = run_pipework(
        "--direct-phys", parent, "-i", "lan0", f"netns:{guest.name}", "198.18.80.2/24",
        "02:00:5e:10:00:01", netns=host_ns.name,
    )  # fmt: skip
    assert again.returncode == 0 and again.stdout.startswith("unchanged"), again.stderr
    async with Engine(host_netns=host_ns.path) as engine:
        removed = await engine.detach(f"netns:{guest.name}")
    assert [m.kind for m in removed] == ["phys"]
    back = links(host_ns)[parent]
    assert back["address"] == original_mac and not back.get("ifalias")
    assert "UP" in back["flags"] and only_loopback(guest)


async def test_direct_phys_rollback_returns_the_nic(host_ns, make_netns, monkeypatch):
    parent = nic(host_ns)
    before = links(host_ns)[parent]
    guest = make_netns("g")

    def check(step: str) -> None:
        back = links(host_ns).get(parent)
        assert back is not None, f"fault after {step}"
        assert back["address"] == before["address"] and only_loopback(guest)

    moved = spec(parent, guest, "198.18.81.2/24", direct_phys=True, mac="U:phys")
    faulted = await attach_with_each_fault(monkeypatch, host_ns.path, moved, check)
    assert len(faulted) == 2, faulted  # two steps: the host's record, the move
    assert parent not in links(host_ns)
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.detach(f"netns:{guest.name}")  # and its record goes with it
    assert links(host_ns)[parent]["address"] == before["address"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--direct-phys", "brpwtx"], 6, "brpwtx does not exist"),
        (["--direct-phys", "pwtnic0", "@10"], 2, "phys interfaces cannot carry a VLAN tag"),
        (["pwtnic0", "--mode", "sideways"], 2, "macvlan has no mode 'sideways'"),
        (["pwtnic0", "--kind", "ipvlan", "02:00:00:00:00:01"], 2, "cannot take a MAC address"),
        (
            ["pwtnic0", "--kind", "ipoib", "02:00:00:00:00:01"],
            2,
            "IPoIB interfaces cannot take a MAC",
        ),
        (["pwtnic0", "-o", "colour=red"], 2, "the macvlan backend has no option 'colour'"),
        (["pwtnic0", "01:00:5e:00:00:01"], 2, "multicast MAC address"),
        (["pwtnic0", "@4095"], 2, "VLAN ID 4095 is out of range"),
        (["pwtnic0", "--kind", "warp"], 8, "no link backend named 'warp'"),
    ],
)
def test_bad_input_leaves_nothing(host_ns, make_netns, run_pipework, args, code, message):
    nic(host_ns)
    host_ns.exec("ip", "link", "add", "brpwtb", "type", "bridge")
    guest = make_netns("g")
    before = links(host_ns)
    host, rest = args[0], args[1:]
    if host == "--direct-phys":
        host, rest = args[1], [args[0], *args[2:]]
    result = run_pipework(host, f"netns:{guest.name}", "0/0", *rest, netns=host_ns.name)
    one_line(result, code, message)
    assert links(host_ns).keys() == before.keys() and only_loopback(guest)


def test_direct_phys_on_a_bridge_is_refused(host_ns, make_netns, run_pipework):
    host_ns.exec("ip", "link", "add", "brpwtb", "type", "bridge")
    guest = make_netns("g")
    result = run_pipework(
        "--direct-phys", "brpwtb", f"netns:{guest.name}", "0/0", netns=host_ns.name
    )
    one_line(result, 2, "--direct-phys moves a NIC into the guest; brpwtb is a bridge")
    assert set(links(host_ns)) == {"lo", "brpwtb"} and only_loopback(guest)


# -- selection -------------------------------------------------------------------------


def test_host_interface_by_mac_prefers_the_nic(host_ns, make_netns, run_pipework):
    parent = nic(host_ns)
    mac = links(host_ns)[parent]["address"]
    # A bridge with the same MAC must not win over the NIC.
    host_ns.exec("ip", "link", "add", "brpwtm", "address", mac, "type", "bridge")
    guest = make_netns("g")
    result = attach_json(run_pipework, host_ns, f"mac:{mac.upper()}", f"netns:{guest.name}", "0/0")
    assert result["kind"] == "macvlan" and result["host"] == parent


def test_host_interface_by_mac_ambiguous_or_unknown(host_ns, make_netns, run_pipework):
    nic(host_ns, "pwtmac0")
    nic(host_ns, "pwtmbc0")
    mac = "02:00:5e:10:00:42"
    host_ns.exec("ip", "link", "set", "pwtmac0", "address", mac)
    host_ns.exec("ip", "link", "set", "pwtmbc0", "address", mac)
    guest = make_netns("g")
    before = links(host_ns)
    result = run_pipework(f"mac:{mac}", f"netns:{guest.name}", "0/0", netns=host_ns.name)
    one_line(result, 6, f"MAC address {mac} is on several interfaces (pwtmac0, pwtmbc0)")
    result = run_pipework("mac:02:00:5e:10:00:43", f"netns:{guest.name}", "0/0", netns=host_ns.name)
    one_line(result, 6, "no host interface has MAC address 02:00:5e:10:00:43")
    assert links(host_ns).keys() == before.keys() and only_loopback(guest)


# -- VLANs on Linux bridges ------------------------------------------------------------


async def test_vlans_on_a_linux_bridge_isolate(host_ns, make_netns):
    kernel.require("bridge VLAN filtering")
    a, b, c = make_netns("a"), make_netns("b"), make_netns("c")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwtv", a, "198.18.82.2/24", vlan=10))
        await engine.attach(spec("brpwtv", b, "198.18.82.3/24", vlan=10))
        await engine.attach(spec("brpwtv", c, "198.18.82.4/24", vlan=20))
    assert infra.ping(a, "198.18.82.3")
    assert not infra.ping(c, "198.18.82.2", timeout=2)
    assert not infra.ping(c, "198.18.82.3", timeout=2)
