"""A private Open vSwitch for the integration tests.

``ovsdb-server`` and ``ovs-vswitchd`` run inside a test-owned "host" network
namespace (``ip netns exec``), so the bridges' tap devices (the userspace
``netdev`` datapath) land there and never in the machine's namespace. Their
database, sockets, pidfiles and logs live in one ``/tmp/pwt-ovs-*``
directory, removed at the end; the system's Open vSwitch (its service, its
``/var/run/openvswitch``) is neither used nor started.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from support import infra

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
BINARIES = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl")
DAEMONS = ("ovs-vswitchd", "ovsdb-server")  # stop order


class OvsStartError(RuntimeError):
    pass


def kernel_has_openvswitch() -> bool:
    """Is the openvswitch kernel module (the "system" datapath) loaded?"""
    return Path("/sys/module/openvswitch").exists()


class PrivateOvs:
    """ovsdb-server + ovs-vswitchd of one test, in ``netns``."""

    def __init__(self, netns: infra.NetNS) -> None:
        self.netns = netns
        self.root = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-ovs-", dir="/tmp"))
        self.db = self.root / "conf.db"
        self.sock = self.root / "db.sock"
        # Everything an OVS program would otherwise put under /var or /etc.
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "OVS_RUNDIR": str(self.root),
            "OVS_LOGDIR": str(self.root),
            "OVS_DBDIR": str(self.root),
            "OVS_SYSCONFDIR": str(self.root),
        }
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------
    def _spawn(self, name: str, *args: str, ready: Path) -> None:
        """Start a daemon as our child (so we reap it) and wait until ``ready`` exists."""
        argv = [
            "ip", "netns", "exec", self.netns.name, name, *args,
            f"--pidfile={self.root / name}.pid",
            f"--unixctl={self.root / name}.ctl",
            f"--log-file={self.root / name}.log",
            "--no-chdir",
        ]  # fmt: skip
        with open(self.root / f"{name}.out", "ab") as out:
            # A new session: a Ctrl-C aimed at pytest must not kill the
            # daemons before the fixture has stopped them in order.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
            )
        self._children[name] = proc
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None:
                raise OvsStartError(
                    f"{name} exited with {proc.returncode}\n--- {name}.log ---\n{self.log(name)}"
                )
            if time.monotonic() > deadline:
                raise OvsStartError(f"{name} did not create {ready} in time")
            time.sleep(0.01)

    def start(self) -> None:
        infra.run(["ovsdb-tool", "create", str(self.db), str(SCHEMA)], env=self.env)
        self._spawn("ovsdb-server", str(self.db), f"--remote=punix:{self.sock}", ready=self.sock)
        self.vsctl("--no-wait", "init")
        self.start_vswitchd()

    def start_vswitchd(self) -> None:
        self._spawn("ovs-vswitchd", f"unix:{self.sock}", ready=self.root / "ovs-vswitchd.ctl")
        # Connected and configured: a no-op change it has to acknowledge.
        self.vsctl("set", "Open_vSwitch", ".", "external_ids:pwt-ready=1")

    def stop_daemon(self, name: str) -> None:
        """Ask the daemon to exit, then make sure it has, and reap it."""
        proc = self._children.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            args = ("exit", "--cleanup") if name == "ovs-vswitchd" else ("exit",)
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                infra.run(
                    ["ovs-appctl", "-t", f"{self.root / name}.ctl", *args],
                    check=False,
                    env=self.env,
                    timeout=10,
                )
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop(self) -> None:
        """Stop both daemons and remove the directory; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for name in DAEMONS:
            self.stop_daemon(name)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self, name: str, lines: int = 30) -> str:
        path = self.root / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- looking and changing ----------------------------------------------------------
    def vsctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return infra.run(
            ["ovs-vsctl", f"--db=unix:{self.sock}", "--timeout=10", *args],
            check=check,
            env=self.env,
        )

    def add_bridge(self, name: str, datapath: str = "netdev") -> None:
        """A bridge made the way a user makes one (``ovs-vsctl add-br``)."""
        self.vsctl("add-br", name, "--", "set", "Bridge", name, f"datapath_type={datapath}")

    def bridges(self) -> list[str]:
        return self.vsctl("list-br").stdout.split()

    def ports(self, bridge: str) -> list[str]:
        return sorted(self.vsctl("list-ports", bridge).stdout.split())

    def all_ports(self) -> list[str]:
        """Every Port row, bridges' own internal ports included."""
        return sorted(self.column("Port", "name"))

    def get(self, table: str, record: str, column: str) -> object:
        """One column of one record, decoded from OVSDB's JSON notation."""
        out = self.vsctl("--format=json", f"--columns={column}", "list", table, record).stdout
        return _decode(json.loads(out)["data"][0][0])

    def column(self, table: str, column: str) -> list[object]:
        out = self.vsctl("--format=json", f"--columns={column}", "list", table).stdout
        return [_decode(row[0]) for row in json.loads(out)["data"]]

    def external_ids(self, table: str, record: str) -> dict[str, str]:
        value = self.get(table, record, "external_ids")
        assert isinstance(value, dict)
        return value


def _decode(value: object) -> object:
    """OVSDB JSON (``["map", ...]``, ``["set", ...]``, ``["uuid", ...]``) to Python."""
    if isinstance(value, list) and len(value) == 2:
        tag, body = value
        if tag == "map":
            return {k: _decode(v) for k, v in body}
        if tag == "set":
            return [_decode(v) for v in body]
        if tag == "uuid":
            return body
    return value
