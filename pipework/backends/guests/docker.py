"""Docker containers, by name or ID (``web1``, ``docker:web1``).

The attach hot path needs one thing from Docker: ``GET /containers/ID/json``
for the PID. ``pipework.backends.shared.dockerapi`` makes that request (HTTP/1.0 on
the local unix socket, without importing aiodocker; aiodocker for a
``tcp://`` DOCKER_HOST) and turns the container's state into a guest; the
Podman resolver shares it.

Docker is where bare names go when no other runtime is here: it bids 2 for
a bare name when DOCKER_HOST is set or its socket exists, and otherwise 1,
a fallback that explains ("cannot reach the Docker daemon").
"""

from __future__ import annotations

from pathlib import Path

from pipework.backends.shared.dockerapi import ContainerResolver, docker_host
from pipework.engine import EngineConfig, hookimpl


class DockerResolver(ContainerResolver):
    name = "docker"
    guess_order = 10
    product = "the Docker daemon"
    setting = "DOCKER_HOST"
    unreachable_hint = "is dockerd running? set DOCKER_HOST to its socket"
    not_found_hint = "see `docker ps -a`; for a network namespace write netns:NAME"
    fallback_bid = 1

    def url(self) -> str:
        return docker_host()

    def present(self) -> tuple[bool, str]:
        host = docker_host()
        path = host[len("unix://") :] if host.startswith("unix://") else None
        if path is None or Path(path).exists():
            return True, host
        return False, f"no socket at {path} (set DOCKER_HOST to its socket)"


@hookimpl
def pipework_guest_resolvers(config: EngineConfig) -> list[DockerResolver]:
    return [DockerResolver(config.timeout)]


__all__ = ["DockerResolver"]
