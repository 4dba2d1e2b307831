"""CNI ADD (and DEL) latency: pipework-cni against the reference ``bridge`` plugin.

    sudo /path/to/venv/bin/python bench/cni_add.py [--iterations 30] [--json]

A container runtime execs the plugin once per call, with the ``CNI_*``
environment and the configuration on stdin. Each iteration attaches a fresh
guest namespace to the same bridge once per method, in a shuffled order,
timing the process from spawn to exit; every guest is checked afterwards
(untimed), then every attachment is removed with DEL (timed too):

* ``pipework-cni``: ``"type": "pipework"``, bridge backend, pipework's own
  static addressing (``"address": "ADDR/24"``);
* ``pipework-cni+static``: the same with a delegated ``ipam`` section of
  type ``static``: the reference plugin's exact work (it execs the IPAM
  plugin too);
* ``cni-bridge``: the reference ``bridge`` plugin with ``static`` IPAM (no
  gateway, no masquerading), from containernetworking-plugins.

``python -c pass`` is timed alongside (the floor of any Python program).
Then, on more fresh guests, ``pipework-cni`` ADD and DEL split into phases
(_cni_phases.py: imports, event loop, plugins, kernel work, exit), and one
``-X importtime`` run of pipework-cni shows where its start-up goes.
Last, what the event loop's libraries cost: the plugin's start-up (imports,
plugins) with and without them (_cni_noloop.py), interleaved.
Everything runs inside a test-owned host namespace; see _harness.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import (
    BenchError,
    Session,
    add_run_options,
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
from single_attach import check_guest, cni_config, top_level_imports

HERE = Path(__file__).resolve().parent
METHODS = ("pipework-cni", "pipework-cni+static", "cni-bridge")
FLOOR = "python -c pass"
NETWORK = "pwbench"

PHASES = (
    ("interpreter start-up (exec, site)", "spawn", "start"),
    ("import pipework.cni (main, config)", "start", "cni_imported"),
    ("import the commands and the engine", "cni_imported", "engine_imported"),
    ("import asyncio, anyio's backend", "engine_imported", "loop_imported"),
    ("parse the configuration", "parse_start", "parse_end"),
    ("start the event loop", "parse_end", "loop_started"),
    ("Engine(): load the plugins", "engine_init", "engine_made"),
    ("enter the engine", "enter_start", "engine_entered"),
    ("the command's work (attach, remove)", "work_start", "work_end"),
    ("leave the engine", "exit_start", "exit_end"),
    ("close the event loop", "command_end", "run_end"),
    ("write the result, exit", "run_end", "done"),
)
"""(phase, first mark, last mark): the marks _cni_phases.py notes, plus the
parent's ``spawn`` and ``done``."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=30, help="timed runs per method")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per method first")
    parser.add_argument(
        "--phase-runs", type=int, default=5, help="instrumented ADD and DEL runs (0: none)"
    )
    parser.add_argument(
        "--loop-runs", type=int, default=20, help="start-ups with and without the loop (0: none)"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter pipework is installed for"
    )
    parser.add_argument(
        "--plugin", help="the pipework-cni console script (default: next to --python)"
    )
    parser.add_argument("--cni-dir", default="/usr/lib/cni", help="the reference plugins")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error("--iterations must be at least 2")
    return args


def supervisor(args: argparse.Namespace) -> int:
    require_root_and_tools()
    plugin = args.plugin or str(Path(args.python).parent / "pipework-cni")
    if not Path(plugin).is_file():
        raise BenchError(f"no pipework-cni at {plugin}: pass --plugin")
    cni = Path(args.cni_dir)
    if not all((cni / p).is_file() for p in ("bridge", "static")):
        # Nothing to compare with (Debian: containernetworking-plugins).
        log(f"no reference bridge/static plugins in {cni}: skipping this benchmark")
        return 0
    runs = args.warmup + args.iterations

    def guests(session: Session) -> list[str]:
        names = [session.guest(f"{n}{i:04d}") for i in range(runs) for n in range(len(METHODS))]
        names += [session.guest(f"x{i:04d}") for i in range(args.phase_runs)]
        return [*names, session.guest("imp")]

    plan = {
        "iterations": args.iterations,
        "warmup": args.warmup,
        "phase_runs": args.phase_runs,
        "loop_runs": args.loop_runs,
        "seed": args.seed,
        "python": args.python,
        "plugin": plugin,
        "cni_dir": str(cni),
        "bytecode": args.bytecode,
    }
    result = supervise(Path(__file__).resolve(), plan, guests, bytecode=args.bytecode)
    result["machine"] = machine_info()
    emit(result, render(result), as_json=args.json)
    return 0


