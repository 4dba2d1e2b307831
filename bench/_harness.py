"""Shared plumbing for the benchmarks: namespaces, a supervised worker, statistics.

How a run is laid out:

* the *supervisor* (the process you start) creates a test-owned "host"
  network namespace ``pwb-h-TAG`` holding a bridge, plus every guest
  namespace ``pwb-g-TAG-...`` the run needs, up front (so the kernel's
  asynchronous namespace clean-up never runs during a measurement);
* it starts the *worker* (the same script with ``--worker DIR``) under
  ``ip netns exec pwb-h-TAG``: everything the worker runs, and everything
  it measures, sees ``pwb-h-TAG`` as the host and never the real one;
* whatever happens (error, Ctrl-C, SIGTERM, SIGHUP), the supervisor then
  deletes every namespace it created, with signals blocked, and checks that
  none is left. The veths and the bridge die with their namespaces.

Only addresses from 198.18.0.0/15 (RFC 2544, reserved for benchmarking) are
used, and nothing is connected to a real interface, so no frame can leave
the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

PREFIX = "pwb"
NETNS_DIR = Path("/run/netns")
TEST_NET = ipaddress.IPv4Network("198.18.0.0/15")
BRIDGE = "brpwb0"
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PLAN = "plan.json"
RESULT = "result.json"


class BenchError(Exception):
    """The benchmark cannot run, or something it measured did the wrong thing."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion; a non-zero exit is a ``BenchError``."""
    proc = subprocess.run(
        list(cmd), input=stdin, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        output = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise BenchError(f"`{shlex.join(cmd)}` exited with {proc.returncode}: {output}")
    return proc


def timed(
    cmd: Sequence[str], *, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall time, in seconds, of spawning ``cmd`` and waiting for it to exit."""
    start = time.perf_counter()
    proc = run(cmd, stdin=stdin, env=env)
    return time.perf_counter() - start, proc


def guest_address(k: int) -> ipaddress.IPv4Interface:
    """The ``k``-th guest address: a /24 host address inside 198.18.0.0/15 (.2 to .254)."""
    subnet, host = divmod(k, 253)
    ip = ipaddress.IPv4Address(int(TEST_NET.network_address) + subnet * 256 + host + 2)
    if ip not in TEST_NET:
        raise BenchError("ran out of addresses in 198.18.0.0/15")
    return ipaddress.IPv4Interface(f"{ip}/24")


# -- statistics ------------------------------------------------------------------------
def summarize(samples: Sequence[float]) -> dict[str, Any]:
    """Median, mean, p90 etc. of ``samples`` (seconds), in milliseconds."""
    if not samples:
        raise BenchError("no samples")
    ms = [s * 1000 for s in samples]
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "mean_ms": statistics.fmean(ms),
        "p90_ms": p90,
        "min_ms": min(ms),
        "max_ms": max(ms),
        "stdev_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "samples_ms": [round(v, 3) for v in ms],
    }


def phase_medians(
    durations: Mapping[str, Sequence[float]], totals: Sequence[float], rest: str
) -> dict[str, Any]:
    """Each phase's median (seconds in, milliseconds out) and its share of the
    median total, then a ``rest`` row: what no phase covers (or rounding)."""
    total = statistics.median(totals) * 1000
    phases: list[dict[str, Any]] = []
    for name, values in durations.items():
        median = statistics.median(values) * 1000
        phases.append({"phase": name, "median_ms": median, "share": median / total})
    left = total - sum(p["median_ms"] for p in phases)
    phases.append({"phase": rest, "median_ms": left, "share": left / total})
    return {"runs": len(totals), "total_ms": total, "phases": phases}


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def shuffled_rounds(methods: Sequence[str], rounds: int, seed: int) -> Iterator[tuple[int, str]]:
    """(round, method) for ``rounds`` rounds, every method once a round, in an
    order shuffled anew each round (seeded: a run can be repeated)."""
    rng = random.Random(seed)
    for r in range(rounds):
        order = list(methods)
        rng.shuffle(order)
        for method in order:
            yield r, method


def round_medians(
    samples: Mapping[str, Sequence[Mapping[str, float]]], count: int, rates: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Per method: the median of each timing over its rounds, ``count`` divided
    by some of them (``rates``: the rate's name -> the timing's key), and the
    rounds themselves."""
    stats: dict[str, dict[str, Any]] = {}
    for method, runs in samples.items():
        medians = {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        per_s = {name: count / medians[key] for name, key in rates.items()}
        stats[method] = {**medians, **per_s, "rounds": list(runs)}
    return stats


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def phase_table(phases: Mapping[str, Any]) -> str:
    """The table of ``phase_medians``' phases: name, milliseconds, share."""
    rows = [[p["phase"], p["median_ms"], f"{p['share']:.0%}"] for p in phases["phases"]]
    return format_table(["phase", "ms", "share"], rows)


def times(value: float | None) -> str:
    """A ratio as ``1.23x`` (``-`` when there is none)."""
    return "-" if value is None else f"{value:.2f}x"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def add_run_options(parser: argparse.ArgumentParser, *, bytecode: bool = True) -> None:
    """The options every namespace benchmark takes: --seed, --bytecode, --json
    (and the hidden --worker of the supervised worker)."""
    parser.add_argument("--seed", type=int, default=1, help="seed for the method order")
    if bytecode:
        parser.add_argument(
            "--bytecode",
            choices=("cached", "env"),
            default="cached",
            help="cached: let Python cache bytecode in a private directory (as an installed "
            "package does); env: leave the environment as it is",
        )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)


def machine_info() -> dict[str, Any]:
    """What the figures depend on: kernel, CPUs, tool versions, load."""
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    ip_version = subprocess.run(["ip", "-V"], capture_output=True, text=True, check=False)
    info["iproute2"] = ip_version.stdout.strip()
    if shutil.which("dpkg-query"):
        cni = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"],
            capture_output=True,
            text=True,
            check=False,
        )
        info["cni_plugins"] = cni.stdout.strip() or None
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    info["pipework_commit"] = commit.stdout.strip() or None
    return info


def emit(result: dict[str, Any], table: str, *, as_json: bool) -> None:
    """The table for people (stderr when ``--json`` is given), the JSON on stdout."""
    if as_json:
        print(table, file=sys.stderr)
        print(json.dumps(result, indent=2))
    else:
        print(table)


# -- namespaces and the supervised worker -----------------------------------------------
def require_root_and_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        raise BenchError("the benchmarks create network namespaces: run them as root (sudo)")
    missing = [tool for tool in ("ip", *tools) if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")


class Session:
    """The namespaces and the scratch directory one run owns, and their removal."""

    def __init__(self) -> None:
        while True:
            self.tag = secrets.token_hex(2)
            self.host = f"{PREFIX}-h-{self.tag}"
            if not any(p.name.endswith(f"-{self.tag}") for p in _netns_entries()):
                break
        self.created: list[str] = []
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{self.tag}-"))

    def guest(self, label: str) -> str:
        return f"{PREFIX}-g-{self.tag}-{label}"

    def add_namespaces(self, names: Sequence[str]) -> None:
        # Recorded before creation: a failure halfway still removes what exists.
        self.created.extend(names)
        if names:
            run(["ip", "-batch", "-"], stdin="".join(f"netns add {n}\n" for n in names))

    def setup_host(self) -> None:
        """The test-owned host namespace, with loopback up and an empty bridge."""
        self.add_namespaces([self.host])
        run(["ip", "-n", self.host, "link", "set", "lo", "up"])
        run(["ip", "-n", self.host, "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "-n", self.host, "link", "set", BRIDGE, "up"])

    def bridge_ports(self) -> int:
        """How many interfaces are enslaved to the bridge (from outside the host namespace)."""
        proc = run(["ip", "-n", self.host, "-j", "link", "show", "master", BRIDGE])
        return len(json.loads(proc.stdout or "[]"))

    def owned(self) -> list[str]:
        """Every namespace of this run that still exists (created, or left over)."""
        mine = (f"{PREFIX}-h-{self.tag}", f"{PREFIX}-g-{self.tag}-")
        names = {n for n in self.created if (NETNS_DIR / n).exists()}
        names.update(p.name for p in _netns_entries() if p.name.startswith(mine))
        return sorted(names)

    def cleanup(self) -> tuple[int, list[str]]:
        """Delete everything this run created; return (deleted, left behind)."""
        names = self.owned()
        if names:
            batch = "".join(f"netns del {n}\n" for n in names)
            subprocess.run(
                ["ip", "-force", "-batch", "-"],
                input=batch,
                capture_output=True,
                text=True,
                check=False,
            )
            for name in self.owned():  # one more try, one at a time
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        left = self.owned()
        return len(names) - len(left), left


def _netns_entries() -> list[Path]:
    try:
        return list(NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def child_env(bytecode: str, workdir: Path) -> dict[str, str]:
    """The environment for everything the worker starts.

    ``cached``: Python may write bytecode, into a private cache under the run's
    scratch directory (nothing is written into the source tree), so after the
    warm-up pipework starts the way an installed package does.  ``env``: the
    environment as it is (PYTHONDONTWRITEBYTECODE=1 with an editable install
    makes every run compile pipework's modules again).
    """
    env = dict(os.environ)
    env["PIPEWORK_RUN_DIR"] = str(workdir / "run")  # lock files too: never /run/pipework
    if bytecode == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env


def supervise(
    script: Path,
    plan: dict[str, Any],
    guests: Callable[[Session], list[str]],
    *,
    bytecode: str,
    finish: Callable[[Session, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Set up the namespaces, run ``script --worker`` inside the host one, clean up.

    ``guests`` names the guest namespaces to create; ``finish`` runs after the
    worker succeeded, before the clean-up (for measurements from outside).
    Returns the worker's result with a ``cleanup`` entry added.
    """
    session = Session()
    worker: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    result: dict[str, Any] | None = None
    try:
        log(f"run {session.tag}: host namespace {session.host}, bridge {BRIDGE}")
        session.setup_host()
        names = guests(session)
        session.add_namespaces(names)
        log(f"created {len(names)} guest namespaces")
        full_plan = {
            **plan,
            "host": session.host,
            "bridge": BRIDGE,
            "guests": names,
            "workdir": str(session.workdir),
        }
        (session.workdir / PLAN).write_text(json.dumps(full_plan))
        cmd = ["ip", "netns", "exec", session.host, sys.executable, str(script)]
        worker = subprocess.Popen(
            [*cmd, "--worker", str(session.workdir)], env=child_env(bytecode, session.workdir)
        )
        code = worker.wait()
        if code != 0:
            raise BenchError(f"the worker failed (exit status {code})")
        result = json.loads((session.workdir / RESULT).read_text())
        if finish is not None:
            finish(session, result)
    except KeyboardInterrupt:
        _stop(worker)
        raise
    finally:
        # Nothing interrupts the clean-up; a signal that arrives meanwhile is
        # delivered once it is done.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            _stop(worker)
            deleted, left = session.cleanup()
            created = len(set(session.created))
            if left:
                log(f"cleanup: could not delete {', '.join(left)}")
            else:
                log(
                    f"cleanup: {created} namespaces created, {deleted} deleted at the end; "
                    f"none of run {session.tag} is left"
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    if left:
        raise BenchError(f"namespaces left behind: {', '.join(left)}")
    assert result is not None
    result["cleanup"] = {
        "namespaces_created": created,
        "namespaces_deleted_at_end": deleted,
        "namespaces_left": left,
    }
    return result


def _stop(worker: subprocess.Popen[bytes] | None) -> None:
    """Let an interrupted worker exit (it got the same Ctrl-C), else end it."""
    if worker is None or worker.poll() is not None:
        return
    for sig, grace in ((None, 3.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, None)):
        if sig is not None:
            worker.send_signal(sig)
        try:
            worker.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def load_plan(workdir: Path) -> dict[str, Any]:
    plan: dict[str, Any] = json.loads((workdir / PLAN).read_text())
    return plan


def save_result(workdir: Path, result: dict[str, Any]) -> None:
    (workdir / RESULT).write_text(json.dumps(result))


def worker_main(body: Callable[[dict[str, Any]], dict[str, Any]], workdir: Path) -> int:
    """The worker's entry point: plan in, result out, errors as one line."""
    try:
        save_result(workdir, body(load_plan(workdir)))
    except BenchError as exc:
        print(f"[bench] worker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def drop_cni_if_missing(methods: list[str], cni: Path) -> None:
    """Remove the "cni" baseline when the reference plugins are not installed."""
    if not all((cni / plugin).is_file() for plugin in ("bridge", "static")):
        log(f"no CNI bridge/static plugins in {cni}: skipping the cni baseline")
        methods.remove("cni")


def entry_point(
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    supervisor: Callable[[argparse.Namespace], int],
    work: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """``__main__`` of a benchmark: the worker half or the supervising half."""

    def main() -> int:
        args = parse_args(None)
        if args.worker:
            return worker_main(work, Path(args.worker))
        return supervisor(args)

    main_guard(main)


def main_guard(body: Callable[[], int]) -> None:
    """Run a supervisor; errors and interruptions become one line and an exit status."""
    try:
        code = body()
    except BenchError as exc:
        log(f"error: {exc}")
        code = 1
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    sys.exit(code)
