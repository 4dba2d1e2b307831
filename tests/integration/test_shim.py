"""``pipework shim``: the host reaches its own macvlan guests through a macvlan
of its own on the parent (real kernel).

A test namespace plays the host, a veth end in it stands in for the NIC
(its peer up, so the NIC has carrier), and netns guests get macvlan children
of that NIC through pipework itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import infra
from support.checks import addresses, links, one_line_error, routes
from support.faults import InjectedFault, fault_after

from pipework import Engine
from pipework.apps import shim

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PARENT = "pwtnic0"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def nic(host_ns: infra.NetNS, name: str = PARENT, mtu: int = 1500) -> str:
    """A veth pair in the host namespace, both ends up; returns the "NIC" end."""
    peer = name + "p"
    host_ns.exec("ip", "link", "add", name, "mtu", str(mtu), "type", "veth", "peer", "name", peer)
    host_ns.exec("ip", "link", "set", name, "up")
    host_ns.exec("ip", "link", "set", peer, "up")
    return name


def ok(result) -> str:
    assert result.returncode == 0, (result.returncode, result.stderr)
    return result.stdout


def state(host_ns: infra.NetNS) -> tuple:
    """What the host namespace holds: interfaces, addresses, routes (both families)."""
    ifaces = links(host_ns)
    return (
        sorted(ifaces),
        {name: addresses(host_ns, name) for name in ifaces},
        routes(host_ns),
        routes(host_ns, "-6"),
    )


def listed(run_pipework, host_ns) -> list[dict]:
    return json.loads(ok(run_pipework("ls", "--json", netns=host_ns.name)))["shims"]


# -- the workaround ------------------------------------------------------------------------
def test_the_host_pings_its_macvlan_guest_over_the_shim(host_ns, make_netns, run_pipework):
    parent = nic(host_ns)
    guest = make_netns("g")
    ok(run_pipework(parent, f"netns:{guest.name}", "198.18.42.2/24", netns=host_ns.name))
    before = state(host_ns)
    assert not infra.ping(host_ns, "198.18.42.2", timeout=2)

    args = ("shim", parent, "198.18.42.254/32", "--route", "198.18.42.0/24")
    made = json.loads(ok(run_pipework(*args, "--json", netns=host_ns.name)))
    name = shim.shim_name(parent)
    assert made["status"] == "created" and made["name"] == name and made["parent"] == parent
    assert made["addresses"] == ["198.18.42.254/32"] and made["routes"] == ["198.18.42.0/24"]
    info = links(host_ns)[name]
    assert info["linkinfo"]["info_kind"] == "macvlan"
    assert info["linkinfo"]["info_data"]["mode"] == "bridge"
    assert info["link"] == parent and info["mtu"] == 1500 and "UP" in info["flags"]
    assert info["ifalias"].startswith("pipework shim parent=pwtnic0 cfg=")
    for key in ("accept_ra", "autoconf"):
        assert host_ns.exec("cat", f"/proc/sys/net/ipv6/conf/{name}/{key}").stdout.strip() == "0"
    assert not [
        a
        for a in json.loads(host_ns.exec("ip", "-j", "-6", "addr", "show", "dev", name).stdout)
        if a.get("addr_info")
    ]  # an IPv4 shim has no IPv6 (no link-local)
    assert infra.ping(host_ns, "198.18.42.2") and infra.ping(guest, "198.18.42.254")

    again = ok(run_pipework(*args, netns=host_ns.name))
    assert again.startswith(f"unchanged: shim {name} on {parent} (198.18.42.254/32;")

    # ls: the attachments as before, the shim in a section (and key) of its own.
    (row,) = listed(run_pipework, host_ns)
    assert row == {**made, "status": "ok"}
    table = ok(run_pipework("ls", netns=host_ns.name))
    assert "\n\nSHIM " in table and f"\n{name}  {parent}  " in table
    attachments = json.loads(ok(run_pipework("ls", "--json", netns=host_ns.name)))["attachments"]
    # (ls scans every namespace on the machine: only this test's guest counts.)
    assert [
        (a["ifname"], a["kind"], a["state"])
        for a in attachments
        if a["guest"]["key"] == f"netns:{guest.name}"
    ] == [("eth1", "macvlan", "attached")]
    assert "shim" not in ok(run_pipework("gc", "--dry-run", netns=host_ns.name))

    out = ok(run_pipework("shim", parent, "--remove", netns=host_ns.name))
    assert out.strip() == f"removed: shim {name} from {parent}"
    assert state(host_ns) == before
    assert not infra.ping(host_ns, "198.18.42.2", timeout=2)
    again = ok(run_pipework("shim", parent, "--remove", netns=host_ns.name))
    assert again.strip() == f"nothing to remove: {parent} has no pipework shim"
    assert listed(run_pipework, host_ns) == []


async def test_an_ipv6_shim(host_ns, make_netns):
    parent = nic(host_ns)
    guest = make_netns("g")
    from pipework import AddressSpec, AttachSpec

    before = state(host_ns)
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(
            AttachSpec(
                host=parent,
                guest=f"netns:{guest.name}",
                address=AddressSpec.parse("2001:db8:42::2/64"),
            )
        )
        spec = shim.ShimSpec.parse(parent, "2001:db8:42::fe/128", ["2001:db8:42::/64"])
        made = await shim.create(engine, spec)
        assert made.status == "created" and made.routes == ("2001:db8:42::/64",)
        # The kernel's default metric (1024) is no difference: a re-run is unchanged.
        assert (await shim.create(engine, spec)).status == "unchanged"
        assert infra.ping(host_ns, "2001:db8:42::2")
        assert await shim.remove(engine, parent) == [spec.name]
        await engine.detach(f"netns:{guest.name}")
    assert state(host_ns)[0] == before[0]


def test_the_parents_own_addresses_and_routes_are_left_as_they_are(
    host_ns, make_netns, run_pipework
):
    """The original README's case: the NIC has its own address on the LAN;
    the containers sit in a sub-range, routed through the shim."""
    parent = nic(host_ns)
    host_ns.exec("ip", "addr", "add", "198.18.43.1/24", "dev", parent)
    host_ns.exec("ip", "-6", "addr", "add", "2001:db8:43::1/64", "dev", parent, "nodad")
    guest = make_netns("g")
    ok(run_pipework(parent, f"netns:{guest.name}", "198.18.43.130/24", netns=host_ns.name))
    mine = addresses(host_ns, parent)
    before = state(host_ns)
    assert not infra.ping(host_ns, "198.18.43.130", timeout=2)  # the parent cannot reach it

    # The subnet itself is the parent's route already: a conflict, nothing left behind.
    clash = run_pipework(
        "shim", parent, "198.18.43.254/32", "--route", "198.18.43.0/24", netns=host_ns.name
    )
    one_line_error(clash, 7, "a route to 198.18.43.0/24 already exists")
    assert state(host_ns) == before

    ok(run_pipework(
        "shim", parent, "198.18.43.254/32", "--route", "198.18.43.128/25", netns=host_ns.name
    ))  # fmt: skip
    assert infra.ping(host_ns, "198.18.43.130")
    assert addresses(host_ns, parent) == mine
    assert [r for r in routes(host_ns) if r.get("dev") == parent] == [
        r for r in before[2] if r.get("dev") == parent
    ]
    ok(run_pipework("shim", parent, "--remove", netns=host_ns.name))
    assert state(host_ns) == before


# -- idempotence ---------------------------------------------------------------------------
def test_another_configuration_is_a_conflict_unless_forced(host_ns, run_pipework):
    parent = nic(host_ns)
    name = shim.shim_name(parent)
    ok(run_pipework("shim", parent, "198.18.44.254/32", netns=host_ns.name))
    other = ("shim", parent, "198.18.44.253/32", "--route", "198.18.44.0/24")
    one_line_error(
        run_pipework(*other, netns=host_ns.name), 7, "is in place with another configuration"
    )
    assert addresses(host_ns, name) == ["198.18.44.254/32"]
    out = ok(run_pipework(*other, "--force", netns=host_ns.name))
    assert out.startswith(f"replaced: shim {name} on {parent} (198.18.44.253/32; routes")
    assert addresses(host_ns, name) == ["198.18.44.253/32"]

    # Broken (down, its address gone): the same request repairs it, without --force.
    host_ns.exec("ip", "link", "set", name, "down")
    out = ok(run_pipework(*other, netns=host_ns.name))
    assert out.startswith("replaced: ") and "UP" in links(host_ns)[name]["flags"]
    host_ns.exec("ip", "addr", "flush", "dev", name)
    assert ok(run_pipework(*other, netns=host_ns.name)).startswith("replaced: ")
    assert ok(run_pipework(*other, netns=host_ns.name)).startswith("unchanged: ")

    # Two shims on one parent, by name; --remove takes both, --name one.
    ok(run_pipework("shim", parent, "198.18.45.254/32", "--name", "pwtshim1", netns=host_ns.name))
    out = ok(run_pipework("shim", parent, "--remove", "--name", "pwtshim1", netns=host_ns.name))
    assert out.strip() == f"removed: shim pwtshim1 from {parent}"
    assert name in links(host_ns) and "pwtshim1" not in links(host_ns)
    ok(run_pipework("shim", parent, "--remove", netns=host_ns.name))
    assert set(links(host_ns)) == {"lo", parent, parent + "p"}


def test_concurrent_requests_make_one_shim(host_ns):
    parent = nic(host_ns)
    argv = ["ip", "netns", "exec", host_ns.name, sys.executable, "-m", "pipework"]
    line = [*argv, "shim", parent, "198.18.45.254/32", "--route", "198.18.45.0/24"]
    procs = [
        subprocess.Popen(line, cwd=infra.REPO_ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].split(":")[0] for p in procs)
    assert [p.returncode for p in procs] == [0] * 4
    assert outcomes == ["created", "unchanged", "unchanged", "unchanged"]
    assert [n for n in links(host_ns) if n.startswith(shim.NAME_PREFIX)] == [shim.shim_name(parent)]


async def test_rollback_after_every_step_leaves_nothing(host_ns, monkeypatch):
    parent = nic(host_ns)
    before = state(host_ns)
    spec = shim.ShimSpec.parse(
        parent, "198.18.46.254/32", ["198.18.46.0/24", "198.18.47.0/24 via 198.18.46.2"]
    )
    faulted: list[str] = []
    while True:
        with monkeypatch.context() as patch:
            seen = fault_after(patch, len(faulted) + 1)
            try:
                async with Engine(host_netns=host_ns.path) as engine:
                    made = await shim.create(engine, spec)
            except InjectedFault:
                faulted.append(seen[-1])
                assert state(host_ns) == before, f"fault after {seen[-1]}"
                continue
        break
    assert faulted == [
        f"create shim {spec.name}",
        f"mark {spec.name}",
        f"bring {spec.name} up",
        "address 198.18.46.254/32",
        "route 198.18.46.0/24",
        "route 198.18.47.0/24 via 198.18.46.2",
    ]
    assert made.status == "created"
    assert made.routes == ("198.18.46.0/24", "198.18.47.0/24 via 198.18.46.2")


def test_gc_a_shim_goes_with_its_parent(host_ns, run_pipework):
    parent = nic(host_ns)
    ok(run_pipework("shim", parent, "198.18.48.254/32", netns=host_ns.name))
    host_ns.exec("ip", "link", "del", parent)
    assert set(links(host_ns)) == {"lo"}  # the macvlan died with its parent
    collected = ok(run_pipework("gc", netns=host_ns.name))
    assert "shim" not in collected and shim.NAME_PREFIX not in collected  # nothing of its
    assert listed(run_pipework, host_ns) == []
    out = ok(run_pipework("shim", parent, "--remove", netns=host_ns.name))
    assert out.strip() == f"nothing to remove: {parent} has no pipework shim"


# -- markers are claims --------------------------------------------------------------------
def test_a_forged_shim_marker_is_left_alone(host_ns, make_netns, run_pipework):
    parent = nic(host_ns)
    other = nic(host_ns, "pwtnic1")
    forged = shim.format_marker(parent, "0123456789")
    # A veth named like a shim, carrying the shim's marker.
    fake = shim.shim_name(parent)
    host_ns.exec("ip", "link", "add", fake, "type", "veth", "peer", "name", "pwtfakep")
    host_ns.exec("ip", "link", "set", fake, "alias", forged)
    # A real macvlan, on another parent, claiming this one.
    host_ns.exec("ip", "link", "add", "pwtmv1", "link", other, "type", "macvlan", "mode", "bridge")
    host_ns.exec("ip", "link", "set", "pwtmv1", "alias", forged)
    # A macvlan on the parent that pipework did not make (no marker).
    host_ns.exec("ip", "link", "add", "pwtmine", "link", parent, "type", "macvlan")
    # A guest writes the shim marker on its own interface.
    guest = make_netns("g")
    ok(run_pipework(parent, f"netns:{guest.name}", "198.18.49.2/24", netns=host_ns.name))
    guest.exec("ip", "link", "set", "eth1", "alias", forged)
    before = state(host_ns)

    result = run_pipework("shim", parent, "--remove", netns=host_ns.name)
    assert result.returncode == 0 and "nothing to remove" in result.stdout
    warnings = result.stderr.strip().splitlines()
    assert warnings == [
        f"pipework: WARNING: {fake} carries a pipework shim marker for {parent},"
        " but it is a veth, not a macvlan: left alone",
        f"pipework: WARNING: pwtmv1 carries a pipework shim marker for {parent},"
        " but its parent is another interface: left alone",
    ]
    one_line_error(
        run_pipework("shim", parent, "--remove", "--name", fake, netns=host_ns.name),
        7,
        f"{fake} carries a pipework shim marker for {parent}, but it is a veth, not a macvlan",
    )
    one_line_error(
        run_pipework("shim", parent, "--remove", "--name", "pwtmv1", netns=host_ns.name),
        7,
        "its parent is another interface",
    )
    one_line_error(
        run_pipework("shim", parent, "--remove", "--name", "pwtmine", netns=host_ns.name),
        7,
        "pwtmine is no pipework shim",
    )
    for name in (fake, "pwtmine"):
        one_line_error(
            run_pipework(
                "shim", parent, "198.18.49.254/32", "--name", name, "--force", netns=host_ns.name
            ),
            7,
            name,
        )
    assert state(host_ns) == before
    shims = {s["name"]: s["status"] for s in listed(run_pipework, host_ns)}
    assert shims == {fake: "unverified", "pwtmv1": "ok"}  # the guest's eth1 is not the host's
    assert "UNVERIFIED" in ok(run_pipework("ls", netns=host_ns.name))
    # pwtmv1 is a real shim on pwtnic1 by the kernel's word: its own parent removes it.
    out = ok(run_pipework("shim", other, "--remove", netns=host_ns.name))
    assert out.strip() == f"removed: shim pwtmv1 from {other}"


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["pwtnone0", "198.18.42.254/32"], 6, "no interface named pwtnone0 on the host"),
        (["lo", "198.18.42.254/32"], 6, "lo is a loopback, not an Ethernet NIC"),
        (["pwtbr0", "198.18.42.254/32"], 6, "pwtbr0 is a bridge"),
        (["pwtport0", "198.18.42.254/32"], 6, "pwtport0 is a port of interface"),
        ([PARENT, "198.18.42.254/32", "--mtu", "1500"], 6, "MTU 1500 is larger than pwtnic0"),
        ([PARENT, "198.18.42.254/32", "--mtu", "big"], 2, "Invalid value for '--mtu'"),
        ([PARENT, "198.18.42.254"], 2, "The IP address should include a netmask."),
        ([PARENT, "198.18.42.254/33"], 2, "invalid prefix length"),
        ([PARENT, "banana"], 2, "shim address 'banana' is not ADDR/PREFIX"),
        ([PARENT, "0/0"], 2, "shim address '0/0' is not ADDR/PREFIX"),
        ([PARENT, "198.18.42.254/32@198.18.42.1"], 2, "is not ADDR/PREFIX"),
        ([PARENT, "198.18.42.254/32", "--route", "198.18.42.1/24"], 2, "has host bits set"),
        ([PARENT, "198.18.42.254/32", "--route", "bogus"], 2, "route 'bogus'"),
        ([PARENT, "198.18.42.254/32", "--route", "0.0.0.0/0"], 2, "is a default route"),
        ([PARENT, "198.18.42.254/32", "--route", "2001:db8::/64"], 2, "is IPv6"),
        ([PARENT, "198.18.42.254/32", "--name", "x" * 16], 2, "is 16 bytes long"),
        ([PARENT], 2, "say which address the host takes on the shim"),
        ([PARENT, "198.18.42.254/32", "--remove"], 2, "--remove takes no ADDR/PREFIX"),
        ([PARENT, "--remove", "--route", "198.18.42.0/24"], 2, "--remove takes no --route"),
        (["a/b", "--remove"], 2, "parent interface name 'a/b' is not valid"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(host_ns, run_pipework, args, code, fragment):
    nic(host_ns, mtu=1400)
    nic(host_ns, "pwtport0")
    host_ns.exec("ip", "link", "add", "pwtbr0", "type", "bridge")
    host_ns.exec("ip", "link", "set", "pwtport0", "master", "pwtbr0")
    before = state(host_ns)
    one_line_error(run_pipework("shim", *args, netns=host_ns.name), code, fragment)
    assert state(host_ns) == before
