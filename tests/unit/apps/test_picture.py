"""Pictures (``pipework graph``): the model from a topology file and from ``ls``'s
records, its Mermaid and dot text, and names that try to break out of a label."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap

import pytest

from pipework.apps.picture import (
    Picture,
    dot,
    dot_text,
    from_records,
    from_topology,
    mermaid,
    mermaid_text,
)
from pipework.apps.topology.loader import parse
from pipework.engine.inventory import AttachmentRecord
from pipework.engine.specs import GuestInfo

LAB = """\
    version: 1
    bridges:
      - {name: br1, mtu: 9000}
      - {name: ovsbr0, kind: ovs}
    defaults: {host: br1}
    attachments:
      - {guest: web1, address: 198.18.1.2/24@198.18.1.1}
      - {guest: netns:blue, host: ovsbr0, ifname: eth2, vlan: 10}
      - {guest: netns:blue, host: eth2, kind: macvlan, ifname: eth3, address: dhclient}
      - {guest: web1, kind: dummy, ifname: d0, address: 198.18.9.1/32}
      - {guest: br1, host: brauto}
    links:
      - endpoints: ["r1:eth1", "r2:eth1"]
        mtu: 9000
      - endpoints:
          - {guest: r2, ifname: eth2, address: 198.18.40.1/30}
          - "netns:r3:eth1"
