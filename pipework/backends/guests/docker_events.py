"""Docker container events for ``pipework watch``, through aiodocker.

``running()`` lists the running containers with their labels; ``watch()``
follows ``GET /events`` filtered to container ``start`` and ``die``, from a
given time on (the daemon replays what happened since, so nothing falls
between the listing and the subscription). aiodocker is imported only here,
so only the watcher pays for it.

Every event carries the labels of the container's image as well
(``GuestEvent.image_labels``, from ``GET /images/ID/json``, cached per image
ID: an ID names one image for good), so the watcher can tell the labels a
container was given from those it inherited. For an event, the container
is inspected (its labels and image ID); if that fails (a ``--rm``
container already gone), every label counts as inherited.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from pipework.backends.shared.dockerapi import docker_host
from pipework.engine import EngineConfig, EventSource, RuntimeUnavailableError, hookimpl

if TYPE_CHECKING:  # made only while watching: not imported on an attach
    from pipework.engine.events import GuestEvent

ACTIONS = ("start", "die")
IMAGE_CACHE_MAX = 1024
"""Images whose labels are remembered (they never change for an ID)."""


def event_from(data: Mapping[str, Any]) -> GuestEvent | None:
    """A Docker event (``/events`` JSON) as a ``GuestEvent``; None for others."""
    from pipework.engine.events import GuestEvent

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


def lookup_errors() -> tuple[type[BaseException], ...]:
    """What a lookup raises when the daemon cannot answer it (aiodocker's,
    aiohttp's and the socket's errors), imported only when needed."""
    import aiodocker
    import aiohttp

    return (aiodocker.DockerError, aiohttp.ClientError, OSError, TimeoutError, ValueError)


def labels_of(data: Mapping[str, Any] | None) -> dict[str, str]:
    """The labels in an inspect answer's ``Config`` (container or image)."""
    config = (data or {}).get("Config") or {}
    return {str(k): str(v) for k, v in (config.get("Labels") or {}).items()}


class DockerEvents(EventSource):
    name = "docker"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._client: Any = None
        self._images: dict[str, dict[str, str]] = {}

    async def _image_labels(self, image_id: str) -> dict[str, str] | None:
        """The labels of image ``image_id``; None when it cannot be read."""
        if image_id in self._images:
            return self._images[image_id]
        try:
            with anyio.fail_after(self.timeout):
                data = await self._docker().images.inspect(image_id)
        except lookup_errors():
            return None
        if len(self._images) >= IMAGE_CACHE_MAX:
            self._images.clear()
        labels = self._images[image_id] = labels_of(data)
        return labels

    async def _with_image_labels(self, event: GuestEvent) -> GuestEvent:
        """``event`` with the container's labels and its image's, as the daemon
        says now; every label inherited when it cannot say."""
        try:
            with anyio.fail_after(self.timeout):
                container = await self._docker().containers.get(event.key)
            data = container._container
            image = await self._image_labels(str(data.get("Image") or ""))
        except lookup_errors():
            return replace(event, image_labels=dict(event.labels))
        labels = labels_of(data)
        return replace(event, labels=labels, image_labels=labels if image is None else image)

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
        from pipework.engine.events import GuestEvent

        out = []
        for container in containers:
            data = container._container
            names = data.get("Names") or [data["Id"][:12]]
            labels = {str(k): str(v) for k, v in (data.get("Labels") or {}).items()}
            image = await self._image_labels(str(data.get("ImageID") or ""))
            out.append(
                GuestEvent(
                    action="start",
                    ref=f"docker:{data['Id']}",
                    key=str(data["Id"]),
                    name=str(names[0]).lstrip("/"),
                    labels=labels,
                    image_labels=labels if image is None else image,
                )
            )
        return out

    async def watch(self, send: Callable[[GuestEvent], Awaitable[None]], since: float) -> None:

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
            except lookup_errors() as exc:  # a stream cut short too (aiohttp's)
                failure.append(exc)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                while (data := await subscriber.get()) is not None:
                    event = event_from(data)
                    if event is not None:
                        await send(await self._with_image_labels(event))
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
