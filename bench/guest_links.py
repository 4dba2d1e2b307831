"""Links straight between guests (``pipework link``, ``links:`` in a topology file)
against the same job done with ``ip``.

    sudo /path/to/venv/bin/python bench/guest_links.py [--iterations 20] [--count 50 --count 200] [--json]

Two parts, on netns guests made up front (see _harness.py for the layout and
the clean-up), each method in a shuffled order:

* **single**: each iteration links a fresh pair of guests A and B once per
  method, timing the process(es) from spawn to exit, then removes the link
  (timed too):

  - ``pipework link``: ``pipework link netns:A:eth1 netns:B:eth1 --ip X/30
    --peer-ip Y/30`` (the console script, a cold process); removal
    ``pipework detach netns:A -i eth1``;
  - ``ip-loop``: ``sh -c`` running one ``ip`` process per step (IP_LOOP);
    removal ``ip -n A link del eth1``;
  - ``ip-batch``: ``ip -n A -batch -`` (create the pair from inside A, with
    the peer in B; address and up A's end) then ``ip -n B -batch -``
    (address and up B's end): a batch runs in one namespace, so one batch
    per guest is the least; removal as ip-loop's.

  ``python -c pass`` is timed alongside (the floor of any Python command);
  then the pipework run split into phases (_link_phases.py) and ``-X
  importtime`` totals.

* **many**: N links among N+1 guests (``--shape chain``: guest i's eth2 to
  guest i+1's eth1; ``star``: the hub's ethK to leaf K's eth1), each round
  per method: make them all (timed), check them (untimed), remove them
  (timed), check every guest is empty again:

  - ``pipework apply``: ``pipework apply FILE`` with a ``links:`` section,
    from spawn to exit; removal ``pipework destroy FILE``;
  - ``pipework engine``: ``Engine.link`` for every link in one process that
    has already started (``Engine.batch()``, as many at a time as apply's
    default ``--jobs``); removal ``Engine.detach`` of each link's first end
    in ``deferred_removal()``: what apply costs without the start-up;
  - ``ip-loop``: one ``sh -c`` script calling the single part's steps once
    per link (5 ``ip`` processes a link); removal ``ip -n A link del IF``
    per link;
  - ``ip-batch``: one ``ip -batch -`` in the host creating every pair with
    each end in its guest (``link add IF netns A type veth peer name IF
    netns B``), then one ``ip -n G -batch -`` per guest (addresses, up);
    removal one ``ip -n G -batch -`` of ``link del`` per guest holding first
    ends (chain: every guest but the last, one line each; star: the hub).

Every link is checked after it is made: both ends there, veths, up, with
exactly their address, each the other's peer (peer index and namespace id
from the kernel), nothing else in the guests; and a ping crosses the first,
middle and last links.  After a removal every guest has only ``lo``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from _harness import (
    PREFIX,
    TEST_NET,
    BenchError,
    Session,
    add_run_options,
    emit,
    format_table,
    log,
    machine_info,
    phase_medians,
    phase_table,
    ratio,
    require_root_and_tools,
    round_medians,
    run,
    shuffled_rounds,
    summarize,
    supervise,
    timed,
    times,
)
from single_attach import IMPORTTIME_ENV, _find_pipework, importtime_summary

HERE = Path(__file__).resolve().parent
SINGLE = ("pipework link", "ip-loop", "ip-batch")
MANY = ("pipework apply", "pipework engine", "ip-loop", "ip-batch")
FLOOR = "python -c pass"
PARTS = ("single", "many")
PINGED = 3
"""Links a ping must cross after each make (first, middle, last)."""

IP_LOOP = """set -e
link() {
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  ip -n "$1" addr add "$5" dev "$2"
  ip -n "$1" link set "$2" up
  ip -n "$3" addr add "$6" dev "$4"
  ip -n "$3" link set "$4" up
}
"""
"""The shell function of one link: $1 guest A, $2 its interface, $3 guest B,
$4 its interface, $5 A's address, $6 B's."""

PHASES = (
    ("interpreter start-up (exec, site)", "spawn", "start"),
    ("import pipework.cli", "start", "cli_imported"),
    ("import typer + cli/app (subcommands)", "cli_imported", "app_imported"),
    ("import the engine (anyio, pluggy, netlink, guestlinks)", "app_imported", "engine_imported"),
    ("parse the line (typer), start the event loop", "engine_imported", "engine_init"),
    ("plugins: entry points, hooks", "engine_init", "enter_end"),
    ("links: Engine.link, first start to last end", "link_start", "link_end"),
    ("leave the engine", "exit_start", "exit_end"),
    ("print, close the loop", "exit_end", "run_end"),
    ("write the marks, exit (os._exit, as the CLI)", "run_end", "done"),
)
STEPS = ("resolve", "classify", "create", "announce", "result")
"""Steps inside Engine.link (summed over its calls; create includes announce)."""


@dataclass(frozen=True)
class Link:
    """One link of a run: ``a``'s interface ``a_if`` to ``b``'s ``b_if``."""

    a: str
    a_if: str
    a_ip: str
    b: str
    b_if: str
    b_ip: str

    def cli(self) -> list[str]:
        return [
            "link",
            f"netns:{self.a}:{self.a_if}",
            f"netns:{self.b}:{self.b_if}",
            "--ip",
            self.a_ip,
            "--peer-ip",
            self.b_ip,
        ]

    def shell_args(self) -> list[str]:
        return [self.a, self.a_if, self.b, self.b_if, self.a_ip, self.b_ip]


def link_addresses(k: int) -> tuple[str, str]:
    """The ``k``-th link's two addresses: a /30 of 198.18.0.0/15 each."""
    base = int(TEST_NET.network_address) + 4 * k
    if base + 3 > int(TEST_NET.broadcast_address):
        raise BenchError("ran out of addresses in 198.18.0.0/15")
    return f"{IPv4Address(base + 1)}/30", f"{IPv4Address(base + 2)}/30"


