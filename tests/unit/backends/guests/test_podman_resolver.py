"""The Podman resolver: finding the socket, bids, and the lookup through
Podman's Docker-compatible API (a one-shot server stands in for Podman)."""

from __future__ import annotations

import os

import pytest
from support.unix_http import serve_once

from pipework.backends.guests import podman as podman_mod
from pipework.backends.guests.podman import PodmanResolver, podman_host
from pipework.engine import (
    GuestNotFoundError,
    GuestNotRunningError,
    RuntimeUnavailableError,
    UnsupportedError,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def sockets(tmp_path, monkeypatch):
    """The rootful places, moved into tmp_path (none exists yet)."""
    places = (str(tmp_path / "run" / "podman.sock"), str(tmp_path / "var-run" / "podman.sock"))
    monkeypatch.setattr(podman_mod, "SOCKETS", places)
    monkeypatch.delenv("CONTAINER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    return places


def test_socket_discovery(sockets, monkeypatch, tmp_path):
    assert podman_host() is None
    os.makedirs(os.path.dirname(sockets[1]))
    open(sockets[1], "w").close()
    assert podman_host() == f"unix://{sockets[1]}"
    os.makedirs(os.path.dirname(sockets[0]))
    open(sockets[0], "w").close()
    assert podman_host() == f"unix://{sockets[0]}"  # the first place wins
    monkeypatch.setenv("CONTAINER_HOST", "unix:///elsewhere.sock")
    assert podman_host() == "unix:///elsewhere.sock"  # --podman-host / CONTAINER_HOST win


def test_bids(sockets, monkeypatch, tmp_path):
    resolver = PodmanResolver(timeout=5)
    assert resolver.claim("podman:web1") == 100
    assert resolver.claim("web1") == 0  # no Podman here: bare names are not its
    detected, detail = resolver.detect()
    assert not detected and detail.startswith(f"no API socket at {sockets[0]} (start it with")
    mine = tmp_path / "podman.sock"
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{mine}")
    assert resolver.claim("web1") == 0
    assert resolver.detect()[1] == f"no socket at {mine} (from --podman-host or CONTAINER_HOST)"
    mine.touch()
    assert resolver.claim("web1") == 2 and resolver.detect() == (True, f"unix://{mine}")
    assert resolver.claim("docker:web1") == resolver.claim("/proc/1/ns/net") == 0
    monkeypatch.setenv("CONTAINER_HOST", "tcp://198.18.0.1:8888")
    assert resolver.claim("web1") == 2


def test_podman_serving_dockers_socket_leaves_bare_names_to_docker(sockets, monkeypatch, tmp_path):
    shared = tmp_path / "docker.sock"
    shared.touch()
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{shared}")
    resolver = PodmanResolver(timeout=5)
    assert resolver.claim("web1") == 0 and resolver.claim("podman:web1") == 100
    assert "is Docker's socket (podman-docker)" in resolver.detect()[1]


def state(running: bool, pid: int) -> bytes:
    body = f'{{"Id": "{"b" * 64}", "Name": "/web1", "State": {{"Running": {str(running).lower()}, "Pid": {pid}}}}}'
    return b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body.encode()


async def test_lookup_through_the_compatible_api(sockets, monkeypatch, tmp_path):
    sock = str(tmp_path / "p.sock")
    seen = serve_once(sock, state(True, os.getpid()))
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{sock}")
    guest = await PodmanResolver(timeout=5).resolve("podman:web1")
    try:
        assert guest.info.name == "web1" and guest.info.key == "b" * 64
        assert (guest.info.runtime, guest.info.api) == ("podman", f"unix://{sock}")
    finally:
        guest.close()
    assert seen[0].startswith(b"GET /containers/web1/json HTTP/1.0\r\n")


async def test_stopped_and_missing(sockets, monkeypatch, tmp_path):
    sock = str(tmp_path / "p.sock")
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{sock}")
    serve_once(sock, state(False, 0))
    with pytest.raises(GuestNotRunningError) as failure:
        await PodmanResolver(timeout=5).resolve("podman:web1")
    assert str(failure.value) == (
        "container web1 is not running (start it with `podman start web1`)"
    )
    os.unlink(sock)
    serve_once(sock, b'HTTP/1.0 404 Not Found\r\n\r\n{"message": "no such container"}')
    with pytest.raises(GuestNotFoundError) as missing:
        await PodmanResolver(timeout=5).resolve("podman:web1")
    assert str(missing.value) == "no such container: web1 (see `podman ps -a`)"


async def test_unreachable_missing_and_unsupported(sockets, monkeypatch, tmp_path):
    with pytest.raises(RuntimeUnavailableError) as nowhere:
        await PodmanResolver(timeout=5).resolve("podman:web1")
    assert str(nowhere.value).startswith(
        f"cannot find Podman's API socket (looked at {sockets[0]}, {sockets[1]}) (start it with"
    )
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{tmp_path}/gone.sock")
    with pytest.raises(RuntimeUnavailableError) as down:
        await PodmanResolver(timeout=5).resolve("podman:web1")
    assert str(down.value).startswith(f"cannot reach Podman at unix://{tmp_path}/gone.sock: ")
    assert "is the Podman service running?" in str(down.value)
    monkeypatch.setenv("CONTAINER_HOST", "ssh://root@host/run/podman/podman.sock")
    with pytest.raises(UnsupportedError, match="CONTAINER_HOST=ssh://root@host"):
        await PodmanResolver(timeout=5).resolve("podman:web1")


async def test_an_error_answer_is_one_line(sockets, monkeypatch, tmp_path):
    sock = str(tmp_path / "p.sock")
    monkeypatch.setenv("CONTAINER_HOST", f"unix://{sock}")
    serve_once(
        sock, b'HTTP/1.0 500 Internal Server Error\r\n\r\n{"cause": "x",\n "message": "boom"}\n'
    )
    with pytest.raises(RuntimeUnavailableError) as failure:
        await PodmanResolver(timeout=5).resolve("podman:web1")
    assert str(failure.value) == 'Podman answered 500 for web1: {"cause": "x", "message": "boom"}'
