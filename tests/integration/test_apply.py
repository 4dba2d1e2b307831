"""``pipework apply`` / ``destroy`` / ``batch`` as a user runs them: the CLI in a
subprocess, inside the test's "host" namespace, against real namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import infra
from support.checks import addresses, links, only_loopback, routes

pytestmark = pytest.mark.integration


def topology(tmp_path: Path, text: str, name: str = "topo.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def host_ports(host_ns: infra.NetNS, bridge: str) -> list[str]:
    return sorted(n for n, link in links(host_ns).items() if link.get("master") == bridge)


def shape(ns: infra.NetNS) -> dict[str, tuple]:
    """What an apply could change about a namespace's interfaces (not timers or counters)."""
    return {
        name: (
            link["ifindex"],
            link["mtu"],
            link.get("address"),
            link.get("ifalias"),
            link.get("master"),
            tuple(link["flags"]),
        )
        for name, link in links(ns).items()
    }


def results(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    return json.loads(proc.stdout)["results"]


def test_plan_apply_again_force_prune_destroy(host_ns, make_netns, run_pipework, tmp_path):
    a, b = make_netns("a"), make_netns("b")
    text = f"""\
        version: 1
        bridges:
          - name: brpwta
            mtu: 9000
        defaults:
          host: brpwta
        attachments:
          - guest: netns:{a.name}
            address: 198.18.30.2/24@198.18.30.1
            routes: [198.18.31.0/24 via 198.18.30.254]
          - guest: netns:{b.name}
            address: 198.18.30.3/24
          - guest: netns:{b.name}
            ifname: eth2
            address: 2001:db8:30::3/64
        """
    path = topology(tmp_path, text)

    # --plan changes nothing.
    plan = run_pipework("apply", path, "--plan", netns=host_ns.name)
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.splitlines()
    assert lines[0].startswith("+ create    bridge brpwta") and len(lines) == 4
    assert "brpwta" not in links(host_ns) and only_loopback(a) and only_loopback(b)

    # apply creates everything.
    first = run_pipework("apply", path, "--json", netns=host_ns.name)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert [r["attachment"]["status"] for r in data["results"]] == ["created"] * 3
    assert data["bridges"][0]["action"] == "create"
    assert links(host_ns)["brpwta"]["mtu"] == 9000 and len(host_ports(host_ns, "brpwta")) == 3
    assert links(a)["eth1"]["mtu"] == 9000
    assert any(r["dst"] == "198.18.31.0/24" and r["gateway"] == "198.18.30.254" for r in routes(a))
    assert "2001:db8:30::3/64" in addresses(b, "eth2")
    assert infra.ping(a, "198.18.30.3")

    # Applying twice changes nothing the second time.
    before = (shape(host_ns), shape(a), shape(b), routes(a))
    second = run_pipework("apply", path, netns=host_ns.name)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0] == "unchanged: bridge brpwta"
    assert all(line.startswith("unchanged: ") for line in second.stdout.splitlines())
    assert "3 attachments: 3 unchanged" in second.stderr
    assert (shape(host_ns), shape(a), shape(b), routes(a)) == before

    # A changed address differs: --plan says so, apply refuses it without --force.
    changed = topology(tmp_path, text.replace("198.18.30.3/24", "198.18.30.4/24"), "t2.yaml")
    plan = run_pipework("apply", changed, "--plan", netns=host_ns.name)
    assert plan.returncode == 7
    assert any(
        line.startswith("~ update") and "needs --force" in line for line in plan.stdout.splitlines()
    )
    refused = run_pipework("apply", changed, netns=host_ns.name)
    assert refused.returncode == 7
    assert "attached with another configuration (add --force" in refused.stderr
    assert addresses(b, "eth1") == ["198.18.30.3/24"]
    forced = run_pipework("apply", changed, "--force", netns=host_ns.name)
    assert forced.returncode == 0, forced.stderr
    assert addresses(b, "eth1") == ["198.18.30.4/24"]

    # --prune removes what the file no longer names, for the file's guests only.
    pruned_text = "\n".join(textwrap.dedent(text).splitlines()[:12]).replace(
        "198.18.30.3/24", "198.18.30.4/24"
    )
    pruned = topology(tmp_path, pruned_text + "\n", "t3.yaml")
    plan = run_pipework("apply", pruned, "--plan", "--prune", netns=host_ns.name)
    assert plan.returncode == 0 and f"- remove    attachment eth2 in netns:{b.name}" in plan.stdout
    assert "eth2" in links(b)
    done = run_pipework("apply", pruned, "--prune", netns=host_ns.name)
    assert done.returncode == 0, done.stderr
    assert f"removed: eth2 in netns:{b.name}" in done.stdout
    assert "eth2" not in links(b) and len(host_ports(host_ns, "brpwta")) == 2

    # destroy removes everything the file created, the bridge too; twice is fine.
    gone = run_pipework("destroy", pruned, netns=host_ns.name)
    assert gone.returncode == 0, gone.stderr
    assert "removed: bridge brpwta" in gone.stdout
    assert only_loopback(a) and only_loopback(b) and set(links(host_ns)) == {"lo"}
    again = run_pipework("destroy", pruned, "--json", netns=host_ns.name)
    assert again.returncode == 0
    assert [r["removed"] for r in results(again)] == [[], []]


