"""A private, rootful Podman API service, for the Podman guest tests.

``podman system service`` runs with its own ``--root``, ``--runroot`` and
``--tmpdir`` under ``/tmp/pwt-podsvc-*``, the vfs storage driver (no overlay
mounts) and a private containers.conf (``CONTAINERS_CONF``): the cgroupfs
manager, file locks (not the shared-memory segment in /dev/shm), a file
events log, and the rlimits this sandbox accepts (``default_ulimits``;
Podman's defaults are refused here). It listens on a socket in that
directory; the system's Podman storage, sockets and services are never used.
(support/cni_podman.py is the CNI tests' Podman, run as a command instead.)

``stop()`` removes every container, stops the service, kills what it left
(conmon, cleanup processes: found by our directory in their command line),
unmounts what is still mounted under our directory, and removes what
Podman creates outside it when it was not there before: runc's /run/runc,
the image blob-info cache, the cgroups ``libpod_parent`` (only when empty).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support import infra

_BLOB_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
#: Made by Podman (or runc under it) even with private roots; removed
#: afterwards if they were not there before (directories only when empty).
_GLOBAL = (_BLOB_CACHE, _BLOB_CACHE.parent, _BLOB_CACHE.parent.parent, Path("/run/runc"))
_CGROUP_PARENT = "libpod_parent"

#: The test image (also tagged ``busybox``, the dhcp helper's default image).
IMAGE = "localhost/pipework-test/busybox:latest"


class PodmanStartError(RuntimeError):
    pass


def _ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


class PodmanService:
    """``podman system service`` on a private socket, with private storage."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-podsvc-", dir="/tmp"))
        self.sock = self.root / "podman.sock"
        self.url = f"unix://{self.sock}"
        self.conf = self.root / "containers.conf"
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        # Not Docker's settings (the private dockerd's DOCKER_CONFIG has no
        # config.json, which podman would try to read), nor another Podman.
        for variable in ("CONTAINER_HOST", "DOCKER_CONFIG", "DOCKER_HOST"):
            self.env.pop(variable, None)
        self._service: subprocess.Popen[bytes] | None = None
        self._new_global = [p for p in _GLOBAL if not p.exists()]
        self._new_cgroups = not infra.cgroup_dirs(_CGROUP_PARENT)
        self._stopped = False
        atexit.register(self.stop)

    def cli(
        self, *args: str, check: bool = True, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        """The podman command, as a client of this service only."""
        return infra.run(
            ["podman", "--remote", "--url", self.url, *args],
            check=check,
            timeout=timeout,
            env=self.env,
        )

    def start(self, timeout: float = 60.0) -> None:
        r = self.root
        for sub in ("root", "run", "tmp", "networks"):
            (r / sub).mkdir()
        self.conf.write_text(
            f"""[containers]
# This sandbox refuses Podman's default rlimits.
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{r}/tmp/events.log"
lock_type = "file"
runtime = "runc"
tmp_dir = "{r}/tmp"
static_dir = "{r}/root/libpod"
volume_path = "{r}/root/volumes"

[network]
network_config_dir = "{r}/networks"
"""
        )
        with open(r / "service.log", "ab") as log:
            self._service = subprocess.Popen(
                [
                    "podman",
                    f"--root={r}/root",
                    f"--runroot={r}/run",
                    f"--tmpdir={r}/tmp",
                    "--storage-driver=vfs",
                    "system",
                    "service",
                    "--time=0",
                    self.url,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                # A Ctrl-C aimed at pytest must not kill it before the
                # fixture has removed the containers.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _ping(self.sock):
            if self._service.poll() is not None:
                raise self._failure(f"podman system service exited with {self._service.returncode}")
            if time.monotonic() > deadline:
                raise self._failure(f"podman system service did not answer within {timeout:.0f}s")
            time.sleep(0.05)

    def _failure(self, what: str) -> PodmanStartError:
        try:
            log = (self.root / "service.log").read_text(errors="replace")[-3000:]
        except OSError:
            log = "(no log)"
        return PodmanStartError(f"{what}\n--- service.log (tail) ---\n{log}")

    def import_image(self, rootfs_tar: bytes, *names: str) -> None:
        tar_path = self.root / "rootfs.tar"
        tar_path.write_bytes(rootfs_tar)
        try:
            self.cli("import", "--change", 'CMD ["/bin/sh"]', str(tar_path), names[0])
        finally:
            tar_path.unlink()
        for name in names[1:]:
            self.cli("tag", names[0], name)

    def container_ids(self, *filters: str) -> list[str]:
        if self._service is None or self._service.poll() is not None:
            return []
        args = [a for f in filters for a in ("--filter", f)]
        return self.cli("ps", "-aq", "--no-trunc", *args, timeout=30).stdout.split()

    def inspect(self, ref: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.cli("inspect", ref).stdout)
        return data[0]

    def stop(self) -> None:
        """Tear everything down; idempotent, safe after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        problems: list[str] = []
        try:
            ids = self.container_ids()
            for cid in ids:
                infra.FIXTURE_CLEANUPS.append(f"podman container {cid[:12]} left behind")
            if ids:
                self.cli("rm", "-f", "-t", "0", *ids, check=False, timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            problems.append(f"could not remove containers: {exc}")
        if self._service is not None and self._service.poll() is None:
            self._service.terminate()
            try:
                self._service.wait(20)
            except subprocess.TimeoutExpired:
                self._service.kill()
                self._service.wait(10)
        ours = str(self.root)
        infra.terminate_pids(
            pid for pid in infra._proc_pids() if ours in infra._read_proc(pid, "cmdline")
        )
        for mountpoint in sorted(infra._mounts_under(self.root), key=len, reverse=True):
            if infra.run(["umount", mountpoint], check=False).returncode != 0:
                infra.run(["umount", "-l", mountpoint], check=False)
        if infra._mounts_under(self.root):
            problems.append(f"still mounted: {infra._mounts_under(self.root)}")
        if self._new_cgroups:
            infra.remove_cgroups(_CGROUP_PARENT)
        for path in self._new_global:
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        try:
            shutil.rmtree(self.root)
        except OSError as exc:
            problems.append(f"could not remove {self.root}: {exc}")
        if problems:
            raise RuntimeError("private podman teardown: " + "; ".join(problems))


# -- fixtures (imported by tests/integration/conftest.py) ------------------------------


@pytest.fixture(scope="session")
def podman_service() -> Iterator[PodmanService]:
    """A private rootful ``podman system service`` with the busybox test
    image. Tests reach it with ``--podman-host podman_service.url`` or
    CONTAINER_HOST; that is not set for everyone, so bare names in other
    tests do not involve Podman."""
    infra.require_root()
    infra.require_binaries("podman", "conmon", "runc")
    busybox = infra.find_static_busybox()
    infra.require(busybox, "needs a static busybox (Debian package busybox-static)")
    assert busybox is not None
    service = PodmanService()
    try:
        service.start()
        service.import_image(infra.busybox_rootfs_tar(busybox), IMAGE, "busybox:latest")
    except (PodmanStartError, subprocess.SubprocessError) as exc:
        service.stop()
        infra.unavailable(f"private podman service failed to start: {exc}")
    try:
        yield service
    finally:
        service.stop()


@dataclass
class PodmanContainer:
    service: PodmanService = field(repr=False)
    name: str
    id: str

    @property
    def pid(self) -> int:
        return int(self.service.inspect(self.id)["State"]["Pid"])

    def remove(self) -> None:
        """``podman rm -f``, then kill host processes left in its namespace."""
        pid = 0
        with contextlib.suppress(subprocess.SubprocessError, KeyError, ValueError):
            pid = self.pid
        key = infra.netns_key(f"/proc/{pid}/ns/net") if pid else None
        self.service.cli("rm", "-f", "-t", "0", self.id, check=False)
        infra.reap_netns_processes(key, f"the network namespace of podman container {self.name}")


@pytest.fixture
def make_podman_container(
    podman_service: PodmanService,
) -> Iterator[Callable[..., PodmanContainer]]:
    """Factory: ``make_podman_container(name=None, start=True)``: busybox,
    sleeping, ``--network none``; removed afterwards."""
    made: list[PodmanContainer] = []

    def make(name: str | None = None, *, start: bool = True) -> PodmanContainer:
        name = name or infra.unique_name("p")
        cid = podman_service.cli(
            "create", "--name", name, "--network", "none", IMAGE, "sleep", "3600"
        ).stdout.strip()
        container = PodmanContainer(podman_service, name, cid)
        made.append(container)
        if start:
            podman_service.cli("start", cid)
        return container

    try:
        yield make
    finally:
        for container in reversed(made):
            container.remove()