# -- the layout: which guests and links, the same in the supervisor and the worker ---------
def layout(config: dict[str, Any], guest: Callable[[str], str]) -> dict[str, Any]:
    """Every guest and link of a run; ``guest(label)`` names a namespace."""
    counter = iter(range(1 << 20))

    def pair(label: str) -> Link:
        a_ip, b_ip = link_addresses(next(counter))
        return Link(guest(f"{label}a"), "eth1", a_ip, guest(f"{label}b"), "eth1", b_ip)

    single: dict[str, Any] = {"runs": [], "phases": [], "importtime": []}
    if "single" in config["parts"]:
        methods = config["single_methods"]
        for i in range(config["warmup"] + config["iterations"]):
            single["runs"].append({m: pair(f"s{n}{i:03d}") for n, m in enumerate(methods)})
        single["phases"] = [pair(f"x{i:03d}") for i in range(config["phase_runs"])]
        single["importtime"] = [pair(f"t{i:03d}") for i in range(config["importtime_runs"])]
    many: dict[int, list[Link]] = {}
    if "many" in config["parts"]:
        for count in config["counts"]:
            links = []
            if config["shape"] == "star":
                hub = guest(f"n{count}-hub")
                for j in range(count):
                    a_ip, b_ip = link_addresses(next(counter))
                    links.append(
                        Link(hub, f"eth{j + 1}", a_ip, guest(f"n{count}-{j:03d}"), "eth1", b_ip)
                    )
            else:
                for j in range(count):
                    a_ip, b_ip = link_addresses(next(counter))
                    a, b = guest(f"n{count}-{j:03d}"), guest(f"n{count}-{j + 1:03d}")
                    links.append(Link(a, "eth2", a_ip, b, "eth1", b_ip))
            many[count] = links
    names: list[str] = []
    for by_method in single["runs"]:
        names += [n for link in by_method.values() for n in (link.a, link.b)]
    for link in single["phases"] + single["importtime"]:
        names += [link.a, link.b]
    for links in many.values():
        names += guests_of(links)
    return {"single": single, "many": many, "names": names}