def test_a_bridge_that_differs_needs_force(host_ns, make_netns, run_pipework, tmp_path):
    host_ns.exec("ip", "link", "add", "brpwtb", "type", "bridge")
    path = topology(tmp_path, "bridges:\n  - {name: brpwtb, mtu: 1400}\n")
    refused = run_pipework("apply", path, netns=host_ns.name)
    assert refused.returncode == 7
    assert "bridge brpwtb differs from the file (mtu 1500 -> 1400, down -> up)" in refused.stderr
    assert links(host_ns)["brpwtb"]["mtu"] == 1500
    fixed = run_pipework("apply", path, "--force", netns=host_ns.name)
    assert fixed.returncode == 0 and "updated: bridge brpwtb" in fixed.stdout
    assert links(host_ns)["brpwtb"]["mtu"] == 1400
    # Not pipework's: destroy leaves it (and Open vSwitch, not running here, is no error).
    gone = run_pipework("destroy", path, netns=host_ns.name)
    assert gone.returncode == 0, gone.stderr
    assert "brpwtb" in links(host_ns)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "attachments:\n  - guest: x\n    host: brpwtc\n    address: 198.18.32.2\n",
            ":4: attachments[0].address: The IP address should include a netmask.",
        ),
        (
            "attachments:\n  - guest: x\n    hots: brpwtc\n",
            ":3: attachments[0].hots: unknown field 'hots'",
        ),
        (
            "bridges:\n  - {name: brpwtc, mtu: 10}\n",
            ":2: bridges[0].mtu: MTU 10 is out of range (use 68 to 65535)",
        ),
    ],
)
def test_schema_errors_exit_2_and_touch_nothing(host_ns, run_pipework, tmp_path, text, message):
    path = topology(tmp_path, text)
    for command in (("apply", path), ("apply", path, "--plan"), ("destroy", path)):
        proc = run_pipework(*command, netns=host_ns.name)
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"pipework: {path}{message}")
        assert len(proc.stderr.splitlines()) == 1 and proc.stdout == ""
    assert set(links(host_ns)) == {"lo"}


def test_a_missing_file_and_a_refused_bridge(host_ns, run_pipework, tmp_path):
    proc = run_pipework("apply", str(tmp_path / "nope.yaml"), netns=host_ns.name)
    assert proc.returncode == 2 and proc.stderr == f"pipework: {tmp_path}/nope.yaml: no such file\n"
    # This kernel has no bridge VLAN filtering: exit 8, and the bridge is not left behind.
    path = topology(tmp_path, "bridges:\n  - {name: brpwtd, vlan_filtering: true}\n")
    proc = run_pipework("apply", path, netns=host_ns.name)
    if proc.returncode == 0:  # a kernel with the support
        assert "created: bridge brpwtd" in proc.stdout
        run_pipework("destroy", path, netns=host_ns.name)
    else:
        assert proc.returncode == 8, proc.stderr
        assert proc.stderr.startswith(
            f"pipework: {path}:2: bridges[0]: this kernel has no bridge VLAN"
        )
        assert len(proc.stderr.splitlines()) == 1
    assert set(links(host_ns)) == {"lo"}


