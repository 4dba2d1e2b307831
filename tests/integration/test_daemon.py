"""``pipework daemon`` as a real process: its stop and restart, a kill in the
middle of an attach, who may reach its socket, hostile requests, clients
in other namespaces, and its events (the commands themselves run through
it in test_operations.py, test_apply.py and test_cli_docker.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import infra
from support.checks import links
from support.daemon import RunningDaemon, make_daemon, raw_request, status_and_body

from pipework import client
from pipework.client import LOST, NO_DAEMON_ENV, SOCKET_ENV

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon() -> Iterator[RunningDaemon]:
    """A daemon of this test's own (it may be killed or restarted)."""
    made = make_daemon()
    try:
        made.start()
        yield made
    finally:
        made.close()


def pipework(
    daemon: RunningDaemon | None,
    ns: infra.NetNS,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environ = daemon.client_env(env) if daemon else {**(env or os.environ), NO_DAEMON_ENV: "1"}
    return infra.run(
        ["ip", "netns", "exec", ns.name, sys.executable, "-m", "pipework", *args],
        check=False,
        env=environ,
        cwd=infra.REPO_ROOT,
    )


def ours(ns: infra.NetNS) -> list[str]:
    return sorted(
        n for n, link in links(ns).items() if "pipework guest=" in (link.get("ifalias") or "")
    )


def test_a_stopped_daemon_leaves_its_attachments_and_a_new_one_serves_them(
    daemon: RunningDaemon, host_ns: infra.NetNS, make_netns
) -> None:
    guest = make_netns("g")
    made = pipework(daemon, host_ns, "brpwtd1", f"netns:{guest.name}", "198.18.91.2/24")
    assert made.returncode == 0 and made.stdout.startswith("created: "), made
    served = daemon.served()
    listed = pipework(daemon, host_ns, "ls")
    assert daemon.served() == served + 1
    assert daemon.stop() == 0  # SIGTERM: a clean stop, exit 0
    assert not Path(daemon.socket).exists()
    assert "stopping; attachments stay in place" in daemon.log.read_text()
    # Without a daemon: the same listing, in-process.
    assert pipework(None, host_ns, "ls").stdout == listed.stdout
    assert len(ours(host_ns)) == 1
    daemon.start()
    again = pipework(daemon, host_ns, "brpwtd1", f"netns:{guest.name}", "198.18.91.2/24")
    assert again.returncode == 0 and again.stdout.startswith("unchanged: "), again
    assert pipework(daemon, host_ns, "ls").stdout == listed.stdout
    gone = pipework(daemon, host_ns, "detach", f"netns:{guest.name}", "--all")
    assert gone.returncode == 0, gone
    assert ours(host_ns) == []


def test_a_daemon_killed_mid_attach_is_one_line_exit_11_and_gc_leaves_nothing(
    daemon: RunningDaemon, host_ns: infra.NetNS, make_netns, dhcp_run_dir: Path
) -> None:
    """The attach waits for a DHCP server that never answers; the daemon is
    killed meanwhile. Its worker is interrupted and rolls back; gc finds
    nothing left half-made."""
    infra.require_binaries("udhcpc")
    guest = make_netns("g")
    argv = ["ip", "netns", "exec", host_ns.name, sys.executable, "-m", "pipework"]
    attach = subprocess.Popen(
        [*argv, "brpwtd2", f"netns:{guest.name}", "udhcpc", "--dhcp-timeout", "30"],
        env=daemon.client_env(),
        cwd=infra.REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not ours(host_ns) and time.monotonic() < deadline:  # the attach is under way
        time.sleep(0.05)
    assert ours(host_ns), "the attach did not start"
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    out, err = attach.communicate(timeout=30)
    assert attach.returncode == LOST, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipework: "), err
    assert "daemon" in lines[0] and "pipework gc" in lines[0], lines[0]
    # Its zygote dies with it (SIGTERM) and the worker is interrupted (SIGINT):
    # they go by themselves, after the worker's rollback.
    key = infra.netns_key(daemon.ns.path)
    deadline = time.monotonic() + 30
    while key is not None and infra.pids_in_netns(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert key is None or infra.pids_in_netns(key) == [], "the killed daemon's workers stay"
    deadline = time.monotonic() + 20
    while ours(host_ns) and time.monotonic() < deadline:  # the worker rolls back
        time.sleep(0.1)
    cleaned = pipework(None, host_ns, "gc")
    assert cleaned.returncode == 0, cleaned
    assert ours(host_ns) == []
    assert [n for n in links(guest) if n != "lo"] == []
    # (ls scans every namespace on the machine: only this test's guest counts.)
    listing = json.loads(pipework(None, host_ns, "--json", "ls").stdout)["attachments"]
    assert [a for a in listing if a["guest"]["key"] == f"netns:{guest.name}"] == []
    assert (
        list((dhcp_run_dir / "dhcp").glob("*")) == [] if (dhcp_run_dir / "dhcp").exists() else True
    )


def _as_nobody(daemon: RunningDaemon, *extra: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from pipework import client\n"
        "try:\n"
        "    r = client.open_stream('GET', '/v1/version')\n"
        "except client.Unreachable as exc:\n"
        "    print('unreachable', exc); sys.exit(0)\n"
        "print(r.status, r.read().decode())\n"
    )
    return infra.run(
        ["setpriv", "--reuid", "65534", *extra, "--", sys.executable, "-c", code],
        check=False,
        env={**daemon.client_env(), "PYTHONPATH": str(infra.REPO_ROOT)},
        cwd="/",
    )


def test_only_root_reaches_the_socket(daemon: RunningDaemon) -> None:
    infra.require_binaries("setpriv")
    daemon.directory.chmod(0o755)  # the socket's own mode is what keeps others out
    assert oct(Path(daemon.socket).stat().st_mode & 0o777) == "0o600"
    refused = _as_nobody(daemon, "--regid", "65534", "--clear-groups")
    assert refused.stdout.startswith("unreachable") and "Permission denied" in refused.stdout
    # Past the file mode, the peer's credentials are checked too.
    Path(daemon.socket).chmod(0o666)
    denied = _as_nobody(daemon, "--regid", "65534", "--clear-groups")
    assert denied.stdout.startswith("403 "), denied
    assert json.loads(denied.stdout[4:])["code"] == "denied"
    assert "refused a request from uid 65534" in daemon.log.read_text()
    assert daemon.version() is not None  # root still is served


def test_a_named_group_reaches_the_socket_and_no_one_else() -> None:
    infra.require_binaries("setpriv")
    made = make_daemon("--group", "nogroup")
    try:
        made.start()
        made.directory.chmod(0o755)
        mode = Path(made.socket).stat()
        assert oct(mode.st_mode & 0o777) == "0o660" and mode.st_gid == 65534
        member = _as_nobody(made, "--regid", "65534", "--clear-groups")
        assert member.stdout.startswith("200 "), member
        other = _as_nobody(made, "--regid", "1", "--clear-groups")
        assert other.stdout.startswith("unreachable"), other
    finally:
        made.close()


def test_hostile_requests_get_errors_while_others_are_served(daemon: RunningDaemon) -> None:
    sock = daemon.socket

    def post(body: bytes, path: str = "/v1/run", extra: str = "") -> tuple[int, object]:
        head = f"POST {path} HTTP/1.0\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        return status_and_body(raw_request(sock, head.encode() + body))

    stalled = []
    for _ in range(3):  # connections that never finish their request
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        s.sendall(b"POST /v1/run HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\n\r\n{")
        stalled.append(s)
    try:
        started = time.monotonic()
        assert daemon.version() is not None  # served at once, beside them
        assert time.monotonic() - started < 2
        status, body = post(b"{not json")
        assert status == 400 and body["code"] == "request"  # type: ignore[index]
        assert post(b"[1, 2]")[0] == 400
        assert post(json.dumps({"argv": "ls"}).encode())[0] == 400
        assert post(json.dumps({"argv": ["ls"], "env": {"A": 1}}).encode())[0] == 400
        assert post(json.dumps({"program": "/bin/sh", "argv": []}).encode())[0] == 400
        assert post(json.dumps({"argv": ["daemon"]}).encode())[0] == 400
        assert post(json.dumps({"argv": ["ls\0x"]}).encode())[0] == 400
        assert post(b"{}", extra="Pipework-Protocol: 99\r\n")[1]["code"] == "protocol"  # type: ignore[index]
        assert post(b"{}", path="/v1/commands/x..y")[0] == 404
        assert post(b"x" * (2 << 20))[0] == 413
        garbage = raw_request(sock, b"\x00\x01\x02 garbage\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.") and b" 400 " in garbage.split(b"\r\n")[0]
        # The stalled ones are answered 408 and closed within the limit.
        for s in stalled:
            s.settimeout(20)
            answer = s.recv(4096)
            assert answer == b"" or b" 408 " in answer.split(b"\r\n")[0], answer
    finally:
        for s in stalled:
            s.close()
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.version() is not None


def test_a_client_in_another_pid_namespace_runs_in_process(
    daemon: RunningDaemon, host_ns: infra.NetNS
) -> None:
    infra.require_binaries("unshare")
    result = infra.run(
        ["ip", "netns", "exec", host_ns.name, "unshare", "--pid", "--fork", "--mount-proc",
         sys.executable, "-m", "pipework", "--debug", "ls"],
        check=False, env=daemon.client_env(), cwd=infra.REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result
    assert "another pid namespace" in result.stderr and "running in-process" in result.stderr
    served = daemon.served()
    assert pipework(daemon, host_ns, "ls").returncode == 0
    assert daemon.served() == served + 1


def test_commands_run_in_the_clients_namespace_never_the_daemons(
    daemon: RunningDaemon, host_ns: infra.NetNS, make_netns
) -> None:
    guest = make_netns("g")
    made = pipework(daemon, host_ns, "brpwtd3", f"netns:{guest.name}", "198.18.92.2/24")
    assert made.returncode == 0, made
    assert "brpwtd3" in links(host_ns) and len(ours(host_ns)) == 1
    assert "brpwtd3" not in links(daemon.ns) and ours(daemon.ns) == []
    assert pipework(daemon, host_ns, "detach", f"netns:{guest.name}", "--all").returncode == 0


def _metrics(daemon: RunningDaemon) -> str:
    return client.fetch("/metrics", timeout=10, environ={SOCKET_ENV: daemon.socket}).decode()


def test_events_follow_an_attach_served_by_the_daemon(
    daemon: RunningDaemon, host_ns: infra.NetNS, make_netns
) -> None:
    guest = make_netns("g")
    follower = subprocess.Popen(
        [sys.executable, "-m", "pipework", "events", "--json", "--types", "attach"],
        env=daemon.client_env(),
        cwd=infra.REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while "pipework_event_subscribers 1.0" not in _metrics(daemon):
            assert time.monotonic() < deadline and follower.poll() is None, "no subscriber"
            time.sleep(0.1)
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(follower.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        made = pipework(daemon, host_ns, "brpwtd4", f"netns:{guest.name}", "198.18.93.2/24")
        assert made.returncode == 0, made
        reader.join(10)
        assert got and got[0], follower.stderr.read() if follower.poll() is not None else "no event"
        event = json.loads(got[0])
        assert event["type"] == "attach" and event["outcome"] == "created"
        assert event["guest"] == f"netns:{guest.name}" and event["duration_ms"] > 0
        assert 'pipework_attaches_total{backend="bridge",outcome="created"} 1.0' in _metrics(daemon)
    finally:
        follower.terminate()
        follower.wait(10)
        pipework(daemon, host_ns, "detach", f"netns:{guest.name}", "--all")


def test_socket_activation_and_readiness_as_systemd_does_them(host_ns: infra.NetNS) -> None:
    """systemd-socket-activate holds the socket and starts the daemon on the
    first connection (LISTEN_FDS, as pipework.socket does); the daemon
    reports READY=1 on NOTIFY_SOCKET (Type=notify in pipework.service)."""
    infra.require_binaries("systemd-socket-activate")
    made = make_daemon()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(made.directory / "notify"))
    notify.settimeout(30)
    env = {**made.client_env(), "NOTIFY_SOCKET": str(made.directory / "notify")}
    activator = subprocess.Popen(
        ["ip", "netns", "exec", made.ns.name, "systemd-socket-activate", "-l", made.socket,
         "-E", "NOTIFY_SOCKET", "-E", "PIPEWORK_RUN_DIR", "--",
         sys.executable, "-m", "pipework", "daemon"],
        env=env, cwd=infra.REPO_ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not Path(made.socket).exists():
            assert time.monotonic() < deadline and activator.poll() is None, "no socket"
            time.sleep(0.05)
        answer = made.version()  # the first connection starts the daemon, which answers it
        assert answer is not None and answer["pid"] == activator.pid
        assert notify.recv(256) == b"READY=1"
        listed = pipework(made, host_ns, "ls")
        assert listed.returncode == 0 and made.served() == 1, listed
        activator.send_signal(signal.SIGTERM)
        assert activator.wait(30) == 0
        assert notify.recv(256) == b"STOPPING=1"
    finally:
        if activator.poll() is None:
            activator.kill()
            activator.wait()
        notify.close()
        made.close()


def _counter(daemon: RunningDaemon, name: str) -> float:
    for line in _metrics(daemon).splitlines():
        if line.startswith(name + "{") and 'provider="udhcpc"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _until(condition, daemon: RunningDaemon, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out; the daemon said: {daemon.log.read_text()}"
        time.sleep(0.1)


def test_a_restarted_daemon_adopts_the_kept_dhcp_client_which_keeps_renewing(
    host_ns: infra.NetNS, make_netns, dhcp_server, dhcp_run_dir: Path, host_files_unchanged
) -> None:
    infra.require_binaries("udhcpc", "dnsmasq")
    from support.dhcp import client_pids_in

    server = dhcp_server()
    guest = make_netns("g")
    made = make_daemon("--dhcp-interval", "1")
    try:
        made.start()
        attached = pipework(made, host_ns, server.bridge, f"netns:{guest.name}", "udhcpc-f")
        assert attached.returncode == 0 and attached.stdout.startswith("created: "), attached
        key = infra.netns_key(guest.path)
        (first,) = client_pids_in(key)
        assert made.stop() == 0
        assert client_pids_in(key) == [first]  # the stop left it running
        made.start()
        _until(lambda: _counter(made, "pipework_dhcp_adoptions_total") == 1, made)
        assert client_pids_in(key) == [first]  # adopted, not restarted
        pid = int(first.split()[1])
        os.kill(pid, signal.SIGUSR1)  # renew now (dnsmasq's shortest lease is 2 minutes)
        _until(lambda: _counter(made, "pipework_dhcp_renewals_total") >= 1, made)
        assert client_pids_in(key) == [first]
        assert _counter(made, "pipework_dhcp_restarts_total") == 0
        gone = pipework(made, host_ns, "detach", f"netns:{guest.name}", "--all")
        assert gone.returncode == 0, gone
        _until(lambda: client_pids_in(key) == [], made)
    finally:
        made.close()


def test_the_daemon_watches_labels_as_pipework_watch_does(
    host_ns: infra.NetNS, make_container, tmp_path: Path
) -> None:
    """``--watch``: a labelled container is attached by the daemon (its own
    namespace is the watcher's host), ``watch --status`` shows it, events
    report the reconcile, and a stop leaves the attachment."""
    env = {**os.environ, "PIPEWORK_RUN_DIR": str(tmp_path / "run")}
    made = make_daemon("--watch", "--interval", "2", "--log-format", "json", env=env, ns=host_ns)
    try:
        made.start()
        c = make_container(extra_args=("--label", "pipework.eth1=brpwtdw 198.18.94.2/24"))
        _until(lambda: "brpwtdw" in links(host_ns) and len(ours(host_ns)) == 1, made)
        shown = c.exec("ip", "-o", "-4", "addr", "show", "eth1")
        assert "198.18.94.2/24" in shown.stdout, shown
        status = pipework(made, host_ns, "--json", "watch", "--status", env=env)
        assert status.returncode == 0, status
        assert json.loads(status.stdout)["pid"] == made.version()["pid"]  # type: ignore[index]
        _until(lambda: "pipework_watch_reconciles_total{outcome=" in _metrics(made), made)
        assert made.stop() == 0
        assert len(ours(host_ns)) == 1  # the stop leaves it
    finally:
        made.close()