def guests_of(links: Sequence[Link]) -> list[str]:
    """The guests of ``links``, each once, in order."""
    return list(dict.fromkeys(n for link in links for n in (link.a, link.b)))


# -- supervisor ---------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part", action="append", choices=PARTS, help="run only this part (default: both)"
    )
    parser.add_argument("--iterations", type=int, default=20, help="single: timed runs per method")
    parser.add_argument(
        "--warmup", type=int, default=3, help="single: untimed runs per method first"
    )
    parser.add_argument("--phase-runs", type=int, default=5, help="single: instrumented runs")
    parser.add_argument("--importtime-runs", type=int, default=3, help="single: -X importtime runs")
    parser.add_argument(
        "--count",
        type=int,
        action="append",
        help="many: links per run (repeat; default 50 and 200)",
    )
    parser.add_argument("--shape", choices=("chain", "star"), default="chain", help="many: layout")
    parser.add_argument("--rounds", type=int, default=3, help="many: timed rounds per method")
    parser.add_argument(
        "--apply-phase-runs", type=int, default=1, help="many: instrumented apply runs per count"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="METHOD",
        help="run only this method (repeat for several; e.g. 'pipework apply', ip-batch)",
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter pipework is installed for"
    )
    parser.add_argument("--pipework", help="the console script (default: next to --python)")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.iterations < 2 or args.rounds < 1 or args.warmup < 0:
        parser.error("--iterations must be at least 2, --rounds positive, --warmup not negative")
    if any(n < 1 for n in args.count or ()):
        parser.error("--count must be positive")
    return args


def supervisor(args: argparse.Namespace) -> int:
    require_root_and_tools("sh", "ping")
    pipework = args.pipework or _find_pipework(args.python)
    run([args.python, "-c", "import pipework.engine.guestlinks"])
    parts = args.part or list(PARTS)
    single, many = list(SINGLE), list(MANY)
    if args.only:
        unknown = sorted(set(args.only) - set(single) - set(many))
        if unknown:
            raise BenchError(f"unknown methods {unknown}; known: {sorted({*single, *many})}")
        single = [m for m in single if m in args.only]
        many = [m for m in many if m in args.only]
    parts = [p for p in parts if (single if p == "single" else many)]
    if not parts:
        raise BenchError("no method left to run")
    config = {
        "parts": parts,
        "single_methods": single,
        "many_methods": many,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "phase_runs": args.phase_runs if "pipework link" in single else 0,
        "importtime_runs": args.importtime_runs if "pipework link" in single else 0,
        "counts": sorted(set(args.count or [50, 200])),
        "shape": args.shape,
        "rounds": args.rounds,
        "apply_phase_runs": args.apply_phase_runs if "pipework apply" in many else 0,
        "seed": args.seed,
        "bytecode": args.bytecode,
    }
    plan = {**config, "python": args.python, "pipework": pipework}

    def guests(session: Session) -> list[str]:
        names: list[str] = layout(config, session.guest)["names"]
        return names

    result = supervise(Path(__file__).resolve(), plan, guests, bytecode=args.bytecode)
    result["machine"] = machine_info()
    emit(result, render(result), as_json=args.json)
    return 0


