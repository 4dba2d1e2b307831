"""Private LXC containers for the tests.

Containers live in their own LXCPATH under ``/tmp/pwt-lxc-*`` (never in
/var/lib/lxc), are made offline with ``lxc-create -t busybox`` from a config
holding ``lxc.net.0.type = empty`` (a network namespace with only ``lo``, so
no lxcbr0 and no lxc-net service), and are started with ``lxc-start``.

``destroy()`` stops and destroys them, then removes what LXC made outside
that directory when it did not exist before: its lock directory under
/run/lxc and the ``lxc.pivot`` cgroups it leaves after a stop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import infra

BINARIES = ("lxc-create", "lxc-start", "lxc-stop", "lxc-destroy", "lxc-info")
TEMPLATE = Path("/usr/share/lxc/templates/lxc-busybox")
RUN_LXC = Path("/run/lxc")
PIVOT = "lxc.pivot"
CONFIG = """# pipework tests: no network but lo; pipework plumbs the rest
lxc.net.0.type = empty
"""
#: LXC's lock directories for our LXC paths (/run/lxc/lock/tmp/pwt-lxc-*)
#: hang under these; those missing when the tests started are removed again
#: once empty (any LxcPath of this session may have made them).
_RUN_DIRS_MISSING_AT_START = [
    d for d in (RUN_LXC, RUN_LXC / "lock", RUN_LXC / "lock" / "tmp") if not d.exists()
]


@dataclass
class LxcContainer:
    path: LxcPath = field(repr=False)
    name: str
    netns: infra.NetNS | None = None
    """Where its monitor runs (lxc-start ran): LXC's tools reach the monitor
    through an abstract unix socket, which only that network namespace sees."""

    def run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.path.run(program, "-n", self.name, *args, check=check, netns=self.netns)

    def info(self) -> tuple[str, int | None]:
        out = self.run("lxc-info", "-s", "-p").stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        pid = fields.get("PID", "").strip()
        return fields.get("State", "").strip(), int(pid) if pid.isdigit() else None

    @property
    def pid(self) -> int:
        pid = self.info()[1]
        assert pid, f"LXC container {self.name} has no PID"
        return pid

    @property
    def key(self) -> str:
        """The guest key pipework gives it."""
        return f"lxc:{os.path.realpath(self.path.root)}/{self.name}"

    def start(self) -> None:
        self.run("lxc-start")
        self.run("lxc-wait", "-s", "RUNNING", "-t", "10")

    def stop(self) -> None:
        self.run("lxc-stop", "-k", check=False)


class LxcPath:
    """A private LXCPATH and the containers made in it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-lxc-", dir="/tmp"))
        self.lock_dir = RUN_LXC / "lock" / str(self.root).lstrip("/")
        self._new_pivot = not infra.cgroup_dirs(PIVOT)
        self.containers: list[LxcContainer] = []
        self._destroyed = False
        atexit.register(self.destroy)

    def run(
        self, program: str, *args: str, check: bool = True, netns: infra.NetNS | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [program, "-P", str(self.root), *args]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns.name, *argv]
        return infra.run(argv, check=check, timeout=60)

    def create(
        self, name: str | None = None, *, start: bool = True, netns: infra.NetNS | None = None
    ) -> LxcContainer:
        """A busybox container; ``netns``: start it from there (where the
        pipework CLI under test runs), not from the test's own namespace."""
        name = name or infra.unique_name("x")
        config = self.root / f"{name}.conf"
        config.write_text(CONFIG)
        container = LxcContainer(self, name, netns)
        self.containers.append(container)
        container.run("lxc-create", "-t", "busybox", "-f", str(config))
        if start:
            container.start()
        return container

    def destroy(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        for container in reversed(self.containers):
            container.stop()
            container.run("lxc-destroy", check=False)
        ours = str(self.root)
        infra.terminate_pids(
            pid for pid in infra._proc_pids() if ours in infra._read_proc(pid, "cmdline")
        )
        if self._new_pivot:
            infra.remove_cgroups(PIVOT)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.lock_dir)
        for directory in reversed(_RUN_DIRS_MISSING_AT_START):
            with contextlib.suppress(OSError):
                directory.rmdir()
        shutil.rmtree(self.root, ignore_errors=True)


# -- fixtures (imported by tests/integration/conftest.py) ------------------------------


@pytest.fixture
def lxc_path() -> Iterator[LxcPath]:
    """A private LXCPATH (``/tmp/pwt-lxc-*``); ``lxc_path.create()`` makes and
    starts a busybox container in it. Everything is destroyed afterwards."""
    infra.require_root()
    infra.require_binaries(*BINARIES, "lxc-wait", "busybox")
    infra.require(TEMPLATE.exists(), f"no LXC busybox template at {TEMPLATE} (lxc-templates)")
    path = LxcPath()
    try:
        yield path
    finally:
        path.destroy()
