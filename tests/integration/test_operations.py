"""detach, ls, gc, wait and route/rule/tc, through the CLI in fresh processes,
against the real kernel (a test namespace plays the host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import infra, kernel
from support.checks import links, only_loopback, routes

from pipework.backends.links.phys.record import NicRecord, NicRecords
from pipework.engine.marker import Marker
from pipework.engine.specs import derive_mac

pytestmark = pytest.mark.integration


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def one_line(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipework: "), result.stderr
    assert fragment in lines[0], lines[0]


def ls_json(run_pipework, host_ns, *args: str) -> list[dict]:
    return json.loads(ok(run_pipework("ls", "--json", *args, netns=host_ns.name)))["attachments"]


def mine(records: list[dict], *guests: infra.NetNS) -> list[dict]:
    keys = {f"netns:{g.name}" for g in guests}
    return [r for r in records if r["guest"]["key"] in keys]


def test_ls_then_detach_one_then_all_with_prune(host_ns, make_netns, run_pipework):
    a, b = make_netns("a"), make_netns("b")
    ga, gb = f"netns:{a.name}", f"netns:{b.name}"
    host_ns.exec("ip", "link", "add", "brpwtown", "type", "bridge")  # the user's bridge
    ok(run_pipework("brpwtls", ga, "198.18.60.2/24", "U:a", netns=host_ns.name))
    ok(run_pipework("-i", "eth2", "brpwtown", ga, "198.18.61.2/24", netns=host_ns.name))
    ok(run_pipework("brpwtls", gb, "198.18.60.3/24", netns=host_ns.name))

    # A fresh process finds all three, with every column.
    records = mine(ls_json(run_pipework, host_ns), a, b)
    assert [(r["guest"]["name"], r["ifname"], r["host"]) for r in records] == [
        (ga, "eth1", "brpwtls"),
        (ga, "eth2", "brpwtown"),
        (gb, "eth1", "brpwtls"),
    ]
    first = records[0]
    assert first["kind"] == "bridge" and first["mac"] == derive_mac("a")
    assert first["addresses"] == ["198.18.60.2/24"] and first["state"] == "attached"
    assert first["host_ifname"] in links(host_ns) and first["vlan"] is None
    assert first["address_method"] == "static" and first["dhcp"] is None
    table = ok(run_pipework("ls", ga, netns=host_ns.name)).splitlines()
    assert table[0].split() == [
        "GUEST", "ID", "IFNAME", "KIND", "HOST", "HOST-SIDE", "MAC", "ADDRESSES", "VLAN", "DHCP",
    ]  # fmt: skip
    assert len(table) == 3 and all(ga in line for line in table[1:])

    # Detach one interface; twice is fine.
    out = ok(run_pipework("detach", ga, "-i", "eth2", netns=host_ns.name))
    assert out.startswith("detached: eth2 from " + ga)
    assert "eth2" not in links(a) and not [
        n for n, link in links(host_ns).items() if link.get("master") == "brpwtown"
    ]
    again = ok(run_pipework("detach", ga, "-i", "eth2", netns=host_ns.name))
    assert again.strip() == f"nothing to detach: {ga} has no pipework interface eth2"

    # --all --prune-bridges: the auto-created bridge stays while b uses it.
    ok(run_pipework("detach", ga, "--all", "--prune-bridges", netns=host_ns.name))
    assert only_loopback(a) and "brpwtls" in links(host_ns)
    ok(run_pipework("--json", "detach", gb, "--all", "--prune-bridges", netns=host_ns.name))
    assert only_loopback(b)
    host = links(host_ns)
    assert "brpwtls" not in host  # pipework made it and it is empty now
    assert "brpwtown" in host  # not pipework's: never removed
    assert mine(ls_json(run_pipework, host_ns), a, b) == []


def test_detach_needs_an_interface_or_all(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    one_line(
        run_pipework("detach", f"netns:{guest.name}", netns=host_ns.name), 2, "say which interface"
    )
    one_line(
        run_pipework("detach", f"netns:{guest.name}", "-i", "x" * 16, netns=host_ns.name),
        2,
        "16 bytes long",
    )
    one_line(
        run_pipework("detach", "netns:pwt-nope", "--all", netns=host_ns.name),
        3,
        "no network namespace",
    )


def test_detach_and_ls_a_container(host_ns, make_container, run_pipework):
    container = make_container()
    ok(run_pipework("brpwtdc", container.name, "198.18.62.2/24", netns=host_ns.name))
    records = [r for r in ls_json(run_pipework, host_ns) if r["guest"]["key"] == container.id]
    assert len(records) == 1
    guest = records[0]["guest"]
    # Named by its resolver: the container's name, full ID, and PID.
    assert guest["name"] == container.name and guest["runtime"] == "docker"
    assert guest["pid"] == container.pid
    line = ok(run_pipework("ls", container.name, netns=host_ns.name)).splitlines()[1]
    assert line.split()[:3] == [container.name, container.id[:12], "eth1"]
    ok(run_pipework("detach", container.name, "--all", netns=host_ns.name))
    assert "eth1" not in links(container)
    assert not [n for n, link in links(host_ns).items() if link.get("master") == "brpwtdc"]


def test_gc_removes_what_dead_guests_left(host_ns, make_netns, run_pipework, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setenv("PIPEWORK_RUN_DIR", str(run_dir))
    guest = make_netns("g")
    ok(run_pipework("brpwtgc", f"netns:{guest.name}", "198.18.63.2/24", netns=host_ns.name))
    host_side = next(n for n, link in links(host_ns).items() if link.get("master") == "brpwtgc")
    # The guest goes away, but its namespace lingers (held by an fd only: no
    # process, no name), so the veth pair survives: an orphan.
    held = os.open(guest.path, os.O_RDONLY)
    try:
        infra.run(["ip", "netns", "del", guest.name])
        # A NIC passed through that came back to the host when its guest died
        # (the kernel returns physical devices; here a stand-in carries the marker).
        host_ns.exec("ip", "link", "add", "pwtnicx", "type", "veth", "peer", "name", "pwtnicy")
        marker = Marker(
            guest="netns:pwt-dead", ifname="eth3", kind="phys", host="pwtnic0", cfg="abc",
            state="02:00:00:aa:bb:01,up",
        )  # fmt: skip
        host_ns.exec("ip", "link", "set", "pwtnicx", "alias", marker.format())
        # The marker is the guest's word: the host's own record of the NIC is
        # what gc checks and restores from (phys wrote it at attach time).
        records = NicRecords(str(run_dir))
        records.write(
            NicRecord(
                guest=marker.guest, ifname=marker.ifname, name="pwtnic0",
                mac="02:00:00:aa:bb:01", up=True, kind="veth", perm_mac=None,
                parent_dev=None, parent_bus=None, guest_index=7,
            )
        )  # fmt: skip

        listed = ls_json(run_pipework, host_ns)
        orphans = [r for r in listed if r["state"] == "orphan"]
        assert {(r["host_ifname"], r["ifname"]) for r in orphans} == {
            (host_side, "eth1"),
            ("pwtnicx", "eth3"),
        }
        dry = json.loads(ok(run_pipework("gc", "--dry-run", "--json", netns=host_ns.name)))
        assert dry["dry_run"] is True
        assert any(host_side in item for item in dry["items"])
        assert any("pwtnicx" in item and "came back" in item for item in dry["items"])
        assert host_side in links(host_ns)  # a dry run removes nothing

        out = ok(run_pipework("gc", netns=host_ns.name))
        assert f"removed: host side {host_side}" in out
        host = links(host_ns)
        assert host_side not in host
        # The NIC has its own name, MAC and state back, and no marker.
        assert "pwtnicx" not in host and "pwtnic0" in host
        nic = host["pwtnic0"]
        assert nic["address"] == "02:00:00:aa:bb:01" and "ifalias" not in nic
        assert records.read(marker.guest, marker.ifname) is None
        assert ok(run_pipework("gc", netns=host_ns.name)).strip() == "nothing to collect"
    finally:
        os.close(held)
        host_ns.exec("ip", "link", "del", "pwtnic0", check=False)


def test_gc_under_a_low_descriptor_limit_calls_no_live_guest_gone(
    host_ns, make_netns, run_pipework
):
    """With 40 live guests and 30 descriptors (soft and hard), gc once kept
    every namespace open until it ran out, then called the rest gone."""
    guests = [make_netns("fd") for _ in range(40)]
    lines = "".join(f"brpwtfd netns:{g.name} 198.18.66.{i + 2}/24\n" for i, g in enumerate(guests))
    ok(run_pipework("batch", "-", netns=host_ns.name, input=lines))
    argv = ["prlimit", "--nofile=30:30", "ip", "netns", "exec", host_ns.name,
            sys.executable, "-m", "pipework", "gc", "--dry-run", "--json"]  # fmt: skip
    for _ in range(2):
        proc = infra.run(argv, check=False, cwd=infra.REPO_ROOT, timeout=60)
        assert proc.returncode in (0, 1), (proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr
        report = json.loads(proc.stdout)
        assert [i for i in report["items"] if "guest gone" in i] == [], report
        argv[1] = "--nofile=12:12"  # so few that namespaces cannot be read: nothing is gone
    hosts = [n for n, link in links(host_ns).items() if link.get("master") == "brpwtfd"]
    assert len(hosts) == 40


def test_gc_removes_stale_dhcp_state(host_ns, run_pipework, dhcp_run_dir):
    """A state directory (pidfile, lease) of a kept client whose guest is gone."""
    state = dhcp_run_dir / "dhcp" / "0123456789"
    state.mkdir(parents=True)
    meta = {"provider": "udhcpc", "mode": "kept", "guest": "netns:pwt-gone", "guest_name": "netns:pwt-gone",
            "ifname": "eth1", "netns": [1, 2], "anchor": "/run/netns/pwt-gone", "manager": [0, None]}  # fmt: skip
    (state / "attachment.json").write_text(json.dumps(meta))
    (state / "udhcpc.pid").write_text("999999999\n")
    (state / "lease").write_text("ip=198.18.64.9\n")
    out = ok(run_pipework("gc", "--dry-run", netns=host_ns.name))
    assert f"would remove: udhcpc state {state}" in out and state.exists()
    out = ok(run_pipework("gc", netns=host_ns.name))
    assert f"removed: udhcpc state {state}" in out and not state.exists()


def test_gc_removes_ovs_ports_whose_interface_is_gone(host_ns, make_netns, ovs, run_pipework):
    guest = make_netns("g")
    ovs.add_bridge("ovspwtgc")
    ok(run_pipework("ovspwtgc", f"netns:{guest.name}", "198.18.65.2/24", netns=host_ns.name))
    port = ovs.ports("ovspwtgc")[0]
    guest.destroy()  # the veth dies with the namespace; OVS keeps the port
    assert ovs.ports("ovspwtgc") == [port]
    dry = ok(run_pipework("gc", "--dry-run", netns=host_ns.name))
    assert f"would remove: Open vSwitch port {port}" in dry and ovs.ports("ovspwtgc") == [port]
    ok(run_pipework("gc", netns=host_ns.name))
    assert ovs.ports("ovspwtgc") == []
    assert "ovspwtgc" in ovs.bridges()  # the user's bridge stays


# -- wait ----------------------------------------------------------------------------------------


def test_wait_from_the_host_until_the_attach_is_up(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    ref = f"netns:{guest.name}"
    one_line(
        run_pipework("wait", ref, "-i", "eth1", "--timeout", "0.3", netns=host_ns.name),
        10,
        f"eth1 in {ref} does not exist after 0.3 s",
    )
    argv = [sys.executable, "-m", "pipework", "wait", ref, "--timeout", "20", "--json"]
    waiter = subprocess.Popen(
        ["ip", "netns", "exec", host_ns.name, *argv],
        cwd=infra.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        assert waiter.poll() is None  # still waiting
        ok(run_pipework("brpwtw", ref, "198.18.66.2/24", netns=host_ns.name))
        out, err = waiter.communicate(timeout=20)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, err
    assert json.loads(out)["operstate"] == "UP"


def test_wait_inside_the_guest_wants_operstate_up(make_netns):
    """The original's `pipework --wait`, run in the guest: existence is not enough."""
    guest = make_netns("g")
    # eth1 exists and is up, but its peer is down: no carrier.
    guest.exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "pwtpeer")
    guest.exec("ip", "link", "set", "eth1", "up")
    argv = [sys.executable, "-m", "pipework", "--wait", "--timeout", "0.5"]
    result = guest.exec(*argv, check=False)
    assert result.returncode == 10 and "pipework: eth1 in this namespace is" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    guest.exec("ip", "link", "set", "pwtpeer", "up")
    done = guest.exec(*argv, check=False)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