def render(result: dict[str, Any]) -> str:
    lines: list[str] = []
    single = result.get("single")
    if single:
        rows = []
        for name, s in single["methods"].items():
            down = single["teardown"].get(name)
            rows.append(
                [
                    name,
                    s["n"],
                    s["median_ms"],
                    s["mean_ms"],
                    s["p90_ms"],
                    s["min_ms"],
                    down["median_ms"] if down else None,
                ]
            )
        lines += [
            f"one link, {single['iterations']} iterations (+{single['warmup']} warm-up), ms",
            format_table(["method", "n", "median", "mean", "p90", "min", "removal median"], rows),
            "",
        ]
        for name, r in single["ratios"].items():
            lines.append(
                f"{name}: link {times(r['link'])}  removal {times(r['teardown'])} (medians)"
            )
        phases = single.get("phases")
        if phases:
            lines += [
                "",
                f"pipework link phases (median of {phases['runs']} instrumented runs; "
                f"total {phases['total_ms']:.1f} ms)",
                phase_table(phases),
                "inside Engine.link (median ms): "
                + ", ".join(f"{k} {v:.2f}" for k, v in phases["steps_ms"].items()),
            ]
        imports = single.get("importtime")
        if imports:
            lines += [
                "",
                f"-X importtime, median of {imports['runs']} runs: top-level cumulative "
                f"{imports['total_ms']:.1f} ms",
                format_table(
                    ["top-level import", "ms"], [[n, ms] for n, ms in imports["top"].items()]
                ),
            ]
    for count, part in (result.get("many") or {}).items():
        rows = []
        for name, m in part["methods"].items():
            note = ""
            if "host_batch_s" in m:
                note = f"host batch {m['host_batch_s']:.3f} s + guest batches {m['guest_batches_s']:.3f} s"
            elif "session_s" in m:
                note = f"session {m['session_s']:.3f} s"
            rows.append(
                [
                    name,
                    f"{m['make_s']:.3f}",
                    m["links_per_s"],
                    f"{m['teardown_s']:.3f}",
                    m["removals_per_s"],
                    note,
                ]
            )
        lines += [
            "",
            f"{count} links ({part['shape']}, {part['guests']} guests), median of"
            f" {part['rounds']} rounds",
            format_table(
                ["method", "make s", "links/s", "removal s", "removals/s", "breakdown"], rows
            ),
        ]
        for name, r in part["ratios"].items():
            lines.append(f"  {name}: make {times(r['make'])}  removal {times(r['teardown'])}")
        phases = part.get("apply_phases")
        if phases:
            lines += [
                f"  pipework apply phases (median of {phases['runs']}; total {phases['total_ms']:.1f} ms): "
                + "; ".join(
                    f"{p['phase']} {p['median_ms']:.1f}"
                    for p in phases["phases"]
                    if p["median_ms"] >= 0.5
                )
            ]
    return "\n".join(lines)


# -- worker ---------------------------------------------------------------------------------
def work(plan: dict[str, Any]) -> dict[str, Any]:
    tag = plan["host"].removeprefix(f"{PREFIX}-h-")
    found = layout(plan, lambda label: f"{PREFIX}-g-{tag}-{label}")
    if found["names"] != plan["guests"]:
        raise BenchError("the worker's layout differs from the supervisor's")
    result: dict[str, Any] = {
        "benchmark": "guest_links",
        "config": {
            k: plan[k]
            for k in (
                "parts",
                "iterations",
                "warmup",
                "counts",
                "shape",
                "rounds",
                "seed",
                "bytecode",
            )
        },
        "commands": {
            "pipework link": f"{plan['pipework']} link netns:A:eth1 netns:B:eth1 --ip X/30 --peer-ip Y/30",
            "ip-loop": f"sh -c {IP_LOOP + 'link A eth1 B eth1 X/30 Y/30'!r}",
            "ip-batch": "ip -n A -batch - <<< 'link add eth1 type veth peer name eth1 netns B;"
            " addr add X/30 dev eth1; link set eth1 up'; ip -n B -batch - <<< 'addr add Y/30"
            " dev eth1; link set eth1 up'",
        },
    }
    if "single" in plan["parts"]:
        result["single"] = work_single(plan, found["single"])
    if "many" in plan["parts"]:
        result["many"] = {
            str(count): work_many(plan, links) for count, links in found["many"].items()
        }
    return result


