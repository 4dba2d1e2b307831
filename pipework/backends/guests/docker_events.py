"""Docker container events for ``pipework watch``, through aiodocker.

``running()`` lists the running containers with their labels; ``watch()``
follows ``GET /events`` filtered to container ``start`` and ``die``, from a
given time on (the daemon replays what happened since, so nothing falls
between the listing and the subscription). aiodocker is imported only here,
so only the watcher pays for it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from pipework.backends.shared.dockerapi import docker_host
from pipework.engine import EngineConfig, EventSource, RuntimeUnavailableError, hookimpl
from pipework.engine.events import GuestEvent

ACTIONS = ("start", "die")


def event_from(data: Mapping[str, Any]) -> GuestEvent | None:
    """A Docker event (``/events`` JSON) as a ``GuestEvent``; None for others."""
    action = data.get("Action") or data.get("status")
    if data.get("Type", "container") != "container" or action not in ACTIONS:
        return None
    actor = data.get("Actor") or {}
    cid = str(actor.get("ID") or data.get("id") or "")
    if not cid:
        return None
    attributes = dict(actor.get("Attributes") or {})
    name = str(attributes.pop("name", cid[:12]))
    # Docker mixes its own attributes (image, exitCode...) with the labels;
    # the watcher only reads pipework.* keys, so that is harmless.
    return GuestEvent(
        action=action,
        ref=f"docker:{cid}",
        key=cid,
        name=name,
        labels={str(k): str(v) for k, v in attributes.items()},
        time_ns=int(data["timeNano"]) if data.get("timeNano") else None,
    )


class DockerEvents(EventSource):
    name = "docker"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._client: Any = None

    def _docker(self) -> Any:
        import aiodocker

        if self._client is None:
            try:
                self._client = aiodocker.Docker(url=docker_host())
            except (AssertionError, ValueError) as exc:  # aiodocker: no socket at all
                raise RuntimeUnavailableError(
                    f"cannot reach the Docker daemon at {docker_host()}: {exc or 'no socket'}",
                    "is dockerd running? set DOCKER_HOST to its socket",
                ) from None
        return self._client

    async def running(self) -> list[GuestEvent]:
        import aiodocker

        docker = self._docker()
        try:
            with anyio.fail_after(self.timeout):
                containers = await docker.containers.list()
        except (aiodocker.DockerError, OSError, TimeoutError) as exc:
            await self.aclose()
            raise RuntimeUnavailableError(
                f"cannot list the containers of the Docker daemon at {docker_host()}: {exc}"
            ) from None
        out = []
        for container in containers:
            data = container._container
            names = data.get("Names") or [data["Id"][:12]]
            out.append(
                GuestEvent(
                    action="start",
                    ref=f"docker:{data['Id']}",
                    key=str(data["Id"]),
                    name=str(names[0]).lstrip("/"),
                    labels={str(k): str(v) for k, v in (data.get("Labels") or {}).items()},
                )
            )
        return out

    async def watch(self, send: Callable[[GuestEvent], Awaitable[None]], since: float) -> None:
        import aiodocker

        docker = self._docker()
        params = {
            "since": f"{since:.9f}",
            "filters": json.dumps({"type": ["container"], "event": list(ACTIONS)}),
        }
        subscriber = docker.events.subscribe(create_task=False)
        failure: list[BaseException] = []

        async def pump() -> None:
            try:
                await docker.events.run(timeout=None, **params)
            except (aiodocker.DockerError, OSError) as exc:
                failure.append(exc)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                while (data := await subscriber.get()) is not None:
                    event = event_from(data)
                    if event is not None:
                        await send(event)
                tg.cancel_scope.cancel()
        finally:
            await self.aclose()
        reason = f": {failure[0]}" if failure else ""
        raise RuntimeUnavailableError(
            f"lost the event stream of the Docker daemon at {docker_host()}{reason}"
        )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.events.stop()
            await client.close()


@hookimpl
def pipework_event_sources(config: EngineConfig) -> list[DockerEvents]:
    return [DockerEvents(config.timeout)]