def test_partial_failure_and_all_or_nothing(host_ns, make_netns, run_pipework, tmp_path):
    a, b = make_netns("a"), make_netns("b")
    path = topology(
        tmp_path,
        f"""\
        defaults: {{host: brpwte}}
        attachments:
          - {{guest: netns:{a.name}, address: 198.18.33.2/24}}
          - {{guest: netns:pwt-nosuchns, address: 198.18.33.3/24}}
          - {{guest: netns:{b.name}, address: 198.18.33.4/24}}
        """,
    )
    # Nothing to roll back yet: all-or-nothing leaves nothing behind, the bridge included.
    proc = run_pipework("apply", path, "--all-or-nothing", netns=host_ns.name)
    assert proc.returncode == 3
    assert "--all-or-nothing: a job failed, so everything this run made was undone" in proc.stderr
    assert (
        f"failed: default interface in netns:pwt-nosuchns on brpwte ({path}:4): no network namespace named pwt-nosuchns"
        in proc.stderr
    )
    assert only_loopback(a) and only_loopback(b) and set(links(host_ns)) == {"lo"}

    # By default each attachment stands alone: the others are made, the exit code is the failure's.
    proc = run_pipework("apply", path, "--json", netns=host_ns.name)
    assert proc.returncode == 3
    data = json.loads(proc.stdout)
    assert [r["state"] for r in data["results"]] == ["done", "failed", "done"]
    assert data["results"][1]["exit_code"] == 3 and data["summary"]["failed"] == 1
    assert addresses(a, "eth1") == ["198.18.33.2/24"] and addresses(b, "eth1") == ["198.18.33.4/24"]

    # all-or-nothing keeps what was there before (unchanged) and undoes only its own work.
    c = make_netns("c")
    more = path.replace("topo.yaml", "more.yaml")
    Path(more).write_text(
        Path(path).read_text() + f"  - {{guest: netns:{c.name}, address: 198.18.33.5/24}}\n"
    )
    proc = run_pipework("apply", more, "--all-or-nothing", "--jobs", "1", netns=host_ns.name)
    assert proc.returncode == 3
    assert only_loopback(c)
    assert addresses(a, "eth1") == ["198.18.33.2/24"] and addresses(b, "eth1") == ["198.18.33.4/24"]
    run_pipework("destroy", path, netns=host_ns.name)
    assert set(links(host_ns)) == {"lo"}


def test_batch_from_stdin(host_ns, make_netns, run_pipework):
    a, b = make_netns("a"), make_netns("b")
    text = (
        "# two guests\n"
        f"brpwtf netns:{a.name} 198.18.34.2/24\n"
        f"pipework brpwtf -i eth2 netns:{b.name} 198.18.35.3/24 U:b\n"
        f"brpwtf netns:pwt-nosuchns 198.18.34.9/24\n"
    )
    proc = run_pipework("batch", "-", "--jobs", "2", netns=host_ns.name, input=text)
    assert proc.returncode == 3
    assert sorted(line.split(" on ")[0] for line in proc.stdout.splitlines()) == [
        f"created: eth1 in netns:{a.name}",
        f"created: eth2 in netns:{b.name}",
    ]
    assert "pipework: 3 attachments: 2 created, 1 failed" in proc.stderr
    assert "(<stdin>:4): no network namespace named pwt-nosuchns" in proc.stderr
    again = run_pipework("batch", "--json", netns=host_ns.name, input=text)
    statuses = [r.get("attachment", {}).get("status") for r in results(again)]
    assert statuses == ["unchanged", "unchanged", None]
    # A bad line stops the batch before anything runs.
    bad = run_pipework("batch", "-", netns=host_ns.name, input=f"brpwtf netns:{a.name} 0/0 -i\n")
    assert bad.returncode == 2 and bad.stderr.startswith(
        "pipework: <stdin>:1: option -i needs a value"
    )


@pytest.fixture
def many_netns() -> Iterator[list[str]]:
    """200 guest namespaces, made and removed with one ``ip -batch`` each."""
    names = [infra.unique_name("n") for _ in range(200)]
    try:
        infra.run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in names))
        yield names
    finally:
        existing = [n for n in names if os.path.exists(f"/run/netns/{n}")]
        infra.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns del {n}\n" for n in existing),
            check=False,
        )