# -- single ---------------------------------------------------------------------------------
def work_single(plan: dict[str, Any], single: dict[str, Any]) -> dict[str, Any]:
    methods: list[str] = plan["single_methods"]
    rng = random.Random(plan["seed"])
    samples: dict[str, list[float]] = {m: [] for m in [*methods, FLOOR]}
    removals: dict[str, list[float]] = {m: [] for m in methods}
    log(
        f"single: {plan['warmup']} warm-up + {plan['iterations']} timed runs of {', '.join(methods)}"
    )
    for i, by_method in enumerate(single["runs"]):
        order = [*methods, FLOOR]
        rng.shuffle(order)
        for method in order:
            if method == FLOOR:
                elapsed = timed([plan["python"], "-c", "pass"])[0]
            else:
                link = by_method[method]
                elapsed = make_one(method, plan, link)
                check_links([link], ping=True)
                removal = remove_one(method, plan, link)
                check_empty([link.a, link.b])
                if i >= plan["warmup"]:
                    removals[method].append(removal)
            if i >= plan["warmup"]:
                samples[method].append(elapsed)
    stats = {m: summarize(s) for m, s in samples.items()}
    down = {m: summarize(s) for m, s in removals.items()}
    ratios = {
        f"pipework link/{base}": {
            "link": ratio(stats["pipework link"]["median_ms"], stats[base]["median_ms"]),
            "teardown": ratio(down["pipework link"]["median_ms"], down[base]["median_ms"]),
        }
        for base in methods
        if base != "pipework link" and "pipework link" in stats
    }
    out: dict[str, Any] = {
        "iterations": plan["iterations"],
        "warmup": plan["warmup"],
        "methods": stats,
        "teardown": down,
        "ratios": ratios,
    }
    if single["phases"]:
        log(f"single: {len(single['phases'])} instrumented pipework link runs")

        def undo(link: Link) -> None:
            check_links([link], ping=False)
            remove_one("pipework link", plan, link)

        out["phases"] = measure_phases(plan, single["phases"], Link.cli, undo)
    if single["importtime"]:
        out["importtime"] = measure_importtime(plan, single["importtime"])
    return out


def make_one(method: str, plan: dict[str, Any], link: Link) -> float:
    if method == "pipework link":
        elapsed, proc = timed([plan["pipework"], *link.cli()])
        if not proc.stdout.startswith("created: link"):
            raise BenchError(f"unexpected pipework output: {proc.stdout!r}")
        return elapsed
    if method == "ip-loop":
        return timed(["sh", "-c", IP_LOOP + 'link "$@"', "ip-loop", *link.shell_args()])[0]
    if method == "ip-batch":
        start = time.perf_counter()
        run(
            ["ip", "-n", link.a, "-batch", "-"],
            stdin=f"link add {link.a_if} type veth peer name {link.b_if} netns {link.b}\n"
            f"addr add {link.a_ip} dev {link.a_if}\nlink set {link.a_if} up\n",
        )
        run(
            ["ip", "-n", link.b, "-batch", "-"],
            stdin=f"addr add {link.b_ip} dev {link.b_if}\nlink set {link.b_if} up\n",
        )
        return time.perf_counter() - start
    raise BenchError(f"unknown method {method}")


def remove_one(method: str, plan: dict[str, Any], link: Link) -> float:
    if method == "pipework link":
        return timed([plan["pipework"], "detach", f"netns:{link.a}", "-i", link.a_if])[0]
    return timed(["ip", "-n", link.a, "link", "del", link.a_if])[0]


def measure_phases(
    plan: dict[str, Any],
    runs: Sequence[Any],
    args_of: Callable[[Any], list[str]],
    after: Callable[[Any], None],
) -> dict[str, Any]:
    """Run _link_phases.py once per item of ``runs`` (``after`` each: check and
    undo it, untimed); the median of each phase."""
    durations: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    steps: dict[str, list[float]] = {name: [] for name in STEPS}
    totals: list[float] = []
    for n, item in enumerate(runs):
        out = Path(plan["workdir"]) / f"phases-{n}.json"
        try:
            spawn = time.monotonic()
            run([plan["python"], str(HERE / "_link_phases.py"), str(out), *args_of(item)])
            done = time.monotonic()
            found = json.loads(out.read_text())
        finally:
            out.unlink(missing_ok=True)
        after(item)
        marks = {**found["marks"], "spawn": spawn, "done": done}
        totals.append(done - spawn)
        for name, begin, end in PHASES:
            durations[name].append(marks[end] - marks[begin] if begin in marks else 0.0)
        for name in STEPS:
            steps[name].append(found["sums"].get(name, 0.0))
    result = phase_medians(durations, totals, "(not in a phase / rounding)")
    result["steps_ms"] = {name: statistics.median(v) * 1000 for name, v in steps.items()}
    return result


