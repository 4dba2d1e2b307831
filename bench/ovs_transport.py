"""How pipework should talk to Open vSwitch: ``ovs-vsctl`` or OVSDB JSON-RPC.

    sudo /path/to/venv/bin/python bench/ovs_transport.py [--ports 20] [--rounds 3] [--json]

A private ovsdb-server and ovs-vswitchd run inside the run's host namespace
(userspace datapath, so no kernel module is needed), with one bridge and
``--ports`` veth pairs whose host ends become its ports. Each round, in a
shuffled order, every method adds all the ports one at a time, then removes
them one at a time; each add and each remove is timed on its own:

* ``ovs-vsctl``: ``ovs-vsctl add-port BRIDGE PORT`` / ``del-port``, one process
  per change, waiting (its default) until ovs-vswitchd has applied it;
* ``json-rpc``: what the ovs backend sends on db.sock for the same change,
  through its client (``pipework/backends/links/ovsdb.py``): the read, the
  write, and the wait for ovs-vswitchd with the check of the port's
  ``ofport``;
* ``ovs-vsctl --no-wait`` and ``json-rpc, no wait``: the same without the
  wait, which isolates the cost of the transport from ovs-vswitchd's work.

Everything runs inside the test-owned host namespace, and the daemons'
database, sockets and logs live in the run's scratch directory (see
_harness.py): the system's Open vSwitch is neither used nor started.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from _harness import (
    BenchError,
    Session,
    emit,
    entry_point,
    format_table,
    log,
    machine_info,
    ratio,
    require_root_and_tools,
    run,
    summarize,
    supervise,
)

BRIDGE = "ovspwb0"
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovsdb-server", "ovs-vswitchd")
METHODS = ("ovs-vsctl", "json-rpc", "ovs-vsctl --no-wait", "json-rpc, no wait")
PAIRS = (("ovs-vsctl", "json-rpc"), ("ovs-vsctl --no-wait", "json-rpc, no wait"))


# -- supervisor ---------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=20, help="ports added and removed per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--seed", type=int, default=1, help="seed for the method order")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ports < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--ports and --rounds must be positive, --warmup not negative")
    return args


def supervisor(args: argparse.Namespace) -> int:
    require_root_and_tools("ovsdb-tool", *DAEMONS, "ovs-vsctl", "ovs-appctl")
    if not SCHEMA.exists():
        raise BenchError(f"no OVSDB schema at {SCHEMA} (Debian: openvswitch-common)")
    run([sys.executable, "-c", "import pipework.backends.links.ovs"])
    plan = {"ports": args.ports, "rounds": args.rounds, "warmup": args.warmup, "seed": args.seed}

    def guests(session: Session) -> list[str]:
        return []  # the ports are veth pairs inside the host namespace

    result = supervise(Path(__file__).resolve(), plan, guests, bytecode="env")
    result["machine"] = machine_info()
    result["machine"]["openvswitch"] = run(["ovs-vsctl", "--version"]).stdout.splitlines()[0]
    emit(result, render(result), as_json=args.json)
    return 0


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    rows = []
    for method, stats in result["methods"].items():
        add, remove = stats["add"], stats["remove"]
        rows.append(
            [method, add["median_ms"], add["p90_ms"], remove["median_ms"], remove["p90_ms"]]
        )
    lines = [
        f"one port added / removed, {cfg['ports']} ports x {cfg['rounds']} rounds per method "
        f"(+{cfg['warmup']} warm-up), milliseconds",
        format_table(["method", "add median", "add p90", "remove median", "remove p90"], rows),
        "",
    ]
    for name, r in result["ratios"].items():
        lines.append(f"{name}: add {r['add']:.1f}x, remove {r['remove']:.1f}x (medians)")
    return "\n".join(lines)


# -- worker ---------------------------------------------------------------------------------
class Switch:
    """ovsdb-server + ovs-vswitchd, children of the worker, in its namespace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "db.sock"
        self.env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            **{f"OVS_{d}DIR": str(root) for d in ("RUN", "LOG", "DB", "SYSCONF")},
        }
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.root.mkdir()
        db = self.root / "conf.db"
        run(["ovsdb-tool", "create", str(db), str(SCHEMA)], env=self.env)
        self._spawn("ovsdb-server", str(db), f"--remote=punix:{self.sock}", ready=self.sock)
        self.vsctl("--no-wait", "init")
        ctl = self.root / "ovs-vswitchd.ctl"
        self._spawn("ovs-vswitchd", f"unix:{self.sock}", ready=ctl)

    def _spawn(self, name: str, *args: str, ready: Path) -> None:
        argv = [
            name,
            *args,
            f"--pidfile={self.root / name}.pid",
            f"--unixctl={self.root / name}.ctl",
            f"--log-file={self.root / name}.log",
            "--no-chdir",
        ]
        with open(self.root / f"{name}.out", "ab") as out:
            self.children[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env
            )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.children[name].poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{name} did not start; see {self.root / name}.log")
            time.sleep(0.01)

    def vsctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(["ovs-vsctl", f"--db=unix:{self.sock}", "--timeout=30", *args], env=self.env)

    def stop(self) -> None:
        for name in reversed(DAEMONS):
            proc = self.children.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            subprocess.run(
                ["ovs-appctl", "-t", f"{self.root / name}.ctl", "exit"],
                env=self.env,
                capture_output=True,
                check=False,
                timeout=10,
            )
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def work(plan: dict[str, Any]) -> dict[str, Any]:
    switch = Switch(Path(plan["workdir"]) / "ovs")
    os.environ.update(switch.env)  # for ovs-vsctl's OVS_RUNDIR, as the backend sees it
    ports = [f"pwba{i:04d}" for i in range(plan["ports"])]
    try:
        switch.start()
        switch.vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE, "datapath_type=netdev")
        batch = "".join(f"link add {p} type veth peer name pwbb{p[4:]}\n" for p in ports)
        batch += "".join(f"link set {p} up\nlink set pwbb{p[4:]} up\n" for p in ports)
        run(["ip", "-batch", "-"], stdin=batch)
        samples: dict[str, dict[str, list[float]]] = {m: {"add": [], "remove": []} for m in METHODS}
        rng = random.Random(plan["seed"])
        for n in range(plan["warmup"] + plan["rounds"]):
            order = list(METHODS)
            rng.shuffle(order)
            for method in order:
                add, remove = one_round(method, switch, ports)
                if n >= plan["warmup"]:
                    samples[method]["add"] += add
                    samples[method]["remove"] += remove
            log(f"round {n + 1}/{plan['warmup'] + plan['rounds']} done")
    finally:
        switch.stop()
        shutil.rmtree(switch.root, ignore_errors=True)
    stats = {m: {k: summarize(v) for k, v in s.items()} for m, s in samples.items()}
    ratios = {
        f"{a} / {b}": {
            k: ratio(stats[a][k]["median_ms"], stats[b][k]["median_ms"]) for k in ("add", "remove")
        }
        for a, b in PAIRS
    }
    return {
        "config": {k: plan[k] for k in ("ports", "rounds", "warmup", "seed")},
        "methods": stats,
        "ratios": ratios,
    }


