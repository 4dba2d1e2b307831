"""Throughput of ``Engine.attach_many`` against ``ip -batch`` and the CNI bridge plugin.

    sudo /path/to/venv/bin/python bench/attach_many.py [--count 200] [--rounds 3] [--json]

N guest namespaces are created once; each round then, per method in a
shuffled order, attaches all N to one bridge (timed), checks every guest
(untimed), removes all N attachments (timed) and checks the bridge is empty:

* ``pipework (limit=L)``: ``await engine.attach_many(specs)`` on an
  ``Engine(host_netns=...)`` that is already entered; removal is
  ``engine.detach(guest)`` for every guest, L at a time, inside one
  ``deferred_deletes()`` block (the batched teardown).  The time of the
  whole ``async with Engine()`` block (plugin loading, waiting for the
  gratuitous ARPs on exit) is reported as "session".
* ``pipework apply``: the command line, ``pipework apply FILE`` with a
  topology file naming every guest, timed from spawn to exit (interpreter
  start-up included); removal is ``pipework destroy FILE``.
* ``pipework batch``: the command line, ``pipework batch -`` with one
  original-style line per guest (``BRIDGE netns:GUEST ADDR``) on its
  standard input, timed from spawn to exit; ``batch`` has no removal of its
  own, so removal is ``pipework destroy FILE`` as for ``apply``.
* ``ip-batch``: one ``ip -batch -`` in the host for every veth (peer created
  as eth1 directly in its guest, enslaved, up), then one
  ``ip -n GUEST -batch -`` per guest for the address and link up; removal is
  one ``ip -batch -`` of ``link del``.
* ``cni``: the CNI ``bridge`` plugin with ``static`` IPAM, ADD once per
  guest, one after another; removal is DEL once per guest.

At the end the guests are attached once more with pipework and the
supervisor times deleting the N namespaces themselves (``ip -batch`` of
``netns del``) and how long the kernel takes until the last host-side veth
is gone.  See _harness.py for the namespace layout and the clean-up.
"""

from __future__ import annotations

import argparse
import json
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
    ratio,
    require_root_and_tools,
    round_medians,
    run,
    shuffled_rounds,
    supervise,
    timed,
    times,
)
from single_attach import cni_config, cni_env

POLL = 0.005
"""Seconds between looks at the bridge while waiting for ports to go."""


# -- supervisor ---------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="guests attached per round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per method")
    parser.add_argument(
        "--warmup", type=int, default=10, help="guests in one untimed round first (0: none)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        action="append",
        help="attach_many concurrency; repeat to compare (default: 1 and the engine's default)",
    )
    parser.add_argument(
        "--guest-ipv6",
        choices=("on", "off"),
        default="on",
        help="IPv6 in the guests (off: as Docker leaves containers without an IPv6 network)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="METHOD",
        help="run only this method (repeat for several; e.g. 'pipework batch', floor)",
    )
    parser.add_argument("--cni-dir", default="/usr/lib/cni", help="CNI plugin directory")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--count and --rounds must be positive, --warmup not negative")
    return args


def supervisor(args: argparse.Namespace) -> int:
    require_root_and_tools()
    try:
        from pipework.engine.engine import DEFAULT_LIMIT
    except ImportError:
        raise BenchError(f"pipework is not installed for {sys.executable}") from None
    limits = sorted(set(args.limit or [1, DEFAULT_LIMIT]))
    methods = [f"pipework (limit={n})" for n in limits]
    methods += ["pipework apply", "pipework batch", "ip-batch", "cni", "floor"]
    if args.only:
        unknown = sorted(set(args.only) - set(methods))
        if unknown:
            raise BenchError(f"unknown methods {unknown}; known: {methods}")
        methods = [m for m in methods if m in args.only]
    cni = Path(args.cni_dir)
    if "cni" in methods:
        drop_cni_if_missing(methods, cni)
    plan = {
        "count": args.count,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "limits": limits,
        "default_limit": DEFAULT_LIMIT,
        "methods": methods,
        "seed": args.seed,
        "cni_dir": str(cni),
        "bytecode": args.bytecode,
        "guest_ipv6": args.guest_ipv6,
        "pipework": str(Path(sys.executable).parent / "pipework"),
    }

    def guests(session: Session) -> list[str]:
        return [session.guest(f"{i:04d}") for i in range(args.count)]

    result = supervise(
        Path(__file__).resolve(),
        plan,
        guests,
        bytecode=args.bytecode,
        finish=delete_namespaces,
    )
    result["machine"] = machine_info()
    emit(result, render(result), as_json=args.json)
    return 0


