"""Two pipework processes racing on one host-shared resource (engine/locks.py).

Each round gives two worker processes (``support/engine_worker.py``, each
its own ``Engine``, started once) a request each at the same moment, so
both run their check-then-act on the same bridge, firewall rule, OVS
bridge or ``PARENT.VID`` together. The tests never assert that a race
happened, only the end state: every attachment whole, and after the
detaches nothing left. Run with ``-s`` to see each test's summary.

Without the cross-process locks these fail: two ``--allow-forward``
attaches each add a rule (two copies), and an attach that finds an empty
bridge pipework made loses it to the other process's prune before its port
is in (docs/ARCHITECTURE.md, "Locks").
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from support import infra, kernel
from support.checks import forward_rules, links, only_loopback

from pipework.engine import BRIDGE_MARKER

pytestmark = pytest.mark.integration

ROUNDS = 15
WORKER = Path(__file__).resolve().parent.parent / "support" / "engine_worker.py"


class Worker:
    """One pipework process (its own Engine) playing the host ``host``."""

    def __init__(self, host: infra.NetNS) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), host.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=infra.REPO_ROOT,
        )
        assert self.answer() == "ready"

    def send(self, **request: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            raise AssertionError(f"the worker died: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        said = json.loads(line)
        assert said["ok"], said["error"]
        return str(said["result"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def workers(host_ns: infra.NetNS) -> Iterator[tuple[Worker, Worker]]:
    pair: list[Worker] = []
    try:
        pair = [Worker(host_ns), Worker(host_ns)]
        yield pair[0], pair[1]
    finally:
        for worker in pair:
            worker.close()


def together(*jobs: tuple[Worker, dict[str, Any]]) -> list[str]:
    """Give each worker its request at once (each is waiting on its stdin)."""
    for worker, request in jobs:
        worker.send(**request)
    return [worker.answer() for worker, _ in jobs]


def attach(host: str, guest: infra.NetNS, address: str = "0/0", **kw: Any) -> dict[str, Any]:
    return {"op": "attach", "host": host, "guest": f"netns:{guest.name}", "address": address, **kw}


def detach(guest: infra.NetNS) -> dict[str, Any]:
    return {"op": "detach", "guest": f"netns:{guest.name}", "prune": True}


def ports(host: infra.NetNS, bridge: str) -> list[str]:
    return sorted(name for name, link in links(host).items() if link.get("master") == bridge)


def left_behind(host: infra.NetNS, guests: Sequence[infra.NetNS]) -> list[str]:
    extra = sorted(set(links(host)) - {"lo"})
    extra += [g.name for g in guests if not only_loopback(g)]
    return extra


# -- (a) --allow-forward on one new Linux bridge ----------------------------------------


@pytest.fixture
def dropping(trapped_host, make_netns, workers):
    """A host whose FORWARD policy drops, two guests, two workers."""
    trapped_host.exec("iptables", "-P", "FORWARD", "DROP")
    return trapped_host, make_netns("a"), make_netns("b"), *workers


def test_two_allow_forward_attaches_on_a_new_bridge_then_two_detaches(dropping):
    host, a, b, one, two = dropping
    bridge = "brpwtlk1"
    for round_ in range(ROUNDS):
        said = together(
            (one, attach(bridge, a, "198.18.76.1/24", allow_forward=True)),
            (two, attach(bridge, b, "198.18.76.2/24", allow_forward=True)),
        )
        assert said == ["created", "created"], (round_, said)
        assert len(forward_rules(host)) == 1, (round_, forward_rules(host))
        assert links(host)[bridge].get("ifalias") == BRIDGE_MARKER
        assert len(ports(host, bridge)) == 2
        assert infra.ping(a, "198.18.76.2", timeout=2), round_
        assert infra.ping(b, "198.18.76.1", timeout=2), round_
        said = together((one, detach(a)), (two, detach(b)))
        assert said == ["detached 1", "detached 1"], (round_, said)
        assert forward_rules(host) == [], (round_, forward_rules(host))
        assert left_behind(host, [a, b]) == [], round_
    print(f"\n{ROUNDS} rounds: two --allow-forward attaches, then two detaches: all whole")


def test_an_attach_while_the_last_user_leaves_with_prune(dropping):
    """The bridge pipework made, and its rule, are empty for a moment: the
    joining attach either finds them kept or makes them anew, never loses
    them halfway to the other process's prune."""
    host, a, b, one, two = dropping
    bridge = "brpwtlk2"
    for round_ in range(ROUNDS):
        assert together((one, attach(bridge, a, "198.18.77.1/24", allow_forward=True))) == [
            "created"
        ]
        said = together(
            (one, detach(a)), (two, attach(bridge, b, "198.18.77.2/24", allow_forward=True))
        )
        assert said == ["detached 1", "created"], (round_, said)
        # Whole: b's port is on the bridge, which is up, and traffic across it is accepted.
        assert only_loopback(a), round_
        assert "UP" in links(b)["eth1"]["flags"]
        assert len(ports(host, bridge)) == 1, (round_, ports(host, bridge))
        assert "UP" in links(host)[bridge]["flags"]
        assert len(forward_rules(host)) == 1, (round_, forward_rules(host))
        assert together((two, detach(b))) == ["detached 1"]
        assert forward_rules(host) == [] and left_behind(host, [a, b]) == [], round_
    print(f"\n{ROUNDS} rounds: an attach while the last user leaves with prune: all whole")


