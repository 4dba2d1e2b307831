"""Pure comparison of two host snapshots (see ``infra.snapshot``).

Kept free of I/O so that the logic deciding whether a test run leaked
something can be unit-tested without root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict


class Snapshot(TypedDict):
    """What the host looked like at one moment.

    Every list holds plain strings so snapshots compare (and print) easily.
    """

    interfaces: list[str]  # link names in the host network namespace
    netns: list[str]  # `ip netns list` names
    ovs_bridges: list[str]  # `ovs-vsctl list-br`, empty when no ovsdb runs
    processes: list[str]  # "NAME[PID]" of DHCP clients/servers and daemons
    mounts: list[str]  # mount points whose path mentions "pwt"
    tmp_dirs: list[str]  # /tmp/pwt-* entries (private dockerd roots, ...)
    run_files: list[str]  # files under the default RUN_DIR (/run/pipework) but locks/ and cache/
    fixture_cleanups: list[str]  # things fixtures had to clean up for a test
    files: dict[str, str | None]  # host file -> sha256 (None when absent)


# Categories where something *disappearing* is as bad as something appearing:
# the tests must never delete host interfaces, namespaces or bridges they did
# not create.  For processes, mounts, etc. only new entries matter (a system
# dhclient exiting during the run is not our doing).
REPORT_REMOVED = frozenset({"interfaces", "netns", "ovs_bridges"})

# Human-readable names, in report order.
CATEGORIES: dict[str, str] = {
    "interfaces": "host network interfaces",
    "netns": "network namespaces",
    "ovs_bridges": "Open vSwitch bridges",
    "processes": "processes",
    "mounts": "mounts",
    "tmp_dirs": "temporary directories",
    "run_files": "files in pipework's RUN_DIR",
    "fixture_cleanups": "resources a fixture had to clean up after a test",
}


@dataclass(frozen=True)
class SnapshotDiff:
    """Differences between a session-start and a session-end snapshot."""

    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)
    changed_files: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed_files)

    def report(self) -> str:
        """A multi-line explanation of what was left behind or changed."""
        if not self:
            return "no leaks"
        lines: list[str] = []
        for key, title in CATEGORIES.items():
            for item in self.added.get(key, []):
                lines.append(f"left behind: {title}: {item}")
            for item in self.removed.get(key, []):
                lines.append(f"disappeared: {title}: {item}")
        for path in self.changed_files:
            lines.append(f"host file changed: {path}")
        return "\n".join(lines)


def _as_set(snap: Mapping[str, object], key: str) -> set[str]:
    value = snap.get(key, [])
    if not isinstance(value, list | tuple | set | frozenset):
        raise TypeError(f"snapshot[{key!r}] must be a list of strings, got {type(value)}")
    return {str(v) for v in value}


def diff_snapshots(before: Snapshot, after: Snapshot) -> SnapshotDiff:
    """Compare two snapshots; the result is falsy when nothing leaked."""
    added: dict[str, list[str]] = {}
    removed: dict[str, list[str]] = {}
    for key in CATEGORIES:
        old, new = _as_set(before, key), _as_set(after, key)
        if new - old:
            added[key] = sorted(new - old)
        if key in REPORT_REMOVED and old - new:
            removed[key] = sorted(old - new)
    old_files, new_files = before.get("files", {}), after.get("files", {})
    changed = sorted(
        path
        for path in set(old_files) | set(new_files)
        if old_files.get(path) != new_files.get(path)
    )
    return SnapshotDiff(added=added, removed=removed, changed_files=changed)
