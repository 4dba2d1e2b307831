"""A guest is not trusted: what it writes in its own namespace (the markers
in its interfaces' aliases) changes nothing outside it.

A guest with CAP_NET_ADMIN in its namespace (here: root writing into a test
namespace, which is the same thing) writes forged, malformed and hostile
markers. ``ls``, ``gc``, ``detach``, a re-run with ``--force``, ``apply
--prune`` and ``destroy`` then run against it; the host's interfaces,
addresses, routes, rules, firewall and RUN_DIR must be exactly as before,
a legitimate neighbour's attachment whole, and no command may print a
traceback. The property-based part writes a few thousand aliases.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import infra
from support.checks import links, one_line_error
from support.ovs import PrivateOvs

from pipework import Engine
from pipework.engine import PipeworkError

pytestmark = pytest.mark.integration

BRIDGE = "brpwthg"
OVS_BRIDGE = "ovspwthg"
NIC = "pwthnic0"
EVIL_IFS = ("x0", "x1", "eth1", "lan0")
"""The guest's own interfaces (veth ends whose peers stay in the guest)."""
EXAMPLES = int(os.environ.get("PIPEWORK_HOSTILE_EXAMPLES", "750"))


def host_state(ns: infra.NetNS, run_dir: Path, ovs: PrivateOvs | None = None) -> dict[str, object]:
    """Everything of the host a guest's words could change."""

    def j(*argv: str) -> object:
        return json.loads(ns.exec(*argv).stdout or "[]")

    link_view = [
        {k: entry.get(k) for k in ("ifname", "ifalias", "master", "address", "flags", "mtu")}
        for entry in j("ip", "-j", "-d", "link")  # type: ignore[union-attr]
    ]
    # Link-local IPv6 comes and goes by itself (DAD, a port going up): the
    # rest is compared whole.
    addresses = sorted(
        f"{entry['ifname']} {a['local']}/{a['prefixlen']}"
        for entry in j("ip", "-j", "addr")  # type: ignore[union-attr]
        for a in entry.get("addr_info", [])
        if a.get("scope") != "link"
    )
    routes = sorted(
        json.dumps({k: v for k, v in r.items() if k not in ("expires", "flags")}, sort_keys=True)
        for r in j("ip", "-j", "route", "show", "table", "all")  # type: ignore[union-attr]
        if not str(r.get("dst", "")).startswith(("fe80", "ff00", "ff02"))
        and not (r.get("type") in ("local", "multicast") and ":" in str(r.get("dst", "")))
    )
    return {
        "links": sorted(link_view, key=lambda e: str(e["ifname"])),
        "addresses": addresses,
        "routes": routes,
        "rules": j("ip", "-j", "rule"),
        "ip6rules": j("ip", "-6", "-j", "rule"),
        "iptables": [
            re.sub(r"\[\d+:\d+\]", "", line)
            for line in ns.exec("iptables-save").stdout.splitlines()
            if not line.startswith("#")
        ]
        if shutil.which("iptables-save")
        else [],
        "ovs": ovs.vsctl("show").stdout if ovs is not None else "",
        "run_dir": sorted(
            str(p.relative_to(run_dir))
            for p in run_dir.rglob("*")
            if p.relative_to(run_dir).parts[0] != "locks"
        ),
    }


@pytest.fixture
def lab(
    host_ns: infra.NetNS, make_netns, run_pipework, tmp_path: Path, ovs: PrivateOvs
) -> Iterator[dict]:
    """A host (host_ns) with a bridge, an Open vSwitch bridge, a spare NIC,
    and neighbours attached to each (one with --allow-forward); and the
    hostile guest ``evil`` with interfaces of its own."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = dict(os.environ, PIPEWORK_RUN_DIR=str(run_dir))
    host_ns.exec("ip", "link", "add", NIC, "type", "veth", "peer", "name", "pwthnicp")
    victim = make_netns("v")
    result = run_pipework(
        BRIDGE, f"netns:{victim.name}", "198.18.130.2/24", "--allow-forward",
        netns=host_ns.name, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    host_ns.exec("ip", "addr", "add", "198.18.130.1/24", "dev", BRIDGE)
    neighbour = make_netns("o")
    result = run_pipework(
        OVS_BRIDGE, f"netns:{neighbour.name}", "198.18.133.2/24", "@7", netns=host_ns.name, env=env
    )
    assert result.returncode == 0, result.stderr
    evil = make_netns("e")
    yield {"victim": victim, "evil": evil, "env": env, "run_dir": run_dir, "ovs": ovs}


def names_in(ns: infra.NetNS) -> set[str]:
    """Interface names, whatever bytes the guest put in their aliases."""
    out = subprocess.run(
        ["ip", "-n", ns.name, "-j", "link"], check=True, capture_output=True
    ).stdout.decode(errors="replace")
    return {entry["ifname"] for entry in json.loads(out, strict=False)}


def evil_interfaces(evil: infra.NetNS) -> None:
    """(Re)make the guest's own interfaces (a detach may delete them: they are
    the guest's, inside the guest)."""
    present = names_in(evil)
    for i in range(0, len(EVIL_IFS), 2):
        a, b = EVIL_IFS[i], EVIL_IFS[i + 1]
        if a in present and b in present:
            continue
        for name in (a, b):
            if name in present:
                evil.exec("ip", "link", "del", name)
        evil.exec("ip", "link", "add", a, "type", "veth", "peer", "name", b)


