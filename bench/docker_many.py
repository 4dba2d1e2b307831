"""Attaching Docker containers: ``attach_many`` and ``pipework apply`` against ``ip`` and CNI.

    sudo /path/to/venv/bin/python bench/docker_many.py [--count 200] [--rounds 3] [--json]

The supervisor starts a private dockerd (the test suite's, from
tests/support/infra.py: its own root, socket and cgroup parent, no iptables,
no bridge), imports a busybox image and starts N containers with
``--network none``. The worker, inside the bench's host namespace, then
takes every method in a shuffled order per round, attaching all N
containers to the bridge (timed), checking them (untimed), and removing
the attachments (timed):

* ``pipework (limit=L)``: ``engine.attach_many`` with the container names
  as guests: each attach asks Docker for the container's PID itself, and
  the lookups overlap. Teardown: ``engine.detach`` per container in one
  batched teardown.
* ``pipework apply``: ``pipework apply FILE`` / ``pipework destroy FILE``.
* ``ip-batch``: one ``docker inspect`` of all N (for the PIDs), one
  ``ip -batch`` in the host (veth with its peer in ``netns PID``, enslaved,
  up), then one ``nsenter -t PID -n ip -batch -`` per container (address,
  up). Teardown: one ``ip -batch`` of ``link del``.
* ``cni``: one ``docker inspect`` of all N, then the CNI ``bridge`` plugin
  per container (``CNI_NETNS=/proc/PID/ns/net``), one after another.

Last, one container at a time, the wall time of a single command line:
``pipework BRIDGE CONTAINER ADDR/24`` against a shell script doing the
same with ``docker inspect`` and ``ip`` (the original tool's approach).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _harness import (
    BenchError,
    drop_cni_if_missing,
    emit,
    format_table,
    guest_address,
    log,
    machine_info,
    ratio,
    require_root_and_tools,
    round_medians,
    run,
    shuffled_rounds,
    summarize,
    supervise,
    timed,
)
from attach_many import bridge_ports, host_veth, wait_bridge_empty
from single_attach import cni_config

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="containers attached per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method")
    parser.add_argument("--limit", type=int, action="append", help="attach_many concurrency")
    parser.add_argument("--single", type=int, default=10, help="single command-line runs")
    parser.add_argument("--seed", type=int, default=1, help="seed for the method order")
    parser.add_argument("--cni-dir", default="/usr/lib/cni", help="CNI plugin directory")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1 or args.single < 0:
        parser.error("--count and --rounds must be positive")
    return args


def supervisor(args: argparse.Namespace) -> int:
    require_root_and_tools("docker", "dockerd", "containerd", "nsenter")
    sys.path.insert(0, str(REPO / "tests"))
    from support import infra

    from pipework.engine.engine import DEFAULT_LIMIT

    limits = sorted(set(args.limit or [DEFAULT_LIMIT]))
    methods = [f"pipework (limit={n})" for n in limits] + ["pipework apply", "ip-batch", "cni"]
    drop_cni_if_missing(methods, Path(args.cni_dir))
    busybox = infra.find_static_busybox()
    if busybox is None:
        raise BenchError("needs a static busybox (Debian package busybox-static)")
    daemon = infra.DockerDaemon()
    names: list[str] = []
    try:
        log(f"starting a private dockerd under {daemon.root}")
        daemon.start()
        image = infra.import_busybox_image(daemon, busybox)
        names = [f"pwb-c-{os.getpid()}-{i:03d}" for i in range(args.count)]
        log(f"starting {len(names)} containers")
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: daemon.cli(
                        "run", "-d", "--name", n, "--network", "none", image, "sleep", "3600"
                    ),
                    names,
                )
            )
        os.environ["DOCKER_HOST"] = daemon.host
        os.environ["DOCKER_CONFIG"] = daemon.env["DOCKER_CONFIG"]
        plan = {
            "count": args.count,
            "rounds": args.rounds,
            "limits": limits,
            "default_limit": DEFAULT_LIMIT,
            "methods": methods,
            "single": args.single,
            "seed": args.seed,
            "cni_dir": args.cni_dir,
            "containers": names,
            "pipework": str(Path(sys.executable).parent / "pipework"),
        }
        result = supervise(Path(__file__).resolve(), plan, lambda s: [], bytecode="cached")
        result["machine"] = machine_info()
        emit(result, render(result), as_json=args.json)
    finally:
        log(f"removing {len(names)} containers and the private dockerd")
        remove_containers(daemon, names)
        daemon.stop()
    return 0


def remove_containers(daemon: Any, names: list[str]) -> None:
    """``docker rm -f``, a few at a time in parallel (one at a time is slow)."""

    def remove(chunk: list[str]) -> None:
        try:
            daemon.cli("rm", "-f", *chunk, check=False, timeout=600)
        except Exception as exc:  # the daemon's stop() removes what is left
            log(f"removing {chunk[0]}...: {exc}")

    chunks = [names[i : i + 10] for i in range(0, len(names), 10)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(remove, chunks))


def render(result: dict[str, Any]) -> str:
    rows = [
        [
            name,
            f"{m['attach_s']:.3f}",
            m["attaches_per_s"],
            f"{m['teardown_s']:.3f}",
            m["detaches_per_s"],
        ]
        for name, m in result["methods"].items()
    ]
    cfg = result["config"]
    lines = [
        f"{cfg['count']} Docker containers, median of {cfg['rounds']} rounds",
        format_table(["method", "attach s", "attaches/s", "teardown s", "detaches/s"], rows),
        "",
        "time ratios (>1: pipework slower; <1: faster):",
    ]
    for name, r in result["ratios"].items():
        lines.append(f"  {name}: attach {r['attach']:.2f}x  teardown {r['teardown']:.2f}x")
    single = result.get("single")
    if single:
        lines += [
            "",
            "one command line, one container (median ms over "
            f"{single['pipework']['n']} runs): pipework {single['pipework']['median_ms']:.1f},"
            f" ip loop {single['ip-loop']['median_ms']:.1f}"
            f" (ratio {single['ratio']:.2f}x)",
        ]
    return "\n".join(lines)


# -- worker ---------------------------------------------------------------------------------
def work(plan: dict[str, Any]) -> dict[str, Any]:
    names: list[str] = plan["containers"]
    addresses = [str(guest_address(k)) for k in range(len(names))]
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in plan["methods"]}
    log("warm-up: every method on 5 containers")
    for method in plan["methods"]:
        once(method, plan, names[:5], addresses[:5])
    for r, method in shuffled_rounds(plan["methods"], plan["rounds"], plan["seed"]):
        sample = once(method, plan, names, addresses)
        samples[method].append(sample)
        log(
            f"round {r + 1}: {method}: attach {sample['attach_s']:.3f} s, "
            f"teardown {sample['teardown_s']:.3f} s"
        )
    stats = round_medians(
        samples, len(names), {"attaches_per_s": "attach_s", "detaches_per_s": "teardown_s"}
    )
    ours = f"pipework (limit={plan['default_limit']})"
    ratios = {
        f"{name}/{base}": {
            "attach": ratio(stats[name]["attach_s"], stats[base]["attach_s"]),
            "teardown": ratio(stats[name]["teardown_s"], stats[base]["teardown_s"]),
        }
        for name in (ours, "pipework apply")
        for base in ("ip-batch", "cni")
        if base in stats
    }
    result = {
        "benchmark": "docker_many",
        "config": {k: plan[k] for k in ("count", "rounds", "limits", "default_limit", "seed")},
        "methods": stats,
        "ratios": ratios,
    }
    if plan["single"]:
        result["single"] = single(plan, names, addresses)
    return result


def pids(names: list[str]) -> list[int]:
    proc = run(["docker", "inspect", "-f", "{{.State.Pid}}", *names])
    return [int(p) for p in proc.stdout.split()]


def once(
    method: str, plan: dict[str, Any], names: list[str], addresses: list[str]
) -> dict[str, float]:
    bridge = plan["bridge"]
    if method.startswith("pipework (limit="):
        limit = int(method.partition("limit=")[2].rstrip(")"))
        sample = attach_pipework(plan, names, addresses, limit)
        check(plan, names, addresses)
        sample["teardown_s"] = detach_pipework(plan, names, limit)
    elif method == "pipework apply":
        path = Path(plan["workdir"]) / "containers.yaml"
        lines = [f"defaults: {{host: {bridge}}}", "attachments:"]
        lines += [
            f"  - {{guest: {n}, address: {a}}}" for n, a in zip(names, addresses, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
        sample = {"attach_s": timed([plan["pipework"], "apply", str(path)])[0]}
        check(plan, names, addresses)
        sample["teardown_s"] = timed([plan["pipework"], "destroy", str(path)])[0]
    elif method == "ip-batch":
        start = time.perf_counter()
        found = pids(names)
        run(
            ["ip", "-batch", "-"],
            stdin="".join(
                f"link add {host_veth(i)} type veth peer name eth1 netns {pid}\n"
                f"link set {host_veth(i)} master {bridge} up\n"
                for i, pid in enumerate(found)
            ),
        )
        for pid, address in zip(found, addresses, strict=True):
            run(
                ["nsenter", "-t", str(pid), "-n", "ip", "-batch", "-"],
                stdin=f"addr add {address} brd + dev eth1\nlink set eth1 up\n",
            )
        sample = {"attach_s": time.perf_counter() - start}
        check(plan, names, addresses)
        batch = "".join(f"link del {host_veth(i)}\n" for i in range(len(names)))
        sample["teardown_s"] = timed(["ip", "-batch", "-"], stdin=batch)[0]
    elif method == "cni":
        sample = {"attach_s": cni_all(plan, names, addresses, "ADD")}
        check(plan, names, addresses)
        sample["teardown_s"] = cni_all(plan, names, addresses, "DEL")
    else:
        raise BenchError(f"unknown method {method}")
    wait_bridge_empty(plan)
    return sample


def attach_pipework(
    plan: dict[str, Any], names: list[str], addresses: list[str], limit: int
) -> dict[str, float]:
    import anyio

    from pipework import AddressSpec, AttachSpec, Engine

    specs = [
        AttachSpec(host=plan["bridge"], guest=n, address=AddressSpec.parse(a))
        for n, a in zip(names, addresses, strict=True)
    ]

    async def attach() -> dict[str, float]:
        async with Engine(limit=limit) as engine:
            begin = time.perf_counter()
            results = await engine.attach_many(specs)
            end = time.perf_counter()
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise BenchError(f"{len(failed)} attaches failed, the first: {failed[0]!r}")
        return {"attach_s": end - begin}

    return anyio.run(attach)


def detach_pipework(plan: dict[str, Any], names: list[str], limit: int) -> float:
    import anyio

    from pipework import Engine
    from pipework.engine.kernel.teardown import deferred_deletes

    async def detach() -> float:
        async with Engine(limit=limit) as engine:
            limiter = anyio.CapacityLimiter(limit)

            async def one(name: str) -> None:
                async with limiter:
                    await engine.detach(name)

            start = time.perf_counter()
            async with deferred_deletes(), anyio.create_task_group() as tg:
                for name in names:
                    tg.start_soon(one, name)
            return time.perf_counter() - start

    return anyio.run(detach)


def cni_all(plan: dict[str, Any], names: list[str], addresses: list[str], command: str) -> float:
    plugin = f"{plan['cni_dir']}/bridge"
    start = time.perf_counter()
    for name, pid, address in zip(names, pids(names), addresses, strict=True):
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": name,
            "CNI_NETNS": f"/proc/{pid}/ns/net",
            "CNI_IFNAME": "eth1",
            "CNI_PATH": plan["cni_dir"],
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        run([plugin], stdin=json.dumps(cni_config(plan["bridge"], address)), env=env)
    return time.perf_counter() - start


def check(plan: dict[str, Any], names: list[str], addresses: list[str]) -> None:
    if bridge_ports(plan) != len(names):
        raise BenchError(f"the bridge has {bridge_ports(plan)} ports, expected {len(names)}")
    for pid, address in zip(pids(names), addresses, strict=True):
        out = run(
            ["nsenter", "-t", str(pid), "-n", "ip", "-j", "-4", "addr", "show", "dev", "eth1"]
        )
        links = json.loads(out.stdout)
        found = [f"{a['local']}/{a['prefixlen']}" for link in links for a in link["addr_info"]]
        if len(links) != 1 or "UP" not in links[0]["flags"] or found != [address]:
            raise BenchError(f"eth1 in container PID {pid} is not up with {address}: {links}")


IP_LOOP = """set -e
pid=$(docker inspect -f '{{.State.Pid}}' "$2")
ip link add "$3" type veth peer name pwtmp0 netns "$pid"
ip link set "$3" master "$1" up
nsenter -t "$pid" -n ip link set pwtmp0 name eth1
nsenter -t "$pid" -n ip link set eth1 up
nsenter -t "$pid" -n ip addr add "$4" brd + dev eth1
"""


def single(plan: dict[str, Any], names: list[str], addresses: list[str]) -> dict[str, Any]:
    """One command line per container: pipework against the ip loop, interleaved."""
    times: dict[str, list[float]] = {"pipework": [], "ip-loop": []}
    n = min(plan["single"], len(names))
    for i in range(n):
        name, address = names[i], addresses[i]
        times["pipework"].append(timed([plan["pipework"], plan["bridge"], name, address])[0])
        times["ip-loop"].append(
            timed(
                [
                    "bash",
                    "-c",
                    IP_LOOP,
                    "ip-loop",
                    plan["bridge"],
                    names[-1 - i],
                    host_veth(9000 + i),
                    addresses[-1 - i],
                ]
            )[0]
        )
    detach_pipework(plan, names[:n], 4)
    run(["ip", "-batch", "-"], stdin="".join(f"link del {host_veth(9000 + i)}\n" for i in range(n)))
    wait_bridge_empty(plan)
    result: dict[str, Any] = {k: summarize(v) for k, v in times.items()}
    result["ratio"] = ratio(result["pipework"]["median_ms"], result["ip-loop"]["median_ms"])
    return result


if __name__ == "__main__":
    from _harness import entry_point

    entry_point(parse_args, supervisor, work)
