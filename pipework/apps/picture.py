"""Pictures of a topology (``pipework graph``): a small graph model, built from
a topology file or from what ``ls`` reads, and its Mermaid and Graphviz text.

Every name and address in a picture is someone else's word (a topology file,
a guest's marker), so node IDs are generated (``n1``, ``n2``...), never taken
from names, and every label is escaped for the language it is written in:
no name can end a string, start a statement or smuggle in markup.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pipework.engine.marker import LINK_KIND

if TYPE_CHECKING:
    from pipework.apps.topology.schema import Topology
    from pipework.engine.inventory import AttachmentRecord

NodeKind = Literal["guest", "bridge", "ovs", "interface"]
EdgeKind = Literal["attachment", "link"]

BRIDGE_KINDS: dict[str, NodeKind] = {"bridge": "bridge", "ovs": "ovs"}
"""Link backends whose host interface is a bridge, and how it is drawn."""
HOSTLESS_KINDS = frozenset({"dummy"})
"""Link backends with nothing on the host: the interface is listed in its guest."""
PARENT_KINDS = frozenset({"macvlan", "ipvlan", "ipoib"})
"""Link backends that make a child of the host interface (its parent)."""
AUTO_PREFIXES: tuple[tuple[str, NodeKind], ...] = (("ovs", "ovs"), ("br", "bridge"))
"""A host a file neither declares nor gives a kind: the bridge pipework would create."""
KIND_TITLES: dict[NodeKind, str] = {
    "guest": "",
    "bridge": "Linux bridge",
    "ovs": "OVS bridge",
    "interface": "host interface",
}


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    name: str
    lines: tuple[str, ...] = ()
    """More lines under the name (its kind, interfaces that reach no host...)."""

    @property
    def label(self) -> tuple[str, ...]:
        title = KIND_TITLES[self.kind]
        return (self.name, *((title,) if title else ()), *self.lines)


@dataclass(frozen=True)
class Edge:
    kind: EdgeKind
    a: str
    b: str
    a_end: tuple[str, ...]
    """What stands at ``a``'s end: its interface name and addresses."""
    b_end: tuple[str, ...] = ()
    middle: tuple[str, ...] = ()
    """What the edge itself carries: a VLAN, an MTU, a state."""


