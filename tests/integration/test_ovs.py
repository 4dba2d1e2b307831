"""The Open vSwitch backend against a real, private Open vSwitch.

Each test gets its own ovsdb-server and ovs-vswitchd running inside its
"host" namespace (the ``ovs`` fixture), with the userspace datapath: this
kernel has no openvswitch module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import infra
from support.checks import links, only_loopback
from support.faults import attach_with_each_fault
from support.ovs import kernel_has_openvswitch

from pipework import AddressSpec, AttachSpec, Engine
from pipework.engine import DetachContext, Marker, TimeoutExpiredError

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def spec(host: str, guest: infra.NetNS, ip: str = "0/0", **kw) -> AttachSpec:
    return AttachSpec(host=host, guest=f"netns:{guest.name}", address=AddressSpec.parse(ip), **kw)


def one_line(result, code: int, fragment: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pipework: ") and fragment in lines[0], lines[0]
    return lines[0]


def tcp_works(server: infra.NetNS, client: infra.NetNS, addr: str, size: int = 300_000) -> bool:
    """Send ``size`` bytes over TCP from ``client`` to ``server`` at ``addr``."""
    serve = textwrap.dedent(
        f"""
        import socket, sys
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("{addr}", 5999)); s.listen(1); s.settimeout(8)
        print("ready", flush=True)
        conn, _ = s.accept(); conn.settimeout(8); n = 0
        while chunk := conn.recv(65536):
            n += len(chunk)
        print(n, flush=True)
        """
    )
    send = textwrap.dedent(
        f"""
        import socket
        s = socket.create_connection(("{addr}", 5999), timeout=5)
        s.sendall(b"x" * {size}); s.close()
        """
    )
    listener = subprocess.Popen(
        ["ip", "netns", "exec", server.name, sys.executable, "-c", serve],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        sent = client.exec(sys.executable, "-c", send, check=False, timeout=15).returncode == 0
        received = listener.communicate(timeout=15)[0].strip()
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    return sent and received == str(size)


# -- choosing and attaching -------------------------------------------------------------------


async def test_an_existing_bridge_is_detected_and_guests_talk(ovs, host_ns, make_netns):
    ovs.add_bridge("pwtovs0")  # a tap device: only OVSDB can tell it is a bridge
    assert links(host_ns)["pwtovs0"]["linkinfo"]["info_kind"] == "tun"
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        ra = await engine.attach(spec("pwtovs0", a, "198.18.70.2/24"))
        rb = await engine.attach(spec("pwtovs0", b, "198.18.70.3/24"))
    assert (ra.kind, ra.host, ra.status) == ("ovs", "pwtovs0", "created")
    assert ovs.ports("pwtovs0") == sorted([ra.host_ifname, rb.host_ifname])
    wanted = {"pipework-guest": f"netns:{a.name}", "pipework-ifname": "eth1"}
    for table in ("Port", "Interface"):
        ids = ovs.external_ids(table, ra.host_ifname)
        assert {k: ids[k] for k in wanted} == wanted and len(ids["pipework-cfg"]) == 12
    assert ovs.get("Port", ra.host_ifname, "tag") == []  # no VLAN asked for
    assert isinstance(ovs.get("Interface", ra.host_ifname, "ofport"), int)
    host_end = links(host_ns)[ra.host_ifname]
    assert host_end["ifalias"].startswith("pipework ") and "kind=ovs" in host_end["ifalias"]
    assert links(a)["eth1"]["mtu"] == links(host_ns)["pwtovs0"]["mtu"]
    # A bridge the user made: pipework neither marks nor changes it.
    assert ovs.external_ids("Bridge", "pwtovs0") == {}
    assert infra.ping(a, "198.18.70.3") and infra.ping(b, "198.18.70.2")
    # The userspace datapath forwards what the veth hands it; TCP works only
    # because pipework turned off TX checksum offload in the guests.
    assert tcp_works(b, a, "198.18.70.3")


async def test_an_ovs_name_creates_a_marked_bridge(ovs, host_ns, make_netns, monkeypatch):
    monkeypatch.delenv("PIPEWORK_OVS_DATAPATH")  # the option alone decides
    a, b = make_netns("a"), make_netns("b")
    options = {"datapath_type": "netdev"}
    async with Engine(host_netns=host_ns.path) as engine:
        ra = await engine.attach(spec("ovspwt1", a, "198.18.71.2/24", options=options))
        rb = await engine.attach(spec("ovspwt1", b, "198.18.71.3/24", options=options))
    assert ra.kind == rb.kind == "ovs" and ovs.bridges() == ["ovspwt1"]
    assert ovs.external_ids("Bridge", "ovspwt1") == {"pipework": "auto-created"}
    assert ovs.get("Bridge", "ovspwt1", "datapath_type") == "netdev"
    assert ovs.ports("ovspwt1") == sorted([ra.host_ifname, rb.host_ifname])
    # Like `ovs-vsctl add-br`: the bridge has its internal port, and is up.
    assert ovs.get("Interface", "ovspwt1", "type") == "internal"
    assert "UP" in links(host_ns)["ovspwt1"]["flags"]
    assert infra.ping(a, "198.18.71.3")


async def test_the_environment_sets_the_default_datapath(ovs, host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:  # PIPEWORK_OVS_DATAPATH=netdev
        await engine.attach(spec("ovspwt2", a))
    assert ovs.get("Bridge", "ovspwt2", "datapath_type") == "netdev"


def test_rerun_is_unchanged_and_a_new_config_conflicts(ovs, host_ns, make_netns, run_pipework):
    g = make_netns("g")
    first = run_pipework("ovspwt3", f"netns:{g.name}", "198.18.72.2/24", "@7", netns=host_ns.name)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"created: eth1 in netns:{g.name} on ovs ovspwt3 (host side pw")
    again = run_pipework("ovspwt3", f"netns:{g.name}", "198.18.72.2/24", "@7", netns=host_ns.name)
    assert again.returncode == 0 and again.stdout.startswith("unchanged: "), again.stderr
    (port,) = ovs.ports("ovspwt3")
    assert ovs.get("Port", port, "tag") == 7
    other = run_pipework("ovspwt3", f"netns:{g.name}", "198.18.72.2/24", "@8", netns=host_ns.name)
    one_line(other, 7, "is attached with another configuration")
    forced = run_pipework(
        "ovspwt3", f"netns:{g.name}", "198.18.72.2/24", "@8", "--force", netns=host_ns.name
    )
    assert forced.returncode == 0 and forced.stdout.startswith("replaced: "), forced.stderr
    # Built beside the old port (make before break), under the other
    # host-side name; the old port went with the old attachment.
    (new_port,) = ovs.ports("ovspwt3")
    assert new_port != port and ovs.get("Port", new_port, "tag") == 8


def test_a_rerun_rebuilds_a_port_someone_removed(ovs, host_ns, make_netns, run_pipework):
    g = make_netns("g")
    args = ("ovspwt4", f"netns:{g.name}", "198.18.73.2/24", "@9")
    assert run_pipework(*args, netns=host_ns.name).returncode == 0
    (port,) = ovs.ports("ovspwt4")
    ovs.vsctl("del-port", "ovspwt4", port)
    again = run_pipework(*args, netns=host_ns.name)
    # Same request, but the attachment is not whole: rebuilt, not "unchanged".
    assert again.returncode == 0 and again.stdout.startswith("replaced: "), again.stdout
    (new_port,) = ovs.ports("ovspwt4")  # built beside the old host side, then that went
    assert new_port != port and ovs.get("Port", new_port, "tag") == 9
    third = run_pipework(*args, netns=host_ns.name)
    assert third.stdout.startswith("unchanged: "), third.stdout


def test_vlans_isolate_containers_on_one_bridge(ovs, host_ns, make_container, run_pipework):
    a, b, c = make_container(), make_container(), make_container()
    for container, ip, vlan in ((a, "2", "@10"), (b, "3", "@10"), (c, "4", "@20")):
        result = run_pipework(
            "ovspwt4", container.name, f"198.18.73.{ip}/24", vlan, netns=host_ns.name
        )
        assert result.returncode == 0, result.stderr
    tags = {port: ovs.get("Port", port, "tag") for port in ovs.ports("ovspwt4")}
    assert sorted(tags.values()) == [10, 10, 20]
    assert infra.ping(a, "198.18.73.3") and infra.ping(b, "198.18.73.2")
    assert not infra.ping(c, "198.18.73.2", timeout=3)
    assert not infra.ping(c, "198.18.73.3", timeout=3)
    assert not infra.ping(a, "198.18.73.4", timeout=3)


def test_concurrent_attaches_to_one_new_bridge_all_succeed(ovs, host_ns, make_netns, run_pipework):
    guests = [make_netns(f"c{i}") for i in range(4)]

    def attach(i: int):
        return run_pipework(
            "ovspwt5", f"netns:{guests[i].name}", f"198.18.74.{i + 2}/24", netns=host_ns.name
        )

    with ThreadPoolExecutor(len(guests)) as pool:
        results = list(pool.map(attach, range(len(guests))))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert ovs.bridges() == ["ovspwt5"] and len(ovs.ports("ovspwt5")) == len(guests)
    assert infra.ping(guests[0], "198.18.74.5")


async def test_a_restarted_guest_gets_a_working_port_again(ovs, host_ns, make_netns):
    """The guest's namespace dies with its veth; OVS keeps a port bound to the
    dead device. The next attach must replace it, not reuse it."""
    a = make_netns("a")
    b = make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("ovspwt6", a, "198.18.75.2/24"))
        rb = await engine.attach(spec("ovspwt6", b, "198.18.75.3/24"))
    old_ofport = ovs.get("Interface", rb.host_ifname, "ofport")
    # "Restart" b: same name, new namespace. Its veth is gone, its port is not.
    infra.run(["ip", "netns", "del", b.name])
    deadline = time.monotonic() + 10  # the kernel dismantles a namespace asynchronously
    while rb.host_ifname in links(host_ns) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rb.host_ifname not in links(host_ns) and rb.host_ifname in ovs.ports("ovspwt6")
    infra.run(["ip", "netns", "add", b.name])
    b.exec("ip", "link", "set", "lo", "up")
    async with Engine(host_netns=host_ns.path) as engine:
        again = await engine.attach(spec("ovspwt6", b, "198.18.75.3/24"))
    assert again.status == "created" and again.host_ifname == rb.host_ifname
    assert ovs.get("Interface", rb.host_ifname, "ofport") != old_ofport
    assert infra.ping(a, "198.18.75.3") and infra.ping(b, "198.18.75.2")


# -- detach and rollback ----------------------------------------------------------------------


async def test_detach_removes_the_port_and_the_veth(ovs, host_ns, make_netns):
    a, b = make_netns("a"), make_netns("b")
    async with Engine(host_netns=host_ns.path) as engine:
        ra = await engine.attach(spec("ovspwt7", a, "198.18.76.2/24"))
        rb = await engine.attach(spec("ovspwt7", b, "198.18.76.3/24"))
        removed = await engine.detach(f"netns:{a.name}", "eth1")
        assert [m.hostif for m in removed] == [ra.host_ifname]
        assert ovs.ports("ovspwt7") == [rb.host_ifname]
        assert ra.host_ifname not in links(host_ns) and only_loopback(a)
        assert await engine.detach(f"netns:{a.name}", "eth1") == []  # idempotent
        await engine.detach(f"netns:{b.name}")
    # The bridge stays, as a Linux bridge pipework created does.
    assert ovs.bridges() == ["ovspwt7"] and ovs.ports("ovspwt7") == []
    assert only_loopback(b)


async def test_detach_when_the_port_is_already_gone(ovs, host_ns, make_netns):
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        ra = await engine.attach(spec("ovspwt8", a))
        marker = Marker.parse(links(a)["eth1"]["ifalias"])
        assert marker is not None and marker.hostif == ra.host_ifname
        ctx = DetachContext(marker=marker, host=engine.host, guest_ns=None, guest_link=None)
        backend = engine.backends["ovs"]
        assert await backend.healthy(ctx)
        ovs.vsctl("del-port", ra.host_ifname)
        assert not await backend.healthy(ctx)  # for an "unchanged" re-run to notice
        assert len(await engine.detach(f"netns:{a.name}")) == 1
    assert only_loopback(a) and ra.host_ifname not in links(host_ns)


@pytest.mark.parametrize("bridge_exists", [False, True], ids=["new-bridge", "existing-bridge"])
async def test_a_fault_after_every_step_leaves_nothing(
    ovs, host_ns, make_netns, monkeypatch, bridge_exists
):
    bridge = "ovspwtr"
    if bridge_exists:
        ovs.add_bridge(bridge)
    guest = make_netns("g")
    before = (set(links(host_ns)), ovs.bridges(), ovs.all_ports())

    def check(step: str) -> None:
        after = (set(links(host_ns)), ovs.bridges(), ovs.all_ports())
        assert after == before, f"fault after {step}"
        assert only_loopback(guest), f"fault after {step}"

    faulted = await attach_with_each_fault(
        monkeypatch, host_ns.path, spec(bridge, guest, "198.18.77.2/24", tag="5"), check
    )
    port = "pw" + faulted[0].split(" pw", 1)[1]
    created = f"ovs bridge {bridge} and port {port}"
    assert faulted == [
        f"veth {port}",
        f"ovs port {port} on {bridge}" if bridge_exists else created,
        f"guest interface in netns:{guest.name}",
    ]
    assert ovs.ports(bridge) == [port]  # the run without a fault went through


async def test_vswitchd_down_times_out_and_leaves_nothing(ovs, host_ns, make_netns):
    ovs.add_bridge("ovspwt9")
    ovs.stop_daemon("ovs-vswitchd")  # the database still answers
    guest = make_netns("g")
    async with Engine(host_netns=host_ns.path, timeout=1) as engine:
        with pytest.raises(TimeoutExpiredError, match="ovs-vswitchd did not apply"):
            await engine.attach(spec("ovspwt9", guest, kind="ovs"))
    assert ovs.ports("ovspwt9") == [] and only_loopback(guest) and only_loopback(host_ns)


# -- bad input: one line, its exit code, nothing left behind ---------------------------------


def test_open_vswitch_not_running(host_ns, make_netns, run_pipework, tmp_path):
    guest = make_netns("g")
    env = dict(os.environ, PIPEWORK_OVSDB=f"unix:{tmp_path}/db.sock")
    result = run_pipework("ovspwtx", f"netns:{guest.name}", "0/0", netns=host_ns.name, env=env)
    line = one_line(
        result, 5, f"Open vSwitch is not running (no OVSDB socket at {tmp_path}/db.sock)"
    )
    assert "PIPEWORK_OVSDB" in line
    assert only_loopback(host_ns) and only_loopback(guest)


def test_only_unix_sockets(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    env = dict(os.environ, PIPEWORK_OVSDB="tcp:198.18.0.1:6640")
    result = run_pipework("ovspwtx", f"netns:{guest.name}", "0/0", netns=host_ns.name, env=env)
    one_line(result, 2, "only unix sockets are supported")
    assert only_loopback(host_ns)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("@10", "-o", "colour=red"), 2, "the ovs backend has no option 'colour'"),
        (("--mode", "bridge"), 2, "the ovs backend has no option 'mode'"),
        (("-o", "datapath_type=Bad!"), 2, "'Bad!' is not a datapath type"),
        (("-o", "datapath_type=warp"), 8, "this Open vSwitch has no 'warp' datapath"),
        (("@8001",), 2, "VLAN ID 8001 is out of range"),
        (("@4095",), 2, "VLAN ID 4095 is out of range"),
    ],
    ids=["unknown-option", "mode", "bad-datapath", "unknown-datapath", "pkey", "vlan-4095"],
)
def test_refused_before_anything_is_made(
    ovs, host_ns, make_netns, run_pipework, args, code, fragment
):
    guest = make_netns("g")
    result = run_pipework("ovspwty", f"netns:{guest.name}", "0/0", *args, netns=host_ns.name)
    one_line(result, code, fragment)
    assert ovs.bridges() == [] and only_loopback(host_ns) and only_loopback(guest)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("--direct-phys",), 2, "--direct-phys moves a NIC into the guest; pwtovs2 is a"),
        (("--direct-phys", "--kind", "ovs"), 2, "--direct-phys moves a NIC into the guest"),
        (("-o", "datapath_type=system"), 6, "bridge pwtovs2 uses the netdev datapath, not system"),
        (("--mtu", "65535"), 6, "MTU 65535 is larger than pwtovs2 allows"),
    ],
    ids=["direct-phys", "direct-phys-kind-ovs", "other-datapath", "mtu"],
)
def test_refused_on_an_existing_bridge(
    ovs, host_ns, make_netns, run_pipework, args, code, fragment
):
    ovs.add_bridge("pwtovs2")
    guest = make_netns("g")
    before = set(links(host_ns))
    result = run_pipework("pwtovs2", f"netns:{guest.name}", "0/0", *args, netns=host_ns.name)
    one_line(result, code, fragment)
    assert ovs.ports("pwtovs2") == [] and set(links(host_ns)) == before and only_loopback(guest)


def test_a_port_name_someone_else_uses(ovs, host_ns, make_netns, run_pipework):
    ovs.add_bridge("pwtovs1")
    ovs.vsctl("--no-wait", "add-port", "pwtovs1", "pwttaken")  # the user's, no device yet
    guest = make_netns("g")
    before = set(links(host_ns))
    result = run_pipework(
        "pwtovs1", f"netns:{guest.name}", "0/0", "-l", "pwttaken", netns=host_ns.name
    )
    one_line(result, 6, "Open vSwitch port pwttaken on bridge pwtovs1 exists and is not this")
    assert ovs.ports("pwtovs1") == ["pwttaken"] and ovs.external_ids("Port", "pwttaken") == {}
    assert set(links(host_ns)) == before and only_loopback(guest)


def test_kind_ovs_on_a_linux_bridge(ovs, host_ns, make_netns, run_pipework):
    host_ns.exec("ip", "link", "add", "brpwto", "type", "bridge")
    guest = make_netns("g")
    before = set(links(host_ns))
    result = run_pipework(
        "brpwto", f"netns:{guest.name}", "0/0", "--kind", "ovs", netns=host_ns.name
    )
    one_line(result, 6, "brpwto exists but is not an Open vSwitch bridge")
    assert ovs.bridges() == [] and set(links(host_ns)) == before and only_loopback(guest)


def test_the_kernel_datapath_without_its_module(ovs, host_ns, make_netns, run_pipework):
    if kernel_has_openvswitch():
        pytest.skip("the openvswitch module is loaded: the kernel datapath works here")
    guest = make_netns("g")
    before = set(links(host_ns))
    result = run_pipework(
        "ovspwtk", f"netns:{guest.name}", "0/0", "-o", "datapath_type=system", netns=host_ns.name
    )
    line = one_line(result, 8, "could not create the kernel datapath of bridge ovspwtk")
    assert "datapath_type=netdev" in line
    assert ovs.bridges() == [] and ovs.all_ports() == []
    assert set(links(host_ns)) == before and only_loopback(guest)