# -- route / rule / tc ---------------------------------------------------------------------------


def test_route_rule_tc_run_in_the_guest(host_ns, make_netns, run_pipework, tmp_path):
    guest = make_netns("g")
    ref = f"netns:{guest.name}"
    ok(run_pipework("brpwtr", ref, "198.18.10.2/24", netns=host_ns.name))
    ok(
        run_pipework(
            "route", ref, "add", "198.18.20.0/24", "via", "198.18.10.1", netns=host_ns.name
        )
    )
    added = next(r for r in routes(guest) if r["dst"] == "198.18.20.0/24")
    assert added["gateway"] == "198.18.10.1"
    out = ok(run_pipework("route", ref, "show", "198.18.20.0/24", netns=host_ns.name))
    assert out.strip() == "198.18.20.0/24 via 198.18.10.1 dev eth1"
    # Every argument is ip's, --json too (pipework does not take it out):
    # ip says where it stands in ip's own grammar.
    passed = run_pipework("route", ref, "show", "--json", netns=host_ns.name)
    assert passed.returncode == 1 and '"--json"' in passed.stderr and passed.stdout == ""
    ok(run_pipework("rule", ref, "add", "from", "198.18.10.2", "table", "7", netns=host_ns.name))
    assert "from 198.18.10.2 lookup 7" in guest.exec("ip", "rule").stdout
    ok(
        run_pipework(
            "tc", ref, "qdisc", "add", "dev", "eth1", "root", "tbf", "rate", "1mbit",
            "burst", "32kbit", "latency", "400ms", netns=host_ns.name,
        )
    )  # fmt: skip
    assert "qdisc tbf" in guest.exec("tc", "qdisc", "show", "dev", "eth1").stdout
    # The program's own failure and exit status pass through.
    failed = run_pipework("route", ref, "del", "198.18.99.0/24", netns=host_ns.name)
    assert failed.returncode == 2 and "No such process" in failed.stderr
    # No shell: metacharacters are plain arguments.
    marker = tmp_path / "pwned"
    hostile = run_pipework(
        "route", ref, "show", f"$(touch {marker})", ";", "id", netns=host_ns.name
    )
    assert hostile.returncode != 0 and not marker.exists()
    one_line(
        run_pipework("route", "netns:pwt-nope", "show", netns=host_ns.name),
        3,
        "no network namespace",
    )
    one_line(run_pipework("tc", netns=host_ns.name), 2, "tc needs a GUEST")
    # Only the guest changed: the host's routes are as they were.
    assert not [r for r in routes(host_ns) if r["dst"] == "198.18.20.0/24"]


