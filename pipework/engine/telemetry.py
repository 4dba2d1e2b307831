"""Telemetry: what the engine does, as flat events, for whoever listens.

The engine and the applications report what they did (an attach and its
outcome, a detach, a gc run, a watch reconcile) as one event each: a flat,
JSON-able mapping (docs/API.md, "Events", has the schema). Listeners are
*sinks*, functions given each event: in ``pipework daemon``, the hub that
streams events and counts metrics (``pipework/daemon/hub.py``), or a pipe
to it from a worker process.

Without a sink, which is the plain command line, nothing is built: ``span``
returns an idle span whose methods do nothing, and ``emit`` returns at
once. This module imports nothing the attach path does not load already.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from pipework.engine.errors import PipeworkError

Event = Mapping[str, object]
Sink = Callable[[Event], None]

log = logging.getLogger("pipework.telemetry")

_sinks: list[Sink] = []


def add_sink(sink: Sink) -> None:
    """Give every event from now on to ``sink`` too (called synchronously,
    in the emitting task: it must be quick and must not change the event)."""
    _sinks.append(sink)


def remove_sink(sink: Sink) -> None:
    """Stop giving events to ``sink`` (nothing if it was not added)."""
    try:
        _sinks.remove(sink)
    except ValueError:
        pass


def active() -> bool:
    """Does anybody listen? (Callers with costly fields to compute may ask.)"""
    return bool(_sinks)


def emit(event: Event) -> None:
    """Give ``event`` to every sink, with ``time`` (unix seconds) added when
    it has none and fields that are None left out. Never raises: a sink that
    fails is logged at debug level and the event is dropped for it."""
    if not _sinks:
        return
    try:
        record = {k: v for k, v in event.items() if v is not None}
        record.setdefault("time", time.time())
    except Exception as exc:  # not a mapping: a caller's bug must not fail an attach
        log.debug("telemetry: not an event: %r (%s)", event, exc)
        return
    for sink in tuple(_sinks):
        try:
            sink(record)
        except Exception as exc:
            log.debug("telemetry: sink %r dropped a %s event: %s", sink, record.get("type"), exc)


class Span:
    """One operation being timed: ``span = telemetry.span("attach", guest=...)``,
    then ``span.update(...)`` as more is known, and ``span.done(outcome)`` or
    ``span.failed(exc)`` once, which emits the event with ``duration_ms``
    (``with span:`` around the work calls ``failed`` for what it raises).
    ``IDLE``, the span when nobody listens, times, builds and emits nothing."""

    __slots__ = ("fields", "started", "type")

    def __init__(self, type_: str, fields: dict[str, object] | None) -> None:
        self.type = type_
        self.fields = fields
        self.started = time.perf_counter() if fields is not None else 0.0

    def update(self, **fields: object) -> None:
        """More fields, known now (a None leaves the field as it was)."""
        if self.fields is not None:
            self.fields.update((k, v) for k, v in fields.items() if v is not None)

    def done(self, outcome: str, **fields: object) -> None:
        """The operation ended with ``outcome``: emit its event."""
        if self.fields is None:
            return
        self.update(**fields)
        emit({
            "type": self.type,
            "outcome": outcome,
            **self.fields,
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 3),
        })  # fmt: skip

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """``with span:`` reports what the block raises (and raises it on)."""
        if exc is not None:
            self.failed(exc)

    def failed(self, exc: BaseException, outcome: str = "error") -> None:
        """The operation raised ``exc``: an ``error`` event (or ``outcome``)
        with its message and exit code (a ``PipeworkError``'s, else 1), or
        ``cancelled`` when it was cancelled or interrupted (a
        ``BaseException`` that is no ``Exception``)."""
        if self.fields is None:
            return
        if not isinstance(exc, Exception):
            self.done("cancelled")
        elif isinstance(exc, PipeworkError):
            self.done(outcome, error=str(exc), exit_code=exc.exit_code)
        else:
            self.done(outcome, error=f"internal error: {exc!r}", exit_code=1)


IDLE = Span("", None)


def span(type_: str, **fields: object) -> Span:
    """A ``Span`` for an operation of ``type_`` starting now (``IDLE`` when
    no sink listens). ``fields`` that are None are left out."""
    if not _sinks:
        return IDLE
    return Span(type_, {k: v for k, v in fields.items() if v is not None})


__all__ = ["IDLE", "Event", "Sink", "Span", "active", "add_sink", "emit", "remove_sink", "span"]
