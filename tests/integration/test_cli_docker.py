"""The drop-in CLI against a private dockerd, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import infra
from support.checks import links, only_loopback

from pipework.engine.specs import derive_mac

pytestmark = pytest.mark.integration


def test_two_containers_on_a_new_bridge_ping(host_ns, make_container, run_pipework):
    web1, web2 = make_container(), make_container()
    r1 = run_pipework("brpwtd", web1.name, "198.18.30.2/24@198.18.30.1", netns=host_ns.name)
    r2 = run_pipework("brpwtd", web2.id[:12], "198.18.30.3/24", netns=host_ns.name)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    assert r1.stdout.startswith(f"created: eth1 in {web1.name} on bridge brpwtd")
    assert infra.ping(web1, "198.18.30.3") and infra.ping(web2, "198.18.30.2")
    routes = web1.exec("ip", "route").stdout
    assert "default via 198.18.30.1 dev eth1" in routes


def test_ifname_hostname_and_json(host_ns, make_container, run_pipework):
    web1 = make_container()
    result = run_pipework(
        "brpwtd",
        "-i",
        "eth2",
        "-l",
        "pwtweb1eth2",
        web1.name,
        "198.18.31.2/24",
        "U:web1",
        netns=host_ns.name,
    )
    assert result.returncode == 0, result.stderr
    result = run_pipework(
        "attach",
        "brpwtd",
        web1.name,
        "--ip",
        "2001:db8:10::2/64",
        "--ifname",
        "eth3",
        "--json",
        netns=host_ns.name,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ifname"] == "eth3" and data["addresses"] == ["2001:db8:10::2/64"]
    assert data["guest"]["runtime"] == "docker" and data["guest"]["key"] == web1.id
    inside = links(web1)
    assert {"eth2", "eth3"} <= set(inside)
    assert inside["eth2"]["address"] == derive_mac("web1")
    assert "pwtweb1eth2" in links(host_ns)


def test_rerun_reports_unchanged_and_force_replaces(host_ns, make_container, run_pipework):
    web1 = make_container()
    args = ("brpwtd", web1.name, "198.18.32.2/24")
    assert run_pipework(*args, netns=host_ns.name).returncode == 0
    again = run_pipework(*args, netns=host_ns.name)
    assert again.returncode == 0 and again.stdout.startswith("unchanged:")
    other = run_pipework("brpwtd", web1.name, "198.18.32.3/24", netns=host_ns.name)
    assert other.returncode == 7 and "--force" in other.stderr
    forced = run_pipework("brpwtd", web1.name, "198.18.32.3/24", "--force", netns=host_ns.name)
    assert forced.returncode == 0 and forced.stdout.startswith("replaced:")
    assert "198.18.32.3/24" in web1.exec("ip", "addr", "show", "eth1").stdout


def test_two_processes_racing_for_a_new_bridge_both_succeed(host_ns, make_netns):
    guests = [make_netns(f"r{i}") for i in range(6)]
    procs = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host_ns.name,
                sys.executable,
                "-m",
                "pipework",
                "brpwtrace",
                f"netns:{g.name}",
                f"198.18.33.{i + 2}/24",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=infra.REPO_ROOT,
        )
        for i, g in enumerate(guests)
    ]
    outcomes = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert all(code == 0 for code, _ in outcomes), outcomes
    assert infra.ping(guests[0], "198.18.33.7")


def test_demo_runs_on_throwaway_namespaces(run_pipework):
    result = run_pipework("demo")
    assert result.returncode == 0, result.stderr
    assert "OK: the guests reach each other" in result.stdout


def test_demo_with_docker(run_pipework, busybox_image):
    result = run_pipework("demo", "--docker", "--image", busybox_image)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "OK" in result.stdout


def test_netns_guest_from_the_cli(host_ns, make_netns, run_pipework):
    blue = make_netns("blue")
    result = run_pipework("brpwtn", f"netns:{blue.name}", "198.18.34.3/24", netns=host_ns.name)
    assert result.returncode == 0, result.stderr
    assert not only_loopback(blue)


def test_attach_right_after_docker_start(host_ns, make_container, docker_daemon, run_pipework):
    """The PID-0 window right after start is retried, not reported as 'not running'."""
    web = make_container(start=False)
    started = subprocess.Popen(
        ["docker", "-H", docker_daemon.host, "start", web.id],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=docker_daemon.env,
    )
    try:
        result = run_pipework("brpwtd", web.name, "198.18.35.2/24", netns=host_ns.name)
    finally:
        started.wait(timeout=60)
    # Either we caught it starting (and waited for its PID) or it was not yet
    # running at all; never a half-made attachment.
    if result.returncode == 0:
        assert "eth1" in links(web)
    else:
        assert result.returncode == 4, result.stderr
        assert only_loopback(host_ns)


@pytest.fixture
def docker_over_tcp(docker_daemon, host_ns):
    """The private daemon's API on 127.0.0.1 of the test's host namespace."""
    import socket
    import threading

    from pipework.engine.kernel.netlink import socket_in_netns

    fd = os.open(host_ns.path, os.O_RDONLY)
    try:
        listener = socket_in_netns(fd, socket.AF_INET, socket.SOCK_STREAM, 0)
    finally:
        os.close(fd)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    unix_path = docker_daemon.host.removeprefix("unix://")
    stop = threading.Event()

    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(unix_path)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def test_tcp_docker_host_goes_through_aiodocker(
    host_ns, make_container, run_pipework, docker_over_tcp
):
    web = make_container()
    env = dict(os.environ, DOCKER_HOST=docker_over_tcp)
    result = run_pipework("brpwtd", web.name, "198.18.36.2/24", netns=host_ns.name, env=env)
    assert result.returncode == 0, result.stderr
    assert "eth1" in links(web)
    missing = run_pipework("brpwtd", "pwt-nosuch", "0/0", netns=host_ns.name, env=env)
    assert missing.returncode == 3 and "no such container: pwt-nosuch" in missing.stderr


def test_demo_keep_leaves_named_namespaces(run_pipework):
    names = ["pwdemo-host", "pwdemo-a", "pwdemo-b"]
    try:
        result = run_pipework("demo", "--keep")
        assert result.returncode == 0, result.stderr
        assert "; ".join(f"ip netns del {n}" for n in names) in result.stdout
        listed = infra.run(["ip", "netns", "list"]).stdout
        assert all(name in listed for name in names)
    finally:
        for name in names:
            infra.run(["ip", "netns", "del", name], check=False)
