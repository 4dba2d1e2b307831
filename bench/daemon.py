"""``pipework daemon``: one command served by the daemon against scripts, CNI and in-process.

    sudo /path/to/venv/bin/python bench/daemon.py [--iterations 20] [--json]

The worker (inside the bench's host namespace) starts a ``pipework daemon``
in a test-owned namespace of its own (``ip netns exec pwb-g-TAG-dmn``, its
socket and run directory in the run's scratch directory, as
tests/support/daemon.py does); the commands it serves run in the client's
namespaces. Then, each iteration on fresh guests, in a shuffled order, timed
from spawn to exit:

* **docker**: ``pipework BRIDGE CONTAINER ADDR/24`` served by the daemon,
  the same with ``PIPEWORK_NO_DAEMON=1`` (in-process), and docker_many.py's
  script (``docker inspect`` for the PID, ``ip`` and ``nsenter``), on
  containers of a private dockerd (skipped with ``--no-docker``);
* **netns**: ``pipework BRIDGE netns:GUEST ADDR/24`` the same two ways,
  and single_attach.py's ``ip`` script;
* **cni**: ``pipework-cni`` ADD, then DEL, through the daemon and
  in-process, and the reference ``bridge`` plugin with ``static`` IPAM
  (cni_add.py's configurations);

then the client's start-up costs (``python -S -c pass``, ``python -c
pass``, ``import pipework.client``, ``import pipework.cli``), a request
that forks nothing (``GET /v1/version``), served attaches split into the
client's phases (_daemon_phases.py) and a served command that fails at once;
the daemon's start-up time (spawn until it answers) and its memory (VmRSS,
RssAnon, Pss of the daemon and of its zygote, after start and at the end).
Everything runs inside test-owned namespaces; see _harness.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    times,
)
from attach_many import host_veth, wait_bridge_empty
from cni_add import check_gone
from cni_add import config as cni_conf
from docker_many import IP_LOOP as DOCKER_SCRIPT
from docker_many import remove_containers
from single_attach import IP_LOOP as NETNS_SCRIPT
from single_attach import check_guest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DAEMON, INPROC = "pipework (daemon)", "pipework (in-process)"
CNI_DAEMON, CNI_INPROC, CNI_REF = "pipework-cni (daemon)", "pipework-cni (in-process)", "cni-bridge"
PARTS = {
    "docker": (DAEMON, INPROC, "script (docker inspect + ip/nsenter)"),
    "netns": (DAEMON, INPROC, "ip-loop"),
    "cni": (CNI_DAEMON, CNI_INPROC, CNI_REF),
}
GOALS = {"docker": 0.4, "netns": 0.4, "cni": 1.5}
"""Issue 17's goals: the daemon path against the baseline (third method)."""
STARTUP = (
    ("python -S -c pass", ["-S", "-c", "pass"]),
    ("python -c pass", ["-c", "pass"]),
    ("python -c 'import pipework.client'", ["-c", "import pipework.client"]),
    ("python -c 'import pipework.cli'", ["-c", "import pipework.cli"]),
    (
        "python -c 'import pipework.cli, .forward, .client, json'",
        ["-c", "import pipework.cli, pipework.cli.forward, pipework.client, json"],
    ),
)
PHASES = (
    ("interpreter start-up (exec, site)", "spawn", "start"),
    ("import pipework.cli (options, registry)", "start", "cli_imported"),
    ("import pipework.client", "cli_imported", "client_imported"),
    ("read the line, build the request", "client_imported", "request"),
    ("request until the response head", "request", "head"),
    ("head until the exit frame (fork, setns, command, output)", "head", "exit_frame"),
    ("flush, exit", "exit_frame", "done"),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20, help="timed runs per method")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per method first")
    parser.add_argument("--part", action="append", choices=tuple(PARTS), help="repeat; default all")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker part")
    parser.add_argument("--startup-runs", type=int, default=20, help="client start-up runs each")
    parser.add_argument("--phase-runs", type=int, default=10, help="instrumented served attaches")
    parser.add_argument("--daemon-starts", type=int, default=5, help="daemon start-ups timed")
    parser.add_argument("--python", default=sys.executable, help="pipework's interpreter")
    parser.add_argument("--cni-dir", default="/usr/lib/cni", help="the reference plugins")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.iterations < 2 or args.warmup < 0:
        parser.error("--iterations must be at least 2")
    return args


