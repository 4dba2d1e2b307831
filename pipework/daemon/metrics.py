"""The daemon's metrics, counted from its events, in Prometheus' text format.

``Metrics.observe(event)`` updates the counters and histograms from one
event (engine/telemetry.py; the hub calls it for every event published);
``Metrics.request(route, status, seconds)`` counts one API request;
``Metrics.render()`` is what ``GET /metrics`` serves. docs/API.md,
"Metrics", lists every name and label.

The registry is private (no process or platform collectors, nothing global),
so two daemons in one test process do not share counts. Label values can
come from what a guest wrote (a forged marker's kind in a detach event): the
library escapes them, and each label keeps at most ``VALUES_MAX`` distinct
values of at most ``VALUE_MAX`` characters (then ``other``), so no guest can
grow the daemon's memory or its scrape without bound.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

log = logging.getLogger("pipework.daemon")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: from a warm attach (about 1 ms of kernel work) to a slow DHCP
answer or a stuck lock (the engine's own bound is 30 s)."""
VALUE_MAX = 64
"""Characters of a label value kept (the rest is cut)."""
VALUES_MAX = 64
"""Distinct values one label takes; later new ones are counted as ``other``."""
OTHER = "other"
UNKNOWN = "unknown"
"""The value of a label the event does not give (an attach that failed
before a backend was chosen)."""


