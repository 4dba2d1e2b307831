"""Ownership markers, kept in the kernel as interface aliases.

Every interface pipework creates carries ``pipework key=value ...`` in its
alias (IFLA_IFALIAS, up to 255 bytes), on the guest side and on the host
side. ``ls``, ``detach``, ``gc`` and idempotent re-runs read them back, so no
state file is needed and a fresh process sees what an earlier one did.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from urllib.parse import quote, unquote

PREFIX = "pipework"
LINK_KIND = "link"
"""The kind in the markers of a link's two ends (engine/linkends.py); no
link backend may take it."""


@dataclass(frozen=True)
class Marker:
    """An attachment's ownership marker (a docstring also spares the dataclass
    building one from its signature on every start-up)."""

    guest: str  # the guest's stable key (container ID, netns:NAME, pid:N, path)
    ifname: str  # the guest-side interface name
    kind: str  # the link backend
    host: str  # what it is attached to (bridge name...)
    hostif: str = ""  # the host-side interface, if any
    addr: str = ""  # the address method ("static", "dhclient"...)
    cfg: str = ""  # fingerprint of the request, for idempotence
    state: str = ""  # what the backend needs to undo its work (phys: original MAC)
    vlan: str = ""  # the VLAN ID requested, on the guest side (for `pipework ls`)
    peer: str = ""  # a link between guests: the peer's interface (``host`` is the peer guest)

    def same_attachment(self, other: Marker | None) -> bool:
        """True if ``other`` marks the same attachment (e.g. its host side)."""
        return other is not None and (self.guest, self.ifname, self.cfg) == (
            other.guest,
            other.ifname,
            other.cfg,
        )

    def format(self) -> str:
        parts = [
            f"{f.name}={quote(getattr(self, f.name), safe='')}"
            for f in fields(self)
            if getattr(self, f.name) or f.name not in _OPTIONAL
        ]
        return " ".join([PREFIX, *parts])

    @classmethod
    def parse(cls, alias: str | None) -> Marker | None:
        """The marker in ``alias``, or None if it is not one of ours."""
        if not alias or not alias.startswith(PREFIX + " "):
            return None
        values: dict[str, str] = {}
        for item in alias[len(PREFIX) + 1 :].split():
            key, sep, value = item.partition("=")
            if sep:
                values[key] = unquote(value)
        known = {f.name for f in fields(cls)}
        if not {"guest", "ifname", "kind", "host"} <= values.keys():
            return None
        return cls(**{k: v for k, v in values.items() if k in known})


_OPTIONAL = ("state", "vlan", "peer")
"""Fields written only when set (so a marker without them reads as 0.1.0's)."""

BRIDGE_MARKER = f"{PREFIX} auto-created"
"""Alias of shared host resources (bridges) that pipework created on demand."""
UPLINK_MARKER = f"{PREFIX} vxlan-uplink"
"""Alias of a Linux bridge's VXLAN uplink that pipework made (a topology
file's ``bridges: - vxlan:``; backends/links/bridge/uplink.py)."""
