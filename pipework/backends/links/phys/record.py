"""The host's own record of a NIC passed through with ``--direct-phys``.

The guest-side marker says which host interface a NIC was and which MAC it
had, but the guest can write markers: on its word alone, ``detach`` would
move any interface the guest made into the host, under a name and MAC the
guest chose. So at attach time pipework writes, on the host, in a root-only
directory under RUN_DIR (``phys/``), what the NIC is: its name, MAC and state
before the move, its kind, its permanent MAC address and the device behind
it (bus and address), and its index in the guest. A NIC is given back only
if the guest interface the marker names is that device, and restored from
this record, never from the marker.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pipework.engine import Link, Marker
from pipework.engine.specs import short_hash

DIRECTORY = "phys"


@dataclass(frozen=True)
class NicRecord:
    guest: str
    ifname: str
    name: str
    """The NIC's name on the host before the move."""
    mac: str | None
    up: bool
    kind: str | None
    perm_mac: str | None
    parent_dev: str | None
    parent_bus: str | None
    guest_index: int | None = None
    """Its index in the guest's namespace, once moved (None until then)."""

    @classmethod
    def of(cls, marker: Marker, nic: Link) -> NicRecord:
        return cls(
            guest=marker.guest,
            ifname=marker.ifname,
            name=nic.ifname,
            mac=nic.mac,
            up=nic.up,
            kind=nic.kind,
            perm_mac=nic.perm_mac,
            parent_dev=nic.parent_dev,
            parent_bus=nic.parent_bus,
        )

    def moved(self, index: int) -> NicRecord:
        return replace(self, guest_index=index)

    def mismatch(self, link: Link, *, in_guest: bool) -> str | None:
        """Why ``link`` is not this NIC (None: it is). In the guest its index
        is checked too: the NIC holds it there, so nothing else can."""
        if in_guest and self.guest_index != link.index:
            return f"it is not the interface pipework moved there (#{self.guest_index})"
        for what, ours, theirs in (
            ("kind", self.kind, link.kind),
            ("permanent MAC address", self.perm_mac, link.perm_mac),
            ("device", self.parent_dev, link.parent_dev),
            ("bus", self.parent_bus, link.parent_bus),
        ):
            if ours != theirs:
                return f"its {what} is not that of {self.name} ({theirs or 'none'})"
        return None


class NicRecords:
    """The records of one RUN_DIR."""

    def __init__(self, run_dir: str) -> None:
        self.directory = Path(run_dir) / DIRECTORY

    def path(self, guest: str, ifname: str) -> Path:
        return self.directory / short_hash(guest, ifname)

    def write(self, record: NicRecord) -> None:
        """Atomically, readable by root only."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.path(record.guest, record.ifname)
        temporary = final.with_name(final.name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(record), handle)
        temporary.replace(final)

    def read(self, guest: str, ifname: str) -> NicRecord | None:
        """The record of (guest, ifname), if there is a whole one."""
        try:
            data = json.loads(self.path(guest, ifname).read_text())
            record = NicRecord(**data)
        except (OSError, ValueError, TypeError):
            return None
        if (record.guest, record.ifname) != (guest, ifname):
            return None
        return record

    def remove(self, guest: str, ifname: str) -> None:
        self.path(guest, ifname).unlink(missing_ok=True)

    def all(self) -> list[tuple[Path, NicRecord]]:
        found = []
        try:
            entries = sorted(self.directory.iterdir())
        except OSError:
            return []
        for entry in entries:
            try:
                found.append((entry, NicRecord(**json.loads(entry.read_text()))))
            except (OSError, ValueError, TypeError):
                continue
        return found


__all__ = ["NicRecord", "NicRecords"]
