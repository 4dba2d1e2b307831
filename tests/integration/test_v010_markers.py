"""Attachments pipework 0.1.0 made are still recognised: ls, an unchanged
re-run, detach and gc, through the CLI in fresh processes, against the real
kernel (a test namespace plays the host).

An attachment is made with today's code, then its markers are rewritten
exactly as 0.1.0 writes them: 0.1.0 wrote the same fields, and its ``cfg``
is ``compat.fingerprint_v1`` (frozen; tests/unit/engine/test_compat.py checks it
against aliases 0.1.0 itself produced). The requests below all use a
setting 0.1.0 fingerprinted in a place of its own (``--direct-phys``,
``--allow-forward``, ``--pkey``, ``--dns``), so today's fingerprint differs
and only the compatibility path can recognise them.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace

import pytest
from support import infra
from support.checks import links, only_loopback

from pipework.apps.grammar import parse_legacy
from pipework.engine.compat import fingerprint_v1
from pipework.engine.marker import Marker

pytestmark = pytest.mark.integration


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def alias_of(ns: infra.NetNS, ifname: str) -> Marker:
    marker = Marker.parse(links(ns)[ifname].get("ifalias"))
    assert marker is not None, links(ns)[ifname]
    return marker


def write_v010(ns: infra.NetNS, ifname: str, argv: list[str]) -> str:
    """Rewrite ``ifname``'s marker as 0.1.0 wrote it for the command line ``argv``;
    returns the 0.1.0 ``cfg``."""
    now = alias_of(ns, ifname)
    old_cfg = fingerprint_v1(parse_legacy(argv), now.kind, now.host)
    assert old_cfg != now.cfg  # a setting in its own 0.1.0 place: only compat matches it
    ns.exec("ip", "link", "set", "dev", ifname, "alias", replace(now, cfg=old_cfg).format())
    assert alias_of(ns, ifname).cfg == old_cfg
    return old_cfg


def ls_json(run_pipework, host_ns: infra.NetNS, guest: infra.NetNS) -> list[dict]:
    records = json.loads(ok(run_pipework("ls", "--json", netns=host_ns.name)))["attachments"]
    return [r for r in records if r["guest"]["key"] == f"netns:{guest.name}"]


def host_side_of(host_ns: infra.NetNS, bridge: str) -> str:
    ports = [name for name, link in links(host_ns).items() if link.get("master") == bridge]
    assert len(ports) == 1, ports
    return ports[0]


def test_a_0_1_0_bridge_attachment_lists_reruns_unchanged_and_detaches(
    host_ns, make_netns, run_pipework
):
    guest = make_netns("g")
    argv = [
        "brpwtv1", f"netns:{guest.name}", "198.18.90.2/24@198.18.90.1", "U:v1",
        "--allow-forward", "--mtu", "1400",
    ]  # fmt: skip
    ok(run_pipework(*argv, netns=host_ns.name))
    host_side = host_side_of(host_ns, "brpwtv1")
    old_cfg = write_v010(guest, "eth1", argv)
    assert write_v010(host_ns, host_side, argv) == old_cfg
    assert alias_of(host_ns, host_side).state == "fwd"

    [record] = ls_json(run_pipework, host_ns, guest)
    assert (record["ifname"], record["kind"], record["host"], record["host_ifname"]) == (
        "eth1",
        "bridge",
        "brpwtv1",
        host_side,
    )
    assert record["vlan"] is None and record["state"] == "attached" and record["dhcp"] is None
    assert record["addresses"] == ["198.18.90.2/24"]

    again = json.loads(ok(run_pipework("--json", *argv, netns=host_ns.name)))
    assert again["status"] == "unchanged" and again["host_ifname"] == host_side
    assert alias_of(guest, "eth1").cfg == old_cfg  # a re-run leaves the marker as it is
    # Another configuration is still another configuration.
    other = run_pipework(*argv[:-2], netns=host_ns.name)
    assert other.returncode == 7, (other.stdout, other.stderr)
    assert "attached with another configuration" in other.stderr

    out = ok(run_pipework("detach", f"netns:{guest.name}", "--all", netns=host_ns.name))
    assert out.startswith(f"detached: eth1 from netns:{guest.name}")
    assert only_loopback(guest) and host_side not in links(host_ns)
    assert ls_json(run_pipework, host_ns, guest) == []


def test_a_0_1_0_direct_phys_attachment_reruns_unchanged_and_gives_the_nic_back(
    host_ns, make_netns, run_pipework
):
    host_ns.exec("ip", "link", "add", "pwtv1nic", "type", "veth", "peer", "name", "pwtv1nip")
    host_ns.exec("ip", "link", "set", "pwtv1nic", "up")
    original_mac = links(host_ns)["pwtv1nic"]["address"]
    guest = make_netns("g")
    argv = ["--direct-phys", "pwtv1nic", "-i", "lan0", f"netns:{guest.name}", "198.18.91.2/24"]
    ok(run_pipework(*argv, netns=host_ns.name))
    write_v010(guest, "lan0", argv)

    [record] = ls_json(run_pipework, host_ns, guest)
    assert (record["ifname"], record["kind"], record["host"]) == ("lan0", "phys", "pwtv1nic")
    again = json.loads(ok(run_pipework("--json", *argv, netns=host_ns.name)))
    assert again["status"] == "unchanged"

    ok(run_pipework("detach", f"netns:{guest.name}", "-i", "lan0", netns=host_ns.name))
    back = links(host_ns)["pwtv1nic"]
    assert back["address"] == original_mac and not back.get("ifalias")
    assert only_loopback(guest)


def test_gc_removes_a_host_side_a_0_1_0_attachment_left(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    argv = ["brpwtv1gc", f"netns:{guest.name}", "0/0", "U:v1gc", "--allow-forward"]
    ok(run_pipework(*argv, netns=host_ns.name))
    host_side = host_side_of(host_ns, "brpwtv1gc")
    write_v010(guest, "eth1", argv)
    write_v010(host_ns, host_side, argv)
    # The guest goes away, its namespace held by an fd only: the veth pair
    # survives, its host side an orphan with a 0.1.0 marker.
    held = os.open(guest.path, os.O_RDONLY)
    try:
        infra.run(["ip", "netns", "del", guest.name])
        records = json.loads(ok(run_pipework("ls", "--json", netns=host_ns.name)))
        orphans = [r for r in records["attachments"] if r["state"] == "orphan"]
        assert [(r["host_ifname"], r["ifname"], r["vlan"]) for r in orphans] == [
            (host_side, "eth1", None)
        ]
        out = ok(run_pipework("gc", netns=host_ns.name))
        assert f"removed: host side {host_side}" in out
        assert host_side not in links(host_ns)
        assert ok(run_pipework("gc", netns=host_ns.name)).strip() == "nothing to collect"
    finally:
        os.close(held)
