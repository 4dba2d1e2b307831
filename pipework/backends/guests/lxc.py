"""LXC containers (``lxc:web1``, ``lxc:/srv/lxc/web1``, and bare names).

The PID comes from LXC's own tooling, never from cgroup paths (the
original's cgroup v1 path guessing broke on cgroup v2):
``lxc-info -P LXCPATH -n NAME -s -p``, run as an argv with the engine's
timeout. lxc-info asks the container's monitor over its command socket, so
cgroup v1, v2 and hybrid hosts are all the same to it.

LXCPATH, the directory that holds the containers:

1. ``lxc:/LXCPATH/NAME`` names it in the reference;
2. else ``--lxcpath PATH`` / ``-P PATH`` (which set ``PIPEWORK_LXC_PATH``);
3. else ``lxc.lxcpath`` in /etc/lxc/lxc.conf, as the LXC tools read it;
4. else /var/lib/lxc.

A container is a directory LXCPATH/NAME holding a ``config`` file. A bare
name bids 2 only when that file exists: one ``stat``, no program run, so
the Docker hot path pays nothing when LXC has no such container.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from pipework.engine import (
    EngineConfig,
    ExternalCommandError,
    Guest,
    GuestInfo,
    GuestNotFoundError,
    GuestNotRunningError,
    GuestResolver,
    RuntimeUnavailableError,
    UnsupportedError,
    UsageError,
    hookimpl,
    proc_netns,
)

ENV_LXCPATH = "PIPEWORK_LXC_PATH"
LXC_CONF = "/etc/lxc/lxc.conf"
DEFAULT_LXCPATH = "/var/lib/lxc"
NOT_RUNNING_STATES = frozenset({"STOPPED", "STOPPING", "ABORTING"})


def configured_lxcpath(conf: str = LXC_CONF) -> str:
    """LXCPATH when the reference does not give one (cheap: env, one small file)."""
    configured = os.environ.get(ENV_LXCPATH)
    if configured:
        return str(Path(configured).absolute())
    try:
        with open(conf, encoding="utf-8") as handle:
            for line in handle:
                key, eq, value = line.partition("=")
                if eq and key.strip() == "lxc.lxcpath" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return DEFAULT_LXCPATH


def split_ref(ref: str) -> tuple[str | None, str]:
    """``lxc:NAME`` / ``lxc:/LXCPATH/NAME`` / ``NAME`` -> (LXCPATH or None, NAME)."""
    text = ref.removeprefix("lxc:")
    lxcpath: str | None = None
    if text.startswith("/"):
        lxcpath, _, text = text.rstrip("/").rpartition("/")
        lxcpath = lxcpath or "/"
    if not text or "/" in text or text in (".", ".."):
        raise UsageError(
            f"{ref!r} does not name an LXC container", "write lxc:NAME or lxc:/LXCPATH/NAME"
        )
    return lxcpath, text


def container_dir(lxcpath: str, name: str) -> Path | None:
    """LXCPATH/NAME, resolved, if it holds a container (its ``config`` file)."""
    path = Path(lxcpath, name)
    return path.resolve() if (path / "config").is_file() else None


def parse_info(text: str) -> tuple[str, int | None]:
    """``lxc-info -s -p`` output -> (state, PID or None)."""
    state, pid = "UNKNOWN", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "State":
            state = value.strip().upper()
        elif key.strip() == "PID" and value.strip().isdigit():
            pid = int(value.strip())
    return state, pid


class LxcResolver(GuestResolver):
    name = "lxc"
    guess_order = 30

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def claim(self, ref: str) -> int:
        if ref.startswith("lxc:"):
            return 100
        if ":" in ref or "/" in ref or ref in (".", ".."):
            return 0
        return 2 if container_dir(configured_lxcpath(), ref) is not None else 0

    def detect(self) -> tuple[bool, str]:
        import shutil

        program = shutil.which("lxc-info")
        if program is None:
            return False, "not installed (no lxc-info; Debian package lxc)"
        return True, f"{program}; containers in {configured_lxcpath()}"

    async def resolve(self, ref: str) -> Guest:
        import shutil

        given, name = split_ref(ref)
        lxcpath = given or configured_lxcpath()
        program = shutil.which("lxc-info")
        if program is None:
            raise UnsupportedError(
                f"LXC is not installed (no lxc-info on PATH, needed for {ref})",
                "install the Debian package lxc",
            )
        where = f" -P {lxcpath}" if lxcpath != DEFAULT_LXCPATH else ""
        directory = container_dir(lxcpath, name)
        if directory is None:
            # Checked first: lxc-info would create lock directories for a
            # path that does not exist.
            raise self._not_found(name, lxcpath, where)
        argv = [program, "-P", lxcpath, "-n", name, "-s", "-p"]
        try:
            with anyio.fail_after(self.timeout):
                done = await anyio.run_process(argv, check=False)
        except TimeoutError:
            raise RuntimeUnavailableError(
                f"lxc-info did not answer about {name} within {self.timeout:g} s",
                "is the container's monitor (lxc-start) stuck?",
            ) from None
        except OSError as exc:
            raise ExternalCommandError(f"cannot run {program}: {exc.strerror or exc}") from None
        said = done.stderr.decode(errors="replace").strip()
        if done.returncode != 0:
            if "doesn't exist" in said or "does not exist" in said:
                raise self._not_found(name, lxcpath, where)
            last = said.splitlines()[-1] if said else f"exit status {done.returncode}"
            raise ExternalCommandError(f"lxc-info failed for LXC container {name}: {last}")
        state, pid = parse_info(done.stdout.decode(errors="replace"))
        if pid is None or pid <= 0 or state in NOT_RUNNING_STATES:
            raise GuestNotRunningError(
                f"LXC container {name} is not running ({state.lower()})",
                f"start it with `lxc-start -n {name}{where}`",
            )
        info = GuestInfo(name=name, key=f"lxc:{directory}", runtime="lxc", pid=pid)
        return proc_netns(pid, info)

    @staticmethod
    def _not_found(name: str, lxcpath: str, where: str) -> GuestNotFoundError:
        return GuestNotFoundError(
            f"no LXC container named {name} in {lxcpath}",
            f"see `lxc-ls -f{where}`; for another LXC path use --lxcpath PATH",
        )


@hookimpl
def pipework_guest_resolvers(config: EngineConfig) -> list[LxcResolver]:
    return [LxcResolver(config.timeout)]


__all__ = ["LxcResolver", "configured_lxcpath", "container_dir", "parse_info", "split_ref"]