"""


def lab() -> Picture:
    return from_topology(parse(textwrap.dedent(LAB), "lab.yaml").topology)


def by_name(picture: Picture) -> dict[tuple[str, str], str]:
    return {(n.kind, n.name): n.id for n in picture.nodes}


def test_a_topology_file_gives_guests_bridges_interfaces_attachments_and_links():
    picture = lab()
    ids = by_name(picture)
    assert set(ids) == {
        ("bridge", "br1"),
        ("ovs", "ovsbr0"),
        ("guest", "web1"),
        ("guest", "netns:blue"),
        ("interface", "eth2"),
        ("guest", "br1"),  # a guest named like a bridge is another node
        ("bridge", "brauto"),  # undeclared, kind unsaid: the bridge pipework would create
        ("guest", "r1"),
        ("guest", "r2"),
        ("guest", "netns:r3"),
    }
    assert [n.id for n in picture.nodes] == [f"n{i}" for i in range(1, 11)]
    nodes = {n.id: n for n in picture.nodes}
    assert nodes[ids["bridge", "br1"]].label == ("br1", "Linux bridge", "MTU 9000")
    assert nodes[ids["interface", "eth2"]].label == ("eth2", "host interface", "macvlan parent")
    # An interface with nothing on the host is listed in its guest.
    assert nodes[ids["guest", "web1"]].lines == ("d0 (dummy) 198.18.9.1/32",)
    edges = [(e.kind, e.a, e.b, e.a_end, e.b_end, e.middle) for e in picture.edges]
    assert edges == [
        (
            "attachment",
            ids["guest", "web1"],
            ids["bridge", "br1"],
            ("eth1", "198.18.1.2/24@198.18.1.1"),
            (),
            (),
        ),
        ("attachment", ids["guest", "netns:blue"], ids["ovs", "ovsbr0"], ("eth2",), (), ("VLAN 10",)),
        ("attachment", ids["guest", "netns:blue"], ids["interface", "eth2"], ("eth3", "dhclient"), (), ()),
        ("attachment", ids["guest", "br1"], ids["bridge", "brauto"], ("eth1",), (), ()),
        ("link", ids["guest", "r1"], ids["guest", "r2"], ("eth1",), ("eth1",), ("MTU 9000",)),
        ("link", ids["guest", "r2"], ids["guest", "netns:r3"], ("eth2", "198.18.40.1/30"), ("eth1",), ()),
    ]  # fmt: skip


def test_mermaid_is_a_left_to_right_flowchart_with_one_line_per_node_and_edge():
    text = mermaid(lab())
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes = [line for line in lines if re.fullmatch(r"    n\d+[\[({/]+\".*\"[\])}/]+", line)]
    edges = [line for line in lines if re.fullmatch(r"    n\d+ (---|===)\|\".*\"\| n\d+", line)]
    assert len(nodes) == 10 and len(edges) == 6
    assert '    n2{{"ovsbr0<br/>OVS bridge"}}' in lines
    assert '    n1["br1<br/>Linux bridge<br/>MTU 9000"]' in lines
    assert '    n3("web1<br/>d0 #40;dummy#41; 198.18.9.1/32")' in lines
    assert '    n4 ---|"eth2<br/>VLAN 10"| n2' in lines
    assert '    n9 ===|"eth2 198.18.40.1/30 #60;-#62; eth1"| n10' in lines
    assert "    class n2 ovs" in lines


def test_dot_is_an_undirected_graph_with_the_interface_names_at_a_links_ends():
    text = dot(lab())
    assert text.startswith("graph pipework {\n") and text.endswith("}\n")
    assert '    n2 [label="ovsbr0\\nOVS bridge", shape=hexagon' in text
    assert '    n4 -- n2 [label="eth2\\nVLAN 10"];' in text
    assert (
        '    n9 -- n10 [taillabel="eth2\\n198.18.40.1/30", headlabel="eth1", label="", penwidth=2];'
        in text
    )


def record(guest: str, ifname: str, kind: str, host: str, host_ifname: str | None = None,
           addresses: tuple[str, ...] = (), vlan: int | None = None, state: str = "attached",
           key: str | None = None, peer: str | None = None) -> AttachmentRecord:  # fmt: skip
    return AttachmentRecord(
        guest=GuestInfo(name=guest, key=key or guest, runtime="netns"),
        ifname=ifname,
        kind=kind,
        host=host,
        host_ifname=host_ifname,
        mac=None,
        mtu=1500,
        vlan=vlan,
        address_method="static",
        addresses=addresses,
        state=state,  # type: ignore[arg-type]
        peer=GuestInfo(name=host, key=peer or host, runtime="netns") if kind == "link" else None,
    )


def test_live_records_draw_each_link_once_with_both_ends_addresses():
    records = [
        record("netns:a", "eth1", "bridge", "brpw1", "veth1", ("198.18.1.2/24",), vlan=7),
        record("web1", "eth1", "link", "netns:b", "eth9", ("198.18.40.1/30",), key="f" * 64),
        record("netns:b", "eth9", "link", "web1", "eth1", ("198.18.40.2/30",), peer="f" * 64),
        # A marker naming netns:b's eth9 as its peer, which eth9 does not name back.
        record("netns:e", "eth5", "link", "netns:b", "eth9"),
        record("netns:c", "eth1", "ovs", "ovspw", "veth2", state="orphan"),
        record("netns:c", "eth2", "macvlan", "eth0"),
        record("netns:d", "eth3", "link", "netns:gone", "eth4"),
    ]
    picture = from_records(records, [("brpw1", "bridge"), ("brempty", "bridge")])
    ids = by_name(picture)
    assert ("bridge", "brempty") in ids and ("ovs", "ovspw") in ids
    assert ("interface", "eth0") in ids
    links = [e for e in picture.edges if e.kind == "link"]
    assert [(e.a, e.b, e.a_end, e.b_end) for e in links] == [
        (ids["guest", "web1"], ids["guest", "netns:b"], ("eth1", "198.18.40.1/30"), ("eth9", "198.18.40.2/30")),
        (ids["guest", "netns:e"], ids["guest", "netns:b"], ("eth5",), ("eth9",)),
        (ids["guest", "netns:d"], ids["guest", "netns:gone"], ("eth3",), ("eth4",)),
    ]  # fmt: skip
    attached = {(e.a, e.b): e for e in picture.edges if e.kind == "attachment"}
    assert attached[ids["guest", "netns:a"], ids["bridge", "brpw1"]].middle == ("VLAN 7",)
    assert attached[ids["guest", "netns:c"], ids["ovs", "ovspw"]].middle == ("orphan",)
    assert picture.to_dict()["nodes"][0] == {
        "id": "n1",
        "kind": "bridge",
        "name": "brpw1",
        "lines": (),
        "label": ["brpw1", "Linux bridge"],
    }


# -- hostile names ------------------------------------------------------------------

HOSTILE = [
    'a"] ; n1-->n2["x',
    "web]1;",
    "x --> y",
    "two\nlines",
    "<script>alert(1)</script>",
    "<b>bold</b>&amp;",
    "`**markdown**`",
    "#quot;#35;",
    "back\\N\\G\\l",
    "}{|<port>",
    "pipe|d",
    "é✓",
]


def hostile_picture(name: str) -> Picture:
    records = [
        record(name, name, "bridge", name, addresses=(name,), vlan=3),
        record(name, "eth1", "link", "peer" + name, name, (name,)),
        record(name, "d0", "dummy", "", addresses=(name,)),
    ]
    return from_records(records, [(name, "bridge")])


def decoded_mermaid(quoted: str) -> str:
    assert quoted[0] == quoted[-1] == '"'
    inner = quoted[1:-1]
    assert re.fullmatch(r"[A-Za-z0-9 .,_:/@+=#;<>-]*", inner.replace("<br/>", "")), inner
    assert "<" not in inner.replace("<br/>", "")
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), inner.replace("<br/>", "\n"))


@pytest.mark.parametrize("name", HOSTILE)
def test_mermaid_labels_escape_everything_that_could_break_out(name):
    assert decoded_mermaid(mermaid_text([name, "x"])) == name.replace("\n", "\\n") + "\nx"
    text = mermaid(hostile_picture(name))
    lines = text.splitlines()
    # 3 nodes, 2 edges, classes, styles: no name adds a line or a statement.
    statements = [line for line in lines if not line.startswith(("    class", "    classDef"))]
    assert len(statements) == 1 + 3 + 2, text
    for line in statements[1:]:
        match = re.fullmatch(
            r'    n\d+(?:[\[({/]+("[^"]*")[\])}/]+|( ---| ===)\|("[^"]*")\| n\d+)', line
        )
        assert match, line
        decoded_mermaid(match.group(1) or match.group(3))
    assert re.findall(r"\bn\d+\b", text.replace('"', " ")) and "n1-->n2" not in text


def decoded_dot(quoted: str) -> str:
    assert quoted[0] == quoted[-1] == '"'
    inner = quoted[1:-1]
    assert re.fullmatch(r'(?:[^"\\\n]|\\["\\n])*', inner), inner
    out = re.sub(r'\\(["\\n])', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), inner)
    return out.replace("&amp;", "&")


QUOTED = r'"(?:[^"\\]|\\.)*"'


@pytest.mark.parametrize("name", HOSTILE)
def test_dot_labels_escape_quotes_backslashes_entities_and_newlines(name):
    assert decoded_dot(dot_text([name, "x"])) == name.replace("\n", "\\n") + "\nx"
    text = dot(hostile_picture(name))
    body = text.splitlines()[4:-1]
    assert len(body) == 3 + 2, text
    for line in body:
        skeleton = re.sub(QUOTED, "S", line)
        assert re.fullmatch(r"    n\d+( -- n\d+)? \[(\w+=(S|\w+))(, \w+=(S|\w+))*\];", skeleton), (
            line
        )
        for quoted in re.findall(QUOTED, line):
            decoded_dot(quoted)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("name", HOSTILE)
def test_graphviz_reads_a_hostile_picture_as_three_nodes_and_two_edges(name):
    done = subprocess.run(
        ["dot", "-Tplain"],
        input=dot(hostile_picture(name)),
        capture_output=True,
        text=True,
        check=True,
    )
    kinds = [line.split()[0] for line in done.stdout.splitlines()]
    assert kinds.count("node") == 3 and kinds.count("edge") == 2, done.stdout
    assert not done.stderr


def test_a_bridges_vxlan_uplink_is_drawn_from_a_file_and_live():
    file = from_topology(
        parse(
            "bridges:\n  - {name: br1, vxlan: {vni: 42, remote: 198.18.9.2, dev: ul0}}\n",
            "lab.yaml",
        ).topology
    )
    (node,) = file.nodes
    assert node.label == ("br1", "Linux bridge", "VXLAN 42 to 198.18.9.2")
    live = from_records([], [("br1", "bridge")], [("br1", "br1-vx")])
    (node,) = live.nodes
    assert node.label == ("br1", "Linux bridge", "VXLAN uplink br1-vx")