def test_route_in_a_container(host_ns, make_container, run_pipework):
    container = make_container()
    ok(run_pipework("brpwtrc", container.name, "198.18.11.2/24", netns=host_ns.name))
    ok(
        run_pipework(
            "route",
            container.name,
            "add",
            "198.18.21.0/24",
            "via",
            "198.18.11.1",
            netns=host_ns.name,
        )
    )
    out = container.exec("ip", "route").stdout
    assert "198.18.21.0/24 via 198.18.11.1 dev eth1" in out


def test_passthrough_without_the_program(host_ns, make_netns, run_pipework, tmp_path):
    guest = make_netns("g")
    bin_dir = Path(tmp_path)
    env = dict(os.environ, PATH=str(bin_dir))
    result = run_pipework("tc", f"netns:{guest.name}", "qdisc", env=env)
    one_line(result, 8, "tc is not installed (install the Debian package iproute2)")


def test_ls_shows_a_kept_dhcp_client_and_gc_stops_it_once_its_guest_is_gone(
    host_ns, make_netns, dhcp_server, dhcp_run_dir, run_pipework, host_files_unchanged
):
    dhcp_server()
    guest = make_netns("k")
    ok(run_pipework("brpwtd", f"netns:{guest.name}", "udhcpc-f", netns=host_ns.name))
    (record,) = mine(ls_json(run_pipework, host_ns), guest)
    assert record["dhcp"].startswith("kept, running (PID "), record
    assert record["addresses"][0].startswith("198.18.100.")
    pid = int(record["dhcp"].split("PID ")[1].rstrip(")"))
    table = ok(run_pipework("ls", f"netns:{guest.name}", netns=host_ns.name))
    assert f"kept, running (PID {pid})" in table
    # The name goes; the kept client keeps the namespace alive: gc stops it.
    infra.run(["ip", "netns", "del", guest.name])
    out = ok(run_pipework("gc", netns=host_ns.name))
    assert "removed: udhcpc state" in out, out
    deadline = time.monotonic() + 5
    while infra._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not infra._alive(pid), infra.describe_pid(pid)
    assert list(dhcp_run_dir.glob("dhcp/*")) == []