def delete_namespaces(session: Session, result: dict[str, Any]) -> None:
    """Time deleting the attached guests' namespaces, then the kernel's clean-up."""
    guests = [n for n in session.created if n != session.host]
    ports = session.bridge_ports()
    if ports != len(guests):
        raise BenchError(f"expected {len(guests)} attached guests, the bridge has {ports} ports")
    batch = "".join(f"netns del {n}\n" for n in guests)
    start = time.perf_counter()
    run(["ip", "-batch", "-"], stdin=batch)
    deleted = time.perf_counter()
    while session.bridge_ports():
        if time.perf_counter() - deleted > 60:
            raise BenchError("host-side veths still there a minute after deleting the namespaces")
        time.sleep(POLL)
    gone = time.perf_counter()
    result["netns_teardown"] = {
        "guests": len(guests),
        "ip_netns_del_s": deleted - start,
        "host_veths_gone_s": gone - start,
    }


def render(result: dict[str, Any]) -> str:
    count = result["config"]["count"]
    rows = []
    for name, m in result["methods"].items():
        note = ""
        if "host_batch_s" in m:
            note = (
                f"host batch {m['host_batch_s']:.3f} s + guest batches {m['guest_batches_s']:.3f} s"
            )
        elif "session_s" in m:
            note = (
                f"session {m['session_s']:.3f} s; teardown's batched kernel deletes"
                f" {m['flush_s']:.3f} s"
            )
        rows.append(
            [
                name,
                f"{m['attach_s']:.3f}",
                m["attaches_per_s"],
                f"{m['teardown_s']:.3f}",
                m["detaches_per_s"],
                note,
            ]
        )
    lines = [
        f"attach_many, {count} guests, median of {result['config']['rounds']} rounds,"
        f" IPv6 in the guests {result['config'].get('guest_ipv6', 'on')}",
        format_table(
            ["method", "attach s", "attaches/s", "teardown s", "detaches/s", "breakdown (median)"],
            rows,
        ),
        "",
        f"time ratios (>1: pipework slower; <1: faster), pipework at limit={result['config']['default_limit']}:",
    ]
    for name, r in result["ratios"].items():
        lines.append(f"  {name}: attach {times(r['attach'])}  teardown {times(r['teardown'])}")
    teardown = result.get("netns_teardown")
    if teardown:
        lines += [
            "",
            f"deleting {teardown['guests']} attached guest namespaces: `ip -batch` returns after "
            f"{teardown['ip_netns_del_s']:.3f} s, last host-side veth gone after "
            f"{teardown['host_veths_gone_s']:.3f} s",
        ]
    return "\n".join(lines)


# -- worker ---------------------------------------------------------------------------------
def work(plan: dict[str, Any]) -> dict[str, Any]:
    guests: list[str] = plan["guests"]
    addresses = [str(guest_address(k)) for k in range(len(guests))]
    methods: list[str] = plan["methods"]
    if plan["guest_ipv6"] == "off":
        disable_ipv6(guests)
    if plan["warmup"]:
        n = min(plan["warmup"], len(guests))
        log(f"warm-up: {n} guests, every method")
        for method in methods:
            once(method, plan, guests[:n], addresses[:n])
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for r, method in shuffled_rounds(methods, plan["rounds"], plan["seed"]):
        sample = once(method, plan, guests, addresses)
        samples[method].append(sample)
        log(
            f"round {r + 1}: {method}: attach {sample['attach_s']:.3f} s, "
            f"teardown {sample['teardown_s']:.3f} s"
        )
    log("attaching every guest once more, for the namespace-deletion teardown")
    attach_pipework(plan, guests, addresses, plan["default_limit"])
    check_attached(plan, guests, addresses)

    stats = round_medians(
        samples, len(guests), {"attaches_per_s": "attach_s", "detaches_per_s": "teardown_s"}
    )
    ours = {
        "pipework": f"pipework (limit={plan['default_limit']})",
        "pipework apply": "pipework apply",
        "pipework batch": "pipework batch",
    }
    ratios = {
        f"{name}/{base}": {
            "attach": ratio(stats[method]["attach_s"], stats[base]["attach_s"]),
            "teardown": ratio(stats[method]["teardown_s"], stats[base]["teardown_s"]),
        }
        for name, method in ours.items()
        if method in stats
        for base in ("ip-batch", "cni", "floor")
        if base in stats
    }
    return {
        "benchmark": "attach_many",
        "config": {
            k: plan[k]
            for k in (
                "count",
                "rounds",
                "warmup",
                "limits",
                "default_limit",
                "seed",
                "bytecode",
                "guest_ipv6",
            )
        },
        "methods": stats,
        "ratios": ratios,
    }


