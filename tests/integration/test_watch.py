"""``pipework watch`` against the private dockerd: labels, restarts, deaths,
its own restart, the daemon going away, hostile labels, many at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from support import infra
from support.checks import links
from support.dhcp import client_pids_in

pytestmark = pytest.mark.integration


@dataclass
class Watch:
    """A ``pipework watch`` subprocess whose JSON log lines are collected."""

    proc: subprocess.Popen[str]
    lines: list[dict] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def wait_log(self, pred: Callable[[dict], bool], timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if pred(line):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no such log line; the watcher said:\n{''.join(self.raw)}")

    def connected(self) -> None:
        self.wait_log(lambda line: line.get("event") == "connected")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


@pytest.fixture
def start_watch(host_ns, docker_daemon, run_dir) -> Iterator[Callable[..., Watch]]:
    made: list[Watch] = []

    def start(*args: str, docker_host: str | None = None) -> Watch:
        env = dict(os.environ, PIPEWORK_RUN_DIR=str(run_dir))
        if docker_host:
            env["DOCKER_HOST"] = docker_host
        argv = ["ip", "netns", "exec", host_ns.name, sys.executable, "-m", "pipework"]
        argv += ["watch", "--log-format", "json", "--interval", "2", *args]
        proc = subprocess.Popen(
            argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=infra.REPO_ROOT,
        )  # fmt: skip
        watch = Watch(proc)
        threading.Thread(target=watch._read, daemon=True).start()
        made.append(watch)
        return watch

    yield start
    for watch in made:
        watch.stop()


def label(ifname: str, value: str) -> tuple[str, str]:
    return ("--label", f"pipework.{ifname}={value}")


def eth(
    container: infra.Container,
    ifname: str = "eth1",
    timeout: float = 20,
    watch: Watch | None = None,
) -> dict:
    """The guest interface once it is up with an address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out = infra.run(
                ["nsenter", "-t", str(container.pid), "-n", "ip", "-j", "addr", "show", ifname],
                check=False,
            )
        except (subprocess.SubprocessError, KeyError, ValueError):
            out = None
        if out is not None and out.returncode == 0:
            data = json.loads(out.stdout)[0]
            if "UP" in data["flags"] and any(a["family"] == "inet" for a in data["addr_info"]):
                return data
        time.sleep(0.1)
    said = "".join(watch.raw) if watch is not None else ""
    raise AssertionError(f"{ifname} in {container.name} never came up with an address\n{said}")


def addr(data: dict) -> str:
    return next(
        f"{a['local']}/{a['prefixlen']}" for a in data["addr_info"] if a["family"] == "inet"
    )


def test_a_labelled_container_is_attached_on_start_and_again_after_restart(
    start_watch, make_container, docker_daemon
):
    watch = start_watch()
    watch.connected()
    c = make_container(extra_args=label("eth1", "brpwtw0 198.18.30.2/24@198.18.30.1"))
    first = eth(c)
    assert addr(first) == "198.18.30.2/24"
    created = watch.wait_log(lambda line: line.get("event") == "created")
    assert created["guest"] == c.name and created["latency_ms"] < 5000
    docker_daemon.cli("restart", "-t", "0", c.id)
    again = eth(c)
    assert again["address"] == first["address"] and addr(again) == "198.18.30.2/24"
    default = infra.run(["nsenter", "-t", str(c.pid), "-n", "ip", "-j", "route"]).stdout
    assert any(r["dst"] == "default" and r["gateway"] == "198.18.30.1" for r in json.loads(default))


def test_the_watcher_catches_up_after_its_own_restart(start_watch, make_container):
    watch = start_watch()
    a = make_container(extra_args=label("eth1", "brpwtw1 198.18.31.2/24"))
    eth(a)
    assert watch.stop() == 0  # SIGTERM: a clean exit, attachments stay
    assert addr(eth(a)) == "198.18.31.2/24"
    b = make_container(extra_args=label("eth2", "brpwtw1 198.18.31.3/24"))
    start_watch()
    assert addr(eth(b, "eth2")) == "198.18.31.3/24"