def test_gc_removes_the_dhcp_helper_of_a_killed_container(
    host_ns, make_container, dhcp_server, dhcp_run_dir, run_pipework, no_dhcp_helpers
):
    dhcp_server()
    web = make_container()
    ok(run_pipework("brpwtd", web.name, "dhcp:-f", netns=host_ns.name))
    (record,) = [r for r in ls_json(run_pipework, host_ns) if r["guest"]["key"] == web.id]
    assert record["dhcp"].startswith("kept, helper pipework-dhcp-") and record["dhcp"].endswith(
        " running"
    )

    def helpers() -> list[str]:
        return web.daemon.cli(
            "ps", "-aq", "--filter", f"label=pipework.guest={web.id}"
        ).stdout.split()

    assert len(helpers()) == 1
    assert ok(run_pipework("gc", "--dry-run", netns=host_ns.name)).strip() == "nothing to collect"
    web.daemon.cli("kill", web.id)
    dry = ok(run_pipework("gc", "--dry-run", netns=host_ns.name))
    assert "would remove: dhcp helper pipework-dhcp-" in dry and helpers()
    out = ok(run_pipework("gc", netns=host_ns.name))
    assert "removed: dhcp helper pipework-dhcp-" in out
    assert helpers() == [] and list(dhcp_run_dir.glob("dhcp/*")) == []