def once(
    method: str, plan: dict[str, Any], guests: list[str], addresses: list[str]
) -> dict[str, float]:
    """Attach ``guests`` with ``method``, check, tear down, check; the timings."""
    sample: dict[str, float]
    if method.startswith("pipework (limit="):
        limit = int(method.partition("limit=")[2].rstrip(")"))
        sample = attach_pipework(plan, guests, addresses, limit)
        check_attached(plan, guests, addresses)
        sample.update(detach_pipework(plan, guests, limit))
    elif method == "pipework apply":
        path = write_topology(plan, guests, addresses)
        sample = {"attach_s": timed([plan["pipework"], "apply", path])[0]}
        check_attached(plan, guests, addresses)
        sample["teardown_s"] = timed([plan["pipework"], "destroy", path])[0]
    elif method == "pipework batch":
        lines = batch_lines(plan, guests, addresses)
        sample = {"attach_s": timed([plan["pipework"], "batch", "-"], stdin=lines)[0]}
        check_attached(plan, guests, addresses)
        path = write_topology(plan, guests, addresses)
        sample["teardown_s"] = timed([plan["pipework"], "destroy", path])[0]
    elif method == "floor":
        sample = {"attach_s": attach_floor(plan, guests, addresses)}
        check_attached(plan, guests, addresses)
        batch = "".join(f"link del {host_veth(i)}\n" for i in range(len(guests)))
        sample["teardown_s"] = timed(["ip", "-batch", "-"], stdin=batch)[0]
    elif method == "ip-batch":
        sample = attach_ip_batch(plan, guests, addresses)
        check_attached(plan, guests, addresses)
        batch = "".join(f"link del {host_veth(i)}\n" for i in range(len(guests)))
        sample["teardown_s"] = timed(["ip", "-batch", "-"], stdin=batch)[0]
    elif method == "cni":
        sample = {"attach_s": cni_all(plan, guests, addresses, "ADD")}
        check_attached(plan, guests, addresses)
        sample["teardown_s"] = cni_all(plan, guests, addresses, "DEL")
    else:
        raise BenchError(f"unknown method {method}")
    wait_bridge_empty(plan)
    return sample


def attach_pipework(
    plan: dict[str, Any], guests: list[str], addresses: list[str], limit: int
) -> dict[str, float]:
    import anyio

    from pipework import AddressSpec, AttachSpec, Engine

    specs = [
        AttachSpec(host=plan["bridge"], guest=f"netns:{g}", address=AddressSpec.parse(a))
        for g, a in zip(guests, addresses, strict=True)
    ]

    async def attach() -> dict[str, float]:
        start = time.perf_counter()
        async with Engine(host_netns=f"/run/netns/{plan['host']}", limit=limit) as engine:
            begin = time.perf_counter()
            results = await engine.attach_many(specs)
            end = time.perf_counter()
        finish = time.perf_counter()
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise BenchError(f"{len(failed)} attaches failed, the first: {failed[0]!r}")
        return {"attach_s": end - begin, "session_s": finish - start}

    return anyio.run(attach)


def detach_pipework(plan: dict[str, Any], guests: list[str], limit: int) -> dict[str, float]:
    import anyio

    from pipework import Engine
    from pipework.engine.kernel.teardown import deferred_deletes

    async def detach() -> dict[str, float]:
        removed: list[int] = []
        async with Engine(host_netns=f"/run/netns/{plan['host']}", limit=limit) as engine:
            limiter = anyio.CapacityLimiter(limit)

            async def one(guest: str) -> None:
                async with limiter:
                    removed.append(len(await engine.detach(f"netns:{guest}")))

            start = time.perf_counter()
            async with deferred_deletes():
                async with anyio.create_task_group() as tg:
                    for guest in guests:
                        tg.start_soon(one, guest)
                collected = time.perf_counter()
            end = time.perf_counter()
        if sorted(removed) != [1] * len(guests):
            raise BenchError(f"detach removed {sum(removed)} interfaces from {len(guests)} guests")
        return {"teardown_s": end - start, "flush_s": end - collected}

    return anyio.run(detach)


def write_topology(plan: dict[str, Any], guests: list[str], addresses: list[str]) -> str:
    """The topology file of ``pipework apply``: every guest on the bench's bridge."""
    lines = [f"defaults: {{host: {plan['bridge']}}}", "attachments:"]
    lines += [
        f"  - {{guest: 'netns:{g}', address: {a}}}" for g, a in zip(guests, addresses, strict=True)
    ]
    path = Path(plan["workdir"]) / "topology.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def batch_lines(plan: dict[str, Any], guests: list[str], addresses: list[str]) -> str:
    """The standard input of ``pipework batch``: one original-style line per guest."""
    return "".join(
        f"{plan['bridge']} netns:{g} {a}\n" for g, a in zip(guests, addresses, strict=True)
    )


def disable_ipv6(guests: list[str]) -> None:
    """IPv6 off in every guest, for interfaces made from now on."""
    import os

    from pipework.engine.kernel.netlink import write_sysctl

    for guest in guests:
        fd = os.open(f"/run/netns/{guest}", os.O_RDONLY)
        try:
            for scope in ("default", "all"):
                write_sysctl(fd, f"net/ipv6/conf/{scope}/disable_ipv6", "1")
        finally:
            os.close(fd)