def one_round(method: str, switch: Switch, ports: list[str]) -> tuple[list[float], list[float]]:
    """Add every port, then remove every port, with ``method``; per-change times."""
    if method.startswith("ovs-vsctl"):
        flags = ["--no-wait"] if method.endswith("--no-wait") else []
        add = [_timed(switch.vsctl, *flags, "add-port", BRIDGE, p) for p in ports]
        remove = [_timed(switch.vsctl, *flags, "del-port", BRIDGE, p) for p in ports]
    else:
        add, remove = anyio.run(_json_rpc, switch, ports, not method.endswith("no wait"))
    if switch.vsctl("list-ports", BRIDGE).stdout.split():
        raise BenchError(f"{method} left ports on {BRIDGE}")
    return add, remove


def _timed(func: Any, *args: str) -> float:
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


async def _json_rpc(
    switch: Switch, ports: list[str], wait: bool
) -> tuple[list[float], list[float]]:
    """The backend's own transactions, through its client, for each port."""
    from pipework.backends.links import ovs
    from pipework.engine import Marker

    client = ovs.OvsdbClient(str(switch.sock), timeout=30)
    add: list[float] = []
    remove: list[float] = []
    try:
        for port in ports:
            marker = Marker(guest=f"bench:{port}", ifname="eth1", kind="ovs", host=BRIDGE, cfg="x")
            start = time.perf_counter()
            view = ovs.parse_view(await client.transact(ovs.view_ops(BRIDGE, port), what="view"))
            plan = ovs.plan_attach(
                view,
                bridge=BRIDGE,
                port=port,
                marker=marker,
                datapath=None,
                default_datapath="",
                other_link=True,
                where=str(switch.sock),
            )
            ops = ovs.add_port_ops(plan, bridge=BRIDGE, port=port, marker=marker, vlan=None)
            done = await client.transact(ops, what="add")
            if wait:
                applied = await client.transact(
                    ovs.applied_ops(ovs._next_cfg(done), 30, port=port, bridge=BRIDGE), what="wait"
                )
                failure = ovs.setup_failure(applied, port=port, bridge=BRIDGE)
                if failure is not None:
                    raise BenchError(str(failure))
            add.append(time.perf_counter() - start)
        for port in ports:
            start = time.perf_counter()
            found = await client.transact(ovs.removal_ops(port, BRIDGE), what="lookup")
            port_row = ovs.PortRow.from_row(found[0]["rows"][0])
            holder = ovs.BridgeRow.from_row(found[1]["rows"][0])
            ops = ovs.remove_port_ops(port_row, holder, drop_bridge=False)
            done = await client.transact(ops, what="remove")
            if wait:
                await client.transact(
                    ovs.applied_ops(ovs._next_cfg(done), 30, port=port, bridge=BRIDGE), what="wait"
                )
            remove.append(time.perf_counter() - start)
    finally:
        await client.aclose()
    return add, remove


if __name__ == "__main__":
    entry_point(parse_args, supervisor, work)