def test_once_reconciles_and_exits(host_ns, make_container, run_dir, run_pipework):
    a = make_container(extra_args=label("eth1", "brpwtw2 198.18.32.2/24"))
    env = dict(os.environ, PIPEWORK_RUN_DIR=str(run_dir))
    result = run_pipework("watch", "--once", netns=host_ns.name, env=env)
    assert result.returncode == 0, result.stderr
    assert addr(eth(a, timeout=1)) == "198.18.32.2/24"


def test_hostile_and_broken_labels_are_reported_and_skipped(start_watch, make_container, tmp_path):
    canary = tmp_path / "pwned"
    watch = start_watch()
    hostile = make_container(
        extra_args=(
            *label("eth1", f"brpwtw3 $(touch {canary}) `touch {canary}`; touch {canary}"),
            *label("eth2", "brpwtw3 198.18.33.300/24"),
            *label("eth3", "'unterminated"),
        )
    )
    for ifname in ("eth1", "eth2", "eth3"):
        watch.wait_log(
            lambda line, i=ifname: (
                f"label pipework.{i} of {hostile.name}" in line.get("message", "")
            )
        )
    good = make_container(extra_args=label("eth1", "brpwtw3 198.18.33.2/24"))
    assert addr(eth(good)) == "198.18.33.2/24"  # the watcher kept running
    assert set(links(hostile)) == {"lo"} and not canary.exists()


def test_status_shows_what_the_watcher_manages(start_watch, make_container, host_ns, run_dir):
    start_watch()
    c = make_container(extra_args=label("eth1", "brpwtw4 198.18.34.2/24"))
    eth(c)
    env = dict(os.environ, PIPEWORK_RUN_DIR=str(run_dir))
    argv = [sys.executable, "-m", "pipework", "--json", "watch", "--status"]
    for _ in range(50):
        result = infra.run(argv, env=env, cwd=infra.REPO_ROOT, check=False)
        data = json.loads(result.stdout or "{}")
        if c.id in data.get("guests", {}):
            break
        time.sleep(0.1)
    assert data["sources"] == {"docker": "connected"}
    assert data["guests"][c.id]["attachments"]["eth1"]["addresses"] == ["198.18.34.2/24"]


def test_a_label_with_several_addresses_gets_them_all(start_watch, make_container, run_dir):
    watch = start_watch()
    watch.connected()
    dual = "198.18.42.2/24@198.18.42.1,2001:db8:42::2/64@2001:db8:42::1"
    c = make_container(extra_args=label("eth1", f"brpwtwm {dual}"))
    eth(c, watch=watch)
    # The log line comes once the attach is whole (eth() sees the IPv4 address first).
    created = watch.wait_log(lambda line: line.get("event") == "created")
    data = eth(c, watch=watch)
    found = {f"{a['local']}/{a['prefixlen']}" for a in data["addr_info"] if a["scope"] == "global"}
    assert found == {"198.18.42.2/24", "2001:db8:42::2/64"}
    assert "198.18.42.2/24 static, 2001:db8:42::2/64 static" in json.dumps(created)
    routes = {
        family: json.loads(
            infra.run(["nsenter", "-t", str(c.pid), "-n", "ip", "-j", family, "route"]).stdout
        )
        for family in ("-4", "-6")
    }
    assert any(r.get("gateway") == "198.18.42.1" for r in routes["-4"] if r["dst"] == "default")
    assert any(r.get("gateway") == "2001:db8:42::1" for r in routes["-6"] if r["dst"] == "default")
    env = dict(os.environ, PIPEWORK_RUN_DIR=str(run_dir))
    argv = [sys.executable, "-m", "pipework", "--json", "watch", "--status"]
    for _ in range(50):
        status = json.loads(
            infra.run(argv, env=env, cwd=infra.REPO_ROOT, check=False).stdout or "{}"
        )
        if c.id in status.get("guests", {}):
            break
        time.sleep(0.1)
    eth1 = status["guests"][c.id]["attachments"]["eth1"]
    assert eth1["address_method"] == "static,static"
    assert eth1["address_sources"] == {"198.18.42.2/24": "static", "2001:db8:42::2/64": "static"}


