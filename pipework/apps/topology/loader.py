"""Reading a topology file (YAML, or JSON) with line numbers for every error.

The YAML is composed into nodes first, so each value's line is known; the
values are then built from the nodes. Two YAML 1.1 surprises are refused or
avoided on the way: duplicate keys (PyYAML would keep the last one quietly)
and "sexagesimal" numbers (``02:12:34:56:58:10``, a MAC address, would read as
an integer in base 60: such scalars stay strings).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from pipework.apps.textinput import read
from pipework.apps.topology.schema import Topology
from pipework.engine.errors import PipeworkError, UsageError

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class TopologyFile:
    """A validated topology and where each of its values stands in the file."""

    name: str
    topology: Topology
    lines: dict[Path_, int] = field(default_factory=dict)
    sources: dict[Path_, Path_] = field(default_factory=dict)
    """A file of another format (containerlab's): where each of the
    topology's paths (``("links", 0, "endpoints", 1)``) came from in it."""
    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Guests the file expects to run already (containerlab's nodes), each
    with where it is declared (``FILE:LINE``, ``topology.nodes.r1.image``):
    ``apply`` refuses to start without them."""

    def source(self, path: Path_) -> Path_:
        """``path`` in the file as written (itself, for pipework's own format)."""
        if not self.sources:
            return path
        for end in range(len(path), -1, -1):
            found = self.sources.get(path[:end])
            if found is not None:
                return found
        return ()

    def where(self, path: Path_) -> str:
        """``FILE:LINE`` of ``path`` (or of its nearest parent that has a line)."""
        path = self.source(path)
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return f"{self.name}:{line}"
        return self.name

    def error(self, path: Path_, exc: PipeworkError) -> PipeworkError:
        """``exc`` (same class, same exit code), located: ``FILE:LINE: attachments[3]: message``."""
        located = copy.copy(exc)
        located.message = f"{self.where(path)}: {dotted(self.source(path))}: {exc.message}"
        located.args = (located.message,)
        return located


def dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def load(name: str) -> TopologyFile:
    """Read and validate a topology file; any problem is one ``UsageError``."""
    text, label = read(name)
    return parse(text, label)


def parse(text: str, label: str) -> TopologyFile:
    """A topology file's text: pipework's format, or containerlab's (a
    ``*.clab.yml`` file, or one with containerlab's ``name:`` and ``topology:``)."""
    data, lines = read_data(text, label)
    if is_containerlab(label, data):
        from pipework.apps.topology.clab import translate

        return translate(data, label, lines)
    return validate(data, TopologyFile(label, Topology(), lines))


def read_data(text: str, label: str) -> tuple[Any, dict[Path_, int]]:
    """The file's values, and the line of each (YAML, or JSON)."""
    if label.endswith(".json") or text.lstrip().startswith("{"):
        data = _json(text, label)
        try:
            _, lines = _yaml(text, label)  # JSON is YAML: only for the line numbers
        except UsageError:
            lines = {}
    else:
        data, lines = _yaml(text, label)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{label}: a topology is a mapping (bridges:, attachments:), not a {type(data).__name__}"
        )
    return data, lines


CLAB_SUFFIXES = (".clab.yml", ".clab.yaml", "-clab.yml", "-clab.yaml")
"""The names containerlab's documentation gives its topology files."""


def is_containerlab(label: str, data: dict[Any, Any]) -> bool:
    """A containerlab topology: by its name, or by its top-level keys."""
    if label.endswith(CLAB_SUFFIXES):
        return True
    return "topology" in data and "name" in data


def validate(data: dict[Any, Any], where: TopologyFile) -> TopologyFile:
    """``data`` as a ``Topology``, every error located through ``where`` (the
    file's name, lines and, for another format, where each value came from)."""
    from pydantic import ValidationError

    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, where) from None
    loaded = TopologyFile(where.name, topology, where.lines, where.sources, where.nodes)
    _check_unique(loaded)
    return loaded


def _check_unique(loaded: TopologyFile) -> None:
    """No bridge declared twice, no guest interface asked for twice (by two
    attachments, two links, or an attachment and a link)."""
    topology = loaded.topology
    bridges: dict[str, int] = {}
    for i, bridge in enumerate(topology.bridges):
        if bridge.name in bridges:
            first = dotted(loaded.source(("bridges", bridges[bridge.name])))
            raise loaded.error(
                ("bridges", i), UsageError(f"bridge {bridge.name} is already declared as {first}")
            )
        bridges[bridge.name] = i
    interfaces: dict[tuple[str, str], int] = {}
    default = topology.defaults.ifname
    for i, decl in enumerate(topology.attachments):
        key = (decl.guest, decl.ifname or default or "")
        if key in interfaces:
            first = dotted(loaded.source(("attachments", interfaces[key])))
            what = f"{key[1]} in {key[0]}" if key[1] else f"the default interface of {key[0]}"
            raise loaded.error(
                ("attachments", i),
                UsageError(f"{what} is already declared as {first}", "give one of them ifname:"),
            )
        interfaces[key] = i
    ends: dict[tuple[str, str], Path_] = {}
    for i, link in enumerate(topology.links):
        for j, end in enumerate(link.endpoints):
            key = (end.guest, end.ifname)
            earlier = ends.get(key)
            note = ""
            if earlier is None and key in interfaces:
                earlier = ("attachments", interfaces[key])
            if earlier is None and (end.guest, "") in interfaces and end.ifname == "eth1":
                earlier, note = (
                    ("attachments", interfaces[(end.guest, "")]),
                    " (its default interface)",
                )
            if earlier is not None:
                where = f"{dotted(loaded.source(earlier))}{note}"
                raise loaded.error(
                    ("links", i, "endpoints", j),
                    UsageError(
                        f"{end.ifname} in {end.guest} is already declared as {where}",
                        "give one of them another interface name",
                    ),
                )
            ends[key] = ("links", i, "endpoints", j)


MAX_NODES = 100_000
"""Values a topology file may hold once its aliases are expanded (a real
file has a few thousand; an alias bomb would have billions)."""
MAX_DEPTH = 64
"""How deeply values may nest (the schema needs four levels)."""


def _json(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{label}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise UsageError(f"{label}: values nest too deeply (at most {MAX_DEPTH} levels)") from None


def _yaml(text: str, label: str) -> tuple[Any, dict[Path_, int]]:
    import yaml

    # libyaml's loader when PyYAML has it (ten times faster, the same nodes
    # and marks); the pure-Python one otherwise.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{label}{line}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{label}: not valid YAML: {exc}") from None
    except RecursionError:
        raise UsageError(f"{label}: values nest too deeply (at most {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines
    return _Builder(loader, label, lines).build(node, ()), lines


class _Builder:
    """Values from YAML nodes, with every value's line, and with bounds: an
    alias that contains itself, an alias bomb or a too deep nesting is one
    ``UsageError`` instead of a ``RecursionError`` or minutes of CPU."""

    def __init__(self, loader: Any, label: str, lines: dict[Path_, int]) -> None:
        self.loader = loader
        self.label = label
        self.lines = lines
        self.count = 0
        self.open: set[int] = set()  # ids of the collections being built (the ancestors)

    def build(self, node: Any, path: Path_, lines: dict[Path_, int] | None = None) -> Any:
        import yaml

        lines = self.lines if lines is None else lines
        where = f"{self.label}:{node.start_mark.line + 1}"
        self.count += 1
        if self.count > MAX_NODES:
            raise UsageError(
                f"{where}: the file expands to more than {MAX_NODES} values",
                "is an alias (*name) repeated inside another one?",
            )
        if len(path) > MAX_DEPTH:
            raise UsageError(f"{where}: values nest too deeply (at most {MAX_DEPTH} levels)")
        lines.setdefault(path, node.start_mark.line + 1)
        if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if node.tag.endswith((":int", ":float")) and ":" in node.value:
                return node.value  # YAML 1.1 base 60: 02:12:34:56:58:10 is a MAC address here
            return self.loader.construct_object(node, deep=True)
        if id(node) in self.open:
            raise UsageError(f"{where}: {dotted(path)} contains itself (an alias loop)")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, (*path, "?"), {})
                line = key_node.start_mark.line + 1
                if not isinstance(key, str | int):
                    raise UsageError(f"{self.label}:{line}: a key must be a name")
                if key in result:
                    raise UsageError(f"{self.label}:{line}: {dotted((*path, key))} is given twice")
                lines[(*path, key)] = line
                result[key] = self.build(value_node, (*path, key))
            return result
        finally:
            self.open.discard(id(node))


def _validation_error(exc: Any, located: TopologyFile) -> UsageError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path: Path_ = tuple(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = f"unknown field {path[-1]!r}"
    elif first["type"] == "missing":
        message = "this field is required"
    elif first["type"] == "literal_error" and path == ("version",):
        message = "unknown version (this pipework reads version 1)"
    more = len(errors) - 1
    hint = f"and {more} more error{'s' if more > 1 else ''}" if more else None
    where = located.where(path)
    location = f"{dotted(located.source(path))}: " if path else ""
    return UsageError(f"{where}: {location}{message}", hint)


__all__ = [
    "CLAB_SUFFIXES",
    "TopologyFile",
    "dotted",
    "is_containerlab",
    "load",
    "parse",
    "read",
    "read_data",
    "validate",
]