class _Values:
    """Bounds the values of one label."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, raw: object) -> str:
        if isinstance(raw, bool) or not isinstance(raw, str | int) or raw == "":
            return UNKNOWN
        value = str(raw)[:VALUE_MAX]
        if value in self.seen:
            return value
        if len(self.seen) >= VALUES_MAX:
            return OTHER
        self.seen.add(value)
        return value


def _seconds(event: Mapping[str, object], field: str) -> float | None:
    """``field`` (milliseconds) in seconds, if the event has a sane number there."""
    value = event.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not 0 <= value < 1e12:  # NaN, negative, absurd
        return None
    return value / 1000


class Metrics:
    """Every metric of one daemon, in a registry of its own."""

    def __init__(self, version: str | None = None) -> None:
        if version is None:
            from pipework import __version__

            version = __version__
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels: dict[str, _Values] = {}
        r = self.registry
        counter = partial(Counter, registry=r)
        histogram = partial(Histogram, buckets=BUCKETS, registry=r)
        Info("pipework_build", "The running pipework.", registry=r).info({"version": version})
        self.events = counter("pipework_events_total", "Events published, by type.", ["type"])
        self.dropped = counter(
            "pipework_events_dropped_total", "Events a slow reader of the event stream lost."
        )
        self.subscribers = Gauge(
            "pipework_event_subscribers", "Readers of the event stream now.", registry=r
        )
        by_backend = ["backend", "outcome"]
        self.attaches = counter(
            "pipework_attaches_total", "Attaches, by link backend and outcome.", by_backend
        )
        self.attach_seconds = histogram(
            "pipework_attach_duration_seconds", "How long attaches took.", by_backend
        )
        self.detaches = counter(
            "pipework_detaches_total",
            "Interfaces detached (or detaches that found nothing), by backend and outcome.",
            by_backend,
        )
        self.detach_seconds = histogram(
            "pipework_detach_duration_seconds", "How long detaches took.", by_backend
        )
        by_operation = ["operation", "outcome"]
        self.links = counter(
            "pipework_links_total",
            "Links between guests made (link) and removed (unlink), by outcome.",
            by_operation,
        )
        self.link_seconds = histogram(
            "pipework_link_duration_seconds",
            "How long making and removing links between guests took.",
            by_operation,
        )
        self.gc_runs = counter("pipework_gc_runs_total", "Garbage collections.", ["outcome"])
        self.gc_removed = counter("pipework_gc_removed_total", "What garbage collections removed.")
        by_provider = ["provider"]
        self.dhcp_renewals = counter(
            "pipework_dhcp_renewals_total", "Leases kept DHCP clients renewed.", by_provider
        )
        self.dhcp_exits = counter(
            "pipework_dhcp_client_exits_total", "Kept DHCP clients that exited.", by_provider
        )
        self.dhcp_adoptions = counter(
            "pipework_dhcp_adoptions_total",
            "Kept DHCP clients a starting daemon adopted.",
            by_provider,
        )
        self.dhcp_restarts = counter(
            "pipework_dhcp_restarts_total",
            "Dead kept DHCP clients the daemon started again.",
            by_provider,
        )
        self.dhcp_given_up = counter(
            "pipework_dhcp_given_up_total",
            "Kept DHCP clients the daemon stopped trying to start.",
            by_provider,
        )
        self.reconciles = counter(
            "pipework_watch_reconciles_total", "Guests the watcher reconciled.", ["outcome"]
        )
        self.watch_latency = histogram(
            "pipework_watch_latency_seconds",
            "From a guest's start event to its declared interfaces being in place.",
        )
        self.requests = counter(
            "pipework_api_requests_total", "API requests, by route and status.", ["route", "status"]
        )
        self.request_seconds = histogram(
            "pipework_api_request_duration_seconds",
            "How long API requests took (a stream: until it ended).",
            ["route"],
        )

    def _label(self, metric: str, label: str, raw: object) -> str:
        values = self._labels.get(f"{metric}:{label}")
        if values is None:
            values = self._labels[f"{metric}:{label}"] = _Values()
        return values(raw)

    def observe(self, event: Mapping[str, object]) -> None:
        """Count ``event`` (a telemetry event). Never raises: a malformed
        event is logged at debug level and counted only as far as it makes sense."""
        try:
            self._observe(event)
        except Exception as exc:  # pragma: no cover - a bug here must not stop the hub
            log.debug("metrics: cannot count %r: %s", event, exc)

    def _observe(self, event: Mapping[str, object]) -> None:
        kind = event.get("type")
        self.events.labels(self._label("events", "type", kind)).inc()
        outcome = event.get("outcome")
        duration = _seconds(event, "duration_ms")
        if kind in ("attach", "detach"):
            counter, histogram = (
                (self.attaches, self.attach_seconds)
                if kind == "attach"
                else (self.detaches, self.detach_seconds)
            )
            labels = (
                self._label(str(kind), "backend", event.get("backend")),
                self._label(str(kind), "outcome", outcome),
            )
            counter.labels(*labels).inc()
            if duration is not None:
                histogram.labels(*labels).observe(duration)
        elif kind in ("link", "unlink"):
            labels = (str(kind), self._label("link", "outcome", outcome))
            self.links.labels(*labels).inc()
            if duration is not None:
                self.link_seconds.labels(*labels).observe(duration)
        elif kind == "gc":
            self.gc_runs.labels(self._label("gc", "outcome", outcome)).inc()
            count = event.get("count")
            if outcome == "removed" and type(count) is int and count > 0:
                self.gc_removed.inc(count)
        elif kind in _DHCP_EVENTS:
            counters = {
                "dhcp.renew": self.dhcp_renewals,
                "dhcp.exited": self.dhcp_exits,
                "dhcp.adopted": self.dhcp_adoptions,
                "dhcp.restarted": self.dhcp_restarts,
                "dhcp.given-up": self.dhcp_given_up,
            }
            counters[kind].labels(self._label("dhcp", "provider", event.get("provider"))).inc()
        elif kind == "watch.reconcile":
            self.reconciles.labels(self._label("watch", "outcome", outcome)).inc()
            latency = _seconds(event, "latency_ms")
            if latency is not None:
                self.watch_latency.observe(latency)

    def request(self, route: str, status: int, seconds: float) -> None:
        """Count one API request: its route (the pattern, ``/v1/events``, not
        the path asked), its HTTP status, and how long it took."""
        label = self._label("api", "route", route)
        self.requests.labels(label, self._label("api", "status", status)).inc()
        if 0 <= seconds < 1e9:
            self.request_seconds.labels(label).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """Every metric in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_DHCP_EVENTS = ("dhcp.renew", "dhcp.exited", "dhcp.adopted", "dhcp.restarted", "dhcp.given-up")


__all__ = ["BUCKETS", "OTHER", "UNKNOWN", "VALUES_MAX", "VALUE_MAX", "Metrics"]