def test_status_without_a_watcher(run_dir):
    env = dict(os.environ, PIPEWORK_RUN_DIR=str(run_dir))
    result = infra.run(
        [sys.executable, "-m", "pipework", "watch", "--status"], env=env, cwd=infra.REPO_ROOT,
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("pipework: no watcher is running")


def test_fifty_containers_started_at_once(start_watch, make_container):
    start_watch()
    with ThreadPoolExecutor(8) as pool:
        containers = list(
            pool.map(
                lambda i: make_container(
                    extra_args=label("eth1", f"brpwtw5 198.18.35.{i + 10}/24")
                ),
                range(50),
            )
        )
    for i, c in enumerate(containers):
        assert addr(eth(c, timeout=60)) == f"198.18.35.{i + 10}/24"


def test_the_daemon_goes_away_and_comes_back(start_watch, busybox_image, host_ns):
    daemon = infra.DockerDaemon()
    try:
        daemon.start()
        infra.import_busybox_image(daemon, infra.find_static_busybox() or "")
        watch = start_watch(docker_host=daemon.host)
        cid = daemon.cli(
            "run", "-d", "--network", "none", *label("eth1", "brpwtw6 198.18.36.2/24"),
            busybox_image, "sleep", "3600",
        ).stdout.strip()  # fmt: skip
        container = infra.Container(daemon=daemon, name=cid[:12], id=cid)
        eth(container)
        daemon.stop_dockerd()
        watch.wait_log(lambda line: line.get("event") == "disconnected")
        daemon.start_dockerd()
        daemon.cli("start", cid)
        assert addr(eth(container, timeout=40)) == "198.18.36.2/24"
        container.remove()
    finally:
        daemon.stop()


def test_a_dead_containers_ovs_port_is_removed(ovs, start_watch, make_container, docker_daemon):
    watch = start_watch()
    watch.connected()
    c = make_container(extra_args=label("eth1", "ovspwtw 198.18.37.2/24 @5"))
    eth(c, watch=watch)
    (port,) = ovs.ports("ovspwtw")
    assert ovs.get("Port", port, "tag") == 5
    # The next reconciliations find the bridge there: pipework's (its
    # external_ids), so the label may still use it.
    time.sleep(4.5)
    assert refusals(watch, c.name) == []
    docker_daemon.cli("kill", c.id)
    died = watch.wait_log(lambda line: line.get("event") == "died")
    # The veth may be gone with the namespace already (the kernel tears it
    # down in the background): what counts is that the port went.
    assert died["guest"] == c.name
    assert ovs.ports("ovspwtw") == []


@pytest.fixture
def dhcp_watch(dhcp_server, start_watch, host_files_unchanged) -> Watch:
    """A DHCP server on brpwtd, and a watcher allowed to join that bridge
    (the test made it, not pipework)."""
    dhcp_server()
    watch = start_watch("--allow-host", "brpwtd")
    watch.connected()
    return watch


def test_a_kept_dhcp_client_is_supervised_and_stopped_with_its_guest(
    dhcp_watch, make_container, docker_daemon
):
    watch = dhcp_watch
    c = make_container(extra_args=label("eth1", "brpwtd udhcpc-f"))
    leased = addr(eth(c, watch=watch))
    # The address is there once the client's hook ran, before the client
    # went to the background and the watcher recorded it: wait for that.
    watch.wait_log(lambda line: line.get("event") == "created" and line.get("guest") == c.name)
    key = infra.netns_key(c.netns_path)
    (first,) = client_pids_in(key)
    infra.terminate_pids([int(first.split()[1])])  # "pid 1234 (udhcpc ...)"
    # The next reconciliation (every 2 s here) finds the attachment not
    # whole and rebuilds it: a new client, the same MAC, the same lease.
    watch.wait_log(lambda line: line.get("event") == "replaced" and line.get("guest") == c.name)
    (second,) = client_pids_in(key)
    assert second != first and addr(eth(c)) == leased
    docker_daemon.cli("kill", c.id)
    watch.wait_log(lambda line: line.get("event") == "died")
    deadline = time.monotonic() + 10
    while client_pids_in(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client_pids_in(key) == []


def test_a_topology_file_declares_too(start_watch, make_container, tmp_path, run_pipework):
    topology = tmp_path / "lab.yaml"
    a = make_container(start=False)
    topology.write_text(
        "version: 1\n"
        "defaults: {host: brpwtw7}\n"
        "attachments:\n"
        f"  - {{guest: {a.name}, address: 198.18.38.2/24, ifname: lan0}}\n"
        "  - {guest: pwt-nosuchcontainer, address: 198.18.38.3/24}\n"
    )
    watch = start_watch("--file", str(topology))
    watch.connected()
    infra.run([a.daemon.docker, "-H", a.daemon.host, "start", a.id])
    assert addr(eth(a, "lan0", watch=watch)) == "198.18.38.2/24"


def test_a_topology_files_links_are_said_to_be_not_watched(docker_daemon, tmp_path, run_pipework):
    topology = tmp_path / "lab.yaml"
    topology.write_text('links:\n  - endpoints: ["pwt-r1:eth1", "pwt-r2:eth1"]\n')
    result = run_pipework("watch", "--file", str(topology), "--once")
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "link" in line]
    assert len(warned) == 1 and "not its 1 link between guests" in warned[0], result.stderr
    assert "pipework apply" in warned[0]


def test_a_bad_topology_file_stops_the_watcher_at_once(tmp_path, run_pipework):
    topology = tmp_path / "bad.yaml"
    topology.write_text("version: 1\nattachments:\n  - {guest: web1, address: 198.18.38.2}\n")
    result = run_pipework("watch", "--file", str(topology))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"pipework: {topology}:3: attachments[0]") and "netmask" in line


