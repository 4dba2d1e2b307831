"""A real ``pipework daemon`` for integration tests: a subprocess in a
test-owned network namespace (so its own engine has nothing of the
machine's), listening on a private socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipework import client
from support import infra


@dataclass
class RunningDaemon:
    """``socket``: its path; ``ns``: the namespace it runs in; ``log``: its stderr."""

    ns: infra.NetNS
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    owns_ns: bool = True
    expected: int = 0
    """Commands a test sent that the daemon should serve (conftest.py's ``cli_mode``)."""

    @property
    def socket(self) -> str:
        return str(self.directory / "pipework.sock")

    @property
    def log(self) -> Path:
        return self.directory / "daemon.log"

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment whose ``pipework`` commands this daemon serves."""
        env = dict(os.environ if base is None else base)
        env.pop(client.NO_DAEMON_ENV, None)
        env[client.SOCKET_ENV] = self.socket
        return env

    def start(self, timeout: float = 30.0) -> None:
        env = self.client_env(self.env or None)
        argv = ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "pipework"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, "daemon", *self.args],
                env=env,
                cwd=infra.REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise infra.DaemonStartError(f"pipework daemon exited: {self.log.read_text()}")
            if self.version() is not None:
                return
            time.sleep(0.05)
        raise infra.DaemonStartError(f"pipework daemon did not answer: {self.log.read_text()}")

    def version(self) -> dict[str, Any] | None:
        """``GET /v1/version``, or None when it does not answer."""
        try:
            answer: dict[str, Any] = json.loads(
                client.fetch("/v1/version", environ={client.SOCKET_ENV: self.socket})
            )
        except client.Unreachable:
            return None
        return answer

    def served(self) -> int:
        answer = self.version()
        assert answer is not None, f"the daemon does not answer: {self.log.read_text()}"
        return int(answer["served"])

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 40.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def close(self) -> None:
        self.stop()
        if self.owns_ns:
            infra.reap_netns_processes(infra.netns_key(self.ns.path), f"netns {self.ns.name}")
            self.ns.destroy()
        shutil.rmtree(self.directory, ignore_errors=True)


def make_daemon(
    *args: str, env: Mapping[str, str] | None = None, ns: infra.NetNS | None = None
) -> RunningDaemon:
    """A daemon, not started yet, in ``ns`` or a namespace of its own (``close()`` it)."""
    directory = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-daemon-"))
    own = ns is None
    where = infra.NetNS.create(infra.unique_name("d")) if ns is None else ns
    return RunningDaemon(where, directory, args=args, env=dict(env or {}), owns_ns=own)


def raw_request(path: str, data: bytes, *, read_timeout: float = 20.0) -> bytes:
    """Send ``data`` as it is over the socket at ``path``; what comes back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(read_timeout)
        sock.connect(path)
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def status_and_body(raw: bytes) -> tuple[int, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.strip() else None