def supervisor(args: argparse.Namespace) -> int:
    require_root_and_tools()
    parts = list(dict.fromkeys(args.part or PARTS))
    if args.no_docker and "docker" in parts:
        parts.remove("docker")
    cni = Path(args.cni_dir)
    if "cni" in parts and not all((cni / p).is_file() for p in ("bridge", "static")):
        log(f"no reference bridge/static plugins in {cni}: skipping the cni part")
        parts.remove("cni")
    bindir = Path(args.python).parent
    runs = args.warmup + args.iterations
    per_part = 3 * runs

    def guests(session: Session) -> list[str]:
        names = [
            session.guest("dmn"),
            *(session.guest(f"s{i:03d}") for i in range(args.daemon_starts)),
        ]
        for part in ("netns", "cni"):
            if part in parts:
                names += [session.guest(f"{part[0]}{i:04d}") for i in range(per_part)]
        return names + [session.guest(f"p{i:03d}") for i in range(args.phase_runs)]

    plan: dict[str, Any] = {
        "parts": parts,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "startup_runs": args.startup_runs,
        "phase_runs": args.phase_runs,
        "daemon_starts": args.daemon_starts,
        "seed": args.seed,
        "python": args.python,
        "pipework": str(bindir / "pipework"),
        "plugin": str(bindir / "pipework-cni"),
        "cni_dir": str(cni),
        "containers": [],
    }
    if "docker" not in parts:
        return _run(args, plan, guests)
    require_root_and_tools("docker", "dockerd", "containerd", "nsenter")
    sys.path.insert(0, str(REPO / "tests"))
    from support import infra

    busybox = infra.find_static_busybox()
    if busybox is None:
        raise BenchError("the docker part needs a static busybox (busybox-static); or --no-docker")
    docker = infra.DockerDaemon()
    names: list[str] = []
    try:
        log(f"starting a private dockerd under {docker.root}")
        docker.start()
        image = infra.import_busybox_image(docker, busybox)
        names = [f"pwb-c-{os.getpid()}-{i:03d}" for i in range(per_part)]
        log(f"starting {len(names)} containers")
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: docker.cli(
                        "run", "-d", "--name", n, "--network", "none", image, "sleep", "3600"
                    ),
                    names,
                )
            )
        os.environ["DOCKER_HOST"] = docker.host
        os.environ["DOCKER_CONFIG"] = docker.env["DOCKER_CONFIG"]
        plan["containers"] = names
        return _run(args, plan, guests)
    finally:
        log(f"removing {len(names)} containers and the private dockerd")
        remove_containers(docker, names)
        docker.stop()


def _run(args: argparse.Namespace, plan: dict[str, Any], guests: Any) -> int:
    result = supervise(Path(__file__).resolve(), plan, guests, bytecode=args.bytecode)
    result["machine"] = machine_info()
    emit(result, render(result), as_json=args.json)
    return 0


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [f"{cfg['iterations']} iterations (+{cfg['warmup']} warm-up), ms from spawn to exit"]
    rows = []
    for part, by in result["parts"].items():
        for command, stats in by.items():
            for method, s in stats.items():
                rows.append(
                    [
                        f"{part} {command}: {method}",
                        s["median_ms"],
                        s["mean_ms"],
                        s["p90_ms"],
                        s["min_ms"],
                    ]
                )
    lines += [format_table(["method", "median", "mean", "p90", "min"], rows), ""]
    lines.append("ratios of the medians (goal: daemon / baseline)")
    for name, r in result["ratios"].items():
        goal = (
            f"  (goal <= {r['goal']}x: {'met' if r['met'] else 'not met'})" if "goal" in r else ""
        )
        lines.append(f"  {name}: {times(r['ratio'])}{goal}")
    lines += ["", "client start-up and requests, ms (median)"]
    lines.append(
        format_table(
            ["", "median", "min"],
            [[k, v["median_ms"], v["min_ms"]] for k, v in result["startup"].items()],
        )
    )
    phases = result.get("phases")
    if phases:
        lines += [
            "",
            f"served netns attach, client's phases (median of {phases['runs']}; total {phases['total_ms']:.1f} ms)",
            phase_table(phases),
        ]
    d = result["daemon"]
    lines += [
        "",
        f"daemon start-up until it answers: median {d['startup']['median_ms']:.0f} ms, "
        f"min {d['startup']['min_ms']:.0f} ms ({d['startup']['n']} starts); stop "
        f"median {d['stop']['median_ms']:.0f} ms; commands served {d['served']}",
        format_table(
            ["memory, kB", "VmRSS", "RssAnon", "Pss"],
            [
                [f"{who} {when}", m["VmRSS"], m["RssAnon"], m["Pss"]]
                for when in ("after start", "at the end")
                for who, m in d["memory"][when].items()
            ],
        ),
    ]
    return "\n".join(lines)