def write_alias(evil: infra.NetNS, ifname: str, alias: bytes) -> None:
    # bytes argv: a guest may write any bytes (but NUL) into an alias.
    subprocess.run(
        [
            b"ip",
            b"-n",
            evil.name.encode(),
            b"link",
            b"set",
            b"dev",
            ifname.encode(),
            b"alias",
            alias,
        ],
        check=True,
        capture_output=True,
    )


def marker_alias(**fields: str) -> bytes:
    return ("pipework " + " ".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())).encode()


def victim_host_side(host_ns: infra.NetNS) -> str:
    (name,) = [n for n, e in links(host_ns).items() if e.get("master") == BRIDGE]
    return name


def victim_whole(lab: dict, host_ns: infra.NetNS) -> None:
    victim = lab["victim"]
    assert "eth1" in links(victim)
    assert infra.ping(host_ns, "198.18.130.2")


# -- the reproductions ---------------------------------------------------------------


def test_a_forged_phys_marker_moves_nothing_into_the_host(lab, host_ns, run_pipework):
    evil = lab["evil"]
    evil_interfaces(evil)
    write_alias(
        evil, "x0",
        marker_alias(guest=f"netns:{evil.name}", ifname="x0", kind="phys", host="pwned0",
                     cfg="0", state="02:00:00:00:00:42,up"),
    )  # fmt: skip
    before = host_state(host_ns, lab["run_dir"], lab["ovs"])
    result = run_pipework(
        "detach", f"netns:{evil.name}", "--all", netns=host_ns.name, env=lab["env"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing to detach"), result.stdout
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("pipework: WARNING: x0 in ") and "no record" in warning, warning
    assert "left alone" in warning
    assert host_state(host_ns, lab["run_dir"], lab["ovs"]) == before
    assert "pwned0" not in links(host_ns) and "x0" in links(evil)
    # Naming it is an error, in one line, and still nothing moves.
    named = run_pipework(
        "detach", f"netns:{evil.name}", "-i", "x0", netns=host_ns.name, env=lab["env"]
    )
    one_line_error(named, 7, "carries a pipework marker (phys pwned0), but the host has no record")
    assert host_state(host_ns, lab["run_dir"], lab["ovs"]) == before
    # ls shows it, as unverified.
    listed = run_pipework("ls", "--json", f"netns:{evil.name}", netns=host_ns.name, env=lab["env"])
    (record,) = json.loads(listed.stdout)["attachments"]
    assert (record["ifname"], record["state"]) == ("x0", "unverified")
    table = run_pipework("ls", f"netns:{evil.name}", netns=host_ns.name, env=lab["env"])
    assert "UNVERIFIED" in table.stdout


def test_a_forged_marker_naming_a_neighbours_host_side_leaves_it(lab, host_ns, run_pipework):
    evil = lab["evil"]
    evil_interfaces(evil)
    (port,) = lab["ovs"].ports(OVS_BRIDGE)
    claims = [
        ("bridge", BRIDGE, victim_host_side(host_ns)),
        ("ovs", BRIDGE, victim_host_side(host_ns)),
        ("ovs", OVS_BRIDGE, port),
        ("bridge", OVS_BRIDGE, port),
    ]
    for kind, bridge, target in claims:
        write_alias(
            evil, "eth1",
            marker_alias(guest=f"netns:{evil.name}", ifname="eth1", kind=kind, host=bridge,
                         hostif=target, cfg="0", state="forward"),
        )  # fmt: skip
        before = host_state(host_ns, lab["run_dir"], lab["ovs"])
        result = run_pipework(
            "detach", f"netns:{evil.name}", "--all", netns=host_ns.name, env=lab["env"]
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert f"the host has no host side {target} marked for it" in result.stderr
        assert host_state(host_ns, lab["run_dir"], lab["ovs"]) == before
        victim_whole(lab, host_ns)


def test_a_forged_marker_is_not_replaced_with_force(lab, host_ns, run_pipework):
    """A re-run that would replace the interface (another configuration with
    --force, or the same one found broken) acts on the host because of the
    marker: refused, and nothing changes."""
    evil = lab["evil"]
    evil_interfaces(evil)
    write_alias(
        evil, "eth1",
        marker_alias(guest=f"netns:{evil.name}", ifname="eth1", kind="phys", host=NIC,
                     cfg="0", state="02:00:00:00:00:42,up"),
    )  # fmt: skip
    before = host_state(host_ns, lab["run_dir"], lab["ovs"])
    result = run_pipework(
        BRIDGE,
        f"netns:{evil.name}",
        "198.18.130.9/24",
        "--force",
        netns=host_ns.name,
        env=lab["env"],
    )
    one_line_error(result, 7, "eth1 in ")
    assert "carries a pipework marker, but the host has no record" in result.stderr
    assert host_state(host_ns, lab["run_dir"], lab["ovs"]) == before
    assert "eth1" in links(evil)


def test_a_nic_that_comes_home_with_a_forged_marker_is_left_alone(lab, host_ns, run_pipework):
    """What gc finds on the host carrying a guest-side marker (a NIC the
    kernel returned when its guest died) is restored only against the host's
    record: here there is none (the alias is the guest's)."""
    host_ns.exec("ip", "link", "set", "pwthnicp", "alias", marker_alias(
        guest="netns:gone", ifname="lan0", kind="phys", host="eth0", cfg="0",
        state="02:00:00:00:00:42,up",
    ).decode())  # fmt: skip
    before = host_state(host_ns, lab["run_dir"], lab["ovs"])
    for argv in (("gc", "--dry-run"), ("gc",)):
        result = run_pipework(*argv, netns=host_ns.name, env=lab["env"])
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert (
            "pwthnicp" in result.stdout + result.stderr
            and "left alone" in result.stdout + result.stderr
        )
        assert host_state(host_ns, lab["run_dir"], lab["ovs"]) == before
    host_ns.exec("ip", "link", "set", "pwthnicp", "alias", "")


def test_a_genuine_nic_passed_through_still_comes_back(lab, host_ns, make_netns, run_pipework):
    """The other side of the record: the real thing verifies, and detach
    restores the name, MAC and state the host recorded, not the marker's."""
    guest = make_netns("p")
    host_ns.exec("ip", "link", "set", NIC, "up")
    mac = links(host_ns)[NIC]["address"]
    result = run_pipework(
        "--direct-phys", NIC, "-i", "lan0", f"netns:{guest.name}", "198.18.131.2/24",
        netns=host_ns.name, env=lab["env"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert NIC not in links(host_ns)
    assert [p.parent.name for p in lab["run_dir"].rglob("*") if p.is_file()] == ["phys"]
    # The guest rewrites its marker: another name, another MAC for the host.
    alias = links(guest)["lan0"]["ifalias"]
    forged = alias.replace(f"host={NIC}", "host=pwned0").replace(
        quote(mac, safe=""), quote("02:00:00:00:00:42", safe="")
    )
    write_alias(guest, "lan0", forged.encode())
    out = run_pipework(
        "detach", f"netns:{guest.name}", "-i", "lan0", netns=host_ns.name, env=lab["env"]
    )
    assert out.returncode == 0, out.stderr
    back = links(host_ns)
    assert "pwned0" not in back and back[NIC]["address"] == mac and "UP" in back[NIC]["flags"]
    assert not [p for p in lab["run_dir"].rglob("*") if p.is_file()]


def test_apply_prune_and_destroy_leave_forged_interfaces_and_the_host_alone(
    lab, host_ns, run_pipework, tmp_path
):
    evil = lab["evil"]
    evil_interfaces(evil)
    target = victim_host_side(host_ns)
    for ifname, kind, hostif in (
        ("x0", "phys", ""),
        ("eth1", "bridge", target),
        ("lan0", "macvlan", ""),
    ):
        write_alias(
            evil, ifname,
            marker_alias(guest=f"netns:{evil.name}", ifname=ifname, kind=kind, host=BRIDGE,
                         hostif=hostif, cfg="0", state="forward"),
        )  # fmt: skip
    topology = tmp_path / "lab.yaml"
    topology.write_text(
        "version: 1\n"
        f"bridges: [{{name: {BRIDGE}}}]\n"
        "attachments:\n"
        f"  - {{guest: 'netns:{evil.name}', host: {BRIDGE}, ifname: eth2, address: 198.18.130.7/24}}\n"
    )
    before_links = set(links(host_ns))
    applied = run_pipework("apply", "--prune", str(topology), netns=host_ns.name, env=lab["env"])
    assert applied.returncode == 0 and "Traceback" not in applied.stderr, applied.stderr
    destroyed = run_pipework("destroy", str(topology), netns=host_ns.name, env=lab["env"])
    assert destroyed.returncode == 0 and "Traceback" not in destroyed.stderr, destroyed.stderr
    assert set(links(host_ns)) == before_links
    assert {"x0", "eth1", "lan0"} <= set(links(evil))
    victim_whole(lab, host_ns)


# -- property-based: a few thousand hostile aliases ------------------------------------


def _fields(evil: str, host_names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    text = st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
    )
    pick = lambda *options: st.one_of(st.sampled_from(options), text)  # noqa: E731
    return st.fixed_dictionaries(
        {
            "guest": pick(
                f"netns:{evil}", "netns:victim", "/dev/null", "/run/netns/x", "pid:1", ""
            ),
            "ifname": st.sampled_from(EVIL_IFS) | text,
            "kind": pick("bridge", "ovs", "phys", "macvlan", "ipvlan", "ipoib", "dummy"),
            "host": st.sampled_from(host_names) | text,
            "hostif": st.sampled_from(["", *host_names]) | text,
            "addr": pick("static", "dhclient", "udhcpc-f", "dhcpcd", "dhcp"),
            "cfg": pick("0", "1"),
            "state": pick("", "forward", "vlan=5", f"{NIC}.5", "02:00:00:00:00:42,up"),
            "vlan": pick("", "5", "\u00b2", "99999999999999999999"),
        },
        optional={"junk": text},
    )


def _alias(evil: str, host_names: list[str]) -> st.SearchStrategy[bytes]:
    structured = _fields(evil, host_names).map(lambda f: marker_alias(**f))
    raw = st.binary(max_size=255).map(lambda b: b.replace(b"\x00", b""))
    prefixed = raw.map(lambda b: b"pipework " + b)
    return st.one_of(structured, structured, prefixed, raw).map(lambda b: b[:255])


def test_hostile_markers_change_nothing_outside_the_guest(lab, host_ns):
    evil = lab["evil"]
    run_dir = lab["run_dir"]
    host_names = sorted(links(host_ns)) + lab["ovs"].all_ports()
    before = host_state(host_ns, run_dir, lab["ovs"])
    seen = {"aliases": 0, "refused": 0}
    refusals: set[str] = set()

    async def exercise() -> None:
        async with Engine(host_netns=host_ns.path, run_dir=str(run_dir)) as engine:
            for call in (
                lambda: engine.list_attachments(f"netns:{evil.name}"),
                lambda: engine.detach(f"netns:{evil.name}", prune_bridges=True),
            ):
                try:
                    await call()
                except PipeworkError as exc:
                    seen["refused"] += 1
                    refusals.add(str(exc))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(_alias(evil.name, host_names), min_size=len(EVIL_IFS), max_size=len(EVIL_IFS)))
    def one_round(aliases: list[bytes]) -> None:
        evil_interfaces(evil)
        for ifname, alias in zip(EVIL_IFS, aliases, strict=True):
            write_alias(evil, ifname, alias)
            seen["aliases"] += 1
        anyio.run(exercise)
        assert set(links(host_ns)) == {e["ifname"] for e in before["links"]}  # type: ignore[index, union-attr]

    one_round()

    # A whole-host look too: ls and gc of everything, as the CLI runs them.
    async def whole() -> None:
        async with Engine(host_netns=host_ns.path, run_dir=str(run_dir)) as engine:
            await engine.list_attachments()
            report = await engine.gc()
            assert not report.items, report

    evil_interfaces(evil)
    anyio.run(whole)
    after = host_state(host_ns, run_dir, lab["ovs"])
    assert {k: v for k, v in after.items() if before[k] != v} == {}, before
    victim_whole(lab, host_ns)
    print(
        f"\nhostile aliases written: {seen['aliases']}; refusals: {seen['refused']}; "
        "host-side changes: none"
    )
    for line in sorted(refusals):
        print("  refused:", line)