def render(result: dict[str, Any]) -> str:
    lines = []
    for command in ("ADD", "DEL"):
        stats = result[command]
        rows = [
            [name, s["n"], s["median_ms"], s["mean_ms"], s["p90_ms"], s["min_ms"], s["max_ms"]]
            for name, s in stats.items()
        ]
        lines += [
            f"CNI {command}, {result['config']['iterations']} iterations "
            f"(+{result['config']['warmup']} warm-up), milliseconds per call",
            format_table(["method", "n", "median", "mean", "p90", "min", "max"], rows),
            "",
        ]
        for name, r in result["ratios"][command].items():
            lines.append(f"{command} {name}: {r['median']:.2f}x (median)  {r['mean']:.2f}x (mean)")
        lines.append("")
        phases = result.get("phases", {}).get(command)
        if phases:
            lines += [
                f"pipework-cni {command} phases (median of {phases['runs']} instrumented runs; "
                f"total {phases['total_ms']:.1f} ms)",
                phase_table(phases),
                "",
            ]
    imports = result["importtime"]
    lines += [
        f"pipework-cni ADD under -X importtime: top-level imports {imports['total_ms']:.1f} ms",
        format_table(["top-level import", "ms"], [[n, ms] for n, ms in imports["top"].items()]),
    ]
    loop = result.get("event_loop")
    if loop:
        add = result["ADD"]["pipework-cni"]["median_ms"]
        lines += [
            "",
            f"start-up (imports, plugins) with and without the event loop's libraries, "
            f"median of {loop['runs']} runs each, ms",
            format_table(
                ["", "wall", "cpu"],
                [[mode, loop[mode]["wall_ms"], loop[mode]["cpu_ms"]] for mode in ("real", "stub")],
            ),
            f"the loop's libraries: {loop['cost_cpu_ms']:.1f} ms CPU "
            f"({loop['cost_wall_ms']:.1f} ms wall); an ADD without them: about "
            f"{add - loop['cost_wall_ms']:.1f} ms "
            f"({(add - loop['cost_wall_ms']) / result['ADD']['cni-bridge']['median_ms']:.2f}x cni-bridge)",
        ]
    return "\n".join(lines)


# -- worker ---------------------------------------------------------------------------------
def work(plan: dict[str, Any]) -> dict[str, Any]:
    guests = iter(plan["guests"])
    runs = plan["warmup"] + plan["iterations"]
    schedule = [{m: next(guests) for m in METHODS} for _ in range(runs)]
    phase_guests = [next(guests) for _ in range(plan["phase_runs"])]
    imp_guest = next(guests)
    addresses = {g: str(guest_address(k)) for k, g in enumerate(plan["guests"])}
    rng = random.Random(plan["seed"])
    samples: dict[str, dict[str, list[float]]] = {
        c: {m: [] for m in [*METHODS, FLOOR]} for c in ("ADD", "DEL")
    }
    log(
        f"{plan['warmup']} warm-up + {plan['iterations']} timed ADD and DEL of {', '.join(METHODS)}"
    )
    for i, by_method in enumerate(schedule):
        for command in ("ADD", "DEL"):
            order = [*METHODS, FLOOR]
            rng.shuffle(order)
            for method in order:
                if method == FLOOR:
                    elapsed, _ = timed([plan["python"], "-c", "pass"])
                else:
                    guest = by_method[method]
                    elapsed = call(command, method, plan, guest, addresses[guest])
                    if command == "ADD":
                        check_guest(guest, addresses[guest])
                    else:
                        check_gone(guest)
                if i >= plan["warmup"]:
                    samples[command][method].append(elapsed)
    ports = json.loads(run(["ip", "-j", "link", "show", "master", plan["bridge"]]).stdout)
    if ports:
        raise BenchError(f"DEL left {len(ports)} ports on the bridge")
    phases = measure_phases(plan, phase_guests, addresses) if phase_guests else {}
    imports = importtime(plan, imp_guest, addresses[imp_guest])
    loop = measure_loop(plan) if plan["loop_runs"] else None
    stats = {c: {m: summarize(s) for m, s in by.items()} for c, by in samples.items()}
    ratios = {
        c: {
            f"{ours}/cni-bridge": {
                stat: ratio(stats[c][ours][f"{stat}_ms"], stats[c]["cni-bridge"][f"{stat}_ms"])
                for stat in ("median", "mean", "p90")
            }
            for ours in METHODS[:2]
        }
        for c in ("ADD", "DEL")
    }
    return {
        "benchmark": "cni_add",
        "config": {k: plan[k] for k in ("iterations", "warmup", "phase_runs", "seed", "bytecode")},
        "configs": {m: config(m, "BRIDGE", "ADDR/24") for m in METHODS},
        "ADD": stats["ADD"],
        "DEL": stats["DEL"],
        "ratios": ratios,
        "phases": phases,
        "importtime": imports,
        "event_loop": loop,
    }


def config(method: str, bridge: str, address: str) -> dict[str, Any]:
    if method == "cni-bridge":
        return cni_config(bridge, address)
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "pipework",
        "backend": "bridge",
        "bridge": bridge,
    }
    if method == "pipework-cni+static":
        conf["ipam"] = {"type": "static", "addresses": [{"address": address}]}
    else:
        conf["address"] = address
    return conf