def measure_importtime(plan: dict[str, Any], links: Sequence[Link]) -> dict[str, Any]:
    log(f"single: {len(links)} pipework link runs under -X importtime")
    stderrs = []
    for link in links:
        stderrs.append(run([plan["pipework"], *link.cli()], env=IMPORTTIME_ENV).stderr)
        check_links([link], ping=False)
        remove_one("pipework link", plan, link)
    return importtime_summary(stderrs)


# -- many -----------------------------------------------------------------------------------
def work_many(plan: dict[str, Any], links: list[Link]) -> dict[str, Any]:
    methods: list[str] = plan["many_methods"]
    guests = guests_of(links)
    topology = write_topology(plan, links)
    log(f"many: {len(links)} links among {len(guests)} guests ({plan['shape']})")
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for r, method in shuffled_rounds(methods, plan["rounds"], plan["seed"]):
        sample = make_many(method, plan, links, topology)
        check_links(links, ping=True)
        sample.update(remove_many(method, plan, links, topology))
        check_empty(guests)
        samples[method].append(sample)
        log(
            f"{len(links)} links, round {r + 1}: {method}: make {sample['make_s']:.3f} s, "
            f"removal {sample['teardown_s']:.3f} s"
        )
    stats = round_medians(
        samples, len(links), {"links_per_s": "make_s", "removals_per_s": "teardown_s"}
    )
    ratios = {
        f"{ours}/{base}": {
            "make": ratio(stats[ours]["make_s"], stats[base]["make_s"]),
            "teardown": ratio(stats[ours]["teardown_s"], stats[base]["teardown_s"]),
        }
        for ours in ("pipework apply", "pipework engine")
        if ours in stats
        for base in ("ip-loop", "ip-batch")
        if base in stats
    }
    part: dict[str, Any] = {
        "links": len(links),
        "guests": len(guests),
        "shape": plan["shape"],
        "rounds": plan["rounds"],
        "methods": stats,
        "ratios": ratios,
    }
    if plan["apply_phase_runs"]:
        log(f"many: {plan['apply_phase_runs']} instrumented pipework apply runs")

        def destroy(path: str) -> None:
            check_links(links, ping=False)
            run([plan["pipework"], "destroy", path])
            check_empty(guests)

        part["apply_phases"] = measure_phases(
            plan, [topology] * plan["apply_phase_runs"], lambda path: ["apply", path], destroy
        )
    return part