def test_gc_drops_the_vlan_users_of_dead_guests(host_ns, make_netns, run_pipework):
    """A macvlan child dies with its guest; the 802.1q sub-interface pipework
    made still counts it as a user until gc (kernel permitting)."""
    kernel.require("vlan")
    host_ns.exec("ip", "link", "add", "pwtnic0", "type", "veth", "peer", "name", "pwtnicp")
    host_ns.exec("ip", "link", "set", "pwtnic0", "up")
    a, b = make_netns("a"), make_netns("b")
    ok(run_pipework("pwtnic0", f"netns:{a.name}", "198.18.67.2/24", "@30", netns=host_ns.name))
    ok(run_pipework("pwtnic0", f"netns:{b.name}", "198.18.67.3/24", "@30", netns=host_ns.name))
    a.destroy()
    assert "pwtnic0.30" in links(host_ns)
    out = ok(run_pipework("gc", netns=host_ns.name))
    assert "removed: VLAN interface pwtnic0.30: 1 user(s) gone" in out
    assert "pwtnic0.30" in links(host_ns)  # b still uses it
    b.destroy()
    out = ok(run_pipework("gc", netns=host_ns.name))
    assert "removing it (pipework created it)" in out
    assert "pwtnic0.30" not in links(host_ns)


class _DownProvider:
    """An address provider whose daemon is down: gc must go on without it."""

    name = "pwtdown"

    def claims(self, address) -> bool:  # type: ignore[no-untyped-def]
        return address.method == self.name

    async def configure(self, ctx):  # type: ignore[no-untyped-def]
        raise AssertionError("not used")

    async def release(self, ctx) -> None:  # type: ignore[no-untyped-def]
        return None

    async def collect_garbage(self, dry_run: bool = False) -> list[str]:
        from pipework import RuntimeUnavailableError

        raise RuntimeUnavailableError("cannot reach pwtdownd")


class _DownPlugin:
    from pipework import hookimpl

    @hookimpl
    def pipework_address_providers(self, config):  # type: ignore[no-untyped-def]
        return [_DownProvider()]


def test_gc_goes_on_when_a_collector_cannot_look(host_ns, make_netns):
    import anyio

    from pipework import Engine

    guest = make_netns("g")
    ref = f"netns:{guest.name}"

    async def main():  # type: ignore[no-untyped-def]
        async with Engine(host_netns=host_ns.path, plugins=[_DownPlugin()]) as engine:
            from pipework import AddressSpec, AttachSpec

            await engine.attach(
                AttachSpec(host="brpwtdn", guest=ref, address=AddressSpec.parse("0/0"))
            )
            return await engine.gc(dry_run=True)

    report = anyio.run(main)
    assert "pwtdown: cannot reach pwtdownd" in report.skipped
    assert report.items == ()  # the live attachment is not garbage
