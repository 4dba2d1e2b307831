"""The Docker Engine API, as Docker and Podman serve it.

Guest resolvers for runtimes that speak this API (Docker; Podman's
Docker-compatible service) share what is here: the container lookup on the
attach hot path, and how a container's state becomes a ``Guest`` or an
error.

Importing aiodocker costs 200-560 ms (aiohttp builds SSL contexts at
import), several times a whole attach. The hot path needs one request,
``GET /containers/REF/json``, so on a local unix socket ``ContainerAPI``
makes it itself, HTTP/1.0 over the socket with anyio. A ``tcp://`` address
(with its TLS settings) goes through aiodocker, as do the other calls
plugins make (helper containers, events).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import anyio

from pipework.engine.contract import GuestResolver
from pipework.engine.errors import (
    GuestNotFoundError,
    GuestNotRunningError,
    RuntimeUnavailableError,
    UnsupportedError,
    UsageError,
)
from pipework.engine.guests import Guest, proc_netns
from pipework.engine.specs import GuestInfo

DEFAULT_HOST = "unix:///var/run/docker.sock"
"""Docker's socket when DOCKER_HOST is not set."""
API_DETAIL = "api"
"""The ``GuestInfo.details`` key of the Docker-compatible API that manages a
container (``unix:///run/podman/podman.sock``), for plugins that start
helper containers beside it (``GuestInfo.api`` reads it)."""