def write_topology(plan: dict[str, Any], links: Sequence[Link]) -> str:
    """The ``links:`` file of ``pipework apply`` and ``destroy``."""
    lines = ["links:"]
    for link in links:
        lines += [
            "  - endpoints:",
            f"      - {{guest: 'netns:{link.a}', ifname: {link.a_if}, address: {link.a_ip}}}",
            f"      - {{guest: 'netns:{link.b}', ifname: {link.b_if}, address: {link.b_ip}}}",
        ]
    path = Path(plan["workdir"]) / f"links-{len(links)}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def make_many(
    method: str, plan: dict[str, Any], links: list[Link], topology: str
) -> dict[str, float]:
    if method == "pipework apply":
        elapsed, proc = timed([plan["pipework"], "apply", topology])
        if f"{len(links)} links: {len(links)} created" not in proc.stderr + proc.stdout:
            raise BenchError(f"unexpected apply output: {(proc.stderr + proc.stdout)[-300:]!r}")
        return {"make_s": elapsed}
    if method == "pipework engine":
        return link_engine(links)
    if method == "ip-loop":
        script = IP_LOOP + "".join(f"link {' '.join(link.shell_args())}\n" for link in links)
        return {"make_s": timed(["sh", "-c", script])[0]}
    if method == "ip-batch":
        host = "".join(
            f"link add {k.a_if} netns {k.a} type veth peer name {k.b_if} netns {k.b}\n"
            for k in links
        )
        per_guest: dict[str, str] = {}
        for k in links:
            for guest, ifname, ip in ((k.a, k.a_if, k.a_ip), (k.b, k.b_if, k.b_ip)):
                per_guest[guest] = (
                    per_guest.get(guest, "") + f"addr add {ip} dev {ifname}\nlink set {ifname} up\n"
                )
        host_s = timed(["ip", "-batch", "-"], stdin=host)[0]
        start = time.perf_counter()
        for guest, batch in per_guest.items():
            run(["ip", "-n", guest, "-batch", "-"], stdin=batch)
        guests_s = time.perf_counter() - start
        return {"make_s": host_s + guests_s, "host_batch_s": host_s, "guest_batches_s": guests_s}
    raise BenchError(f"unknown method {method}")


def remove_many(
    method: str, plan: dict[str, Any], links: list[Link], topology: str
) -> dict[str, float]:
    if method == "pipework apply":
        return {"teardown_s": timed([plan["pipework"], "destroy", topology])[0]}
    if method == "pipework engine":
        return unlink_engine(links)
    if method == "ip-loop":
        script = "set -e\n" + "".join(f"ip -n {k.a} link del {k.a_if}\n" for k in links)
        return {"teardown_s": timed(["sh", "-c", script])[0]}
    if method == "ip-batch":
        per_guest: dict[str, str] = {}
        for k in links:
            per_guest[k.a] = per_guest.get(k.a, "") + f"link del {k.a_if}\n"
        start = time.perf_counter()
        for guest, batch in per_guest.items():
            run(["ip", "-n", guest, "-batch", "-"], stdin=batch)
        return {"teardown_s": time.perf_counter() - start}
    raise BenchError(f"unknown method {method}")


def link_engine(links: list[Link]) -> dict[str, float]:
    import anyio

    from pipework import Engine
    from pipework.engine.engine import DEFAULT_LIMIT
    from pipework.engine.linkspec import LinkEnd, LinkSpec
    from pipework.engine.specs import AddressSpec

    specs = [
        LinkSpec(
            LinkEnd(f"netns:{k.a}", k.a_if, AddressSpec.parse(k.a_ip)),
            LinkEnd(f"netns:{k.b}", k.b_if, AddressSpec.parse(k.b_ip)),
        )
        for k in links
    ]

    async def make() -> dict[str, float]:
        errors: list[BaseException] = []
        limiter = anyio.CapacityLimiter(DEFAULT_LIMIT)
        start = time.perf_counter()
        async with Engine() as engine:

            async def one(spec: LinkSpec) -> None:
                async with limiter:
                    try:
                        await engine.link(spec)
                    except Exception as exc:
                        errors.append(exc)

            begin = time.perf_counter()
            with engine.batch():
                async with anyio.create_task_group() as tg:
                    for spec in specs:
                        tg.start_soon(one, spec)
            end = time.perf_counter()
        finish = time.perf_counter()
        if errors:
            raise BenchError(f"{len(errors)} links failed, the first: {errors[0]!r}")
        return {"make_s": end - begin, "session_s": finish - start}

    return anyio.run(make)


