"""How soon after ``docker start`` is a watched container's interface up?

    sudo /path/to/venv/bin/python bench/watch_latency.py [--containers 20] [--json]

A private dockerd (the test suite's, from tests/support/infra.py) and a
test-owned host namespace ``pwb-h-TAG``. Then, in one run:

* ``watch``: ``pipework watch`` runs (under ``ip netns exec``); each
  container carries ``pipework.eth1=BRIDGE ADDR/24``, is started with
  ``docker start``, and the latency is the time from the daemon's ``start``
  event (its ``timeNano``) to the watcher having the interface up with its
  address (the watcher logs it as ``latency_ms``);
* ``daemon --watch``: the same with ``pipework daemon --watch`` (the same
  watcher, in the daemon beside its API and DHCP supervisor; issue 17's
  goal: no worse than ``watch``);
* ``cli after start``: what a script reacting to the same event would do,
  ``docker start`` then the ``pipework`` CLI for that container; the latency
  is from the start event to the CLI's exit.

Goal (issue 7): under 100 ms for a static address. Everything runs in the
test-owned namespace; containers use ``--network none``; only 198.18.0.0/15.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _harness import BenchError, format_table, guest_address, log, main_guard, ratio, summarize

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support import infra  # noqa: E402  (the test suite's private dockerd)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=20, help="containers per method")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args()


def start_event_ns(daemon: infra.DockerDaemon, cid: str, since: float) -> int:
    out = daemon.cli(
        "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
        "--filter", f"container={cid}", "--filter", "event=start", "--format", "{{json .}}",
    ).stdout  # fmt: skip
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    if not events:
        raise BenchError(f"no start event for {cid[:12]}")
    return int(events[-1]["timeNano"])


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        raise BenchError("run as root (it creates network namespaces and a private dockerd)")
    tag = secrets.token_hex(3)
    host = f"pwb-h-{tag}"
    bridge = "brpwbw0"
    daemon = infra.DockerDaemon()
    watchers: list[subprocess.Popen[str]] = []
    subprocess.run(["ip", "netns", "add", host], check=True)
    try:
        log("starting a private dockerd")
        daemon.start()
        busybox = infra.find_static_busybox()
        if busybox is None:
            raise BenchError("needs a static busybox (Debian package busybox-static)")
        image = infra.import_busybox_image(daemon, busybox)
        env = dict(daemon.env, PIPEWORK_RUN_DIR=str(daemon.root / "pipework"))
        python = sys.executable
        in_host = ["ip", "netns", "exec", host]

        def create(k: int, labelled: bool) -> str:
            label = ["--label", f"pipework.eth1={bridge} {guest_address(k)}"] if labelled else []
            return daemon.cli(
                "create", "--network", "none", *label, image, "sleep", "3600"
            ).stdout.strip()

        # -- watch, then daemon --watch: the same watcher, alone or in the daemon ------------
        def watched_latencies(command: list[str], first: int) -> list[float]:
            proc = subprocess.Popen(
                [*in_host, python, "-m", "pipework", *command, "--log-format", "json"],
                stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
            )  # fmt: skip
            watchers.append(proc)
            latencies: dict[str, float] = {}
            connected = threading.Event()

            def read() -> None:
                assert proc.stderr is not None
                for line in proc.stderr:
                    try:
                        data = json.loads(line)
                    except ValueError:
                        continue
                    if data.get("event") == "connected":
                        connected.set()
                    if data.get("event") == "created" and data.get("latency_ms") is not None:
                        latencies[data["guest"]] = data["latency_ms"]

            threading.Thread(target=read, daemon=True).start()
            if not connected.wait(30):
                raise BenchError(f"pipework {command[0]} did not connect")
            watched = [create(first + k, True) for k in range(args.containers)]
            names = {
                cid: daemon.cli("inspect", "-f", "{{.Name}}", cid).stdout.strip().lstrip("/")
                for cid in watched
            }
            for cid in watched:
                daemon.cli("start", cid)
                deadline = time.monotonic() + 30
                while names[cid] not in latencies:
                    if time.monotonic() > deadline:
                        raise BenchError(f"pipework {command[0]} did not attach {names[cid]}")
                    time.sleep(0.005)
            proc.terminate()
            proc.wait(20)
            for cid in watched:  # the next watcher must not find them
                daemon.cli("rm", "-f", cid)
            return [latencies[names[cid]] / 1000 for cid in watched]

        watch_samples = watched_latencies(["watch"], 0)
        daemon_samples = watched_latencies(["daemon", "--watch"], 500)

        # -- cli after start --------------------------------------------------------------
        cli_samples = []
        for k in range(args.containers):
            cid = create(1000 + k, False)
            since = time.time() - 1
            daemon.cli("start", cid)
            subprocess.run(
                [*in_host, python, "-m", "pipework", "brpwbw1", cid, str(guest_address(1000 + k))],
                check=True, env=env, cwd=REPO, capture_output=True,
            )  # fmt: skip
            done = time.time_ns()
            cli_samples.append((done - start_event_ns(daemon, cid, since)) / 1e9)
    finally:
        for proc in watchers:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(20)
        daemon.stop()
        subprocess.run(["ip", "netns", "del", host], check=False)

    results: dict[str, Any] = {
        "watch": summarize(watch_samples),
        "daemon --watch": summarize(daemon_samples),
        "cli after start": summarize(cli_samples),
    }
    results["ratio_cli_to_watch"] = ratio(
        results["cli after start"]["median_ms"], results["watch"]["median_ms"]
    )
    rows = [
        [name, r["median_ms"], r["p90_ms"], r["min_ms"], r["max_ms"]]
        for name, r in results.items()
        if isinstance(r, dict)
    ]
    table = format_table(
        ["from the start event to eth1 up", "median ms", "p90 ms", "min ms", "max ms"], rows
    )
    results["ratio_daemon_to_watch"] = ratio(
        results["daemon --watch"]["median_ms"], results["watch"]["median_ms"]
    )
    table += f"\n\ncli after start / watch (medians): {results['ratio_cli_to_watch']:.1f}x"
    table += f"\ndaemon --watch / watch (medians): {results['ratio_daemon_to_watch']:.2f}x"
    if args.json:
        print(json.dumps(results))
        print(table, file=sys.stderr)
    else:
        print(table)
    return 0


if __name__ == "__main__":
    main_guard(main)
