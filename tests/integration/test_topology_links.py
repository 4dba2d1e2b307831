"""Links in topology files and containerlab files, as a user runs them: the
CLI in a subprocess, in a test-owned "host" namespace, against real netns
guests and containers of the private dockerd."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from support import infra
from support.checks import addresses, links, one_line_error, only_loopback, routes

pytestmark = pytest.mark.integration


def write(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def chain(r1: infra.NetNS, r2: infra.NetNS, r3: infra.NetNS, *, second: bool = True) -> str:
    lines = [
        "links:",
        "  - endpoints:",
        f"      - guest: netns:{r1.name}",
        "        ifname: eth1",
        "        address: 198.18.60.1/30",
        "        routes: [198.18.60.4/30 via 198.18.60.2]",
        f"      - {{guest: netns:{r2.name}, ifname: eth1, address: 198.18.60.2/30}}",
        "    mtu: 9000",
    ]
    if second:
        lines += [
            "  - endpoints:",
            f"      - {{guest: netns:{r2.name}, ifname: eth2, address: 198.18.60.5/30}}",
            f"      - guest: netns:{r3.name}",
            "        ifname: eth1",
            "        address: 198.18.60.6/30",
            "        routes: [198.18.60.0/30 via 198.18.60.5]",
        ]
    return "\n".join(lines) + "\n"


def test_a_chain_of_three_routed_through_the_middle(host_ns, make_netns, run_pipework, tmp_path):
    r1, r2, r3 = make_netns("r"), make_netns("r"), make_netns("r")
    r2.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")  # in r2's namespace only
    path = write(tmp_path, chain(r1, r2, r3), "chain.yaml")

    plan = run_pipework("apply", path, "--plan", netns=host_ns.name)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines() == [
        f"+ create    link netns:{r1.name}:eth1 -- netns:{r2.name}:eth1 [{path}:2]",
        f"+ create    link netns:{r2.name}:eth2 -- netns:{r3.name}:eth1 [{path}:9]",
    ]
    assert only_loopback(r1) and only_loopback(r2) and only_loopback(r3)

    first = run_pipework("apply", path, "--json", netns=host_ns.name)
    assert first.returncode == 0, first.stderr
    results = json.loads(first.stdout)["results"]
    assert [(r["job"], r["link"]["status"]) for r in results] == [("link", "created")] * 2
    assert infra.ping(r1, "198.18.60.6") and infra.ping(r3, "198.18.60.1")  # through r2
    assert links(r1)["eth1"]["mtu"] == 9000 and links(r2)["eth1"]["mtu"] == 9000
    assert addresses(r2, "eth2") == ["198.18.60.5/30"]
    assert any(r["dst"] == "198.18.60.4/30" and r["gateway"] == "198.18.60.2" for r in routes(r1))
    assert only_loopback(host_ns)

    before = {ns.name: links(ns) for ns in (r1, r2, r3)}
    second = run_pipework("apply", path, netns=host_ns.name)
    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("unchanged: link ") for line in lines)
    assert "pipework: 2 links: 2 unchanged" in second.stderr
    after = {ns.name: links(ns) for ns in (r1, r2, r3)}
    assert {n: {i: e["ifindex"] for i, e in v.items()} for n, v in after.items()} == {
        n: {i: e["ifindex"] for i, e in v.items()} for n, v in before.items()
    }

    # The file without the second link: --plan, then --prune, remove it (both ends).
    shorter = write(tmp_path, chain(r1, r2, r3, second=False), "short.yaml")
    plan = run_pipework("apply", shorter, "--plan", "--prune", netns=host_ns.name)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[-1].startswith(
        f"- remove    link netns:{r2.name}:eth2 -- netns:{r3.name}:eth1"
    )
    pruned = run_pipework("apply", shorter, "--prune", netns=host_ns.name)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed: link netns:{r2.name}:eth2 -- netns:{r3.name}:eth1" in pruned.stdout
    assert "eth2" not in links(r2) and only_loopback(r3)
    assert infra.ping(r1, "198.18.60.2")

    destroyed = run_pipework("destroy", path, netns=host_ns.name)
    assert destroyed.returncode == 0, destroyed.stderr
    assert only_loopback(r1) and only_loopback(r2) and only_loopback(r3)
    again = run_pipework("destroy", path, netns=host_ns.name)
    assert again.returncode == 0, again.stderr
    assert "absent: link" in again.stdout
    assert only_loopback(host_ns)


def test_an_interface_in_a_link_and_an_attachment_is_refused(
    host_ns, make_netns, run_pipework, tmp_path
):
    r1, r2 = make_netns("r"), make_netns("r")
    text = f"""\
        bridges: [{{name: brpwtl}}]
        attachments:
          - {{guest: netns:{r1.name}, host: brpwtl, ifname: eth1}}
        links:
          - endpoints: ["netns:{r2.name}:eth1", "netns:{r1.name}:eth1"]
        """
    result = run_pipework("apply", write(tmp_path, text, "dup.yaml"), netns=host_ns.name)
    one_line_error(result, 2, "links[0].endpoints[1]: eth1 in netns:")
    assert only_loopback(r1) and only_loopback(r2) and only_loopback(host_ns)


def nsenter(container: infra.Container, *argv: str) -> None:
    infra.run(["nsenter", "-t", str(container.pid), "-n", *argv])


# containerlab's docs/manual/network.md ("srl02", a point-to-point link) and
# docs/manual/kinds/bridge.md ("br01", three nodes on a bridge), adapted only
# in node names (and the lab's name, which makes the containers' names).
SRL02 = """\
    name: {lab}

    topology:
      kinds:
        nokia_srlinux:
          type: ixrd3
          image: ghcr.io/nokia/srlinux
      nodes:
        {n1}:
          kind: nokia_srlinux
        {n2}:
          kind: nokia_srlinux

      links:
        - endpoints: ["{n1}:e1-1", "{n2}:e1-1"]
