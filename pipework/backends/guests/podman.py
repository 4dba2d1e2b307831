"""Podman containers (``podman:web1``, and bare names where Podman runs).

Podman serves the Docker Engine API on its service socket, so the lookup is
Docker's (``pipework.backends.shared.dockerapi``: one ``GET /containers/REF/json``,
aiodocker for ``tcp://``), made on Podman's socket:

1. ``--podman-host URL`` or ``CONTAINER_HOST`` (Podman's own variable),
   ``unix://PATH`` or ``tcp://HOST:PORT``;
2. else the rootful places: ``/run/podman/podman.sock`` (systemd's
   ``podman.socket``, or ``podman system service``), then
   ``/var/run/podman/podman.sock``.

The guest carries that address (``GuestInfo.api``), so the ``dhcp`` helper
container of a Podman guest is created by the same Podman.

A bare name goes to Podman too when its socket is there (bid 2, like
Docker's), except when that socket is Docker's: the podman-docker package
serves Podman at /var/run/docker.sock, which the Docker resolver covers.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipework.backends.shared.dockerapi import ContainerResolver, docker_host
from pipework.engine import EngineConfig, RuntimeUnavailableError, hookimpl

SOCKETS = ("/run/podman/podman.sock", "/var/run/podman/podman.sock")
"""Where a rootful Podman service listens, in the order they are tried."""
DOCKER_SOCKET = "/var/run/docker.sock"
START_HINT = (
    "start it with `systemctl start podman.socket` or `podman system service`, "
    "or give its address with --podman-host (or CONTAINER_HOST)"
)


def _unix_path(url: str) -> str | None:
    return url[len("unix://") :] if url.startswith("unix://") else None


def podman_host() -> str | None:
    """Podman's API address: CONTAINER_HOST, else the first rootful socket there."""
    configured = os.environ.get("CONTAINER_HOST")
    if configured:
        return configured
    for path in SOCKETS:
        if Path(path).exists():
            return f"unix://{path}"
    return None


def _is_dockers(path: str) -> bool:
    docker = _unix_path(docker_host())
    return docker is not None and os.path.realpath(path) == os.path.realpath(docker)


class PodmanResolver(ContainerResolver):
    name = "podman"
    guess_order = 20
    product = "Podman"
    setting = "CONTAINER_HOST"
    unreachable_hint = f"is the Podman service running? {START_HINT}"
    not_found_hint = "see `podman ps -a`"

    def url(self) -> str:
        url = podman_host()
        if url is None:
            raise RuntimeUnavailableError(
                f"cannot find Podman's API socket (looked at {', '.join(SOCKETS)})", START_HINT
            )
        return url

    def present(self) -> tuple[bool, str]:
        url = podman_host()
        if url is None:
            return False, f"no API socket at {SOCKETS[0]} ({START_HINT})"
        path = _unix_path(url)
        if path is None:
            return True, url
        if not Path(path).exists():
            return False, f"no socket at {path} (from --podman-host or CONTAINER_HOST)"
        if _is_dockers(path):
            return False, f"{url} is Docker's socket (podman-docker): bare names go to docker"
        return True, url


@hookimpl
def pipework_guest_resolvers(config: EngineConfig) -> list[PodmanResolver]:
    return [PodmanResolver(config.timeout)]


__all__ = ["PodmanResolver", "podman_host"]