# -- the label policy -------------------------------------------------------------------


@pytest.fixture
def labelled_image(docker_daemon, busybox_image) -> Iterator[Callable[..., str]]:
    """Factory: an image FROM the test image with ``LABEL`` lines (no registry)."""
    made: list[str] = []

    def make(labels: dict[str, str]) -> str:
        tag = f"pipework-test/{infra.unique_name('img')}:latest"
        changes = [
            a
            for k, v in labels.items()
            for a in ("--change", f"LABEL {json.dumps(k)}={json.dumps(v)}")
        ]
        cid = docker_daemon.cli("create", busybox_image, "true").stdout.strip()
        try:
            docker_daemon.cli("commit", *changes, cid, tag)
        finally:
            docker_daemon.cli("rm", "-f", cid)
        made.append(tag)
        return tag

    yield make
    for tag in made:
        docker_daemon.cli("rmi", "-f", tag, check=False)


def refusals(watch: Watch, guest: str) -> list[dict]:
    return [
        line for line in list(watch.lines)
        if line.get("event") == "refused" and line.get("guest") == guest
    ]  # fmt: skip


def host_state(host_ns) -> tuple[list[str], str]:
    """The host namespace's interfaces (name, kind, state) and firewall."""
    names = sorted(
        f"{name} {data.get('linkinfo', {}).get('info_kind', '')} {data['operstate']}"
        for name, data in links(host_ns).items()
    )
    rules = [host_ns.exec("iptables", "-S", check=False).stdout]
    rules.append(host_ns.exec("nft", "list", "ruleset", check=False).stdout)
    return names, "\n".join(rules)