def docker_host() -> str:
    """The Docker daemon's address: DOCKER_HOST, else its standard socket (the
    one place that reads DOCKER_HOST)."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


PID_RETRY_SECONDS = 3.0
"""How long to wait for a PID right after ``start`` (State.Pid is 0 briefly)."""

Inspect = Callable[[str], Awaitable[dict[str, Any] | None]]


async def unix_get(socket_path: str, path: str, product: str = "the daemon") -> tuple[int, bytes]:
    """One HTTP/1.0 GET over a unix socket: (status, body)."""
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
        raise RuntimeUnavailableError(f"unexpected answer from {product}: {head[:80]!r}")
    return int(status_line[1]), body


class ContainerAPI:
    """One Docker-compatible API endpoint, for container lookups.

    ``product`` names it in messages ("the Docker daemon", "Podman"),
    ``hint`` says what to do when it cannot be reached, and ``setting``
    is where the address came from (``DOCKER_HOST``), for an address whose
    scheme is not supported.
    """

    def __init__(self, url: str, *, product: str, hint: str, setting: str) -> None:
        self.url = url
        self.product = product
        self.hint = hint
        self.setting = setting
        self._aiodocker: Any = None

    def unreachable(self, reason: str) -> RuntimeUnavailableError:
        return RuntimeUnavailableError(
            f"cannot reach {self.product} at {self.url}: {reason}", self.hint
        )

    async def inspect(self, ref: str) -> dict[str, Any] | None:
        """``GET /containers/REF/json``; None when there is no such container."""
        path = f"/containers/{quote(ref, safe='')}/json"
        if self.url.startswith("unix://"):
            try:
                status, body = await unix_get(self.url[len("unix://") :], path, self.product)
            except OSError as exc:
                raise self.unreachable(exc.strerror or str(exc)) from None
            if status == 404:
                return None
            if status != 200:
                said = " ".join(body[:200].decode(errors="replace").split())  # one line
                raise RuntimeUnavailableError(f"{self.product} answered {status} for {ref}: {said}")
            return json.loads(body)  # type: ignore[no-any-return]
        if self.url.startswith(("tcp://", "http://", "https://")):
            return await self._inspect_aiodocker(ref)
        raise UnsupportedError(
            f"{self.setting}={self.url} is not supported", "use a unix:// or tcp:// address"
        )

    async def _inspect_aiodocker(self, ref: str) -> dict[str, Any] | None:
        import aiodocker

        if self._aiodocker is None:
            self._aiodocker = aiodocker.Docker(url=self.url)
        try:
            container = await self._aiodocker.containers.get(ref)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise self.unreachable(exc.message) from None
        return container._container  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if self._aiodocker is not None:
            await self._aiodocker.close()
            self._aiodocker = None


async def container_guest(
    inspect: Inspect,
    name: str,
    *,
    runtime: str,
    api: ContainerAPI,
    cli: str,
    seconds: float,
    not_found_hint: str,
) -> Guest:
    """The running container ``name`` as a ``Guest``, via ``inspect``.

    Bounded by ``seconds``; a PID of 0 right after ``start`` is retried for
    ``PID_RETRY_SECONDS``.
    ``cli`` is the runtime's command, for hints (``docker start web1``).
    """
    try:
        with anyio.fail_after(seconds):
            data = await inspect(name)
            if data is None:
                raise GuestNotFoundError(f"no such container: {name}", not_found_hint)
            deadline = anyio.current_time() + PID_RETRY_SECONDS
            while (state := data.get("State", {})).get("Running") and not state.get("Pid"):
                if anyio.current_time() > deadline:
                    break
                await anyio.sleep(0.05)
                data = await inspect(name) or data
    except TimeoutError:
        raise RuntimeUnavailableError(
            f"{api.product} at {api.url} did not answer within {seconds:g} s"
        ) from None
    state = data.get("State", {})
    pid = state.get("Pid") or 0
    cname = str(data.get("Name", name)).lstrip("/")
    if not state.get("Running") or pid <= 0:
        raise GuestNotRunningError(
            f"container {cname} is not running", f"start it with `{cli} start {cname}`"
        )
    info = GuestInfo(
        name=cname, key=str(data["Id"]), runtime=runtime, pid=pid, details={API_DETAIL: api.url}
    )
    return proc_netns(pid, info)


class ContainerResolver(GuestResolver):
    """A guest resolver for a runtime that serves the Docker API.

    A subclass names the runtime and says where its API is (``url()``) and
    whether it is present (``present()``, cheap: it decides bare-name bids).
    References are ``NAME:container`` (bid 100) or a bare name: bid 2 when
    the runtime is present, else ``fallback_bid``.
    """

    name = ""
    product = ""
    """How messages name the daemon: "the Docker daemon"."""
    setting = ""
    """Where its address comes from, for messages: "DOCKER_HOST"."""
    unreachable_hint = ""
    not_found_hint = ""
    fallback_bid = 0

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._api: ContainerAPI | None = None

    def url(self) -> str:
        raise NotImplementedError

    def present(self) -> tuple[bool, str]:
        raise NotImplementedError

    def claim(self, ref: str) -> int:
        if ref.startswith(f"{self.name}:"):
            return 100
        if ":" in ref or "/" in ref:
            return 0
        return 2 if self.present()[0] else self.fallback_bid

    def detect(self) -> tuple[bool, str]:
        return self.present()

    def api(self) -> ContainerAPI:
        """The API at ``url()``, as it was at the first lookup."""
        if self._api is None:
            self._api = ContainerAPI(
                self.url(), product=self.product, hint=self.unreachable_hint, setting=self.setting
            )
        return self._api

    async def _inspect(self, ref: str) -> dict[str, Any] | None:
        return await self.api().inspect(ref)

    async def resolve(self, ref: str) -> Guest:
        name = ref.removeprefix(f"{self.name}:")
        if not name:
            raise UsageError(f"{self.name}: needs a container name or ID")
        return await container_guest(
            self._inspect,
            name,
            runtime=self.name,
            api=self.api(),
            cli=self.name,
            seconds=self.timeout,
            not_found_hint=self.not_found_hint,
        )

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None


__all__ = [
    "API_DETAIL",
    "PID_RETRY_SECONDS",
    "ContainerAPI",
    "ContainerResolver",
    "container_guest",
    "unix_get",
]
