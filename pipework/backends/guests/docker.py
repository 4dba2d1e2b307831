"""Docker containers, by name or ID (``web1``, ``docker:web1``).

The attach hot path needs one thing from Docker: ``GET /containers/ID/json``
for the PID. Importing aiodocker costs 200-560 ms (aiohttp builds SSL
contexts at import), several times a whole attach, so on the usual local
unix socket this resolver makes that one request itself, HTTP/1.0 over the
socket with anyio. A ``tcp://`` DOCKER_HOST (with its TLS settings) goes
through aiodocker, as do the other Docker features (helper containers,
events).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import anyio

from pipework.engine import (
    EngineConfig,
    Guest,
    GuestInfo,
    GuestNotFoundError,
    GuestNotRunningError,
    RuntimeUnavailableError,
    UnsupportedError,
    UsageError,
    hookimpl,
    proc_netns,
)

DEFAULT_HOST = "unix:///var/run/docker.sock"
PID_RETRY_SECONDS = 3.0
"""How long to wait for a PID right after ``docker start`` (State.Pid is 0 briefly)."""


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


async def _unix_get(socket_path: str, path: str) -> tuple[int, bytes]:
    request = f"GET {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: pipework\r\n\r\n"
    async with await anyio.connect_unix(socket_path) as stream:
        await stream.send(request.encode())
        chunks = []
        while True:
            try:
                chunks.append(await stream.receive())
            except anyio.EndOfStream:
                break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise RuntimeUnavailableError(f"unexpected answer from the Docker daemon: {head[:80]!r}")
    return int(status_line[1]), body


class DockerResolver:
    name = "docker"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._aiodocker: Any = None

    def claim(self, ref: str) -> int:
        if ref.startswith("docker:"):
            return 100
        # A bare name: Docker is the default runtime for guesses.
        return 1 if ":" not in ref and "/" not in ref else 0

    async def _inspect(self, ref: str) -> dict[str, Any] | None:
        host = docker_host()
        path = f"/containers/{quote(ref, safe='')}/json"
        if host.startswith("unix://"):
            try:
                status, body = await _unix_get(host[len("unix://") :], path)
            except OSError as exc:
                raise RuntimeUnavailableError(
                    f"cannot reach the Docker daemon at {host}: {exc.strerror or exc}",
                    "is dockerd running? set DOCKER_HOST to its socket",
                ) from None
            if status == 404:
                return None
            if status != 200:
                raise RuntimeUnavailableError(
                    f"the Docker daemon answered {status} for {ref}: {body[:200].decode(errors='replace')}"
                )
            return json.loads(body)  # type: ignore[no-any-return]
        if host.startswith(("tcp://", "http://", "https://")):
            return await self._inspect_aiodocker(host, ref)
        raise UnsupportedError(
            f"DOCKER_HOST={host} is not supported", "use a unix:// or tcp:// address"
        )

    async def _inspect_aiodocker(self, host: str, ref: str) -> dict[str, Any] | None:
        import aiodocker

        if self._aiodocker is None:
            self._aiodocker = aiodocker.Docker(url=host)
        try:
            container = await self._aiodocker.containers.get(ref)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise RuntimeUnavailableError(
                f"cannot reach the Docker daemon at {host}: {exc.message}",
                "is dockerd running? check DOCKER_HOST and DOCKER_TLS_VERIFY",
            ) from None
        return container._container  # type: ignore[no-any-return]

    async def resolve(self, ref: str) -> Guest:
        name = ref.removeprefix("docker:")
        if not name:
            raise UsageError("docker: needs a container name or ID")
        try:
            with anyio.fail_after(self.timeout):
                data = await self._inspect(name)
                if data is None:
                    raise GuestNotFoundError(
                        f"no such container: {name}",
                        "see `docker ps -a`; for a network namespace write netns:NAME",
                    )
                deadline = anyio.current_time() + PID_RETRY_SECONDS
                while (state := data.get("State", {})).get("Running") and not state.get("Pid"):
                    if anyio.current_time() > deadline:
                        break
                    await anyio.sleep(0.05)
                    data = await self._inspect(name) or data
        except TimeoutError:
            raise RuntimeUnavailableError(
                f"the Docker daemon at {docker_host()} did not answer within {self.timeout:g} s"
            ) from None
        state = data.get("State", {})
        pid = state.get("Pid") or 0
        cname = str(data.get("Name", name)).lstrip("/")
        if not state.get("Running") or pid <= 0:
            raise GuestNotRunningError(
                f"container {cname} is not running", f"start it with `docker start {cname}`"
            )
        info = GuestInfo(name=cname, key=str(data["Id"]), runtime="docker", pid=pid)
        return proc_netns(pid, info)

    async def aclose(self) -> None:
        if self._aiodocker is not None:
            await self._aiodocker.close()
            self._aiodocker = None


@hookimpl
def pipework_guest_resolvers(config: EngineConfig) -> list[DockerResolver]:
    return [DockerResolver(config.timeout)]


__all__ = ["DockerResolver"]