def cni_env(command: str, plan: dict[str, Any], guest: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": guest,
        "CNI_NETNS": f"/run/netns/{guest}",
        "CNI_IFNAME": "eth1",
        "CNI_PATH": plan["cni_dir"],
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        **{k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "PIPEWORK_RUN_DIR"))},
    }


def call(command: str, method: str, plan: dict[str, Any], guest: str, address: str) -> float:
    program = plan["plugin"] if method.startswith("pipework") else f"{plan['cni_dir']}/bridge"
    env = cni_env(command, plan, guest)
    stdin = json.dumps(config(method, plan["bridge"], address))
    elapsed, proc = timed([program], stdin=stdin, env=env)
    if command == "ADD":
        ips = [ip["address"] for ip in json.loads(proc.stdout).get("ips", [])]
        if ips != [address]:
            raise BenchError(f"{method} returned {ips}, expected {address}")
    return elapsed


def check_gone(guest: str) -> None:
    links = json.loads(run(["ip", "-n", guest, "-j", "link", "show"]).stdout)
    if any(link["ifname"] == "eth1" for link in links):
        raise BenchError(f"DEL left eth1 in {guest}")


def measure_phases(
    plan: dict[str, Any], guests: list[str], addresses: dict[str, str]
) -> dict[str, Any]:
    """pipework-cni ADD, then DEL, of each guest, through _cni_phases.py."""
    log(f"{len(guests)} instrumented pipework-cni ADD and DEL runs")
    script = HERE / "_cni_phases.py"
    durations = {c: {name: [] for name, _, _ in PHASES} for c in ("ADD", "DEL")}
    totals: dict[str, list[float]] = {"ADD": [], "DEL": []}
    for n, guest in enumerate(guests):
        for command in ("ADD", "DEL"):
            out = Path(plan["workdir"]) / f"phases-{n}-{command}.json"
            stdin = json.dumps(config("pipework-cni", plan["bridge"], addresses[guest]))
            try:
                spawn = time.monotonic()
                run(
                    [plan["python"], str(script), str(out)],
                    stdin=stdin,
                    env=cni_env(command, plan, guest),
                )
                done = time.monotonic()
                marks = json.loads(out.read_text())
            finally:
                out.unlink(missing_ok=True)
            if command == "ADD":
                check_guest(guest, addresses[guest])
            else:
                check_gone(guest)
            marks.update(spawn=spawn, done=done)
            totals[command].append(done - spawn)
            for name, begin, end in PHASES:
                # A phase that did not happen (no such call) is 0.
                took = marks[end] - marks[begin] if begin in marks and end in marks else 0.0
                durations[command][name].append(took)
    rest = "(the rest: reading input, specs, results)"
    return {c: phase_medians(durations[c], totals[c], rest) for c in durations}


def measure_loop(plan: dict[str, Any]) -> dict[str, Any]:
    """_cni_noloop.py ``real`` and ``stub``, alternately: wall and CPU time per process."""
    log(f"{plan['loop_runs']} start-ups with and {plan['loop_runs']} without the event loop")
    env = {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    samples: dict[str, dict[str, list[float]]] = {
        m: {"wall": [], "cpu": []} for m in ("real", "stub")
    }
    for i in range(plan["loop_runs"] + 1):  # the first pair warms the bytecode cache
        for mode in ("real", "stub") if i % 2 else ("stub", "real"):
            start = time.perf_counter()
            proc = subprocess.Popen([plan["python"], str(HERE / "_cni_noloop.py"), mode], env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise BenchError(f"_cni_noloop.py {mode} exited with {proc.returncode}")
            if i:
                samples[mode]["wall"].append(wall)
                samples[mode]["cpu"].append(usage.ru_utime + usage.ru_stime)
    result: dict[str, Any] = {"runs": plan["loop_runs"]}
    for mode, by in samples.items():
        result[mode] = {f"{k}_ms": statistics.median(v) * 1000 for k, v in by.items()}
    for k in ("wall", "cpu"):
        result[f"cost_{k}_ms"] = result["real"][f"{k}_ms"] - result["stub"][f"{k}_ms"]
    return result


def importtime(plan: dict[str, Any], guest: str, address: str) -> dict[str, Any]:
    env = {**cni_env("ADD", plan, guest), "PYTHONPROFILEIMPORTTIME": "1"}
    stdin = json.dumps(config("pipework-cni", plan["bridge"], address))
    proc = run([plan["plugin"]], stdin=stdin, env=env)
    check_guest(guest, address)
    top = top_level_imports(proc.stderr)
    heaviest = sorted(top, key=lambda item: -item[1])[:8]
    return {
        "total_ms": sum(us for _, us in top) / 1000,
        "top": {name: us / 1000 for name, us in heaviest},
    }


if __name__ == "__main__":
    from _harness import entry_point

    entry_point(parse_args, supervisor, work)