"""

BR01 = """\
    # topology documentation: http://containerlab.dev/lab-examples/ext-bridge/
    name: {lab}

    topology:
      kinds:
        nokia_srlinux:
          type: ixr-d2l
          image: ghcr.io/nokia/srlinux
      nodes:
        {n1}:
          kind: nokia_srlinux
        {n2}:
          kind: nokia_srlinux
        {n3}:
          kind: nokia_srlinux
        # note, that the bridge br-clab must be created manually
        {br}:
          kind: bridge

      links:
        - endpoints: ["{n1}:e1-1", "{br}:eth1"]
        - endpoints: ["{n2}:e1-1", "{br}:eth2"]
        - endpoints: ["{n3}:e1-1", "{br}:eth3"]
"""


def test_containerlab_files_on_containers_named_as_containerlab_names_them(
    host_ns, make_container, run_pipework, tmp_path
):
    lab = infra.unique_name("lab").replace("-", "")
    names = {"lab": lab, "n1": "srl1", "n2": "srl2", "n3": "srl3", "br": f"br{lab[-8:]}"}
    c1, c2, c3 = (make_container(f"clab-{lab}-srl{i}") for i in (1, 2, 3))

    p2p = write(tmp_path, SRL02.format(**names), "srl02.clab.yml")
    applied = run_pipework("apply", p2p, netns=host_ns.name)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith(f"created: link e1-1 in clab-{lab}-srl1")
    assert links(c1)["e1-1"]["mtu"] == 9500  # containerlab's default MTU
    nsenter(c1, "ip", "addr", "add", "198.18.61.1/30", "dev", "e1-1")
    nsenter(c2, "ip", "addr", "add", "198.18.61.2/30", "dev", "e1-1")
    assert infra.ping(c1, "198.18.61.2")
    again = run_pipework("apply", p2p, netns=host_ns.name)
    assert again.returncode == 0 and again.stdout.startswith("unchanged: link"), again.stderr
    destroyed = run_pipework("destroy", p2p, netns=host_ns.name)
    assert destroyed.returncode == 0, destroyed.stderr
    assert "e1-1" not in links(c1) and "e1-1" not in links(c2)

    bridged = write(tmp_path, BR01.format(**names), "br01.clab.yml")
    applied = run_pipework("apply", bridged, netns=host_ns.name)
    assert applied.returncode == 0, applied.stderr
    ports = {n for n, link in links(host_ns).items() if link.get("master") == names["br"]}
    assert ports == {"eth1", "eth2", "eth3"}  # the bridge ends' names: the host sides
    for i, container in enumerate((c1, c2, c3), start=1):
        nsenter(container, "ip", "addr", "add", f"198.18.62.{i}/24", "dev", "e1-1")
    assert infra.ping(c1, "198.18.62.3") and infra.ping(c2, "198.18.62.1")

    destroyed = run_pipework("destroy", bridged, netns=host_ns.name)
    assert destroyed.returncode == 0, destroyed.stderr
    assert only_loopback(c1) and only_loopback(c2) and only_loopback(c3)
    assert only_loopback(host_ns)  # the bridge pipework made for the file went too


def test_containerlab_refusals_leave_nothing(host_ns, make_container, run_pipework, tmp_path):
    lab = infra.unique_name("lab").replace("-", "")
    names = {"lab": lab, "n1": "srl1", "n2": "srl2"}
    c1 = make_container(f"clab-{lab}-srl1")
    # A field pipework does not do: commands in a node.
    text = SRL02.format(**names).replace(
        "          kind: nokia_srlinux\n",
        "          kind: nokia_srlinux\n          exec: [ip a]\n",
        1,
    )
    result = run_pipework("apply", write(tmp_path, text, "exec.clab.yml"), netns=host_ns.name)
    one_line_error(result, 8, "topology.nodes.srl1.exec: pipework runs no commands in nodes")
    # A node that does not run: pipework deploys none, and touches nothing.
    path = write(tmp_path, SRL02.format(**names), "missing.clab.yml")
    for args in (("apply", path), ("apply", path, "--plan")):
        result = run_pipework(*args, netns=host_ns.name)
        assert result.returncode == 3, result.stderr
        assert (
            "topology.nodes.srl2: pipework does not deploy nodes" in result.stderr + result.stdout
        )
    assert only_loopback(c1) and only_loopback(host_ns)


def test_bad_link_input_is_one_line_and_leaves_nothing(host_ns, make_netns, run_pipework, tmp_path):
    r1, r2 = make_netns("r"), make_netns("r")
    for text, code, fragment in [
        (
            f'links: [{{endpoints: ["netns:{r1.name}:eth1", "netns:{r1.name}:eth2"]}}]\n',
            2,
            "a link joins two different guests",
        ),
        (
            f'links: [{{endpoints: ["netns:{r1.name}:eth1", "netns:{r2.name}"]}}]\n',
            2,
            "names no interface",
        ),
        (
            f'links: [{{endpoints: ["netns:{r1.name}:eth1", "netns:{r2.name}:eth1"], mtu: 70000}}]\n',
            2,
            "links[0].mtu",
        ),
    ]:
        result = run_pipework("apply", write(tmp_path, text, "bad.yaml"), netns=host_ns.name)
        one_line_error(result, code, fragment)
    assert only_loopback(r1) and only_loopback(r2) and only_loopback(host_ns)
