"""A sink that keeps the engine's telemetry events (engine/telemetry.py), for tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pipework.engine import telemetry


@contextmanager
def collected() -> Iterator[list[dict[str, Any]]]:
    """Within the block, every event emitted in this process, as a dict, in order."""
    seen: list[dict[str, Any]] = []

    def sink(event: Mapping[str, object]) -> None:
        seen.append(dict(event))

    telemetry.add_sink(sink)
    try:
        yield seen
    finally:
        telemetry.remove_sink(sink)