def test_an_image_label_is_acted_on_only_when_allowed(
    start_watch, make_container, labelled_image, host_ns
):
    image = labelled_image({"pipework.eth1": "brpwtwi 198.18.39.2/24"})
    watch = start_watch()
    watch.connected()
    inherited = make_container(image=image)
    # The same key set on the container itself, with its own value, is its own.
    overridden = make_container(image=image, extra_args=label("eth1", "brpwtwi 198.18.39.3/24"))
    assert addr(eth(overridden, watch=watch)) == "198.18.39.3/24"
    line = watch.wait_log(
        lambda line: line.get("event") == "refused" and line.get("guest") == inherited.name
    )
    assert "--allow-image-labels" in line["message"] and line["ifname"] == "eth1"
    time.sleep(4.5)  # two more reconciliations: still one warning
    assert len(refusals(watch, inherited.name)) == 1
    assert set(links(inherited)) == {"lo"}
    assert watch.stop() == 0
    start_watch("--allow-image-labels")
    assert addr(eth(inherited)) == "198.18.39.2/24"


HOSTILE = {
    "eth1": "pwtnic0 0/0 --direct-phys",
    "eth2": "pwtnicp 198.18.41.2/24",  # macvlan on a host NIC
    "eth3": "brpwtwf 198.18.41.3/24 --allow-forward",
    "eth4": "brpwtfor 198.18.41.4/24",  # a bridge pipework did not make
}


@pytest.fixture
def hostile_host(host_ns):
    """``host_ns`` with a NIC pair, a foreign bridge, and a FORWARD trap
    (when this kernel has br_netfilter in a new namespace)."""
    host_ns.exec("ip", "link", "add", "pwtnic0", "type", "veth", "peer", "name", "pwtnicp")
    host_ns.exec("ip", "link", "add", "brpwtfor", "type", "bridge")
    for name in ("pwtnic0", "pwtnicp", "brpwtfor"):
        host_ns.exec("ip", "link", "set", name, "up")
    host_ns.exec("iptables", "-P", "FORWARD", "DROP", check=False)
    sysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    trapped = host_ns.exec("sh", "-c", f"echo 1 > {sysctl}", check=False).returncode == 0
    return host_ns, trapped


def test_host_affecting_labels_are_refused_by_default(
    start_watch, make_container, hostile_host, run_dir
):
    host_ns, _ = hostile_host
    before = host_state(host_ns)
    watch = start_watch()
    watch.connected()
    c = make_container(extra_args=[a for i, v in HOSTILE.items() for a in label(i, v)])
    for ifname, fragment in [
        ("eth1", "--allow-direct-phys --allow-host pwtnic0"),
        ("eth2", "--allow-kinds macvlan --allow-host pwtnicp"),
        ("eth3", "--allow-forward"),
        ("eth4", "--allow-host brpwtfor"),
    ]:
        line = watch.wait_log(
            lambda line, i=ifname: line.get("event") == "refused" and line.get("ifname") == i
        )
        assert fragment in line["message"] and line["level"] == "warning"
    time.sleep(4.5)  # two more reconciliations
    assert sorted(line["ifname"] for line in refusals(watch, c.name)) == sorted(HOSTILE)
    assert set(links(c)) == {"lo"}
    env = dict(os.environ, PIPEWORK_RUN_DIR=str(run_dir))
    argv = [sys.executable, "-m", "pipework", "--json", "watch", "--status"]
    status = json.loads(infra.run(argv, env=env, cwd=infra.REPO_ROOT).stdout)
    assert status["refused"] == len(HOSTILE)
    assert sorted(status["guests"][c.id]["refused"]) == sorted(HOSTILE)
    assert host_state(host_ns) == before
    assert not any("Traceback" in raw for raw in watch.raw)