def test_two_hundred_attachments_and_nothing_left(host_ns, many_netns, run_pipework, tmp_path):
    lines = ["defaults: {host: brpwtg}", "attachments:"]
    lines += [
        f"  - {{guest: 'netns:{n}', address: 198.18.{40 + i // 200}.{i % 200 + 2}/16}}"
        for i, n in enumerate(many_netns)
    ]
    path = topology(tmp_path, "\n".join(lines) + "\n")
    proc = run_pipework("apply", path, "--json", netns=host_ns.name, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["summary"]["done"] == 200
    assert len(host_ports(host_ns, "brpwtg")) == 200
    proc = run_pipework("destroy", path, netns=host_ns.name, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "200 attachments: 200 removed" in proc.stderr
    assert set(links(host_ns)) == {"lo"}
    leftovers = [
        n for n in many_netns[::20] if not only_loopback(infra.NetNS(n, f"/run/netns/{n}"))
    ]
    assert leftovers == []


def test_a_batch_of_two_hundred_guests_all_reachable(host_ns, many_netns, run_pipework):
    """``pipework batch`` (its plain options, read without typer) attaches every
    guest, and every guest reaches the others across the bridge."""
    address = {n: f"198.18.{44 + i // 200}.{i % 200 + 2}" for i, n in enumerate(many_netns)}
    text = "".join(f"brpwtb netns:{n} {address[n]}/16\n" for n in many_netns)
    text += "brpwtb netns:pwt-nosuchns 198.18.47.1/16   # fails alone\n"
    proc = run_pipework("batch", "-j", "8", "-", netns=host_ns.name, input=text, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert len(proc.stdout.splitlines()) == 200
    assert "pipework: 201 attachments: 200 created, 1 failed" in proc.stderr
    assert len(host_ports(host_ns, "brpwtb")) == 200
    first = infra.NetNS(many_netns[0], f"/run/netns/{many_netns[0]}")
    for name in many_netns[1::10]:
        first.exec("ping", "-c", "1", "-W", "2", address[name])
    last = infra.NetNS(many_netns[-1], f"/run/netns/{many_netns[-1]}")
    assert addresses(last, "eth1") == [f"{address[many_netns[-1]]}/16"]
    last.exec("ping", "-c", "1", "-W", "2", address[many_netns[0]])


def test_ctrl_c_mid_batch_keeps_what_completed_and_rolls_back_the_rest(
    host_ns, many_netns, tmp_path
):
    guests = many_netns
    text = "".join(f"brpwth netns:{n} 198.18.50.{i + 2}/24\n" for i, n in enumerate(guests))
    argv = [
        "ip",
        "netns",
        "exec",
        host_ns.name,
        sys.executable,
        "-m",
        "pipework",
        "batch",
        "-",
        "--jobs",
        "4",
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=infra.REPO_ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(text)
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not flush it
    first = proc.stdout.readline()  # the first attachment is done: the run is under way
    assert first.startswith("created: "), first
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = [first, *rest.splitlines()]
    assert "interrupted: what was in flight has been rolled back; what completed is kept" in err
    assert len(done) < len(guests)
    # Exactly what was reported is there; every other guest has nothing at all.
    attached = {line.split(" in netns:")[1].split(" ")[0] for line in done}
    assert len(host_ports(host_ns, "brpwth")) == len(attached)
    for name in guests:
        inside = set(links(infra.NetNS(name, f"/run/netns/{name}")))
        assert inside == ({"lo", "eth1"} if name in attached else {"lo"}), name


def test_apply_and_destroy_with_containers(host_ns, make_container, run_pipework, tmp_path):
    web, db = make_container(), make_container()
    path = topology(
        tmp_path,
        f"""\
        bridges: [{{name: brpwtk}}]
        defaults: {{host: brpwtk}}
        attachments:
          - {{guest: {web.name}, address: 198.18.36.2/24, mac: U:web}}
          - {{guest: {db.name}, address: 198.18.36.3/24, routes: [198.18.37.0/24 via 198.18.36.1]}}
        """,
    )
    proc = run_pipework("apply", path, netns=host_ns.name)
    assert proc.returncode == 0, proc.stderr
    assert sorted(line.split(" (")[0] for line in proc.stdout.splitlines()) == sorted(
        [
            "created: bridge brpwtk",
            f"created: eth1 in {db.name} on bridge brpwtk",
            f"created: eth1 in {web.name} on bridge brpwtk",
        ]
    )
    assert web.exec("ping", "-c", "1", "-W", "2", "198.18.36.3").returncode == 0
    assert "198.18.37.0/24 via 198.18.36.1" in db.exec("ip", "route").stdout
    again = run_pipework("apply", path, "--json", netns=host_ns.name)
    assert [r["attachment"]["status"] for r in results(again)] == ["unchanged", "unchanged"]
    # A container removed meanwhile took its interface with it: nothing to remove there.
    # (The kernel dismantles its namespace, and the veth's host end, asynchronously.)
    db.remove()
    deadline = time.monotonic() + 10
    while len(host_ports(host_ns, "brpwtk")) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc = run_pipework("destroy", path, netns=host_ns.name)
    assert proc.returncode == 0, proc.stderr
    assert f"removed: eth1 in {web.name}" in proc.stdout
    assert f"absent: eth1 in {db.name} (nothing to remove)" in proc.stdout
    assert "eth1" not in links(web) and set(links(host_ns)) == {"lo"}


def test_prune_spares_a_guest_whose_attachment_failed(host_ns, make_netns, run_pipework, tmp_path):
    a = make_netns("a")
    first = topology(
        tmp_path,
        f"""\
        defaults: {{host: brpwtp}}
        attachments:
          - {{guest: netns:{a.name}, address: 198.18.38.2/24}}
          - {{guest: netns:{a.name}, ifname: eth2, address: 198.18.39.2/24}}
        """,
    )
    assert run_pipework("apply", first, netns=host_ns.name).returncode == 0
    # eth1 now differs (refused without --force) and eth2 is no longer named.
    second = topology(
        tmp_path,
        f"defaults: {{host: brpwtp}}\nattachments:\n  - {{guest: netns:{a.name}, address: 198.18.38.9/24}}\n",
        "second.yaml",
    )
    proc = run_pipework("apply", second, "--prune", netns=host_ns.name)
    assert proc.returncode == 7
    # Which interface the failed attachment meant is unknown: nothing of that guest is pruned.
    assert {"eth1", "eth2"} <= set(links(a))
    assert addresses(a, "eth1") == ["198.18.38.2/24"]
    proc = run_pipework("apply", second, "--prune", "--force", netns=host_ns.name)
    assert proc.returncode == 0, proc.stderr
    assert "eth2" not in links(a) and addresses(a, "eth1") == ["198.18.38.9/24"]


def test_an_open_vswitch_bridge_in_a_topology(ovs, host_ns, make_netns, run_pipework, tmp_path):
    a, b = make_netns("a"), make_netns("b")
    path = topology(
        tmp_path,
        f"""\
        bridges:
          - {{name: ovspwta, kind: ovs, options: {{datapath_type: netdev}}}}
        defaults: {{host: ovspwta, vlan: 12}}
        attachments:
          - {{guest: netns:{a.name}, address: 198.18.74.2/24}}
          - {{guest: netns:{b.name}, address: 198.18.74.3/24}}
        """,
    )
    plan = run_pipework("apply", path, "--plan", netns=host_ns.name)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[0].startswith(
        ". deferred  bridge ovspwta (made with its first port)"
    )
    assert ovs.bridges() == []
    first = run_pipework("apply", path, netns=host_ns.name)
    assert first.returncode == 0, first.stderr
    assert ovs.get("Bridge", "ovspwta", "datapath_type") == "netdev"
    assert sorted(ovs.get("Port", p, "tag") for p in ovs.ports("ovspwta")) == [12, 12]
    assert infra.ping(a, "198.18.74.3")
    again = run_pipework("apply", path, "--json", netns=host_ns.name)
    assert [r["attachment"]["status"] for r in results(again)] == ["unchanged", "unchanged"]
    gone = run_pipework("destroy", path, netns=host_ns.name)
    assert gone.returncode == 0, gone.stderr
    # The OVS backend removes a bridge it made with its last port.
    assert ovs.bridges() == [] and only_loopback(a) and only_loopback(b)


def test_a_terminal_gets_a_progress_bar(host_ns, make_netns):
    """stdout a terminal: rich's bar (cursor control, the count), results above it."""
    import pty

    a = make_netns("a")
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", host_ns.name, sys.executable, "-m", "pipework", "batch", "-"],
            input=f"brpwtt netns:{a.name} 198.18.75.2/24\n".encode(),
            stdout=secondary,
            stderr=subprocess.PIPE,
            cwd=infra.REPO_ROOT,
            env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
            timeout=60,
            check=False,
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if secondary >= 0:
            os.close(secondary)
        os.close(primary)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" in shown and "1/1" in shown and "100%" in shown
    assert f"created: eth1 in netns:{a.name} on bridge brpwtt" in shown
    assert b"1 attachment: 1 created" in proc.stderr
