"""The host DHCP clients (dhclient, udhcpc, dhcpcd) against a real dnsmasq.

Each test gets dnsmasq on a bridge in its own "host" namespace
(198.18.100.0/24), a private RUN_DIR that must end up empty, and checks
that the host's resolv.conf, hostname and hosts files did not change.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
import pytest
from support import infra
from support.checks import gc_context, links, only_loopback, routes
from support.dhcp import (
    DNS_SERVER,
    DOMAIN,
    address_lifetime,
    client_pids_in,
    give_default_route,
)
from support.faults import attach_with_each_fault

from pipework import AddressSpec, AttachSpec, Engine
from pipework.backends.addresses.dhcp.toolbox import Lease, StateDir, parse_report
from pipework.engine import TimeoutExpiredError, UsageError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.usefixtures("host_files_unchanged", "dhcp_run_dir"),
]

CLIENTS = ["dhclient", "udhcpc", "dhcpcd"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _clients_installed():
    infra.require_binaries("dhclient", "udhcpc", "dhcpcd", "dnsmasq")


def spec(guest: infra.NetNS, ipspec: str, bridge: str = "brpwtd", **kw) -> AttachSpec:
    options = {k: kw.pop(k) for k in ("dns", "timeout", "image") if k in kw}
    return AttachSpec(
        host=bridge,
        guest=f"netns:{guest.name}",
        address=AddressSpec.parse(ipspec, **options),
        **kw,
    )


def state_of(run_dir: Path, guest: infra.NetNS, ifname: str = "eth1") -> StateDir:
    return StateDir.of(str(run_dir), f"netns:{guest.name}", ifname)


def netns_key(guest: infra.NetNS) -> tuple[int, int] | None:
    return infra.netns_key(guest.path)


@pytest.mark.parametrize("client", CLIENTS)
async def test_one_shot_lease_then_no_process(
    client, host_ns, make_netns, dhcp_server, dhcp_run_dir
):
    server = dhcp_server()
    guest = make_netns("g")
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(spec(guest, client, mac="U:" + guest.name))
    assert att.status == "created" and att.address_method == client
    (address,) = att.addresses
    assert server.in_pool(address)
    assert (att.gateway, att.dns, att.domain) == (server.server_ip, (DNS_SERVER,), DOMAIN)
    # The lease is on the interface, for good, and the router is the default route.
    assert address_lifetime(guest, "eth1", address) == 0xFFFFFFFF
    assert {"dst": "default", "gateway": server.server_ip, "dev": "eth1"}.items() <= routes(guest)[
        0
    ].items()
    assert infra.ping(guest, server.server_ip)
    # The server saw the guest's name and the MAC derived from U:NAME.
    lease = server.leases()[att.mac]
    assert lease.ip == address.split("/")[0] and lease.hostname == guest.name
    # No client process remains; the lease report stays until detach.
    assert client_pids_in(netns_key(guest)) == []
    state = state_of(dhcp_run_dir, guest)
    assert state.meta()["mode"] == "one-shot"
    assert Lease.from_report(state.report()).address.compressed == address
    async with Engine(host_netns=host_ns.path) as engine:
        again = await engine.attach(spec(guest, client, mac="U:" + guest.name))
        assert again.status == "unchanged" and again.dns == (DNS_SERVER,)
        assert [m.ifname for m in await engine.detach(f"netns:{guest.name}")] == ["eth1"]
    assert not state.exists() and only_loopback(guest)


@pytest.mark.parametrize("client", CLIENTS)
async def test_kept_client_detach_and_dead_client_is_replaced(
    client, host_ns, make_netns, dhcp_server, dhcp_run_dir
):
    dhcp_server()
    guest = make_netns("k")
    request = spec(guest, f"{client}-f", mac="U:" + guest.name)
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(request)
        pids = client_pids_in(netns_key(guest))
        assert pids, f"{client} is not running"
        assert (await engine.attach(request)).status == "unchanged"
        # A kept client that died is not "unchanged": the re-run replaces it
        # (and, with the same MAC, gets the same lease).
        infra.terminate_pids(int(p.split()[1]) for p in pids)
        again = await engine.attach(request)
        assert again.status == "replaced" and again.addresses == att.addresses
        assert client_pids_in(netns_key(guest))
        await engine.detach(f"netns:{guest.name}")
    assert client_pids_in(netns_key(guest)) == []
    assert not state_of(dhcp_run_dir, guest).exists() and only_loopback(guest)


@pytest.mark.parametrize("client", CLIENTS)
async def test_no_server_times_out_and_leaves_nothing(client, host_ns, make_netns, dhcp_run_dir):
    host_ns.exec("ip", "link", "add", "brpwtn", "type", "bridge")
    host_ns.exec("ip", "link", "set", "brpwtn", "up")
    guest = make_netns("t")
    before_host = set(links(host_ns))
    started = time.monotonic()
    async with Engine(host_netns=host_ns.path) as engine:
        with pytest.raises(TimeoutExpiredError) as failure:
            await engine.attach(spec(guest, f"{client}-f", bridge="brpwtn", timeout=2))
    assert time.monotonic() - started < 10
    message = str(failure.value)
    assert f"{client} got no DHCP lease for eth1 in netns:{guest.name} within 2 s" in message
    assert failure.value.exit_code == 10 and "\n" not in message
    assert only_loopback(guest) and set(links(host_ns)) == before_host
    assert client_pids_in(netns_key(guest)) == []
    assert list(dhcp_run_dir.glob("dhcp/*")) == []


async def test_same_mac_string_gets_the_same_lease(host_ns, make_netns, dhcp_server):
    server = dhcp_server()
    guest = make_netns("m")
    async with Engine(host_netns=host_ns.path) as engine:
        first = await engine.attach(spec(guest, "dhclient", mac="U:stable.pwt.test"))
        await engine.detach(f"netns:{guest.name}")
        again = await engine.attach(spec(guest, "udhcpc", mac="U:stable.pwt.test"))
        # Another MAC, same guest and interface name: another address.
        other = await engine.attach(spec(guest, "dhcpcd", ifname="eth2", mac="U:other.pwt.test"))
        await engine.detach(f"netns:{guest.name}")
    assert first.mac == again.mac == "02:" + first.mac[3:]
    assert first.addresses == again.addresses and server.in_pool(first.addresses[0])
    assert other.addresses != first.addresses and server.in_pool(other.addresses[0])


async def test_existing_default_route_is_replaced_and_restored_on_rollback(
    host_ns, make_netns, dhcp_server, monkeypatch
):
    server = dhcp_server()
    guest = make_netns("r")
    give_default_route(guest)
    before_links, before_routes = set(links(guest)), routes(guest)
    before_host = set(links(host_ns))

    def check(step: str) -> None:
        assert set(links(guest)) == before_links, f"fault after {step}"
        assert routes(guest) == before_routes, f"fault after {step}"
        assert set(links(host_ns)) == before_host, f"fault after {step}"
        assert client_pids_in(netns_key(guest)) == [], f"fault after {step}"

    faulted = await attach_with_each_fault(
        monkeypatch, host_ns.path, spec(guest, "dhclient-f", dns=True), check
    )
    assert any("dhclient" in step for step in faulted), faulted
    assert "the guest's default route" in faulted and any("DNS" in s for s in faulted), faulted
    default = [r for r in routes(guest) if r["dst"] == "default"]
    assert default == [
        {"dst": "default", "gateway": server.server_ip, "dev": "eth1", "flags": ["onlink"]}
    ]
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.detach(f"netns:{guest.name}")
    assert client_pids_in(netns_key(guest)) == []
    assert not Path(f"/etc/netns/{guest.name}").exists()


async def test_dns_only_when_asked_and_only_in_the_guest(host_ns, make_netns, dhcp_server):
    dhcp_server()
    quiet, told = make_netns("d"), make_netns("d")
    files = {ns.name: Path(f"/etc/netns/{ns.name}/resolv.conf") for ns in (quiet, told)}
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(quiet, "udhcpc"))
        assert not files[quiet.name].exists()
        att = await engine.attach(spec(told, "dhcpcd", dns=True))
        assert att.dns == (DNS_SERVER,)
        assert files[told.name].read_text().splitlines()[1:] == [
            f"search {DOMAIN}",
            f"nameserver {DNS_SERVER}",
        ]
        # What the guest sees through `ip netns exec`:
        seen = told.exec("cat", "/etc/resolv.conf").stdout
        assert f"nameserver {DNS_SERVER}" in seen
        for ns in (quiet, told):
            await engine.detach(f"netns:{ns.name}")
    assert not Path(f"/etc/netns/{told.name}").exists()


async def test_kept_client_of_a_deleted_namespace_is_collected(
    host_ns, make_netns, dhcp_server, dhcp_run_dir
):
    """The namespace is gone, but the kept client keeps it alive: gc stops it."""
    dhcp_server()
    guest = make_netns("o")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(guest, "udhcpc-f"))
        key = netns_key(guest)
        infra.run(["ip", "netns", "del", guest.name])
        provider = next(p for p in engine.providers if p.name == "udhcpc")
        assert client_pids_in(key), "the kept client should still hold the namespace"
        listed = await provider.collect_garbage(gc_context(engine.host, dry_run=True))
        assert len(listed) == 1 and f"netns:{guest.name} eth1" in listed[0]
        assert client_pids_in(key)  # a dry run changes nothing
        assert await provider.collect_garbage(gc_context(engine.host)) == listed
        assert await provider.collect_garbage(gc_context(engine.host)) == []
    assert client_pids_in(key) == []
    assert list(dhcp_run_dir.glob("dhcp/*")) == []


async def test_client_options_are_passed_and_ours_refused(host_ns, make_netns, dhcp_server):
    dhcp_server()
    guest = make_netns("o")
    async with Engine(host_netns=host_ns.path) as engine:
        # A harmless extra option reaches the client.
        att = await engine.attach(spec(guest, "udhcpc:-O 121 -V pwt-vendor"))
        assert att.addresses
        for ipspec in ("udhcpc:-s /bin/true", "dhclient:-sf /bin/true", "dhcpcd:--script=/x",
                       "dhcpcd:eth0", "udhcpc:-qf"):  # fmt: skip
            with pytest.raises(UsageError):
                await engine.attach(spec(guest, ipspec, ifname="eth2"))
        assert "eth2" not in links(guest)
        await engine.detach(f"netns:{guest.name}")


def test_cli_json_reports_the_lease(host_ns, make_netns, dhcp_server, run_pipework):
    server = dhcp_server()
    guest = make_netns("c")
    args = ("--json", "brpwtd", f"netns:{guest.name}", "dhclient", "--dns", "--dhcp-timeout", "20")
    result = run_pipework(*args, netns=host_ns.name)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["address_method"] == "dhclient" and server.in_pool(data["addresses"][0])
    assert (data["gateway"], data["dns"], data["domain"]) == (
        server.server_ip,
        [DNS_SERVER],
        DOMAIN,
    )
    human = run_pipework(*args[1:], netns=host_ns.name)
    assert human.stdout.startswith("unchanged: eth1 in netns:")
    assert f"via {server.server_ip}; dns {DNS_SERVER}; domain {DOMAIN}" in human.stdout
    run_pipework("--json", "brpwtd", f"netns:{guest.name}", "0/0", "--force", netns=host_ns.name)
    assert not Path(f"/etc/netns/{guest.name}").exists()


def test_cli_errors_are_one_line_with_exit_codes(host_ns, make_netns, run_pipework):
    host_ns.exec("ip", "link", "add", "brpwtn", "type", "bridge")
    host_ns.exec("ip", "link", "set", "brpwtn", "up")
    guest = make_netns("e")
    cases = [
        (("brpwtn", f"netns:{guest.name}", "udhcpc", "--dhcp-timeout", "1.5"), 10,
         f"pipework: udhcpc got no DHCP lease for eth1 in netns:{guest.name} within 1.5 s"),
        (("brpwtn", f"netns:{guest.name}", "dhcp"), 2,
         "pipework: the dhcp helper container needs a Docker or Podman guest"),
        (("brpwtn", f"netns:{guest.name}", "dhclient:-sf /bin/true"), 2,
         "pipework: dhclient option -sf is set by pipework (the hook script)"),
        (("brpwtn", f"netns:{guest.name}", "198.18.1.2/24", "--dns"), 2,
         "pipework: --dns, --dhcp-timeout and --dhcp-image apply to DHCP addressing only"),
        (("brpwtn", f"netns:{guest.name}", "udhcpc", "--dhcp-image", "busybox"), 2,
         "pipework: --dhcp-image is for the dhcp helper container; udhcpc runs on the host"),
        (("brpwtn", f"netns:{guest.name}", "dhcpcd", "--dhcp-timeout", "soon"), 2,
         "pipework: timeout 'soon' is not a number of seconds"),
    ]  # fmt: skip
    for args, code, message in cases:
        result = run_pipework(*args, netns=host_ns.name)
        assert (result.returncode, result.stdout) == (code, ""), (args, result.stderr)
        assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert only_loopback(guest)


def test_state_files_live_under_the_run_dir(
    host_ns, make_netns, dhcp_server, dhcp_run_dir, run_pipework
):
    dhcp_server()
    guest = make_netns("f")
    result = run_pipework("brpwtd", f"netns:{guest.name}", "dhclient-f", netns=host_ns.name)
    assert result.returncode == 0, result.stderr
    state = state_of(dhcp_run_dir, guest)
    names = {p.name for p in state.path.iterdir()}
    assert {
        "attachment.json",
        "hook",
        "lease",
        "dhclient.pid",
        "dhclient.leases",
        "dhclient.conf",
    } <= names
    # The pidfile holds the PID dhclient has in its sandbox's PID namespace.
    pid = int((state.path / "dhclient.pid").read_text())
    (daemon,) = [int(p.split()[1]) for p in client_pids_in(netns_key(guest))]
    status = infra._read_proc(daemon, "status").splitlines()
    (nspid,) = [line for line in status if line.startswith("NSpid")]
    assert nspid.split()[-1] == str(pid)
    assert parse_report((state.path / "lease").read_text())["state"] == "bound"
    gone = run_pipework("brpwtd", f"netns:{guest.name}", "0/0", "--force", netns=host_ns.name)
    assert gone.returncode == 0, gone.stderr
    assert not state.exists() and client_pids_in(netns_key(guest)) == []


@pytest.mark.parametrize("client", CLIENTS)
async def test_cancelled_attach_leaves_nothing(client, host_ns, make_netns, dhcp_run_dir):
    host_ns.exec("ip", "link", "add", "brpwtn", "type", "bridge")
    host_ns.exec("ip", "link", "set", "brpwtn", "up")
    guest = make_netns("x")
    async with Engine(host_netns=host_ns.path) as engine:
        with anyio.move_on_after(0.8) as scope:
            await engine.attach(spec(guest, client, bridge="brpwtn"))
    assert scope.cancelled_caught
    assert only_loopback(guest) and client_pids_in(netns_key(guest)) == []
    assert list(dhcp_run_dir.glob("dhcp/*")) == []


async def test_udhcpc_is_ipv4_only(host_ns, make_netns):
    guest = make_netns("6")
    async with Engine(host_netns=host_ns.path) as engine:
        with pytest.raises(UsageError, match="udhcpc gets IPv4 leases only"):
            await engine.attach(spec(guest, "udhcpc", bridge="brpwtn", family=6))
    assert only_loopback(guest)


async def test_a_lost_address_is_not_unchanged(host_ns, make_netns, dhcp_server):
    dhcp_server()
    guest = make_netns("l")
    request = spec(guest, "udhcpc", mac="U:" + guest.name)
    async with Engine(host_netns=host_ns.path) as engine:
        first = await engine.attach(request)
        guest.exec("ip", "addr", "flush", "dev", "eth1")
        again = await engine.attach(request)
        assert again.status == "replaced" and again.addresses == first.addresses
        await engine.detach(f"netns:{guest.name}")


def test_cli_attach_subcommand_takes_the_dhcp_options(
    host_ns, make_netns, dhcp_server, dhcp_run_dir, run_pipework
):
    server = dhcp_server()
    guest = make_netns("a")
    ref = f"netns:{guest.name}"
    result = run_pipework(
        "attach", "brpwtd", ref, "--ip", "udhcpc-f", "--dhcp-timeout", "20", "--dns", "--json",
        netns=host_ns.name,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert server.in_pool(data["addresses"][0]) and data["dns"] == [DNS_SERVER]
    assert (
        client_pids_in(netns_key(guest)) and state_of(dhcp_run_dir, guest).meta()["mode"] == "kept"
    )
    refused = run_pipework("attach", "brpwtd", ref, "--dns", netns=host_ns.name)
    assert refused.returncode == 2
    assert "--dns, --dhcp-timeout and --dhcp-image apply to DHCP addressing only" in refused.stderr
    gone = run_pipework("attach", "brpwtd", ref, "--force", netns=host_ns.name)
    assert gone.returncode == 0, gone.stderr
    assert client_pids_in(netns_key(guest)) == [] and not state_of(dhcp_run_dir, guest).exists()
    assert not Path(f"/etc/netns/{guest.name}").exists()


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_running_client_holds_only_its_capabilities(
    client, host_ns, make_netns, dhcp_server, dhcp_run_dir
):
    """Every process of a kept client: three capabilities, no new privileges,
    a PID namespace of its own whose init stays while the client does."""
    dhcp_server()
    guest = make_netns("c")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(guest, f"{client}-f", mac="U:" + guest.name))
        state = state_of(dhcp_run_dir, guest)
        mntns = tuple(int(w) for w in (state.path / "mntns").read_text().split())
        procs = [
            pid
            for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if infra.netns_key(f"/proc/{pid}/ns/mnt") == mntns
        ]
        statuses = {
            pid: dict(
                line.split(":\t", 1)
                for line in infra._read_proc(pid, "status").splitlines()
                if ":\t" in line
            )
            for pid in procs
        }
        names = sorted(s["Name"] for s in statuses.values())
        assert "pipework-init" in names and client in names, names
        # dhcpcd's privilege separation: its network processes as user
        # dhcpcd with none; its privileged proxy also with SETUID, SETGID, SYS_CHROOT.
        caps = 0x3400 | (0x400C0 if client == "dhcpcd" else 0)
        for status in statuses.values():
            uid = status["Uid"].split()[0]
            assert int(status["CapBnd"], 16) == caps, status
            assert int(status["CapEff"], 16) == int(status["CapPrm"], 16), status
            assert int(status["CapEff"], 16) == (caps if uid == "0" else 0), status
            assert status["NoNewPrivs"] == "1"
            assert len(status["NSpid"].split()) == 2  # host PID, sandbox PID
        (init,) = [pid for pid, s in statuses.items() if s["Name"] == "pipework-init"]
        assert statuses[init]["NSpid"].split()[1] == "1"
        manager = state.meta()["manager"][0]
        assert statuses[manager]["Name"] == client and statuses[manager]["PPid"] == str(init)
        await engine.detach(f"netns:{guest.name}")
    assert [pid for pid in procs if infra._alive(pid)] == []
