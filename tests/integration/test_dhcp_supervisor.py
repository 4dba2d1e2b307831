"""The daemon's DHCP supervisor against real kept clients and a real dnsmasq.

udhcpc renews when it gets SIGUSR1, so a renewal takes no lease time; a
crash is a SIGKILL of every process of the client's sandbox.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from functools import partial

import anyio
import anyio.abc
import pytest
from support import infra
from support.checks import only_loopback
from support.dhcp import client_pids_in

from pipework import AddressSpec, AttachSpec, Engine
from pipework.backends.addresses.dhcp.toolbox import StateDir
from pipework.daemon.supervisor import supervise
from pipework.engine import KeptClient

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.usefixtures("host_files_unchanged", "dhcp_run_dir"),
]

INTERVAL = 0.2


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _clients_installed():
    infra.require_binaries("udhcpc", "dnsmasq")


def spec(guest: infra.NetNS, ipspec: str = "udhcpc-f") -> AttachSpec:
    return AttachSpec(
        host="brpwtd",
        guest=f"netns:{guest.name}",
        address=AddressSpec.parse(ipspec),
        mac="U:" + guest.name,
    )


def client_pids(guest: infra.NetNS) -> list[int]:
    return [int(p.split()[1]) for p in client_pids_in(infra.netns_key(guest.path))]


async def the_client(engine: Engine, guest: infra.NetNS) -> KeptClient:
    (client,) = [c for c in await engine.kept_clients() if c.guest == f"netns:{guest.name}"]
    return client


async def until(events: list, kind: str, seconds: float = 20.0) -> None:
    """Wait for an event of ``kind``."""
    with anyio.fail_after(seconds):
        while not of(events, kind):
            await anyio.sleep(0.05)


def start(tg: anyio.abc.TaskGroup, engine: Engine, events: list) -> None:
    tg.start_soon(partial(supervise, engine, events.append, interval=INTERVAL))


def of(events: list, kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


async def test_adopted_renewed_killed_and_revived(host_ns, make_netns, dhcp_server, dhcp_run_dir):
    dhcp_server()
    guest = make_netns("s")
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(spec(guest))
        first = await the_client(engine, guest)
        assert first.alive and first.pid and first.lease_address == att.addresses[0]
    # In a session (and process group) of their own: what signals the
    # daemon's session or group, a terminal's hang-up, reaches no client.
    for pid in [first.pid, *client_pids(guest)]:
        assert os.getsid(pid) not in (os.getsid(0), os.getpid())
        assert os.getpgid(pid) != os.getpgid(0)

    # Two daemons one after the other (a restart): each adopts the same process.
    for _ in range(2):
        events: list[dict] = []
        async with Engine(host_netns=host_ns.path) as engine, anyio.create_task_group() as tg:
            start(tg, engine, events)
            await until(events, "dhcp.adopted")
            await anyio.sleep(5 * INTERVAL)
            tg.cancel_scope.cancel()
        (adopted,) = of(events, "dhcp.adopted")
        assert adopted["pid"] == first.pid and adopted["address"] == att.addresses[0]
        assert [e["type"] for e in events] == ["dhcp.adopted"], "nothing restarted"

    events = []
    async with Engine(host_netns=host_ns.path) as engine, anyio.create_task_group() as tg:
        start(tg, engine, events)
        await until(events, "dhcp.adopted")
        # A renewal: udhcpc renews on SIGUSR1; its hook rewrites the report.
        for pid in client_pids(guest):
            os.kill(pid, signal.SIGUSR1)
        await until(events, "dhcp.renew")
        (renew,) = of(events, "dhcp.renew")[:1]
        assert renew["provider"] == "udhcpc" and renew["ifname"] == "eth1"
        assert renew["address"] == att.addresses[0] and renew["lease"] == 120
        assert (await the_client(engine, guest)).pid == first.pid

        # A crash: every process of the sandbox killed. Started once again.
        infra.terminate_pids([*client_pids(guest), first.pid], grace=0)  # SIGTERM, SIGKILL at once
        await until(events, "dhcp.restarted", seconds=40)
        await anyio.sleep(5 * INTERVAL)
        tg.cancel_scope.cancel()
    kinds = [e["type"] for e in events if e["type"] != "dhcp.renew"]
    assert kinds == ["dhcp.adopted", "dhcp.exited", "dhcp.restarted"], events
    (exited,) = of(events, "dhcp.exited")
    assert "exit_code" not in exited and exited["key"] == f"netns:{guest.name}"
    (restarted,) = of(events, "dhcp.restarted")
    assert restarted["pid"] != first.pid and restarted["address"] == att.addresses[0]

    async with Engine(host_netns=host_ns.path) as engine:
        now = await the_client(engine, guest)
        assert now.alive and now.pid == restarted["pid"] and client_pids(guest)
        # Still the same attachment: a re-run finds it intact.
        assert (await engine.attach(spec(guest))).status == "unchanged"
        await engine.detach(f"netns:{guest.name}")
    assert client_pids(guest) == [] and only_loopback(guest)


@pytest.mark.parametrize("ipspec", ["dhclient-f", "dhcpcd-f", "dhclient-f/6", "dhcpcd-f/6"])
async def test_the_other_clients_are_revived_too(
    ipspec, host_ns, make_netns, dhcp_server, dhcp_run_dir
):
    client = ipspec.partition("-")[0]
    infra.require_binaries(client)
    dhcp_server(ipv6="stateful")
    guest = make_netns("s")
    events: list[dict] = []
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(spec(guest, ipspec))
        first = await the_client(engine, guest)
        assert first.alive and first.pid
        async with anyio.create_task_group() as tg:
            start(tg, engine, events)
            await until(events, "dhcp.adopted")
            infra.terminate_pids([first.pid], grace=0)
            await until(events, "dhcp.restarted", seconds=40)
            tg.cancel_scope.cancel()
        assert [e["type"] for e in events] == ["dhcp.adopted", "dhcp.exited", "dhcp.restarted"]
        assert events[-1]["provider"] == client and events[-1]["address"] == att.addresses[0]
        assert (await the_client(engine, guest)).alive
        await engine.detach(f"netns:{guest.name}")
    assert client_pids(guest) == [] and only_loopback(guest)


@pytest.mark.parametrize("forged", [False, True])
async def test_a_client_whose_interface_is_gone_is_not_revived(
    forged, host_ns, make_netns, dhcp_server, dhcp_run_dir
):
    dhcp_server()
    guest = make_netns("s")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(guest))
        client = await the_client(engine, guest)
    state = StateDir.of(str(dhcp_run_dir), f"netns:{guest.name}", "eth1")
    try:
        events: list[dict] = []
        async with Engine(host_netns=host_ns.path) as engine, anyio.create_task_group() as tg:
            start(tg, engine, events)
            await until(events, "dhcp.adopted")
            # The interface deleted behind pipework's back, then the client dies.
            alias = guest.exec("ip", "-j", "link", "show", "eth1").stdout
            guest.exec("ip", "link", "del", "eth1")
            if forged:  # the guest's own eth1 with a copy of pipework's marker
                marker = json.loads(alias)[0]["ifalias"]
                assert marker.startswith("pipework ")
                guest.exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "pwtfake")
                guest.exec("ip", "link", "set", "eth1", "alias", marker, "up")
            assert client.pid is not None
            infra.terminate_pids([*client_pids(guest), client.pid], grace=0)
            await until(events, "dhcp.given-up")
            await anyio.sleep(10 * INTERVAL)
            tg.cancel_scope.cancel()
        assert [e["type"] for e in events] == ["dhcp.adopted", "dhcp.exited", "dhcp.given-up"]
        assert "gc" in events[-1]["error"]
        assert client_pids(guest) == []
        if forged:
            guest.exec("ip", "link", "del", "eth1")
        assert only_loopback(guest)
        assert state.exists(), "the supervisor does not clean up: gc does"
    finally:
        shutil.rmtree(state.path, ignore_errors=True)


async def test_a_detached_client_is_forgotten(host_ns, make_netns, dhcp_server, dhcp_run_dir):
    dhcp_server()
    guest = make_netns("s")
    events: list[dict] = []
    async with Engine(host_netns=host_ns.path) as engine, anyio.create_task_group() as tg:
        await engine.attach(spec(guest))
        start(tg, engine, events)
        await until(events, "dhcp.adopted")
        # Detach stops the client and removes its state: nothing to revive.
        await engine.detach(f"netns:{guest.name}")
        started = time.monotonic()
        await anyio.sleep(10 * INTERVAL)
        tg.cancel_scope.cancel()
    assert time.monotonic() - started >= 10 * INTERVAL
    assert [e["type"] for e in events] == ["dhcp.adopted"]
    assert client_pids(guest) == [] and only_loopback(guest)