@dataclass
class Picture:
    """Nodes and edges in the order they were first named."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    _ids: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """``pipework graph --json``: the nodes (with their labels) and edges."""
        return {
            "nodes": [{**asdict(n), "label": list(n.label)} for n in self.nodes],
            "edges": [asdict(e) for e in self.edges],
        }

    def node(self, kind: NodeKind, name: str, lines: Sequence[str] = ()) -> str:
        """The ID of the node ``name`` (guests and host interfaces apart); made
        on first use, later ``lines`` added to it."""
        key = ("guest" if kind == "guest" else "host", name)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = f"n{len(self.nodes) + 1}"
            self.nodes.append(Node(found, kind, name, tuple(lines)))
        elif lines:
            index = int(found[1:]) - 1
            old = self.nodes[index]
            new = tuple(line for line in dict.fromkeys(lines) if line not in old.lines)
            self.nodes[index] = Node(old.id, old.kind, old.name, (*old.lines, *new))
        return found

    def host(self, name: str, kind: str | None, declared: NodeKind | None = None) -> str | None:
        """The node of host interface ``name`` used by link backend ``kind``
        (None: nothing on the host)."""
        if not name or kind in HOSTLESS_KINDS:
            return None
        drawn = declared or BRIDGE_KINDS.get(kind or "")
        if drawn is None and kind is None:
            drawn = next((k for prefix, k in AUTO_PREFIXES if name.startswith(prefix)), None)
        extra = () if drawn or not kind else (f"{kind} parent" if kind in PARENT_KINDS else kind,)
        return self.node(drawn or "interface", name, extra)

    def attach(
        self, guest: str, ifname: str, kind: str | None, host_id: str | None,
        addresses: Iterable[str], vlan: int | None, note: str | None = None,
    ) -> None:  # fmt: skip
        """An interface ``ifname`` of ``guest`` on host node ``host_id`` (None:
        on nothing of the host's; listed in the guest's node)."""
        guest_id = self.node("guest", guest)
        end = (ifname, *addresses)
        middle = (*((f"VLAN {vlan}",) if vlan is not None else ()), *((note,) if note else ()))
        if host_id is None:
            what = " ".join((ifname, f"({kind})" if kind else "", *addresses, *middle))
            self.node("guest", guest, (" ".join(what.split()),))
            return
        self.edges.append(Edge("attachment", guest_id, host_id, end, middle=middle))

    def link(
        self, a: tuple[str, str, Sequence[str]], b: tuple[str, str, Sequence[str]],
        middle: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """A link between guests ``a`` and ``b``: (guest, ifname, addresses) each."""
        a_id, b_id = self.node("guest", a[0]), self.node("guest", b[0])
        self.edges.append(
            Edge("link", a_id, b_id, (a[1], *a[2]), (b[1], *b[2]), middle=tuple(middle))
        )


# -- building ---------------------------------------------------------------------


def _shown(address: str | None) -> tuple[str, ...]:
    """An IPSPEC as a picture shows it: nothing for ``0/0``."""
    return () if address in (None, "", "0/0") else (str(address),)


def from_topology(topology: Topology) -> Picture:
    """The picture of a topology file: its bridges, attachments (with
    ``defaults``) and links. Raises ``UsageError`` as ``Topology.spec`` does."""
    picture = Picture()
    for bridge in topology.bridges:
        uplink = bridge.vxlan
        lines = _mtu(bridge.mtu) + (
            (f"VXLAN {uplink.vni} to {uplink.remote or uplink.group or 'any'}",) if uplink else ()
        )
        picture.node(BRIDGE_KINDS.get(bridge.kind, "interface"), bridge.name, lines)
    for index in range(len(topology.attachments)):
        spec = topology.spec(index)
        declared = topology.bridge(spec.host)
        host_id = picture.host(
            spec.host,
            spec.kind,
            BRIDGE_KINDS.get(declared.kind, "interface") if declared else None,
        )
        default = "ib0" if spec.kind == "ipoib" else "eth1"
        picture.attach(
            spec.guest, spec.ifname or default, spec.kind, host_id,
            _shown(str(spec.address)), spec.vlan,
        )  # fmt: skip
    for link in topology.links:
        a, b = link.endpoints
        picture.link(
            (a.guest, a.ifname, _shown(a.address)),
            (b.guest, b.ifname, _shown(b.address)),
            _mtu(link.mtu),
        )
    return picture


def _mtu(mtu: int | None) -> tuple[str, ...]:
    return () if mtu is None else (f"MTU {mtu}",)


def _note(record: AttachmentRecord) -> str | None:
    return None if record.state == "attached" else record.state


def from_records(
    records: Sequence[AttachmentRecord],
    bridges: Iterable[tuple[str, NodeKind]] = (),
    uplinks: Iterable[tuple[str, str]] = (),
) -> Picture:
    """The picture of what is attached now: ``ls``'s records, the host
    bridges pipework created (``(name, "bridge" | "ovs")``), even empty ones,
    and their VXLAN uplinks (``(bridge, uplink interface)``).
    A link is drawn once, from whichever of its ends comes first."""
    from pipework.engine.inventory import link_pairs

    picture = Picture()
    for name, kind in bridges:
        picture.node(kind, name)
    for bridge, uplink in uplinks:
        picture.node("bridge", bridge, (f"VXLAN uplink {uplink}",))
    for record in records:
        if record.kind != LINK_KIND:
            picture.attach(
                record.guest.name, record.ifname, record.kind,
                picture.host(record.host, record.kind), record.addresses, record.vlan,
                _note(record),
            )  # fmt: skip
    for record, peer in link_pairs(records):
        note = _note(record)
        picture.link(
            (record.guest.name, record.ifname, record.addresses),
            (
                record.peer.name if record.peer else record.host,
                record.host_ifname or "?",
                peer.addresses if peer else (),
            ),
            _mtu(record.mtu) + ((note,) if note else ()),
        )
    return picture


# -- Mermaid ------------------------------------------------------------------------

_MERMAID_SAFE = frozenset(string.ascii_letters + string.digits + " .,_:/@+=-")
_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    "guest": ("(", ")"),
    "bridge": ("[", "]"),
    "ovs": ("{{", "}}"),
    "interface": ("[/", "/]"),
}


def _visible(text: str) -> str:
    """Control characters as their escapes (a name may hold a newline)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def mermaid_text(lines: Iterable[str]) -> str:
    """A quoted Mermaid string: every character outside a small safe set is an
    entity code (``#34;``), so no quote, bracket, ``-->``, markup or markdown
    gets through; lines apart with ``<br/>``."""
    return (
        '"'
        + "<br/>".join(
            "".join(c if c in _MERMAID_SAFE else f"#{ord(c)};" for c in _visible(line))
            for line in lines
        )
        + '"'
    )


