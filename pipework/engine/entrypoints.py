"""Entry-point discovery without importlib.metadata.

``importlib.metadata`` costs about 19 ms to import and scan (it parses
every installed distribution's metadata with the ``email`` package), a tenth
of a whole CLI attach. Entry points are plain files, so we read only the
``entry_points.txt`` of each ``*.dist-info``/``*.egg-info`` directory on
``sys.path`` and, for the few that name our group, their ``Name:``/``Version:``.
The first distribution of a given name on ``sys.path`` wins, as in
importlib.metadata; ``tests/unit/engine/test_entrypoints.py`` checks that both
agree.
"""

from __future__ import annotations

import os
import re
import sys

from pipework.records import Record

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")


class EntryPoint(Record):
    """One entry point (a ``Record``: a dataclass costs ~1 ms to build on every start-up)."""

    name: str
    value: str
    """``module`` or ``module:attribute``."""
    distribution: str
    version: str


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None


def _metadata(path: str) -> tuple[str, str]:
    name = version = ""
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(f"{path}/{filename}", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("Name:"):
                        name = line[5:].strip()
                    elif line.startswith("Version:"):
                        version = line[8:].strip()
                    elif not line.strip():
                        break  # end of the headers
        except OSError:
            continue
        break
    return name, version


def _group_lines(text: str, group: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        section = _SECTION.match(line)
        if section:
            inside = section.group("name").strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            found.append((name.strip(), value.strip()))
    return found


def entry_points(group: str, path: list[str] | None = None) -> list[EntryPoint]:
    """Every entry point of ``group`` installed on ``path`` (default ``sys.path``)."""
    seen: set[str] = set()
    result: list[EntryPoint] = []
    for entry in sys.path if path is None else path:
        directory = entry or "."
        try:
            names = os.listdir(directory)  # noqa: PTH208 (strings: Path objects cost ~2 ms here)
        except OSError:
            continue
        for name in sorted(n for n in names if n.endswith((".dist-info", ".egg-info"))):
            key = _normalize(name.rsplit(".", 1)[0].split("-", 1)[0])
            if key in seen:
                continue
            seen.add(key)
            dist_dir = f"{directory}/{name}"
            text = _read(f"{dist_dir}/entry_points.txt")
            if text is None:
                continue
            lines = _group_lines(text, group) if f"[{group}]" in text else []
            if lines:
                dist, version = _metadata(dist_dir)
                result.extend(EntryPoint(n, v, dist or key, version) for n, v in lines)
    return result
