"""Wall time of one ``pipework BRIDGE netns:GUEST ADDR/24`` against two baselines.

    sudo /path/to/venv/bin/python bench/single_attach.py [--iterations 30] [--json]

Each iteration attaches a fresh guest namespace to a bridge three ways, in a
shuffled order, timing the whole process from spawn to exit:

* ``pipework``: the console script, as a user runs it;
* ``ip-loop``: the same job as a ``bash -c`` script running one ``ip``
  process per step (see IP_LOOP), the shape of the original shell tool;
* ``cni``: the CNI reference ``bridge`` plugin with ``static`` IPAM
  (CNI_COMMAND=ADD, config on stdin; no gateway, no masquerading).

``python -c pass`` is timed alongside, as the floor any Python CLI pays.
Then, on more fresh guests: the pipework run split into phases
(_cli_phases.py) and ``-X importtime`` totals.  Everything runs inside a
test-owned host namespace; see _harness.py for the layout and the clean-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import (
    BenchError,
    Session,
    add_run_options,
    drop_cni_if_missing,
    emit,
    format_table,
    guest_address,
    log,
    machine_info,
    phase_medians,
    phase_table,
    ratio,
    require_root_and_tools,
    run,
    summarize,
    supervise,
    timed,
)

HERE = Path(__file__).resolve().parent
METHODS = ("pipework", "ip-loop", "cni")
FLOOR = "python -c pass"

IP_LOOP = """set -e
ip link add "$1" type veth peer name "$2" netns "$3"
ip link set "$1" master "$4" up
ip -n "$3" link set "$2" name eth1
ip -n "$3" link set eth1 up
ip -n "$3" addr add "$5" brd + dev eth1
"""
"""$1 host-side veth, $2 temporary guest-side name, $3 guest netns, $4 bridge, $5 address."""

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S.*)$")

PHASES = (
    ("interpreter start-up (exec, site)", "spawn", "start"),
    ("import pipework (the package)", "start", "pipework_imported"),
    ("import pipework.cli.legacy (grammar, specs)", "pipework_imported", "cli_imported"),
    ("import the engine (anyio, pluggy, netlink)", "cli_imported", "engine_imported"),
    ("parse + start the event loop", "engine_imported", "engine_init"),
    ("plugins: entry points, hooks", "engine_init", "engine_entered"),
    ("pyroute2: first compiled request", "pyroute2_start", "pyroute2_end"),
    ("attach: netlink work", "attach_start", "attach_end"),
    ("leave engine: pending announcements, close", "exit_start", "exit_end"),
    ("print, close the loop", "exit_end", "run_end"),
    ("interpreter shutdown", "run_end", "done"),
)


# -- supervisor ---------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=30, help="timed runs per method")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per method first")
    parser.add_argument("--phase-runs", type=int, default=10, help="instrumented pipework runs")
    parser.add_argument("--importtime-runs", type=int, default=5, help="-X importtime runs")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter pipework is installed for (default: this one)",
    )
    parser.add_argument(
        "--pipework", help="the pipework console script (default: next to --python, or on PATH)"
    )
    parser.add_argument("--cni-dir", default="/usr/lib/cni", help="CNI plugin directory")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error("--iterations must be at least 2")
    return args


def supervisor(args: argparse.Namespace) -> int:
    require_root_and_tools("bash")
    pipework = args.pipework or _find_pipework(args.python)
    run([args.python, "-c", "import pipework"])
    cni = Path(args.cni_dir)
    methods = list(METHODS)
    drop_cni_if_missing(methods, cni)
    runs = args.warmup + args.iterations

    def guests(session: Session) -> list[str]:
        names = [session.guest(f"{m[0]}{i:04d}") for i in range(runs) for m in methods]
        names += [session.guest(f"x{i:04d}") for i in range(args.phase_runs)]
        names += [session.guest(f"t{i:04d}") for i in range(args.importtime_runs)]
        return names

    plan = {
        "methods": methods,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "phase_runs": args.phase_runs,
        "importtime_runs": args.importtime_runs,
        "seed": args.seed,
        "python": args.python,
        "pipework": pipework,
        "cni_dir": str(cni),
        "bytecode": args.bytecode,
    }
    result = supervise(Path(__file__).resolve(), plan, guests, bytecode=args.bytecode)
    result["machine"] = machine_info()
    emit(result, render(result), as_json=args.json)
    return 0


def _find_pipework(python: str) -> str:
    beside = Path(python).parent / "pipework"
    if beside.is_file():
        return str(beside)
    found = shutil.which("pipework")
    if found is None:
        raise BenchError("no pipework console script found: pass --pipework")
    return found


def render(result: dict[str, Any]) -> str:
    stats = result["methods"]
    rows = [
        [name, s["n"], s["median_ms"], s["mean_ms"], s["p90_ms"], s["min_ms"], s["max_ms"]]
        for name, s in stats.items()
    ]
    lines = [
        f"single attach, {result['config']['iterations']} iterations "
        f"(+{result['config']['warmup']} warm-up), milliseconds per run",
        format_table(["method", "n", "median", "mean", "p90", "min", "max"], rows),
        "",
    ]
    for name, r in result["ratios"].items():
        if r["median"] is not None:
            lines.append(f"{name}: {r['median']:.2f}x (median)  {r['mean']:.2f}x (mean)")
    phases = result.get("phases")
    if phases:
        lines += [
            "",
            f"pipework phases (median of {phases['runs']} instrumented runs; "
            f"total {phases['total_ms']:.1f} ms)",
            phase_table(phases),
        ]
    imports = result.get("importtime")
    if imports:
        lines += [
            "",
            f"-X importtime, median of {imports['runs']} runs: top-level cumulative "
            f"{imports['total_ms']:.1f} ms ({imports['before_pipework_ms']:.1f} before pipework's "
            f"first import, {imports['pipework_run_ms']:.1f} after)",
            format_table(["top-level import", "ms"], [[n, ms] for n, ms in imports["top"].items()]),
        ]
    return "\n".join(lines)


# -- worker ---------------------------------------------------------------------------------
def work(plan: dict[str, Any]) -> dict[str, Any]:
    guests = iter(plan["guests"])
    methods: list[str] = plan["methods"]
    runs = plan["warmup"] + plan["iterations"]
    schedule = [{m: next(guests) for m in methods} for _ in range(runs)]
    phase_guests = [next(guests) for _ in range(plan["phase_runs"])]
    import_guests = [next(guests) for _ in range(plan["importtime_runs"])]
    addresses = {g: str(guest_address(k)) for k, g in enumerate(plan["guests"])}

    rng = random.Random(plan["seed"])
    samples: dict[str, list[float]] = {m: [] for m in [*methods, FLOOR]}
    log(f"{plan['warmup']} warm-up + {plan['iterations']} timed runs of {', '.join(methods)}")
    for i, by_method in enumerate(schedule):
        order = [*methods, FLOOR]
        rng.shuffle(order)
        for method in order:
            if method == FLOOR:
                elapsed, _ = timed([plan["python"], "-c", "pass"])
            else:
                guest = by_method[method]
                elapsed = attach(method, plan, guest, addresses[guest], i)
                check_guest(guest, addresses[guest])
            if i >= plan["warmup"]:
                samples[method].append(elapsed)

    phases = measure_phases(plan, phase_guests, addresses) if phase_guests else None
    imports = measure_importtime(plan, import_guests, addresses) if import_guests else None
    expected = runs * len(methods) + len(phase_guests) + len(import_guests)
    ports = len(json.loads(run(["ip", "-j", "link", "show", "master", plan["bridge"]]).stdout))
    if ports != expected:
        raise BenchError(f"the bridge has {ports} ports, expected {expected}")

    stats = {m: summarize(s) for m, s in samples.items()}
    ratios = {
        f"pipework/{base}": {
            stat: ratio(stats["pipework"][f"{stat}_ms"], stats[base][f"{stat}_ms"])
            for stat in ("median", "mean", "p90")
        }
        for base in methods
        if base != "pipework"
    }
    return {
        "benchmark": "single_attach",
        "config": {k: plan[k] for k in ("iterations", "warmup", "seed", "bytecode")},
        "commands": {
            "pipework": f"{plan['pipework']} BRIDGE netns:GUEST ADDR/24",
            "ip-loop": f"bash -c {IP_LOOP!r} ip-loop HOSTVETH TMPNAME GUEST BRIDGE ADDR/24",
            "cni": f"CNI_COMMAND=ADD ... {plan['cni_dir']}/bridge < {json.dumps(cni_config('BRIDGE', 'ADDR/24'))}",
            FLOOR: f"{plan['python']} -c pass",
        },
        "methods": stats,
        "ratios": ratios,
        "phases": phases,
        "importtime": imports,
    }


def attach(method: str, plan: dict[str, Any], guest: str, address: str, i: int) -> float:
    bridge = plan["bridge"]
    if method == "pipework":
        elapsed, proc = timed([plan["pipework"], bridge, f"netns:{guest}", address])
        if not proc.stdout.startswith("created:"):
            raise BenchError(f"unexpected pipework output: {proc.stdout!r}")
        return elapsed
    if method == "ip-loop":
        host_veth, temp = f"pwbv{i:04d}", f"pwbt{i:04d}"
        cmd = ["bash", "-c", IP_LOOP, "ip-loop", host_veth, temp, guest, bridge, address]
        return timed(cmd)[0]
    if method == "cni":
        elapsed, proc = timed(
            [f"{plan['cni_dir']}/bridge"],
            stdin=json.dumps(cni_config(bridge, address)),
            env=cni_env("ADD", plan["cni_dir"], guest),
        )
        ips = [ip["address"] for ip in json.loads(proc.stdout).get("ips", [])]
        if ips != [address]:
            raise BenchError(f"the CNI plugin returned {ips}, expected {address}")
        return elapsed
    raise BenchError(f"unknown method {method}")


def cni_config(bridge: str, address: str) -> dict[str, Any]:
    """An L2 bridge network: no address on the bridge, no masquerading, no forwarding."""
    return {
        "cniVersion": "1.0.0",
        "name": "pwbench",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": False,
        "isDefaultGateway": False,
        "ipMasq": False,
        "hairpinMode": False,
        "ipam": {"type": "static", "addresses": [{"address": address}]},
    }


def cni_env(command: str, cni_dir: str, guest: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": guest,
        "CNI_NETNS": f"/run/netns/{guest}",
        "CNI_IFNAME": "eth1",
        "CNI_PATH": cni_dir,
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }


def check_guest(guest: str, address: str) -> None:
    """eth1 is in the guest, up, with exactly the address (untimed)."""
    links = json.loads(run(["ip", "-n", guest, "-j", "-4", "addr", "show", "dev", "eth1"]).stdout)
    if len(links) != 1 or "UP" not in links[0]["flags"]:
        raise BenchError(f"eth1 in {guest} is missing or down: {links}")
    found = [f"{a['local']}/{a['prefixlen']}" for a in links[0]["addr_info"]]
    if found != [address]:
        raise BenchError(f"eth1 in {guest} has {found}, expected {address}")


def measure_phases(
    plan: dict[str, Any], guests: list[str], addresses: dict[str, str]
) -> dict[str, Any]:
    log(f"{len(guests)} instrumented pipework runs")
    script = HERE / "_cli_phases.py"
    durations: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    totals: list[float] = []
    for n, guest in enumerate(guests):
        out = Path(plan["workdir"]) / f"phases-{n}.json"
        try:
            spawn = time.monotonic()
            run(
                [
                    plan["python"],
                    str(script),
                    str(out),
                    plan["bridge"],
                    f"netns:{guest}",
                    addresses[guest],
                ]
            )
            done = time.monotonic()
            marks = json.loads(out.read_text())
        finally:
            out.unlink(missing_ok=True)
        check_guest(guest, addresses[guest])
        marks.update(spawn=spawn, done=done)
        totals.append(done - spawn)
        for name, begin, end in PHASES:
            # pyroute2 is loaded only when a request needs it (none of the
            # built-in backends' requests do): a phase that did not happen is 0.
            durations[name].append(marks[end] - marks[begin] if begin in marks else 0.0)
        # pyroute2's import happens inside the attach: count it once.
        durations["attach: netlink work"][-1] -= durations["pyroute2: first compiled request"][-1]
    return phase_medians(durations, totals, "(not in a phase / rounding)")


def measure_importtime(
    plan: dict[str, Any], guests: list[str], addresses: dict[str, str]
) -> dict[str, Any]:
    log(f"{len(guests)} pipework runs under -X importtime")
    stderrs = []
    for guest in guests:
        cmd = [plan["pipework"], plan["bridge"], f"netns:{guest}", addresses[guest]]
        stderrs.append(run(cmd, env=IMPORTTIME_ENV).stderr)
        check_guest(guest, addresses[guest])
    return importtime_summary(stderrs)


IMPORTTIME_ENV = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
"""The environment of a run under ``-X importtime``."""


def importtime_summary(stderrs: Sequence[str]) -> dict[str, Any]:
    """The medians over runs of their ``-X importtime`` output (``stderrs``):
    the top-level total, split at pipework's first import, and the 8
    heaviest top-level imports."""
    totals, befores, afters = [], [], []
    per_module: dict[str, list[float]] = {}
    for stderr in stderrs:
        top = top_level_imports(stderr)
        first = next((i for i, (name, _) in enumerate(top) if name.startswith("pipework")), 0)
        totals.append(sum(us for _, us in top) / 1000)
        befores.append(sum(us for _, us in top[:first]) / 1000)
        afters.append(sum(us for _, us in top[first:]) / 1000)
        for name, us in top:
            per_module.setdefault(name, []).append(us / 1000)
    medians = {name: statistics.median(v) for name, v in per_module.items()}
    heaviest = sorted(medians.items(), key=lambda item: -item[1])[:8]
    return {
        "runs": len(stderrs),
        "total_ms": statistics.median(totals),
        "before_pipework_ms": statistics.median(befores),
        "pipework_run_ms": statistics.median(afters),
        "top": dict(heaviest),
    }


def top_level_imports(stderr: str) -> list[tuple[str, int]]:
    """(module, cumulative microseconds) of each top-level line of -X importtime output."""
    found = []
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match and len(match.group(3)) == 1:
            found.append((match.group(4).strip(), int(match.group(2))))
    return found


if __name__ == "__main__":
    from _harness import entry_point

    entry_point(parse_args, supervisor, work)