def attach_floor(plan: dict[str, Any], guests: list[str], addresses: list[str]) -> float:
    """The least work that attaches the guests, in one process: six raw
    netlink requests per guest through pipework's lean codec, no checks, no
    markers, no engine. What is left is the kernel's work: the ceiling any
    tool doing this in this process model can reach."""
    import ipaddress
    import os
    import socket

    from pipework.engine.kernel.netlink import open_rtnl
    from pipework.engine.kernel.rtnl import Rtnl

    def requests(fd: int | None) -> Rtnl:
        return Rtnl(open_rtnl(fd))

    host = requests(None)
    fds = [os.open(f"/run/netns/{g}", os.O_RDONLY) for g in guests]
    try:
        start = time.perf_counter()
        bridge = host.get_link(ifname=plan["bridge"])["index"]
        for i, (fd, address) in enumerate(zip(fds, addresses, strict=True)):
            host.create_link(host_veth(i), "veth", {"peer": {"ifname": "eth1", "net_ns_fd": fd}})
            veth = host.get_link(ifname=host_veth(i))["index"]
            # The same settings as pipework's requests carry: no IPv6
            # autoconfiguration on either end (the floor sends no announcement).
            quiet = {"addr_gen_mode": "none"}
            host.set_link(int(veth), {"master": bridge, "state": "up", **quiet})
            guest = requests(fd)
            eth1 = int(guest.get_link(ifname="eth1")["index"])
            ip = ipaddress.ip_interface(address)
            brd = ip.network.broadcast_address.packed
            guest.add_address(eth1, socket.AF_INET, ip.ip.packed, ip.network.prefixlen, brd, 0)
            guest.set_link(eth1, {"state": "up", **quiet})
            guest.close()
        return time.perf_counter() - start
    finally:
        host.close()
        for fd in fds:
            os.close(fd)


def host_veth(i: int) -> str:
    return f"pwbv{i:04d}"


def attach_ip_batch(
    plan: dict[str, Any], guests: list[str], addresses: list[str]
) -> dict[str, float]:
    bridge = plan["bridge"]
    host_batch = "".join(
        f"link add {host_veth(i)} type veth peer name eth1 netns {g}\n"
        f"link set {host_veth(i)} master {bridge} up\n"
        for i, g in enumerate(guests)
    )
    host_s = timed(["ip", "-batch", "-"], stdin=host_batch)[0]
    start = time.perf_counter()
    for guest, address in zip(guests, addresses, strict=True):
        run(
            ["ip", "-n", guest, "-batch", "-"],
            stdin=f"addr add {address} brd + dev eth1\nlink set eth1 up\n",
        )
    guests_s = time.perf_counter() - start
    return {"attach_s": host_s + guests_s, "host_batch_s": host_s, "guest_batches_s": guests_s}


def cni_all(plan: dict[str, Any], guests: list[str], addresses: list[str], command: str) -> float:
    plugin = f"{plan['cni_dir']}/bridge"
    start = time.perf_counter()
    for guest, address in zip(guests, addresses, strict=True):
        config = json.dumps(cni_config(plan["bridge"], address))
        run([plugin], stdin=config, env=cni_env(command, plan["cni_dir"], guest))
    return time.perf_counter() - start


def bridge_ports(plan: dict[str, Any]) -> int:
    return len(
        json.loads(run(["ip", "-j", "link", "show", "master", plan["bridge"]]).stdout or "[]")
    )


def check_attached(plan: dict[str, Any], guests: list[str], addresses: list[str]) -> None:
    """Every guest has eth1 up with its address, and the bridge has one port per guest."""
    ports = bridge_ports(plan)
    if ports != len(guests):
        raise BenchError(f"the bridge has {ports} ports, expected {len(guests)}")
    for guest, address in zip(guests, addresses, strict=True):
        proc = run(["ip", "-n", guest, "-j", "-4", "addr", "show", "dev", "eth1"])
        links = json.loads(proc.stdout)
        found = [f"{a['local']}/{a['prefixlen']}" for link in links for a in link["addr_info"]]
        if len(links) != 1 or "UP" not in links[0]["flags"] or found != [address]:
            raise BenchError(f"eth1 in {guest} is not up with {address}: {links}")


def wait_bridge_empty(plan: dict[str, Any]) -> None:
    deadline = time.monotonic() + 10
    while (ports := bridge_ports(plan)) != 0:
        if time.monotonic() > deadline:
            raise BenchError(f"{ports} ports still on the bridge after the teardown")
        time.sleep(POLL)


if __name__ == "__main__":
    from _harness import entry_point

    entry_point(parse_args, supervisor, work)
