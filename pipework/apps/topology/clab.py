"""containerlab topology files (``*.clab.yml``) as pipework topologies.

containerlab deploys nodes and wires them; pipework only wires. So a
containerlab file is read as the wiring plan of containers that already run
(``pipework apply lab.clab.yml``):

* ``topology.links`` become pipework's links (the brief form
  ``endpoints: ["srl1:e1-1", "srl2:e1-1"]``, with ``ipv4:``/``ipv6:`` lists,
  and the extended ``type: veth``), with containerlab's default MTU, 9500;
* nodes of ``kind: bridge`` (Linux) and ``kind: ovs-bridge`` (Open vSwitch)
  are host bridges: a link to one is an attachment of the other end's
  container to it, the bridge end's interface being the host-side veth;
* ``macvlan:IFACE`` endpoints and ``type: macvlan`` links are macvlan
  attachments on that host interface, ``type: dummy`` a dummy interface;
* a node is the container containerlab named ``clab-LAB-NODE`` (the
  top-level ``prefix:`` as containerlab reads it: ``""`` bare node names,
  ``__lab-name`` ``LAB-NODE``, another prefix ``PREFIX-LAB-NODE``), an
  ``ext-container`` node the container of its own name.

What describes how a node was deployed (its kind, image, type,
startup-config, binds, env..., and ``kinds``, ``defaults``, ``groups``) is
read past: the node runs already. What asks for what only a deployer does
is refused, one located line naming the field (exit 8): the management
network (``mgmt``, ``mgmt-ipv4``/``mgmt-ipv6``, ``mgmt-net`` links),
commands in nodes (``exec``, ``stages``: they usually configure the links'
interfaces, which pipework does from ``ipv4:``/``ipv6:`` instead), host
links, VXLAN and stitched links, bridges inside a container's namespace,
nodes in the host's namespace. A node that does not run when ``apply``
starts is refused the same way, at its ``image`` (pipework deploys none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import ip_interface
from typing import Any

from pipework.apps.topology.loader import Path_, TopologyFile, dotted, validate
from pipework.apps.topology.schema import Topology
from pipework.engine.errors import PipeworkError, UnsupportedError, UsageError
from pipework.engine.specs import validate_ifname

CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
"""The names Docker and Podman give containers (a node's container is one)."""
DEFAULT_MTU = 9500
"""containerlab's MTU for the veth links it makes (docs/manual/network.md)."""

BRIDGE_KINDS = {"bridge": "bridge", "ovs-bridge": "ovs"}
"""containerlab node kinds that are host bridges -> pipework's link backends."""

TOP_LEVEL = {"name", "prefix", "topology", "mgmt", "settings", "debug"}
TOPOLOGY = {"nodes", "links", "kinds", "defaults", "groups"}
LINK_FIELDS = {
    "type",
    "endpoints",
    "endpoint",
    "mtu",
    "vars",
    "labels",
    "ipv4",
    "ipv6",
    "host-interface",
    "mode",
    "remote",
    "vni",
    "dst-port",
    "src-port",
}
ENDPOINT_FIELDS = {"node", "interface", "mac", "ipv4", "ipv6", "vars", "labels"}

NOT_MGMT = "pipework makes no management network (the containers keep the one they run with)"
NO_COMMANDS = (
    "pipework runs no commands in nodes",
    "put the links' addresses in ipv4:/ipv6: of their endpoints, or run the commands"
    " yourself after apply",
)
REFUSED_NODE_FIELDS: dict[str, tuple[str, str | None]] = {
    "exec": NO_COMMANDS,
    "stages": NO_COMMANDS,
    "mgmt-ipv4": (NOT_MGMT, "remove mgmt-ipv4: (docker run --ip sets it)"),
    "mgmt-ipv6": (NOT_MGMT, "remove mgmt-ipv6: (docker run --ip6 sets it)"),
}
"""Fields of a node (or of ``kinds``, ``defaults``, ``groups``) refused: the
rest describe how the node was deployed, and are read past."""

REFUSED_TYPES: dict[str, tuple[str, str | None]] = {
    "mgmt-net": (NOT_MGMT, None),
    "host": (
        "pipework makes no veth to the host's namespace without a bridge (containerlab's"
        " host links)",
        "put the host end on a bridge: a node of kind: bridge",
    ),
    "vxlan": ("containerlab's vxlan links are not read by pipework", None),
    "vxlan-stitch": ("pipework does not stitch VXLAN tunnels to veths (tc)", None),
    "veth-stitch": ("pipework does not stitch veths (tc)", "use type: veth"),
}
"""Link types pipework does not make (``veth``, ``macvlan`` and ``dummy`` it does)."""


@dataclass
class _Translation:
    """What a containerlab file becomes, as it is built."""

    label: str
    lines: dict[Path_, int]
    name: str = ""
    prefix: str | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    """Each node's kind."""
    declared: dict[str, Path_] = field(default_factory=dict)
    """Each node's path (``topology.nodes.NAME``)."""
    bridges: list[dict[str, Any]] = field(default_factory=list)
    bridge_index: dict[str, int] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[Path_, Path_] = field(default_factory=dict)
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)
    node_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- errors ---------------------------------------------------------------------
    def where(self, path: Path_) -> str:
        return TopologyFile(self.label, Topology(), self.lines).where(path)

    def fail(self, path: Path_, message: str, hint: str | None = None) -> PipeworkError:
        return UsageError(f"{self.where(path)}: {dotted(path)}: {message}", hint)

    def refuse(self, path: Path_, message: str, hint: str | None = None) -> PipeworkError:
        return UnsupportedError(f"{self.where(path)}: {dotted(path)}: {message}", hint)

    # -- the whole file ---------------------------------------------------------------
    def read(self, data: dict[Any, Any]) -> None:
        for key in data:
            if key not in TOP_LEVEL:
                raise self.fail((key,), f"unknown field {key!r} (not containerlab's)")
        if "mgmt" in data:
            raise self.refuse(("mgmt",), NOT_MGMT, "remove mgmt: to wire the lab's links")
        self.name = self.text(data, ("name",), required=True)
        if "prefix" in data:
            self.prefix = self.text(data, ("prefix",), required=False)
        topology = self.mapping(data.get("topology"), ("topology",))
        for key in topology:
            if key not in TOPOLOGY:
                raise self.fail(("topology", key), f"unknown field {key!r} (not containerlab's)")
        for section in ("kinds", "groups"):
            for name, settings in self.mapping(
                topology.get(section), ("topology", section)
            ).items():
                self.refused_fields(settings, ("topology", section, name))
        defaults = self.mapping(topology.get("defaults"), ("topology", "defaults"))
        self.refused_fields(defaults, ("topology", "defaults"))
        groups = self.mapping(topology.get("groups"), ("topology", "groups"))
        nodes = self.mapping(topology.get("nodes"), ("topology", "nodes"))
        for name, settings in nodes.items():
            self.node(str(name), settings, groups, defaults)
        links = topology.get("links") or []
        if not isinstance(links, list):
            raise self.fail(("topology", "links"), "links is a list")
        for i, link in enumerate(links):
            self.link(i, link)

    def text(self, data: dict[Any, Any], path: Path_, *, required: bool) -> str:
        value = data.get(path[-1])
        if value is None and required:
            raise self.fail(path, "this field is required")
        if not isinstance(value, str) and not (value is None and not required):
            raise self.fail(path, "a string is expected here")
        value = value or ""
        if required and not value:
            raise self.fail(path, "this field is required")
        if "${" in value or value.startswith("$"):
            raise self.refuse(
                path,
                "pipework does not expand environment variables",
                "write the value itself (envsubst can expand the file)",
            )
        return value

    def word(self, value: Any, path: Path_) -> str:
        """A name the file gives (a kind, a group, a link type): a string."""
        if not isinstance(value, str):
            raise self.fail(path, "a string is expected here")
        return value

    def mapping(self, value: Any, path: Path_) -> dict[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "a mapping is expected here")
        return value

    def refused_fields(self, settings: Any, path: Path_) -> None:
        for key in self.mapping(settings, path):
            if key in REFUSED_NODE_FIELDS:
                message, hint = REFUSED_NODE_FIELDS[key]
                raise self.refuse((*path, key), message, hint)

    # -- nodes ------------------------------------------------------------------------
    def node(
        self, name: str, settings: Any, groups: dict[Any, Any], defaults: dict[Any, Any]
    ) -> None:
        path: Path_ = ("topology", "nodes", name)
        settings = self.mapping(settings, path)
        self.refused_fields(settings, path)
        group: dict[Any, Any] = {}
        if "group" in settings:
            self.word(settings["group"], (*path, "group"))
            group = self.mapping(groups.get(settings["group"]), path)
        kind = settings.get("kind") or group.get("kind") or defaults.get("kind") or ""
        self.word(kind, (*path, "kind") if "kind" in settings else path)
        self.kinds[name] = str(kind)
        self.declared[name] = path
        self.node_settings[name] = settings
        if kind in BRIDGE_KINDS:
            if "|" in name or str(settings.get("network-mode", "")).startswith("container:"):
                raise self.refuse(
                    (*path, "network-mode") if "network-mode" in settings else path,
                    "pipework's bridges are in the host's namespace, not in a container's",
                )
            index = len(self.bridges)
            self.bridges.append({"name": name, "kind": BRIDGE_KINDS[kind]})
            self.bridge_index[name] = index
            self.sources[("bridges", index)] = path
            return

    def container(self, node: str) -> str:
        """The container a node runs as."""
        if self.kinds[node] == "ext-container":
            return node
        if self.prefix is None:
            return f"clab-{self.name}-{node}"
        if self.prefix == "":
            return node
        if self.prefix == "__lab-name":
            return f"{self.name}-{node}"
        return f"{self.prefix}-{self.name}-{node}"

    def guest(self, node: str, path: Path_) -> str:
        """The guest of a linked node; it must run when ``apply`` starts."""
        settings = self.node_settings[node]
        if settings.get("network-mode") == "host":
            raise self.refuse(
                (*self.declared[node], "network-mode"),
                "this node is in the host's namespace: pipework links containers' own namespaces",
            )
        if self.kinds[node] == "host":
            raise self.refuse(path, REFUSED_TYPES["host"][0], REFUSED_TYPES["host"][1])
        guest = self.container(node)
        if not CONTAINER_NAME.match(guest):
            # Else a name would be another kind of guest reference
            # (pid:1, netns:NAME, a path): a node is a container.
            raise self.fail(
                self.declared[node],
                f"{guest!r} is not a container name",
                "containerlab's nodes are containers: letters, digits, '_', '.' and '-'",
            )
        at = (*self.declared[node], "image") if "image" in settings else self.declared[node]
        self.nodes.setdefault(guest, (self.where(at), dotted(at)))
        return guest

    # -- links ------------------------------------------------------------------------
    def link(self, i: int, link: Any) -> None:
        path: Path_ = ("topology", "links", i)
        link = self.mapping(link, path)
        for key in link:
            if key not in LINK_FIELDS:
                raise self.fail((*path, key), f"unknown field {key!r} (not containerlab's)")
        kind = self.word(link.get("type", "veth"), (*path, "type"))
        if kind in REFUSED_TYPES:
            message, hint = REFUSED_TYPES[kind]
            raise self.refuse((*path, "type"), message, hint)
        if kind == "veth":
            self.veth(path, link)
        elif kind in ("macvlan", "dummy"):
            self.single(path, link, kind)
        else:
            raise self.fail((*path, "type"), f"unknown link type {kind!r}")

    def veth(self, path: Path_, link: dict[str, Any]) -> None:
        for key in ("endpoint", "host-interface", "mode", "remote", "vni", "dst-port", "src-port"):
            if key in link:
                raise self.fail((*path, key), "a veth link has no such field")
        endpoints = link.get("endpoints")
        if not isinstance(endpoints, list) or len(endpoints) != 2:
            raise self.fail((*path, "endpoints"), "a veth link has two endpoints")
        ends = [self.endpoint(path, j, e, link) for j, e in enumerate(endpoints)]
        specials = [e for e in ends if e["node"] in ("host", "mgmt-net", "macvlan")]
        if specials:
            self.special(path, link, ends, specials[0])
            return
        bridges = [e for e in ends if self.kinds[e["node"]] in BRIDGE_KINDS]
        if len(bridges) == 2:
            raise self.refuse(
                (*path, "endpoints"), "a link between two bridges: pipework links guests"
            )
        if bridges:
            (container,) = (e for e in ends if e is not bridges[0])
            self.bridge_port(path, link, container, bridges[0])
            return
        index = len(self.links)
        decl: dict[str, Any] = {"endpoints": [], "mtu": link.get("mtu", DEFAULT_MTU)}
        self.sources[("links", index)] = path
        self.sources[("links", index, "mtu")] = (*path, "mtu")
        for j, end in enumerate(ends):
            decl["endpoints"].append(self.end_fields(end, ("links", index, "endpoints", j)))
        self.links.append(decl)

    def endpoint(
        self, path: Path_, j: int, value: Any, link: dict[str, Any], at: Path_ | None = None
    ) -> dict[str, Any]:
        """One endpoint (``at``, by default ``endpoints[j]``), brief
        (``node:interface``) or extended, with where each of its values stands."""
        at = (*path, "endpoints", j) if at is None else at
        if isinstance(value, str):
            node, sep, ifname = value.partition(":")
            if not sep or not node or not ifname:
                raise self.fail(at, f"endpoint {value!r} names no interface", "write NODE:IFACE")
            end: dict[str, Any] = {"node": node, "interface": ifname, "at": at, "paths": {}}
        else:
            fields = self.mapping(value, at)
            for key in fields:
                if key not in ENDPOINT_FIELDS:
                    raise self.fail((*at, key), f"unknown field {key!r} (not containerlab's)")
            for key in ("node", "interface"):
                if not isinstance(fields.get(key), str) or not fields[key]:
                    raise self.fail((*at, key), "this field is required")
            end = {"node": fields["node"], "interface": fields["interface"], "at": at}
            end["paths"] = {"interface": (*at, "interface")}
            if "mac" in fields:
                end["mac"] = fields["mac"]
                end["paths"]["mac"] = (*at, "mac")
            for family in ("ipv4", "ipv6"):
                if fields.get(family):
                    end[family] = fields[family]
                    end["paths"][family] = (*at, family)
        for family in ("ipv4", "ipv6"):  # the brief form's lists, one entry per endpoint
            if family in link:
                given = link[family]
                if not isinstance(given, list) or len(given) > 2:
                    raise self.fail((*path, family), "a list of at most two addresses")
                if j < len(given) and given[j]:
                    end[family] = given[j]
                    end["paths"][family] = (*path, family, j)
        node = end["node"]
        if node not in ("host", "mgmt-net", "macvlan") and node not in self.kinds:
            raise self.fail(
                at, f"node {node!r} is not in topology.nodes", "declare it under topology.nodes"
            )
        return end

    def end_fields(self, end: dict[str, Any], target: Path_) -> dict[str, Any]:
        """A container endpoint as pipework's endpoint fields (guest, ifname,
        address, mac), their sources recorded under ``target``."""
        paths = end["paths"]
        fields: dict[str, Any] = {
            "guest": self.guest(end["node"], end["at"]),
            "ifname": self.ifname(end, paths.get("interface", end["at"])),
        }
        self.sources[target] = end["at"]
        self.sources[(*target, "guest")] = end["at"]
        self.sources[(*target, "ifname")] = paths.get("interface", end["at"])
        if "mac" in end:
            fields["mac"] = end["mac"]
            self.sources[(*target, "mac")] = paths["mac"]
        address = self.address(end)
        if address is not None:
            fields["address"] = address
            self.sources[(*target, "address")] = paths["ipv4" if "ipv4" in end else "ipv6"]
        return fields

    def ifname(self, end: dict[str, Any], at: Path_) -> str:
        name = str(end["interface"])
        try:
            validate_ifname(name)
        except UsageError as exc:
            raise self.fail(
                at,
                exc.message,
                "containerlab maps interface aliases (ethernet-1/1) per kind: write the"
                " Linux name the container has (e1-1)",
            ) from None
        return name

    def address(self, end: dict[str, Any]) -> str | None:
        if "ipv4" in end and "ipv6" in end:
            raise self.refuse(
                end["paths"]["ipv6"],
                "pipework gives an endpoint one address: ipv4 or ipv6, not both",
            )
        for family, version in (("ipv4", 4), ("ipv6", 6)):
            if family in end:
                value = str(end[family])
                try:
                    parsed = ip_interface(value)
                except ValueError:
                    raise self.fail(
                        end["paths"][family], f"{value!r} is not an address/prefix"
                    ) from None
                if parsed.version != version or "/" not in value:
                    raise self.fail(
                        end["paths"][family], f"{value!r} is not an IPv{version} address/prefix"
                    )
                return value
        return None

    def bridge_port(
        self, path: Path_, link: dict[str, Any], end: dict[str, Any], bridge: dict[str, Any]
    ) -> None:
        """A link from a container to a bridge node: an attachment, the bridge
        end's interface name its host side."""
        for key in ("mac", "ipv4", "ipv6"):
            if key in bridge:
                raise self.refuse(
                    bridge["paths"][key],
                    f"the bridge end of a link takes no {key} (it is the host side of a veth)",
                )
        index = len(self.attachments)
        target: Path_ = ("attachments", index)
        decl = self.end_fields(end, target)
        self.sources[target] = path
        decl["host"] = bridge["node"]
        decl["host_ifname"] = self.ifname(bridge, bridge["paths"].get("interface", bridge["at"]))
        self.sources[(*target, "host")] = bridge["at"]
        self.sources[(*target, "host_ifname")] = bridge["paths"].get("interface", bridge["at"])
        if "mtu" in link:
            decl["mtu"] = link["mtu"]
            self.sources[(*target, "mtu")] = (*path, "mtu")
        self.attachments.append(decl)

    def special(
        self,
        path: Path_,
        link: dict[str, Any],
        ends: list[dict[str, Any]],
        special: dict[str, Any],
    ) -> None:
        """A brief link with a reserved node: ``macvlan:IFACE`` is a macvlan
        attachment; ``host:`` and ``mgmt-net:`` are refused."""
        node = special["node"]
        if node != "macvlan":
            message, hint = REFUSED_TYPES["host" if node == "host" else "mgmt-net"]
            raise self.refuse(special["at"], message, hint)
        (end,) = (e for e in ends if e is not special)
        if end["node"] in ("host", "mgmt-net", "macvlan"):
            raise self.fail((*path, "endpoints"), "a macvlan link joins a node to a host interface")
        self.host_child(path, link, end, "macvlan", special["interface"], special["at"])

    def host_child(
        self,
        path: Path_,
        link: dict[str, Any],
        end: dict[str, Any],
        kind: str,
        parent: str | None,
        parent_at: Path_ | None,
    ) -> None:
        index = len(self.attachments)
        target: Path_ = ("attachments", index)
        decl = self.end_fields(end, target)
        self.sources[target] = path
        decl["kind"] = kind
        if parent is not None and parent_at is not None:
            decl["host"] = parent
            self.sources[(*target, "host")] = parent_at
        if kind == "macvlan":
            decl["mode"] = link.get("mode", "bridge")  # containerlab's default too
            self.sources[(*target, "mode")] = (*path, "mode")
        if "mtu" in link:
            decl["mtu"] = link["mtu"]
            self.sources[(*target, "mtu")] = (*path, "mtu")
        self.attachments.append(decl)

    def single(self, path: Path_, link: dict[str, Any], kind: str) -> None:
        """``type: macvlan`` (an endpoint and ``host-interface``) or ``type:
        dummy`` (an endpoint)."""
        allowed = {"type", "endpoint", "mtu", "vars", "labels"}
        allowed |= {"host-interface", "mode"} if kind == "macvlan" else set()
        for key in link:
            if key not in allowed:
                raise self.fail((*path, key), f"a {kind} link has no such field")
        if "endpoint" not in link:
            raise self.fail((*path, "endpoint"), "this field is required")
        end = self.endpoint(path, 0, link["endpoint"], {}, (*path, "endpoint"))
        if end["node"] in ("host", "mgmt-net", "macvlan"):
            raise self.fail((*path, "endpoint", "node"), f"a {kind} link's endpoint is a node")
        parent = None
        if kind == "macvlan":
            parent = link.get("host-interface")
            if not isinstance(parent, str) or not parent:
                raise self.fail((*path, "host-interface"), "this field is required")
        at = (*path, "host-interface") if parent is not None else None
        self.host_child(path, link, end, kind, parent, at)


def translate(data: dict[Any, Any], label: str, lines: dict[Path_, int]) -> TopologyFile:
    """A containerlab file's values (read by loader.py, with their lines) as
    a pipework ``Topology``; any problem is one located error."""
    built = _Translation(label, lines)
    built.read(data)
    topology = {"bridges": built.bridges, "attachments": built.attachments, "links": built.links}
    where = TopologyFile(label, Topology(), lines, built.sources, built.nodes)
    return validate(topology, where)


__all__ = ["BRIDGE_KINDS", "DEFAULT_MTU", "translate"]
