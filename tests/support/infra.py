"""Test infrastructure shared by the conftests: prerequisites, namespaces,
a private dockerd, the busybox test image, ping and host snapshots.

Everything here creates resources whose names start with ``pwt`` and removes
them again; nothing touches interfaces, namespaces or daemons it did not make.
Import it as ``from support import infra`` (tests/conftest.py puts ``tests/``
on ``sys.path``); importing it under another module name would split the
module-level cleanup record used by the leak check.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest

from support.leakcheck import Snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Every resource the tests create is named with this prefix.
PREFIX = "pwt"

#: Image built by the ``busybox_image`` fixture (also tagged ``busybox:latest``).
TEST_IMAGE = "pipework-test/busybox:latest"
DEFAULT_IMAGE_ALIAS = "busybox:latest"

#: Things fixtures found left behind by a test (or by the tool under test) and
#: had to clean up themselves.  The session-end leak check reports these and
#: fails the run: cleaning up is the test's (or the tool's) job, the fixtures
#: only make sure nothing survives on a shared machine.
FIXTURE_CLEANUPS: list[str] = []


# --------------------------------------------------------------------------
# Prerequisites
# --------------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def is_root() -> bool:
    return os.geteuid() == 0


def require(condition: object, reason: str) -> None:
    """Skip the test when a prerequisite is missing, but fail it in CI.

    Locally a missing binary or a dockerd that will not start is an
    environment problem and skipping is friendlier; in CI the environment is
    supposed to be complete, so a skip would silently hide lost coverage.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    require(is_root(), "needs root (creates network namespaces and interfaces)")