# -- (b) one PARENT.VID shared by two macvlan children -----------------------------------


def test_two_attaches_on_one_vlan_sub_interface_then_two_detaches(host_ns, make_netns, workers):
    """Needs 8021q: without it tests/unit/backends/links/test_vlan_locks.py
    runs the same race on the fake kernel."""
    kernel.require("vlan")
    kernel.require("macvlan")
    host = host_ns
    host.exec("ip", "link", "add", "pwtlkp0", "type", "veth", "peer", "name", "pwtlkp1")
    host.exec("ip", "link", "set", "pwtlkp0", "up")
    a, b = make_netns("a"), make_netns("b")
    one, two = workers
    for round_ in range(ROUNDS):
        said = together(
            (one, attach("pwtlkp0", a, "198.18.78.1/24", vlan=10)),
            (two, attach("pwtlkp0", b, "198.18.78.2/24", vlan=10)),
        )
        assert said == ["created", "created"], (round_, said)
        sub = json.loads(host.exec("ip", "-j", "-d", "link", "show", "pwtlkp0.10").stdout)[0]
        assert sub.get("ifalias") == BRIDGE_MARKER
        assert len([n for n in sub.get("altnames", []) if n.startswith("pw-")]) == 2
        assert infra.ping(a, "198.18.78.2", timeout=2), round_
        said = together((one, detach(a)), (two, detach(b)))
        assert said == ["detached 1", "detached 1"], (round_, said)
        assert "pwtlkp0.10" not in links(host), round_
        # The one joining while the last leaves: whole, then gone with it.
        assert together((one, attach("pwtlkp0", a, vlan=10))) == ["created"]
        said = together((one, detach(a)), (two, attach("pwtlkp0", b, vlan=10)))
        assert said == ["detached 1", "created"], (round_, said)
        sub = json.loads(host.exec("ip", "-j", "-d", "link", "show", "pwtlkp0.10").stdout)[0]
        assert len([n for n in sub.get("altnames", []) if n.startswith("pw-")]) == 1
        assert together((two, detach(b))) == ["detached 1"]
        assert "pwtlkp0.10" not in links(host), round_
    print(f"\n{ROUNDS} rounds: two attaches on one PARENT.VID, then two detaches: all whole")


# -- (c) one new Open vSwitch bridge ---------------------------------------------------------


def test_two_attaches_making_one_ovs_bridge_then_detach_and_prune(
    ovs, host_ns, make_netns, workers
):
    host = host_ns
    a, b = make_netns("a"), make_netns("b")
    one, two = workers
    bridge = "ovspwtlk"
    for round_ in range(ROUNDS):
        said = together(
            (one, attach(bridge, a, "198.18.79.1/24")), (two, attach(bridge, b, "198.18.79.2/24"))
        )
        assert said == ["created", "created"], (round_, said)
        assert ovs.bridges() == [bridge] and len(ovs.ports(bridge)) == 2, round_
        assert ovs.external_ids("Bridge", bridge).get("pipework") == "auto-created"
        assert infra.ping(a, "198.18.79.2", timeout=2), round_
        # One detaches (its port only), the other detaches and prunes: at once.
        said = together(
            (one, {"op": "detach", "guest": f"netns:{a.name}"}),
            (two, detach(b)),
        )
        assert said == ["detached 1", "detached 1"], (round_, said)
        # Whoever went last saw the bridge empty; if that was the one that
        # does not prune, the bridge stays: then prune it as `destroy` does.
        if ovs.bridges():
            assert ovs.ports(bridge) == [], round_
            assert together((one, {"op": "release_host", "kind": "ovs", "name": bridge})) == [
                "True"
            ]
        assert ovs.bridges() == [] and ovs.all_ports() == [], round_
        assert left_behind(host, [a, b]) == [], round_
        # The one joining while the last leaves and prunes: whole.
        assert together((one, attach(bridge, a))) == ["created"]
        said = together((one, detach(a)), (two, attach(bridge, b, "198.18.79.2/24")))
        assert said == ["detached 1", "created"], (round_, said)
        assert ovs.bridges() == [bridge] and len(ovs.ports(bridge)) == 1, round_
        assert "UP" in links(b)["eth1"]["flags"] and only_loopback(a)
        assert together((two, detach(b))) == ["detached 1"]
        assert ovs.bridges() == [] and left_behind(host, [a, b]) == [], round_
    print(f"\n{ROUNDS} rounds: two attaches making one OVS bridge, detach + prune: all whole")