def test_host_affecting_labels_with_the_allowance(start_watch, make_container, hostile_host):
    host_ns, trapped = hostile_host
    watch = start_watch(
        "--allow-direct-phys", "--allow-kinds", "macvlan", "--allow-forward",
        "--allow-host", "pwtnic0", "--allow-host", "pwtnicp", "--allow-host", "brpwtfor",
    )  # fmt: skip
    watch.connected()
    c = make_container(extra_args=[a for i, v in HOSTILE.items() for a in label(i, v)])
    for ifname in ("eth2", "eth3", "eth4"):
        eth(c, ifname, watch=watch)
    got = links(c)
    assert got["eth2"]["linkinfo"]["info_kind"] == "macvlan"
    assert "eth1" in got and "pwtnic0" not in links(host_ns)  # the NIC itself moved
    if trapped:
        rules = host_ns.exec("iptables", "-S", "FORWARD").stdout
        assert "pipework allow-forward brpwtwf" in rules
    assert refusals(watch, c.name) == []


def test_dhcp_helper_containers_are_not_guests(dhcp_watch, make_container, docker_daemon):
    watch = dhcp_watch
    c = make_container(extra_args=label("eth1", "brpwtd dhcp:-f"))
    eth(c, watch=watch)
    watch.wait_log(lambda line: line.get("event") == "created" and line.get("guest") == c.name)
    helpers = docker_daemon.cli(
        "ps", "--filter", "label=pipework.helper=dhcp", "--format", "{{.Names}}"
    ).stdout.split()
    assert helpers  # the kept helper runs beside its guest
    time.sleep(4.5)  # the helper's start event, then two reconciliations
    docker_daemon.cli("kill", c.id)
    watch.wait_log(lambda line: line.get("event") == "died" and line.get("guest") == c.name)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and docker_daemon.cli("ps", "-q", "--filter", "label=pipework.helper=dhcp").stdout.strip()
    ):
        time.sleep(0.1)
    said = [line for line in watch.raw if any(h in line for h in helpers)]
    assert said == [] and not any("pipework.guest" in line for line in watch.raw)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--allow-option", "everything"), "--allow-option: no option named everything"),
        (("--allow-kinds", "macvlan,nosuch"), "--allow-kinds: no link backend named nosuch"),
        (("--allow-host", "eth0/x"), "--allow-host: interface name 'eth0/x' is not valid"),
    ],
)
def test_a_bad_allowance_stops_the_watcher_at_once(args, fragment, host_ns, run_pipework):
    result = run_pipework("watch", "--once", *args, netns=host_ns.name)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"pipework: {fragment}")


def test_a_guest_that_forges_its_marker_moves_nothing_on_the_host(
    start_watch, make_container, host_ns
):
    """A container with NET_ADMIN rewrites its interface's marker (here: says
    it is a NIC passed through, named pwned0 on the host) and takes the
    interface down, so the watcher's next reconciliation would rebuild it.
    The host has no record of such a NIC: the watcher says so and leaves it."""
    watch = start_watch()
    watch.connected()
    c = make_container(
        extra_args=(*label("eth1", "brpwthw 198.18.39.2/24"), "--cap-add", "NET_ADMIN")
    )
    eth(c, watch=watch)
    watch.wait_log(lambda line: line.get("event") == "created" and line.get("guest") == c.name)
    nsenter = ["nsenter", "-t", str(c.pid), "-n"]
    (entry,) = json.loads(infra.run([*nsenter, "ip", "-j", "link", "show", "eth1"]).stdout)
    forged = (
        entry["ifalias"].replace("kind=bridge", "kind=phys").replace("host=brpwthw", "host=pwned0")
    )
    assert forged != entry["ifalias"]
    before = set(links(host_ns))
    infra.run([*nsenter, "ip", "link", "set", "eth1", "down", "alias", forged])
    refused = watch.wait_log(
        lambda line: line.get("event") == "failed" and "leaves it alone" in line.get("message", "")
    )
    assert "the host has no record of passing a NIC through as eth1" in refused["message"]
    assert set(links(host_ns)) == before and "pwned0" not in before
    assert "Traceback" not in "".join(watch.raw)