def require_binaries(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    require(not missing, f"missing binaries: {', '.join(missing)}")


def unavailable(reason: str) -> NoReturn:
    require(False, reason)
    raise AssertionError("unreachable")  # require() always raises here


# --------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message includes the command's output."""

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.stdout:
            parts.append(f"stdout:\n{str(self.stdout).rstrip()}")
        if self.stderr:
            parts.append(f"stderr:\n{str(self.stderr).rstrip()}")
        return "\n".join(parts)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 60,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; raise CommandError if check."""
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        # Never let a child read pytest's stdin.
        stdin=subprocess.DEVNULL if input is None else None,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def unique_name(kind: str, length: int = 6) -> str:
    """``pwt-KIND-xxxxxx``; short enough for an interface name when KIND is 1-2 chars."""
    name = f"{PREFIX}-{kind}-{secrets.token_hex(length // 2 + 1)[:length]}"
    return name


# --------------------------------------------------------------------------
# Processes and namespaces
# --------------------------------------------------------------------------


def _proc_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _read_proc(pid: int, what: str) -> str:
    try:
        with open(f"/proc/{pid}/{what}", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def describe_pid(pid: int) -> str:
    cmdline = _read_proc(pid, "cmdline") or _read_proc(pid, "comm")
    return f"pid {pid} ({cmdline})"


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = _read_proc(pid, "stat")
    if not stat:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def terminate_pids(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM the given processes, then SIGKILL whatever is left after grace."""
    pending = [pid for pid in pids if pid != os.getpid()]
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = [pid for pid in pending if _alive(pid)]
        time.sleep(0.05)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def netns_key(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """Identity (device, inode) of a network namespace file, None if gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_netns(key: tuple[int, int]) -> list[int]:
    """Processes whose network namespace is ``key`` (like ``ip netns pids``)."""
    found = []
    for pid in _proc_pids():
        if pid != os.getpid() and netns_key(f"/proc/{pid}/ns/net") == key and _alive(pid):
            found.append(pid)
    return found


def reap_netns_processes(key: tuple[int, int] | None, where: str) -> None:
    """Kill processes still living in a test namespace, and record them.

    A DHCP client or server left running would keep the namespace (and the
    veth peers in it) alive after ``ip netns del``.
    """
    if key is None:
        return
    pids = pids_in_netns(key)
    for pid in pids:
        FIXTURE_CLEANUPS.append(f"{describe_pid(pid)} still running in {where}")
    terminate_pids(pids)


@dataclass(frozen=True)
class NetNS:
    """A test-owned named network namespace (``/run/netns/NAME``)."""

    name: str
    path: str

    @classmethod
    def create(cls, name: str) -> NetNS:
        run(["ip", "netns", "add", name])
        ns = cls(name=name, path=f"/run/netns/{name}")
        try:
            ns.exec("ip", "link", "set", "lo", "up")
        except BaseException:
            ns.destroy()
            raise
        return ns

    def exec(
        self,
        *argv: str,
        check: bool = True,
        timeout: float | None = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a host binary inside this namespace (``ip netns exec``)."""
        return run(
            ["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout, input=input
        )

    def destroy(self) -> None:
        reap_netns_processes(netns_key(self.path), f"netns {self.name}")
        # Deleting the namespace destroys every interface created in it.
        run(["ip", "netns", "del", self.name], check=False)


# --------------------------------------------------------------------------
# Private dockerd
# --------------------------------------------------------------------------


class DaemonStartError(RuntimeError):
    pass


def docker_binary() -> str | None:
    return shutil.which("docker")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# dockerd and the containerd shims create these global directories even with a
# private --exec-root (plugin discovery dir; shim v2 socket dir).  If they did
# not exist before we started, remove them again (only when empty, so a system
# daemon started in the meantime keeps its own).
_GLOBAL_DIRS = (
    Path("/run/docker/plugins"),
    Path("/run/docker"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)


class DockerDaemon:
    """A private containerd + dockerd pair living entirely under one temp dir.

    containerd is started by us with its own config rather than being left to
    dockerd: dockerd 20.10 silently reuses a *system* containerd when
    /run/containerd/containerd.sock exists, which would mix our containers
    with the machine's.  Passing --containerd pins it to ours.
    """

    def __init__(self) -> None:
        # Short path: unix socket paths are limited to 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-dockerd-", dir="/tmp"))
        self.sock = self.root / "docker.sock"
        self.host = f"unix://{self.sock}"
        self.containerd_sock = self.root / "containerd.sock"
        # cgroupfs driver with a parent named after us, so leftover container
        # processes can be found and the cgroup dirs removed at the end.
        self.cgroup_parent = f"/{self.root.name}"
        self.docker = docker_binary() or "docker"
        self.env = dict(os.environ)
        self.env["DOCKER_HOST"] = self.host
        # Keep the docker CLI away from ~/.docker (contexts, credential helpers).
        self.env["DOCKER_CONFIG"] = str(self.root / "client")
        self._containerd: subprocess.Popen[bytes] | None = None
        self._dockerd: subprocess.Popen[bytes] | None = None
        self._created_global_dirs = [d for d in _GLOBAL_DIRS if not d.exists()]
        self._stopped = False
        atexit.register(self.stop)

    # -- client -----------------------------------------------------------

    def cli(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.docker, "-H", self.host, *args],
            check=check,
            timeout=timeout,
            input=input,
            env=self.env,
        )

    # -- lifecycle ----------------------------------------------------------

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.root / log_name, "ab") as log:
            # New session: a Ctrl-C aimed at pytest must not kill the daemons
            # before the fixture finalizer has removed the containers.
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _failure(self, what: str) -> DaemonStartError:
        return DaemonStartError(
            f"{what}\n--- dockerd.log (tail) ---\n{_tail(self.root / 'dockerd.log')}"
            f"\n--- containerd.log (tail) ---\n{_tail(self.root / 'containerd.log')}"
        )

    def start(self, timeout: float = 60.0) -> None:
        for sub in ("containerd-root", "containerd-state", "data", "exec", "client"):
            (self.root / sub).mkdir()
        r = self.root
        (r / "containerd.toml").write_text(
            f"""version = 2
root = "{r}/containerd-root"
state = "{r}/containerd-state"
# CRI is for Kubernetes; it would also go looking for CNI configs on the host.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.containerd_sock}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{r}/containerd-root/opt"
"""
        )
        # An explicit (almost empty) config file, so /etc/docker/daemon.json
        # is never read; the trust key would otherwise be written to
        # /etc/docker/key.json by dockerd 20.10.
        (r / "daemon.json").write_text(json.dumps({"deprecated-key-path": f"{r}/key.json"}))

        deadline = time.monotonic() + timeout
        self._containerd = self._spawn(
            ["containerd", "--config", str(r / "containerd.toml")], "containerd.log"
        )
        while not self.containerd_sock.exists():
            if self._containerd.poll() is not None:
                raise self._failure(f"containerd exited with {self._containerd.returncode}")
            if time.monotonic() > deadline:
                raise self._failure("containerd did not create its socket in time")
            time.sleep(0.05)

        self.start_dockerd(deadline - time.monotonic())

    def start_dockerd(self, timeout: float = 60.0) -> None:
        """(Re)start dockerd alone, on the running containerd."""
        r = self.root
        deadline = time.monotonic() + timeout
        self._dockerd = self._spawn(
            [
                "dockerd",
                f"--config-file={r}/daemon.json",
                f"--containerd={self.containerd_sock}",
                f"--data-root={r}/data",
                f"--exec-root={r}/exec",
                f"--pidfile={r}/dockerd.pid",
                f"--host={self.host}",
                # No docker0, no iptables/sysctl changes on a shared host.
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--exec-opt=native.cgroupdriver=cgroupfs",
                f"--cgroup-parent={self.cgroup_parent}",
            ],
            "dockerd.log",
        )
        while True:
            if self._dockerd.poll() is not None:
                raise self._failure(f"dockerd exited with {self._dockerd.returncode}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.cli("version", check=False, timeout=5).returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise self._failure(f"dockerd did not answer within {timeout:.0f}s")
            time.sleep(0.2)

    def stop_dockerd(self) -> None:
        """Stop dockerd alone (containerd and the data stay), as a daemon
        restart or crash would; ``start_dockerd()`` brings it back."""
        _stop_child(self._dockerd, grace=20)

    def stop(self) -> None:
        """Tear everything down; idempotent, safe after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        problems: list[str] = []

        # 1. Containers the tests forgot (make_container removes its own).
        if self._dockerd is not None and self._dockerd.poll() is None:
            try:
                ids = self.cli("ps", "-aq", timeout=30).stdout.split()
                for cid in ids:
                    FIXTURE_CLEANUPS.append(f"docker container {cid} left in the private dockerd")
                if ids:
                    self.cli("rm", "-f", *ids, check=False, timeout=60)
            except (subprocess.SubprocessError, OSError) as exc:
                problems.append(f"could not remove containers: {exc}")

        # 2. dockerd, then any container processes it left in our cgroups,
        #    then the shims (found by our unique path in their command line),
        #    then containerd itself.
        _stop_child(self._dockerd, grace=20)
        terminate_pids(self._cgroup_pids())
        ours = str(self.root)
        containerd_pid = self._containerd.pid if self._containerd else -1
        terminate_pids(
            pid
            for pid in _proc_pids()
            if pid != containerd_pid and ours in _read_proc(pid, "cmdline")
        )
        _stop_child(self._containerd, grace=10)
        leftovers = [pid for pid in _proc_pids() if ours in _read_proc(pid, "cmdline")]
        terminate_pids(leftovers, grace=2)

        # 3. Overlay mounts, netns bind mounts, dockerd's self-bind of the
        #    data root: deepest first.
        for mountpoint in sorted(_mounts_under(self.root), key=len, reverse=True):
            if run(["umount", mountpoint], check=False).returncode != 0:
                run(["umount", "-l", mountpoint], check=False)
        if _mounts_under(self.root):
            problems.append(f"still mounted: {_mounts_under(self.root)}")

        # 4. Our cgroup directories (rmdir only works once they are empty).
        remove_cgroups(self.cgroup_parent.lstrip("/"))

        # 5. Global dirs the daemons created, then our temp dir.
        for path in self._created_global_dirs:
            with contextlib.suppress(OSError):
                path.rmdir()
        try:
            shutil.rmtree(self.root)
        except OSError as exc:
            problems.append(f"could not remove {self.root}: {exc}")
        if problems:
            raise RuntimeError("private dockerd teardown: " + "; ".join(problems))

    def _cgroup_dirs(self) -> list[Path]:
        return cgroup_dirs(self.cgroup_parent.lstrip("/"))

    def _cgroup_pids(self) -> list[int]:
        pids: set[int] = set()
        for top in self._cgroup_dirs():
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in procs.read_text().split())
        return sorted(pids)


def cgroup_dirs(name: str) -> list[Path]:
    """The cgroup directories called NAME at the top of each hierarchy."""
    base = Path("/sys/fs/cgroup")
    seen: dict[str, Path] = {}
    # cgroup v2 (unified at the top) and v1 (one hierarchy per controller;
    # cpu and cpuacct are symlinks to the same hierarchy).
    for candidate in [base / name, *base.glob(f"*/{name}")]:
        if candidate.is_dir():
            seen.setdefault(os.path.realpath(candidate), candidate)
    return list(seen.values())


def remove_cgroups(name: str) -> None:
    """Remove the cgroup trees NAME, deepest first (only empty cgroups go)."""
    for top in cgroup_dirs(name):
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _stop_child(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mountpoint = line.split()[4].replace("\\040", " ")
            if mountpoint == prefix or mountpoint.startswith(prefix + "/"):
                found.append(mountpoint)
    return found


@dataclass
class Container:
    """A container in the private dockerd."""

    daemon: DockerDaemon = field(repr=False)
    name: str
    id: str

    def inspect(self) -> dict[str, Any]:
        data = json.loads(self.daemon.cli("inspect", self.id).stdout)
        result: dict[str, Any] = data[0]
        return result

    @property
    def pid(self) -> int:
        """Current State.Pid (0 when not running); re-read, as it changes on restart."""
        return int(self.inspect()["State"]["Pid"])

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def exec(
        self, *argv: str, check: bool = True, timeout: float | None = 30
    ) -> subprocess.CompletedProcess[str]:
        return self.daemon.cli("exec", self.id, *argv, check=check, timeout=timeout)

    def remove(self) -> None:
        """``docker rm -f`` until the container is gone (a container left
        running would show in every later ``ls``, which scans every
        namespace), then kill host processes left in its namespace."""
        pid = 0
        with contextlib.suppress(subprocess.SubprocessError, KeyError, ValueError):
            pid = self.pid
        key = netns_key(f"/proc/{pid}/ns/net") if pid else None
        said = ""
        for _ in range(5):
            result = self.daemon.cli("rm", "-f", self.id, check=False)
            said = result.stderr.strip()
            if result.returncode == 0 or "No such container" in said:
                break
            time.sleep(0.5)
        else:
            FIXTURE_CLEANUPS.append(f"container {self.name} was not removed: {said}")
        reap_netns_processes(key, f"the network namespace of container {self.name}")


# --------------------------------------------------------------------------
# The busybox test image
# --------------------------------------------------------------------------


def is_static_elf(path: str | os.PathLike[str]) -> bool:
    """True for a 64-bit little-endian ELF without a PT_INTERP segment."""
    with open(path, "rb") as fh:
        header = fh.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False
        (phoff,) = struct.unpack_from("<Q", header, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp for i in range(phnum))


def find_static_busybox() -> str | None:
    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and os.path.exists(candidate) and is_static_elf(candidate):
            return candidate
    return None


def busybox_rootfs_tar(busybox: str) -> bytes:
    """A minimal rootfs (tar) holding the static busybox and all its applets."""
    applets = run([busybox, "--list-full"]).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()

        def add_dir(name: str, mode: int = 0o755) -> None:
            if name in dirs or not name:
                return
            add_dir(os.path.dirname(name))
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
            dirs.add(name)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            add_dir(os.path.dirname(name))
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for name in ("dev", "proc", "sys", "run", "var/run", "etc", "usr/sbin"):
            add_dir(name)
        add_dir("tmp", 0o1777)
        add_dir("root", 0o700)
        add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in applets:
            if applet in ("bin/busybox", "busybox"):
                continue
            add_dir(os.path.dirname(applet))
            info = tarfile.TarInfo(applet)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
            tar.addfile(info)
        add_file(
            "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
        )
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        # Debian's udhcpc hook only uses busybox applets; install it where
        # busybox udhcpc looks by default so DHCP inside the container works.
        script = Path("/etc/udhcpc/default.script")
        if script.exists():
            add_file("usr/share/udhcpc/default.script", script.read_bytes(), 0o755)
    return buf.getvalue()


def import_busybox_image(daemon: DockerDaemon, busybox: str) -> str:
    tar_path = daemon.root / "busybox-rootfs.tar"
    tar_path.write_bytes(busybox_rootfs_tar(busybox))
    try:
        daemon.cli("import", "--change", 'CMD ["/bin/sh"]', str(tar_path), TEST_IMAGE)
    finally:
        tar_path.unlink()
    daemon.cli("tag", TEST_IMAGE, DEFAULT_IMAGE_ALIAS)
    return TEST_IMAGE


# --------------------------------------------------------------------------
# ping
# --------------------------------------------------------------------------


def ping(target: NetNS | Container, addr: str, count: int = 1, timeout: float = 5) -> bool:
    """True if ``addr`` answers ``count`` echo requests sent from ``target``."""
    v6 = ":" in addr
    opts = ["-c", str(count), "-W", "2"]
    if isinstance(target, Container):
        # busybox in the test image: ping6 is the IPv6 applet.
        argv = ["ping6" if v6 else "ping", *opts, addr]
    else:
        # iputils ping when installed, else the host's busybox ping (both
        # take -4/-6, -c and -W).
        if shutil.which("ping"):
            base = ["ping"]
        elif shutil.which("busybox"):
            base = ["busybox", "ping"]
        else:
            unavailable("no ping binary (iputils-ping or busybox)")
        argv = [*base, "-6" if v6 else "-4", *opts, addr]
    try:
        return target.exec(*argv, check=False, timeout=timeout + count).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# --------------------------------------------------------------------------
# Host snapshot for the leak check
# --------------------------------------------------------------------------

#: Processes whose appearance after a run means something was not stopped.
#: Matched against /proc/PID/comm, which the kernel truncates to 15 chars
#: (containerd-shim-runc-v2 shows up as "containerd-shim").
WATCHED_PROCESSES = (
    "dhclient",
    "udhcpc",
    "dhcpcd",
    "dnsmasq",
    "dockerd",
    "containerd",
    "containerd-shim",
    "ovsdb-server",
    "ovs-vswitchd",
    "podman",  # a private podman system service
    "conmon",  # a Podman container's monitor
    "lxc-start",  # an LXC container's monitor ("[lxc monitor] LXCPATH NAME")
)

WATCHED_FILES = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _ovs_bridges() -> list[str]:
    rundir = os.environ.get("OVS_RUNDIR", "/var/run/openvswitch")
    if not os.path.exists(os.path.join(rundir, "db.sock")) or not shutil.which("ovs-vsctl"):
        return []
    proc = run(["ovs-vsctl", "--timeout=2", "list-br"], check=False, timeout=10)
    return proc.stdout.split() if proc.returncode == 0 else []


DEFAULT_RUN_DIR = "/run/pipework"
"""Where pipework keeps runtime files when no test gives it a private one."""


def snapshot() -> Snapshot:
    """What the host looks like now (run in the host network namespace)."""
    links = json.loads(run(["ip", "-j", "link", "show"]).stdout or "[]")
    netns = json.loads(run(["ip", "-j", "netns", "list"]).stdout or "[]")
    processes = []
    for pid in _proc_pids():
        comm = _read_proc(pid, "comm")
        # Zombies are dead already; exited shims are reparented to PID 1,
        # which may take a moment to reap them.
        if comm in WATCHED_PROCESSES and _alive(pid):
            processes.append(f"{comm}[{pid}]")
    mounts = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mountpoint = line.split()[4]
            if f"/{PREFIX}-" in mountpoint:
                mounts.append(mountpoint)
    return Snapshot(
        interfaces=sorted(link["ifname"] for link in links),
        netns=sorted(ns["name"] for ns in netns),
        ovs_bridges=sorted(_ovs_bridges()),
        processes=sorted(processes),
        mounts=sorted(mounts),
        tmp_dirs=sorted(str(p) for p in Path("/tmp").glob(f"{PREFIX}-*")),
        run_files=sorted(
            str(p)
            for p in Path(DEFAULT_RUN_DIR).rglob("*")
            # Lock files and caches (the FORWARD-trap verdict) come and go with any run.
            if not p.is_dir() and p.relative_to(DEFAULT_RUN_DIR).parts[0] not in ("locks", "cache")
        ),
        fixture_cleanups=list(FIXTURE_CLEANUPS),
        files={path: _sha256(path) for path in WATCHED_FILES},
    )


# --------------------------------------------------------------------------
# Types of the factory fixtures (for annotating tests)
# --------------------------------------------------------------------------


class MakeNetNS(Protocol):
    """``make_netns(prefix="g") -> NetNS``"""

    def __call__(self, prefix: str = "g") -> NetNS: ...


class MakeContainer(Protocol):
    """``make_container(name=None, *, network="none", ...) -> Container``"""

    def __call__(
        self,
        name: str | None = None,
        *,
        network: str = "none",
        command: Sequence[str] = ("sleep", "3600"),
        start: bool = True,
        image: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> Container: ...


class RunPipework(Protocol):
    """``run_pipework(*args, netns=None, env=None, timeout=60, input=None)``"""

    def __call__(
        self,
        *args: str,
        netns: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]: ...
