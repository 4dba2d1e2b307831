"""The integration fixtures themselves work (and clean up: the session-end
leak check in tests/conftest.py fails the run otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from support import infra
from support.infra import (
    DockerDaemon,
    MakeContainer,
    MakeNetNS,
    NetNS,
    RunPipework,
    ping,
)

pytestmark = pytest.mark.integration


def _links(ns: NetNS) -> list[str]:
    return sorted(link["ifname"] for link in json.loads(ns.exec("ip", "-j", "link").stdout))


def test_host_ns_is_a_fresh_namespace(host_ns: NetNS) -> None:
    assert host_ns.name.startswith("pwt-h-")
    assert host_ns.path == f"/run/netns/{host_ns.name}"
    assert os.path.exists(host_ns.path)
    assert infra.netns_key(host_ns.path) != infra.netns_key("/proc/self/ns/net")
    assert _links(host_ns) == ["lo"]
    assert "state UNKNOWN" in host_ns.exec("ip", "link", "show", "lo").stdout  # lo is up


def test_two_namespaces_ping_over_veth(make_netns: MakeNetNS) -> None:
    a, b = make_netns("a"), make_netns("b")
    assert a.name.startswith("pwt-a-") and b.name.startswith("pwt-b-")
    # Created inside a, peer moved straight into b: the real host namespace
    # never sees either end.
    a.exec("ip", "link", "add", "pwt-va", "type", "veth", "peer", "name", "pwt-vb", "netns", b.name)
    for ns, dev, v4, v6 in (
        (a, "pwt-va", "198.18.0.1/30", "2001:db8:100::1/64"),
        (b, "pwt-vb", "198.18.0.2/30", "2001:db8:100::2/64"),
    ):
        ns.exec("ip", "addr", "add", v4, "dev", dev)
        ns.exec("ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
        ns.exec("ip", "link", "set", dev, "up")

    assert ping(a, "198.18.0.2")
    assert ping(b, "198.18.0.1")
    assert ping(a, "2001:db8:100::2")
    assert ping(b, "2001:db8:100::1")
    assert not ping(a, "198.18.0.99")


def test_processes_in_a_namespace_are_found(make_netns: MakeNetNS) -> None:
    # The mechanism the fixtures use to reap stray DHCP clients etc.
    ns = make_netns()
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "sleep", "600"])
    try:
        key = infra.netns_key(ns.path)
        assert key is not None
        for _ in range(100):  # `ip netns exec` execs sleep once it has switched
            if proc.pid in infra.pids_in_netns(key):
                break
            time.sleep(0.02)
        assert proc.pid in infra.pids_in_netns(key)
    finally:
        proc.kill()
        proc.wait()


def test_container_has_only_lo(make_container: MakeContainer) -> None:
    container = make_container()
    assert container.name.startswith("pwt-c-")
    assert container.pid > 0
    out = container.exec("ip", "-o", "link").stdout
    names = [line.split(":")[1].strip() for line in out.splitlines()]
    assert names == ["lo"]
    assert container.inspect()["HostConfig"]["NetworkMode"] == "none"
    assert infra.netns_key(container.netns_path) != infra.netns_key("/proc/self/ns/net")


def test_created_container_is_not_running(make_container: MakeContainer) -> None:
    container = make_container(start=False)
    assert container.pid == 0
    assert container.inspect()["State"]["Status"] == "created"


def test_busybox_image_has_ping(
    docker_daemon: DockerDaemon, busybox_image: str, make_container: MakeContainer
) -> None:
    assert busybox_image == infra.TEST_IMAGE
    # Later features default to plain "busybox".
    docker_daemon.cli("image", "inspect", infra.DEFAULT_IMAGE_ALIAS)
    assert os.environ["DOCKER_HOST"] == docker_daemon.host
    container = make_container(command=("sleep", "600"))
    assert ping(container, "127.0.0.1")
    assert "udhcpc" in container.exec("ls", "/sbin").stdout


def test_container_and_netns_ping_over_veth(
    make_container: MakeContainer, make_netns: MakeNetNS
) -> None:
    """The pipework situation: a veth from a namespace into a container."""
    container = make_container()
    guest_pid = str(container.pid)
    ns = make_netns()
    ns.exec("ip", "link", "add", "pwt-vn", "type", "veth", "peer", "name", "pwt-vc")
    ns.exec("ip", "link", "set", "pwt-vc", "netns", guest_pid)
    ns.exec("ip", "addr", "add", "198.18.1.1/24", "dev", "pwt-vn")
    ns.exec("ip", "link", "set", "pwt-vn", "up")
    # The container has no CAP_NET_ADMIN: configure its side from outside,
    # as pipework does.
    inside = ["nsenter", "-t", guest_pid, "-n", "ip"]
    infra.run([*inside, "addr", "add", "198.18.1.2/24", "dev", "pwt-vc"])
    infra.run([*inside, "link", "set", "pwt-vc", "up"])

    assert ping(container, "198.18.1.1")
    assert ping(ns, "198.18.1.2")


def test_run_pipework_never_raises(run_pipework: RunPipework, host_ns: NetNS) -> None:
    result = run_pipework("--help", netns=host_ns.name, timeout=60)
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.args[:4] == ["ip", "netns", "exec", host_ns.name]
