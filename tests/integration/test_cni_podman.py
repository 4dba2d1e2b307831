"""A real CNI client: rootful Podman (Debian's 4.3) with the CNI network
backend runs pipework-cni for ``podman run --network NET`` and ``podman rm``.

The conflists put the host side in the test-owned ``host_ns``
(``hostNetns``), so nothing lands in the machine's own namespace.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import cni, infra
from support.cni import links
from support.cni_podman import IMAGE, Podman
from support.daemon import RunningDaemon
from support.dhcp import DhcpServer
from support.infra import NetNS

from pipework.client import NO_DAEMON_ENV

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    infra.require_root()
    infra.require_binaries("podman", "runc", "conmon", "ip")
    infra.require(
        cni.have_reference_plugins("host-local", "tuning"), "needs containernetworking-plugins"
    )
    infra.require(infra.find_static_busybox(), "needs a static busybox (busybox-static)")
    engine = Podman()
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(autouse=True, params=["in-process", "daemon"])
def cni_mode(request: pytest.FixtureRequest, podman: Podman) -> Iterator[str]:
    """Every test twice: the plugin in-process, then served by a running
    ``pipework daemon`` (the thick-plugin model), with the same results."""
    saved = dict(podman.env)
    if request.param == "in-process":
        podman.env[NO_DAEMON_ENV] = "1"
        yield request.param
    else:
        daemon: RunningDaemon = request.getfixturevalue("pipework_daemon")
        podman.env.update(daemon.client_env(podman.env))
        podman.env.pop(NO_DAEMON_ENV, None)
        before = daemon.served()
        yield request.param
        assert daemon.served() > before, "the daemon served none of the plugin calls"
    podman.env.clear()
    podman.env.update(saved)


def run(podman: Podman, name: str, network: str) -> dict[str, object]:
    podman.cli("run", "-d", "--name", name, "--network", network, IMAGE, "sleep", "600")
    data = json.loads(podman.cli("inspect", name).stdout)[0]
    assert isinstance(data, dict)
    return data


def test_podman_run_gets_our_interface_and_rm_removes_it(
    podman: Podman, host_ns: NetNS, tmp_path: Path
) -> None:
    ipam = {
        "type": "host-local",
        "dataDir": str(tmp_path / "ipam"),
        "ranges": [[{"subnet": "198.18.50.0/24", "gateway": "198.18.50.1"}]],
    }
    podman.network(
        "pwtpod",
        [
            {"type": "pipework", "backend": "bridge", "bridge": "brpwtpod",
             "hostNetns": host_ns.path, "ipam": ipam},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}},
        ],
    )  # fmt: skip
    a, b = infra.unique_name("pa"), infra.unique_name("pb")
    try:
        first, second = run(podman, a, "pwtpod"), run(podman, b, "pwtpod")
        ip_a = first["NetworkSettings"]["Networks"]["pwtpod"]["IPAddress"]  # type: ignore[index]
        ip_b = second["NetworkSettings"]["Networks"]["pwtpod"]["IPAddress"]  # type: ignore[index]
        assert {ip_a, ip_b} == {"198.18.50.2", "198.18.50.3"}
        # Our interface, with our marker, in the container.
        shown = podman.cli("exec", a, "ip", "addr", "show", "eth0").stdout
        assert f"inet {ip_a}/24" in shown
        host_sides = {
            name: link
            for name, link in links(host_ns).items()
            if "pipework guest=cni%3Apwtpod%3A" in (link.get("ifalias") or "")
        }
        assert len(host_sides) == 2
        assert all(link["master"] == "brpwtpod" for link in host_sides.values())
        assert (
            podman.cli("exec", a, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_filter").stdout.strip()
            == "1"
        )
        # The two containers reach each other.
        assert (
            podman.cli("exec", a, "ping", "-c", "1", "-W", "2", ip_b, check=False).returncode == 0
        )
        assert (
            podman.cli("exec", b, "ping", "-c", "1", "-W", "2", ip_a, check=False).returncode == 0
        )
    finally:
        podman.cli("rm", "-f", "-t", "0", a, b, check=False)
    # podman rm ran DEL: nothing of ours is left.
    assert [
        n for n, link in links(host_ns).items() if "pipework guest=" in (link.get("ifalias") or "")
    ] == []
    assert (
        sorted(p.name for p in (tmp_path / "ipam" / "pwtpod").iterdir() if p.name[0].isdigit())
        == []
    )
    assert podman.cached_results() == []


def test_podman_with_a_kept_dhcp_client(
    podman: Podman,
    host_ns: NetNS,
    dhcp_server: Callable[..., DhcpServer],
    dhcp_run_dir: Path,
    host_files_unchanged: None,
) -> None:
    """pipework's own addressing under Podman: a kept udhcpc renews the lease;
    ``podman rm`` stops it (DEL releases what the address provider holds)."""
    server = dhcp_server()
    podman.network(
        "pwtdhcp",
        [{"type": "pipework", "backend": "bridge", "bridge": server.bridge,
          "hostNetns": host_ns.path, "address": "udhcpc-f", "dhcpTimeout": 20,
          "runDir": str(dhcp_run_dir)}],
    )  # fmt: skip
    name = infra.unique_name("pd")
    try:
        data = run(podman, name, "pwtdhcp")
        leased = data["NetworkSettings"]["Networks"]["pwtdhcp"]  # type: ignore[index]
        low, high = server.pool
        assert low <= ipaddress.ip_address(leased["IPAddress"]) <= high
        assert leased["Gateway"] == server.server_ip
        assert list((dhcp_run_dir / "dhcp").iterdir())  # the kept client's state
        assert (
            podman.cli(
                "exec", name, "ping", "-c", "1", "-W", "2", server.server_ip, check=False
            ).returncode
            == 0
        )
    finally:
        podman.cli("rm", "-f", "-t", "0", name, check=False)
    assert list((dhcp_run_dir / "dhcp").iterdir()) == []
    assert podman.cached_results() == []