# -- worker ---------------------------------------------------------------------------------
class Daemon:
    """A ``pipework daemon`` in namespace ``ns``, its socket and run dir under ``where``."""

    def __init__(self, plan: dict[str, Any], ns: str, where: Path) -> None:
        where.mkdir(parents=True, exist_ok=True)
        self.socket = str(where / "pipework.sock")
        self.env = {k: v for k, v in os.environ.items() if k != "PIPEWORK_NO_DAEMON"}
        self.env.update(PIPEWORK_SOCKET=self.socket, PIPEWORK_RUN_DIR=str(where / "run"))
        self.log = where / "daemon.log"
        start = time.perf_counter()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, plan["python"], "-m", "pipework", "daemon"],
                env=self.env,
                cwd=where,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 30
        while self.version() is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"pipework daemon did not start: {self.log.read_text()[-1500:]}")
            time.sleep(0.002)
        self.startup_s = time.perf_counter() - start

    def version(self) -> dict[str, Any] | None:
        from pipework import client

        try:
            answer: dict[str, Any] = json.loads(
                client.fetch("/v1/version", environ={client.SOCKET_ENV: self.socket})
            )
        except client.Unreachable:
            return None
        return answer

    def pids(self) -> dict[str, int]:
        """The daemon's PID and its zygote's (its children that are Python forks)."""
        pid = self.proc.pid
        found = {"daemon": pid}
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for n, child in enumerate(children):
            found["zygote" if n == 0 else f"child {n}"] = int(child)
        return found

    def memory(self) -> dict[str, dict[str, int]]:
        return {who: memory(pid) for who, pid in self.pids().items()}

    def stop(self) -> float:
        start = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.perf_counter() - start


