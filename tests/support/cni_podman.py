"""A private, rootful Podman using the CNI network backend, for pipework-cni tests.

Everything lives under one ``/tmp/pwt-podman-*`` directory: storage
(``--root``), run state (``--runroot``), ``--tmpdir`` (with file locks, not
the shared-memory lock segment), the CNI plugin directory (pipework-cni as
``pipework`` beside the reference plugins), the network configuration
directory and the host-local IPAM data. ``containers.conf`` is private too
(``CONTAINERS_CONF``). What Podman and libcni create elsewhere
(``/var/lib/cni``, ``/var/lib/containers/cache`` and the image cache in it)
is removed again if it was not there before (directories only when empty); the cached results of our networks are
removed by the plugins' DEL and checked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from support import cni, infra

GLOBAL_DIRS = (
    Path("/var/lib/cni/results"),
    Path("/var/lib/cni/networks"),
    Path("/var/lib/cni"),
    Path("/var/lib/containers/cache"),
    Path("/var/lib/containers"),
)
IMAGE = "localhost/pwt-busybox:latest"
BLOB_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")


class Podman:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-podman-"))
        self.net_dir = self.dir / "net"
        self.created_global = [d for d in GLOBAL_DIRS if not d.exists()]
        self.existing_files = {f for f in (BLOB_CACHE,) if f.exists()}
        self.networks: list[str] = []
        # Not the private dockerd's client settings (the docker_daemon fixture
        # exports them): podman reads DOCKER_CONFIG for credentials too.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env["CONTAINERS_CONF"] = str(self.dir / "containers.conf")

    def start(self) -> None:
        for sub in ("root", "runroot", "tmp", "net"):
            (self.dir / sub).mkdir()
        plugins = cni.plugin_dir(self.dir)
        d = self.dir
        (d / "containers.conf").write_text(
            f"""[containers]
# This sandbox refuses Podman's default rlimits.
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{self.net_dir}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/tmp/events.log"
lock_type = "file"
runtime = "runc"
tmp_dir = "{d}/tmp"
static_dir = "{d}/root/libpod"
volume_path = "{d}/root/volumes"
"""
        )
        tar = d / "rootfs.tar"
        busybox = infra.find_static_busybox()
        assert busybox is not None
        tar.write_bytes(infra.busybox_rootfs_tar(busybox))
        try:
            self.cli("import", "--change", 'CMD ["/bin/sh"]', str(tar), IMAGE)
        finally:
            tar.unlink()

    def cli(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        d = self.dir
        argv = ["podman", "--root", f"{d}/root", "--runroot", f"{d}/runroot"]
        argv += ["--tmpdir", f"{d}/tmp", "--storage-driver", "overlay", *args]
        return infra.run(argv, check=check, timeout=timeout, env=self.env)

    def network(self, name: str, plugins: list[dict[str, Any]]) -> None:
        """A conflist in the private network configuration directory."""
        conf = {"cniVersion": "1.0.0", "name": name, "plugins": plugins}
        (self.net_dir / f"{name}.conflist").write_text(json.dumps(conf, indent=2))
        self.networks.append(name)

    def cached_results(self) -> list[str]:
        """libcni's cached results of our networks (DEL removes them)."""
        results = Path("/var/lib/cni/results")
        if not results.is_dir():
            return []
        return sorted(
            str(p)
            for p in results.iterdir()
            if any(p.name.startswith(f"{n}-") for n in self.networks)
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            left = self.cli("ps", "-aq", check=False).stdout.split()
            if left:
                infra.FIXTURE_CLEANUPS.append(f"podman containers left behind: {left}")
                self.cli("rm", "-f", "-t", "0", *left, check=False)
            self.cli("system", "reset", "--force", check=False, timeout=120)
        for path in self.cached_results():
            infra.FIXTURE_CLEANUPS.append(f"libcni result left behind: {path}")
            Path(path).unlink()
        for mountpoint in sorted(_mounts_under(self.dir), key=len, reverse=True):
            infra.run(["umount", "-l", mountpoint], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        # Podman's image-import cache is only a cache: ours goes if it was not there before.
        if BLOB_CACHE not in self.existing_files:
            BLOB_CACHE.unlink(missing_ok=True)
        for path in self.created_global:  # deepest first; only if empty (others may use them)
            with contextlib.suppress(OSError):
                path.rmdir()


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    return [p for p in points if p == str(root) or p.startswith(f"{root}/")]
