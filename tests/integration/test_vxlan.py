"""VXLAN across two simulated hosts: two test namespaces play the hosts,
joined by a veth underlay (198.18.9.0/24); guests on each side share one
segment through a VXLAN interface (``--kind vxlan``) or through a bridge
with a VXLAN uplink (a topology file's ``bridges: - vxlan:``)."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import infra
from support.checks import links, only_loopback

from pipework import AddressSpec, AttachSpec, Engine
from pipework.engine.errors import HostInterfaceError

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

A_UL, B_UL = "198.18.9.1", "198.18.9.2"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def hosts(make_netns) -> Iterator[tuple[infra.NetNS, infra.NetNS]]:
    """Two "hosts", each with its end of a veth underlay ``ul0``, up."""
    a, b = make_netns("hosta"), make_netns("hostb")
    a.exec("ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", b.name)
    for ns, address in ((a, A_UL), (b, B_UL)):
        ns.exec("ip", "address", "add", f"{address}/24", "dev", "ul0")
        ns.exec("ip", "link", "set", "ul0", "up")
    probe = a.exec("ip", "link", "add", "pwtvxprobe", "type", "vxlan", "id", "1", check=False)
    if probe.returncode != 0:
        pytest.skip(f"this kernel makes no VXLAN interface: {probe.stderr.strip()}")
    a.exec("ip", "link", "del", "pwtvxprobe")
    yield a, b


def vxlan_spec(
    guest: infra.NetNS, ip: str, remote: str, force: bool = False, **options: str
) -> AttachSpec:
    return AttachSpec(
        host="ul0",
        guest=f"netns:{guest.name}",
        kind="vxlan",
        address=AddressSpec.parse(ip),
        options={"vni": "42", "remote": remote, **options},
        force=force,
    )


async def test_two_guests_ping_across_the_tunnel(hosts, make_netns):
    host_a, host_b = hosts
    ga, gb = make_netns("ga"), make_netns("gb")
    before = {ns.name: set(links(ns)) for ns in hosts}
    async with Engine(host_netns=host_a.path) as engine:
        first = await engine.attach(vxlan_spec(ga, "198.18.41.1/24", B_UL))
    async with Engine(host_netns=host_b.path) as engine:
        await engine.attach(vxlan_spec(gb, "198.18.41.2/24", A_UL))
    assert first.mtu == 1450  # ul0's 1500 less 50
    eth1 = links(ga)["eth1"]
    assert eth1["linkinfo"]["info_kind"] == "vxlan" and eth1["mtu"] == 1450
    data = eth1["linkinfo"]["info_data"]
    assert (data["id"], data["remote"], data["port"]) == (42, B_UL, 4789)
    # The socket is the host's: the interface's link-netns is host A's.
    assert "link_netnsid" in eth1
    assert infra.ping(ga, "198.18.41.2") and infra.ping(gb, "198.18.41.1")
    # Nothing new on either host: the interfaces live in the guests.
    assert {ns.name: set(links(ns)) for ns in hosts} == before

    async with Engine(host_netns=host_a.path) as engine:
        again = await engine.attach(vxlan_spec(ga, "198.18.41.1/24", B_UL))
        assert again.status == "unchanged"
        forced = await engine.attach(vxlan_spec(ga, "198.18.41.1/24", B_UL, True, ttl="9"))
        assert forced.status == "replaced"
        assert links(ga)["eth1"]["linkinfo"]["info_data"]["ttl"] == 9
        assert infra.ping(ga, "198.18.41.2")
        listed = await engine.list_attachments(f"netns:{ga.name}")
        assert [(r.kind, r.host, r.state) for r in listed] == [("vxlan", "ul0", "attached")]
        removed = await engine.detach(f"netns:{ga.name}")
        assert [m.kind for m in removed] == ["vxlan"]
    async with Engine(host_netns=host_b.path) as engine:
        await engine.detach(f"netns:{gb.name}")
    assert only_loopback(ga) and only_loopback(gb)
    assert {ns.name: set(links(ns)) for ns in hosts} == before


async def test_force_onto_a_vni_another_interface_holds_keeps_the_old_one(hosts, make_netns):
    """--force to a VNI and port a third interface of the host holds: the
    replacement cannot be made, and the attachment it would replace stays."""
    host_a, _ = hosts
    guest = make_netns("g")
    host_a.exec("ip", "link", "add", "pwtvx42", "type", "vxlan", "id", "42", "dstport", "4789",
                "remote", B_UL)  # fmt: skip
    async with Engine(host_netns=host_a.path) as engine:
        await engine.attach(vxlan_spec(guest, "198.18.41.1/24", B_UL, vni="43"))
        with pytest.raises(HostInterfaceError, match="VNI 42 on UDP port 4789"):
            await engine.attach(vxlan_spec(guest, "198.18.41.1/24", B_UL, True))
        assert links(guest)["eth1"]["linkinfo"]["info_data"]["id"] == 43
        await engine.detach(f"netns:{guest.name}")
    host_a.exec("ip", "link", "del", "pwtvx42")
    assert only_loopback(guest)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("-o", "vni=16777216"), 2, "vxlan vni 16777216 is out of range (0-16777215)"),
        (("-o", "vni=42", "--mtu", "1480"), 6, "MTU 1480 is larger than a vxlan interface"),
        (("-o", "vni=42", "-o", "dev=nope0"), 6, "vxlan underlay nope0 does not exist"),
        (("-o", "vni=42", "-o", "group=239.1.1.42"), 2, "remote or group, not both"),
        (
            (
                "-o",
                "port=4789",
            ),
            2,
            "a vxlan interface needs a VNI",
        ),
    ],
    ids=["vni-range", "mtu-above-underlay", "missing-dev", "remote-and-group", "no-vni"],
)
def test_bad_input_is_one_line_and_leaves_nothing(
    hosts, make_netns, run_pipework, args, code, fragment
):
    host_a, _ = hosts
    guest = make_netns("g")
    before = links(host_a)
    result = run_pipework(
        "ul0", f"netns:{guest.name}", "198.18.41.1/24", "--kind", "vxlan",
        "-o", f"remote={B_UL}", *args, netns=host_a.name,
    )  # fmt: skip
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipework: ") and fragment in lines[0], lines
    assert only_loopback(guest) and links(host_a).keys() == before.keys()


def topology(tmp_path: Path, host: str, remote: str, guests: list[str], first: int) -> str:
    attachments = "".join(
        f"  - {{guest: {name}, address: 198.18.42.{first + i}/24}}\n"
        for i, name in enumerate(guests)
    )
    text = (
        textwrap.dedent(f"""\
        version: 1
        bridges:
          - name: brpwtvx
            vxlan: {{vni: 4242, remote: {remote}, dev: ul0}}
        defaults: {{host: brpwtvx}}
        attachments:
        """)
        + attachments
    )
    path = tmp_path / f"{host}.yaml"
    path.write_text(text)
    return str(path)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bridges_with_vxlan_uplinks_join_four_containers(
    hosts, make_container, run_pipework, tmp_path
):
    host_a, host_b = hosts
    containers = [make_container() for _ in range(4)]
    names = [c.name for c in containers]
    file_a = topology(tmp_path, "a", B_UL, names[:2], 1)
    file_b = topology(tmp_path, "b", A_UL, names[2:], 3)
    before = {ns.name: set(links(ns)) for ns in hosts}

    out = ok(run_pipework("apply", file_a, netns=host_a.name))
    assert out.splitlines()[0] == "created: bridge brpwtvx"
    ok(run_pipework("apply", file_b, netns=host_b.name))
    uplink = links(host_a)["brpwtvx-vx"]
    assert uplink["master"] == "brpwtvx" and uplink["ifalias"] == "pipework vxlan-uplink"
    assert uplink["mtu"] == 1450 and uplink["linkinfo"]["info_data"]["id"] == 4242
    assert links(host_a)["brpwtvx"]["mtu"] == 1450  # the bridge follows its smallest port
    for i, container in enumerate(containers):
        for j in range(4):
            if i != j:
                assert infra.ping(container, f"198.18.42.{j + 1}"), (i, j)

    # Applied again: unchanged, uplink included.
    again = ok(run_pipework("apply", file_a, netns=host_a.name))
    assert all(line.startswith("unchanged: ") for line in again.splitlines()), again
    index = uplink["ifindex"]

    # A changed uplink is reported, refused without --force, replaced with it.
    changed = Path(file_a).read_text().replace("vni: 4242", "vni: 4243")
    Path(file_a).write_text(changed)
    plan = run_pipework("apply", file_a, "--plan", netns=host_a.name).stdout
    assert "vxlan vni 4242 -> 4243" in plan and "needs --force" in plan, plan
    refused = run_pipework("apply", file_a, netns=host_a.name)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
    assert links(host_a)["brpwtvx-vx"]["ifindex"] == index
    ok(run_pipework("apply", file_a, "--force", netns=host_a.name))
    assert links(host_a)["brpwtvx-vx"]["linkinfo"]["info_data"]["id"] == 4243

    # An uplink someone took off the bridge is reported as such, and put back.
    host_a.exec("ip", "link", "set", "brpwtvx-vx", "nomaster")
    plan = run_pipework("apply", file_a, "--plan", netns=host_a.name).stdout
    assert "vxlan uplink off the bridge -> " in plan, plan
    ok(run_pipework("apply", file_a, "--force", netns=host_a.name))
    back = links(host_a)["brpwtvx-vx"]
    assert back["master"] == "brpwtvx" and "UP" in back["flags"]
    assert ok(run_pipework("apply", file_a, netns=host_a.name)).startswith("unchanged: ")

    # destroy takes the uplink with the bridge.
    for ns, path in ((host_a, file_a), (host_b, file_b)):
        ok(run_pipework("destroy", path, netns=ns.name))
    assert {ns.name: set(links(ns)) for ns in hosts} == before
    assert all(set(links(c)) == {"lo"} for c in containers)


def test_a_bridge_mtu_above_its_uplink_is_refused_before_anything(hosts, run_pipework, tmp_path):
    host_a, _ = hosts
    path = tmp_path / "mtu.yaml"
    path.write_text(
        "version: 1\nbridges:\n"
        f"  - {{name: brpwtvx, mtu: 1500, vxlan: {{vni: 1, remote: {B_UL}, dev: ul0}}}}\n"
    )
    before = links(host_a)
    result = run_pipework("apply", str(path), netns=host_a.name)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 6 and len(lines) == 1, result.stderr
    assert "MTU 1500 is larger than bridge brpwtvx's vxlan uplink over ul0 carries" in lines[0]
    assert links(host_a).keys() == before.keys()