def memory(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon (/proc/PID/status), Pss (smaps_rollup), in kB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            found[key] = int(value.split()[0])
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            found["Pss"] = int(line.split()[1])
    return found


def work(plan: dict[str, Any]) -> dict[str, Any]:
    guests = iter(plan["guests"])
    daemon_ns = next(guests)
    start_nss = [next(guests) for _ in range(plan["daemon_starts"])]
    workdir = Path(plan["workdir"])
    env_in = {**os.environ, "PIPEWORK_NO_DAEMON": "1"}

    log(f"{len(start_nss)} daemon start-ups")
    starts, stops = [], []
    for n, ns in enumerate(start_nss):
        d = Daemon(plan, ns, workdir / f"start{n}")
        starts.append(d.startup_s)
        stops.append(d.stop())
    daemon = Daemon(plan, daemon_ns, workdir / "daemon")
    env_d = {**daemon.env}
    try:
        memory_start = daemon.memory()
        served0 = int(daemon.version()["served"])  # type: ignore[index]
        expected = 0
        runs = plan["warmup"] + plan["iterations"]
        addresses = (str(guest_address(k)) for k in range(100_000))
        rng = random.Random(plan["seed"])
        parts: dict[str, dict[str, dict[str, Any]]] = {}
        for part in plan["parts"]:
            methods = PARTS[part]
            commands = ("ADD", "DEL") if part == "cni" else ("attach",)
            samples = {c: {m: [] for m in methods} for c in commands}
            if part == "docker":
                items = iter(plan["containers"])
            else:
                items = iter(
                    g
                    for g in plan["guests"]
                    if g.split("-")[-1][0] == part[0] and g.split("-")[-1][1:].isdigit()
                )
            log(
                f"{part}: {plan['warmup']} warm-up + {plan['iterations']} timed runs of {', '.join(methods)}"
            )
            for i in range(runs):
                slot = {m: (next(items), next(addresses)) for m in methods}
                for command in commands:
                    order = list(methods)
                    rng.shuffle(order)
                    for k, method in enumerate(order):
                        target, address = slot[method]
                        env = env_d if "daemon" in method else env_in
                        elapsed = once(
                            part, command, method, plan, target, address, env, 9000 + 3 * i + k
                        )
                        expected += "daemon" in method
                        if i >= plan["warmup"]:
                            samples[command][method].append(elapsed)
            if part != "cni":
                clear_bridge(plan)
            wait_bridge_empty(plan)
            parts[part] = {c: {m: summarize(s) for m, s in by.items()} for c, by in samples.items()}
        startup = measure_startup(plan, daemon)
        phase_guests = [g for g in plan["guests"] if g.split("-")[-1].startswith("p")]
        phases = measure_phases(plan, phase_guests, env_d, addresses) if phase_guests else None
        expected += len(phase_guests)
        served = int(daemon.version()["served"]) - served0  # type: ignore[index]
        if served < expected:
            raise BenchError(f"the daemon served {served} commands, expected {expected}")
        memory_end = daemon.memory()
    finally:
        stop_s = daemon.stop()
    stops.append(stop_s)
    starts.append(daemon.startup_s)
    ratios: dict[str, dict[str, Any]] = {}
    for part, by in parts.items():
        daemon_m, inproc_m, base = PARTS[part]
        for command, stats in by.items():
            label = f"{part} {command}" if part == "cni" else part
            d, p, b = (stats[m]["median_ms"] for m in (daemon_m, inproc_m, base))
            r = ratio(d, b)
            ratios[f"{label}: {daemon_m}/{base}"] = {
                "ratio": r,
                "goal": GOALS[part],
                "met": r is not None and r <= GOALS[part],
            }
            ratios[f"{label}: {inproc_m}/{base}"] = {"ratio": ratio(p, b)}
            ratios[f"{label}: {daemon_m}/{inproc_m}"] = {"ratio": ratio(d, p)}
    return {
        "benchmark": "daemon",
        "config": {
            k: plan[k]
            for k in ("parts", "iterations", "warmup", "startup_runs", "phase_runs", "seed")
        },
        "parts": parts,
        "ratios": ratios,
        "startup": startup,
        "phases": phases,
        "daemon": {
            "startup": summarize(starts),
            "stop": summarize(stops),
            "served": served,
            "memory": {"after start": memory_start, "at the end": memory_end},
        },
    }


def once(
    part: str,
    command: str,
    method: str,
    plan: dict[str, Any],
    target: str,
    address: str,
    env: Mapping[str, str],
    n: int,
) -> float:
    bridge = plan["bridge"]
    if part == "cni":
        conf = cni_conf("cni-bridge" if method == CNI_REF else "pipework-cni", bridge, address)
        cenv = {
            **{k: v for k, v in env.items() if k.startswith(("PYTHON", "PIPEWORK_"))},
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": target,
            "CNI_NETNS": f"/run/netns/{target}",
            "CNI_IFNAME": "eth1",
            "CNI_PATH": plan["cni_dir"],
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        program = f"{plan['cni_dir']}/bridge" if method == CNI_REF else plan["plugin"]
        elapsed, proc = timed([program], stdin=json.dumps(conf), env=cenv)
        if command == "ADD":
            ips = [ip["address"] for ip in json.loads(proc.stdout).get("ips", [])]
            if ips != [address]:
                raise BenchError(f"{method} returned {ips}, expected {address}")
            check_guest(target, address)
        else:
            check_gone(target)
        return elapsed
    guest = target if part == "docker" else f"netns:{target}"
    if method in (DAEMON, INPROC):
        cmd = [plan["pipework"], bridge, guest, address]
    elif part == "docker":
        cmd = ["bash", "-c", DOCKER_SCRIPT, "script", bridge, target, host_veth(n), address]
    else:
        cmd = [
            "bash",
            "-c",
            NETNS_SCRIPT,
            "ip-loop",
            host_veth(n),
            f"pwbt{n}",
            target,
            bridge,
            address,
        ]
    elapsed, _ = timed(cmd, env=env)
    if part == "docker":
        check_container(target, address)
    else:
        check_guest(target, address)
    return elapsed


def check_container(name: str, address: str) -> None:
    pid = run(["docker", "inspect", "-f", "{{.State.Pid}}", name]).stdout.strip()
    out = run(["nsenter", "-t", pid, "-n", "ip", "-j", "-4", "addr", "show", "dev", "eth1"])
    links = json.loads(out.stdout)
    found = [f"{a['local']}/{a['prefixlen']}" for link in links for a in link["addr_info"]]
    if len(links) != 1 or "UP" not in links[0]["flags"] or found != [address]:
        raise BenchError(f"eth1 in container {name} is not up with {address}: {links}")


def clear_bridge(plan: dict[str, Any]) -> None:
    """Delete every veth on the bridge (the containers' ends go with them)."""
    ports = json.loads(run(["ip", "-j", "link", "show", "master", plan["bridge"]]).stdout or "[]")
    if ports:
        run(["ip", "-batch", "-"], stdin="".join(f"link del {p['ifname']}\n" for p in ports))


def measure_startup(plan: dict[str, Any], daemon: Daemon) -> dict[str, Any]:
    """The client's start-up pieces, interleaved; a request that forks nothing;
    a served command that fails at once (a guest that does not exist)."""
    log(f"{plan['startup_runs']} runs of each start-up piece")
    samples: dict[str, list[float]] = {name: [] for name, _ in STARTUP}
    missing = "served: attach to a missing netns guest (fails at once)"
    samples[missing] = []
    env_in = {**os.environ, "PIPEWORK_NO_DAEMON": "1"}
    fail_cmd = [plan["pipework"], plan["bridge"], "netns:pwb-missing", "198.18.255.9/24"]
    for i in range(plan["startup_runs"] + 1):  # the first round warms the bytecode cache
        for name, args in STARTUP:
            elapsed, _ = timed([plan["python"], *args], env=env_in)
            if i:
                samples[name].append(elapsed)
        start = time.perf_counter()
        proc = subprocess.run(fail_cmd, env=daemon.env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode == 0 or len(proc.stderr.strip().splitlines()) != 1:
            raise BenchError(f"the missing guest: exit {proc.returncode}, {proc.stderr!r}")
        if i:
            samples[missing].append(elapsed)
    requests = []
    for _ in range(plan["startup_runs"]):
        start = time.perf_counter()
        if daemon.version() is None:
            raise BenchError("the daemon stopped answering")
        requests.append(time.perf_counter() - start)
    samples["GET /v1/version from a warm process (no fork)"] = requests
    return {k: summarize(v) for k, v in samples.items()}


def measure_phases(
    plan: dict[str, Any], guests: list[str], env: Mapping[str, str], addresses: Any
) -> dict[str, Any]:
    log(f"{len(guests)} instrumented served attaches")
    durations: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    totals = []
    for n, guest in enumerate(guests):
        out = Path(plan["workdir"]) / f"phases-{n}.json"
        address = next(addresses)
        spawn = time.monotonic()
        run(
            [
                plan["python"],
                str(HERE / "_daemon_phases.py"),
                str(out),
                plan["bridge"],
                f"netns:{guest}",
                address,
            ],
            env=env,
        )
        done = time.monotonic()
        marks = json.loads(out.read_text())
        out.unlink()
        check_guest(guest, address)
        if "head" not in marks:
            raise BenchError("the instrumented attach was not served by the daemon")
        marks.update(spawn=spawn, done=done)
        totals.append(done - spawn)
        for name, begin, end in PHASES:
            durations[name].append(marks[end] - marks[begin])
    return phase_medians(durations, totals, "(rest)")


if __name__ == "__main__":
    from _harness import entry_point

    entry_point(parse_args, supervisor, work)