def unlink_engine(links: list[Link]) -> dict[str, float]:
    import anyio

    from pipework import Engine
    from pipework.engine.engine import DEFAULT_LIMIT

    async def remove() -> dict[str, float]:
        removed: list[int] = []
        limiter = anyio.CapacityLimiter(DEFAULT_LIMIT)
        async with Engine() as engine:

            async def one(k: Link) -> None:
                async with limiter:
                    removed.append(len(await engine.detach(f"netns:{k.a}", k.a_if)))

            start = time.perf_counter()
            async with engine.deferred_removal(), anyio.create_task_group() as tg:
                for k in links:
                    tg.start_soon(one, k)
            end = time.perf_counter()
        if sum(removed) != len(links):
            raise BenchError(f"detach removed {sum(removed)} of {len(links)} links")
        return {"teardown_s": end - start}

    return anyio.run(remove)


# -- checks (untimed) -------------------------------------------------------------------------
@contextmanager
def kernel(guests: Sequence[str]) -> Iterator[dict[str, tuple[int, Any]]]:
    """A netlink socket in each guest (pipework's raw codec: read-only requests)."""
    from pipework.engine.kernel.netlink import open_rtnl
    from pipework.engine.kernel.rtnl import Rtnl

    opened: dict[str, tuple[int, Any]] = {}
    try:
        for guest in guests:
            fd = os.open(f"/run/netns/{guest}", os.O_RDONLY)
            opened[guest] = (fd, None)
            opened[guest] = (fd, Rtnl(open_rtnl(fd)))
        yield opened
    finally:
        for fd, rtnl in opened.values():
            if rtnl is not None:
                rtnl.close()
            os.close(fd)


def check_links(links: Sequence[Link], *, ping: bool) -> None:
    """Both ends of every link: veths, up, exactly their address, each the
    other's peer; nothing else in the guests but ``lo``; pings across a few."""
    import socket

    expected: dict[str, dict[str, str]] = {}
    for k in links:
        expected.setdefault(k.a, {})[k.a_if] = k.a_ip
        expected.setdefault(k.b, {})[k.b_if] = k.b_ip
    with kernel(list(expected)) as socks:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for guest, wanted in expected.items():
            rtnl = socks[guest][1]
            names = {str(link["ifname"]): link for link in rtnl.links()}
            if sorted(names) != sorted(["lo", *wanted]):
                raise BenchError(f"{guest} has {sorted(names)}, expected lo and {sorted(wanted)}")
            for ifname, address in wanted.items():
                link = names[ifname]
                addrs = [
                    f"{socket.inet_ntoa(a)}/{p}"
                    for family, a, p in rtnl.addresses(int(link["index"]))
                    if family == socket.AF_INET
                ]
                if link["kind"] != "veth" or not link["up"] or addrs != [address]:
                    raise BenchError(
                        f"{ifname} in {guest}: kind {link['kind']}, up {link['up']}, {addrs};"
                        f" expected an up veth with {address}"
                    )
                found[guest, ifname] = link
        for k in links:
            for g, i, peer_g, peer_i in ((k.a, k.a_if, k.b, k.b_if), (k.b, k.b_if, k.a, k.a_if)):
                mine, theirs = found[g, i], found[peer_g, peer_i]
                nsid = socks[g][1].nsid_of(socks[peer_g][0])
                if (
                    mine["parent"] != theirs["index"]
                    or nsid is None
                    or mine["link_netnsid"] != nsid
                ):
                    raise BenchError(f"{i} in {g} is not the peer of {peer_i} in {peer_g}")
    if ping and links:
        picks = sorted({0, len(links) // 2, len(links) - 1})[:PINGED]
        for k in (links[n] for n in picks):
            run(
                [
                    "ip",
                    "netns",
                    "exec",
                    k.a,
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "2",
                    "-q",
                    k.b_ip.split("/")[0],
                ]
            )


def check_empty(guests: Sequence[str]) -> None:
    """Nothing but ``lo`` is left in ``guests``."""
    with kernel(guests) as socks:
        for guest, (_fd, rtnl) in socks.items():
            names = sorted(str(link["ifname"]) for link in rtnl.links())
            if names != ["lo"]:
                raise BenchError(f"{guest} still has {names} after the removal")


if __name__ == "__main__":
    from _harness import entry_point

    entry_point(parse_args, supervisor, work)
