"""Guest lifecycle events, as a container runtime plugin reports them.

``pipework watch`` knows no runtime: plugins contribute *event sources*
(hook ``pipework_event_sources``). Each tells which guests run now, with their
labels, and then streams ``start`` and ``die`` events. The Docker plugin
provides one; Podman or LXC plugins can add theirs. The ``EventSource`` base
class is in engine/contract.py with the other plugin object types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Action = Literal["start", "die"]


@dataclass(frozen=True)
class GuestEvent:
    """One guest starting or dying."""

    action: Action
    ref: str
    """A reference a guest resolver takes (``docker:3a55e1...``)."""
    key: str
    """The guest's stable key, as ownership markers record it (the container ID)."""
    name: str
    """For people (the container's name)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    time_ns: int | None = None
    """When the runtime says it happened (wall clock, ns), if it says."""
    image_labels: Mapping[str, str] | None = None
    """The labels the guest's image declares, which the guest inherits
    (``labels`` has them too): ``pipework watch`` acts only on a guest's own
    labels unless told otherwise. None: the runtime has no images, every
    label is the guest's own. A source that cannot read them gives
    ``labels`` itself (all inherited: nothing is acted on by default)."""


def __getattr__(name: str) -> object:
    """``EventSource`` lived here in 0.1.0; it is in engine/contract.py now."""
    if name == "EventSource":
        from pipework.engine.contract import EventSource

        return EventSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
