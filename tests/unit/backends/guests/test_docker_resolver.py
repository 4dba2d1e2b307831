"""The Docker resolver's logic: PID-0 retry, states, the HTTP exchange."""

from __future__ import annotations

import os
import socket

import pytest
from support.unix_http import serve_once

from pipework.backends.guests import docker as docker_mod
from pipework.backends.guests.docker import DockerResolver
from pipework.engine import GuestNotFoundError, GuestNotRunningError, RuntimeUnavailableError

pytestmark = pytest.mark.anyio


def fake_inspect(answers):
    calls = []

    async def inspect(self, ref):
        calls.append(ref)
        return answers[min(len(calls), len(answers)) - 1]

    return inspect, calls


def state(running, pid):
    return {"Id": "f" * 64, "Name": "/web1", "State": {"Running": running, "Pid": pid}}


async def test_pid_zero_right_after_start_is_retried(monkeypatch):
    inspect, calls = fake_inspect([state(True, 0), state(True, 0), state(True, os.getpid())])
    monkeypatch.setattr(DockerResolver, "_inspect", inspect)
    guest = await DockerResolver(timeout=5).resolve("web1")
    try:
        assert guest.info.name == "web1" and guest.info.key == "f" * 64
        assert guest.info.pid == os.getpid() and len(calls) == 3
    finally:
        guest.close()


async def test_not_running(monkeypatch):
    inspect, _ = fake_inspect([state(False, 0)])
    monkeypatch.setattr(DockerResolver, "_inspect", inspect)
    with pytest.raises(GuestNotRunningError, match="container web1 is not running"):
        await DockerResolver(timeout=5).resolve("docker:web1")


async def test_not_found(monkeypatch):
    inspect, _ = fake_inspect([None])
    monkeypatch.setattr(DockerResolver, "_inspect", inspect)
    with pytest.raises(GuestNotFoundError, match="no such container: nope"):
        await DockerResolver(timeout=5).resolve("nope")


async def test_http_exchange_over_the_unix_socket(tmp_path, monkeypatch):
    sock = str(tmp_path / "d.sock")
    body = b'{"Id": "abc", "State": {"Running": true, "Pid": 1}}'
    seen = serve_once(sock, b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    data = await DockerResolver(timeout=5)._inspect("web/1")
    assert data == {"Id": "abc", "State": {"Running": True, "Pid": 1}}
    assert seen[0].startswith(b"GET /containers/web%2F1/json HTTP/1.0\r\n")


async def test_404_means_not_found(tmp_path, monkeypatch):
    sock = str(tmp_path / "d.sock")
    serve_once(sock, b'HTTP/1.0 404 Not Found\r\n\r\n{"message": "No such container: x"}')
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    assert await DockerResolver(timeout=5)._inspect("x") is None


async def test_unreachable_daemon(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    with pytest.raises(RuntimeUnavailableError, match="cannot reach the Docker daemon"):
        await DockerResolver(timeout=5).resolve("web1")


async def test_unsupported_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://user@host")
    with pytest.raises(Exception, match="not supported"):
        await DockerResolver(timeout=5).resolve("web1")


def test_default_host(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert docker_mod.docker_host() == "unix:///var/run/docker.sock"


async def test_a_daemon_that_never_answers_times_out(tmp_path, monkeypatch):
    path = str(tmp_path / "d.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)  # accepts (in the backlog) but never answers
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        with pytest.raises(RuntimeUnavailableError, match=r"did not answer within 0\.2 s"):
            await DockerResolver(timeout=0.2).resolve("web1")
    finally:
        server.close()


def test_bare_names_bid_2_with_a_socket_and_1_without(tmp_path, monkeypatch):
    sock = tmp_path / "d.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    resolver = DockerResolver(timeout=5)
    assert resolver.claim("web1") == 1  # the fallback: "cannot reach the Docker daemon"
    assert resolver.detect() == (False, f"no socket at {sock} (set DOCKER_HOST to its socket)")
    sock.touch()
    assert resolver.claim("web1") == 2 and resolver.detect() == (True, f"unix://{sock}")
    assert resolver.claim("docker:web1") == 100
    assert resolver.claim("netns:web1") == resolver.claim("/run/netns/x") == 0
    monkeypatch.setenv("DOCKER_HOST", "tcp://198.18.0.1:2375")
    assert resolver.claim("web1") == 2  # a remote daemon: assumed there


async def test_the_guest_names_the_daemons_address(tmp_path, monkeypatch):
    sock = str(tmp_path / "d.sock")
    body = f'{{"Id": "{"a" * 64}", "Name": "/web1", "State": {{"Running": true, "Pid": {os.getpid()}}}}}'
    serve_once(sock, b"HTTP/1.0 200 OK\r\n\r\n" + body.encode())
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")
    guest = await DockerResolver(timeout=5).resolve("web1")
    try:
        assert (guest.info.runtime, guest.info.api) == ("docker", f"unix://{sock}")
    finally:
        guest.close()