def mermaid(picture: Picture) -> str:
    """``flowchart LR``: guests rounded, Linux bridges boxes, OVS bridges
    hexagons, host interfaces parallelograms; links thick."""
    out = ["flowchart LR"]
    for node in picture.nodes:
        left, right = _MERMAID_SHAPES[node.kind]
        out.append(f"    {node.id}{left}{mermaid_text(node.label)}{right}")
    for edge in picture.edges:
        if edge.kind == "link":
            lines = [f"{' '.join(edge.a_end)} <-> {' '.join(edge.b_end)}"]
            out.append(f"    {edge.a} ===|{mermaid_text([*lines, *edge.middle])}| {edge.b}")
        else:
            out.append(f"    {edge.a} ---|{mermaid_text([*edge.a_end, *edge.middle])}| {edge.b}")
    for kind in _MERMAID_SHAPES:
        ids = [n.id for n in picture.nodes if n.kind == kind]
        if ids:
            out.append(f"    class {','.join(ids)} {kind}")
    out += [f"    classDef {kind} {style}" for kind, style in _STYLES.items()]
    return "\n".join(out) + "\n"


_STYLES: dict[NodeKind, str] = {
    "guest": "fill:#e8f0fe,stroke:#3367d6",
    "bridge": "fill:#e6f4ea,stroke:#188038",
    "ovs": "fill:#fef7e0,stroke:#b06000",
    "interface": "fill:#f1f3f4,stroke:#5f6368",
}


# -- Graphviz dot -------------------------------------------------------------------

_DOT_ESCAPES = {"\\": "\\\\", '"': '\\"', "&": "&amp;"}
_DOT_SHAPES: dict[NodeKind, str] = {
    "guest": 'shape=box, style="rounded,filled"',
    "bridge": "shape=box, style=filled",
    "ovs": "shape=hexagon, style=filled",
    "interface": "shape=parallelogram, style=filled",
}


def dot_text(lines: Iterable[str]) -> str:
    """A quoted dot string: backslashes (dot's label escapes: ``\\N``...),
    quotes and ``&`` (Graphviz reads entities in every label) escaped,
    control characters shown as escapes; lines apart with ``\\n``."""
    return (
        '"'
        + "\\n".join("".join(_DOT_ESCAPES.get(c, c) for c in _visible(line)) for line in lines)
        + '"'
    )


def dot(picture: Picture) -> str:
    """An undirected Graphviz graph, left to right; a link's interface names
    stand at its ends."""
    out = [
        "graph pipework {",
        "    rankdir=LR;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    for node in picture.nodes:
        fill = _STYLES[node.kind].split(",")[0].removeprefix("fill:")
        out.append(
            f'    {node.id} [label={dot_text(node.label)}, {_DOT_SHAPES[node.kind]}, fillcolor="{fill}"];'
        )
    for edge in picture.edges:
        if edge.kind == "link":
            attrs = (
                f"taillabel={dot_text(edge.a_end)}, headlabel={dot_text(edge.b_end)}, "
                f"label={dot_text(edge.middle)}, penwidth=2"
            )
        else:
            attrs = f"label={dot_text([*edge.a_end, *edge.middle])}"
        out.append(f"    {edge.a} -- {edge.b} [{attrs}];")
    out.append("}")
    return "\n".join(out) + "\n"


__all__ = [
    "Edge",
    "Node",
    "Picture",
    "dot",
    "dot_text",
    "from_records",
    "from_topology",
    "mermaid",
    "mermaid_text",
]
