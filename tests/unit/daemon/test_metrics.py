"""daemon/metrics.py: what events count, read back from the text format."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from pipework.daemon.metrics import BUCKETS, OTHER, UNKNOWN, VALUE_MAX, VALUES_MAX, Metrics


def samples(metrics: Metrics) -> list[Sample]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]


def values(metrics: Metrics, name: str, **labels: str) -> list[float]:
    return [s.value for s in samples(metrics) if s.name == name and s.labels == labels]


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = values(metrics, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_build_info_and_nothing_else_counted_yet():
    metrics = Metrics(version="9.9.9")
    assert value(metrics, "pipework_build_info", version="9.9.9") == 1
    assert not [s for s in samples(metrics) if s.name.endswith("_total") and s.value]


def test_attaches_by_backend_and_outcome_with_their_latency():
    metrics = Metrics()
    for ms, outcome in ((0.5, "created"), (3.0, "created"), (40.0, "created"), (2.0, "error")):
        metrics.observe({
            "type": "attach", "backend": "bridge", "outcome": outcome, "duration_ms": ms,
        })  # fmt: skip
    metrics.observe({"type": "attach", "outcome": "error", "exit_code": 3})  # before a backend
    assert value(metrics, "pipework_attaches_total", backend="bridge", outcome="created") == 3
    assert value(metrics, "pipework_attaches_total", backend="bridge", outcome="error") == 1
    assert value(metrics, "pipework_attaches_total", backend=UNKNOWN, outcome="error") == 1
    created = {"backend": "bridge", "outcome": "created"}
    buckets = {
        float(s.labels["le"]): s.value
        for s in samples(metrics)
        if s.name == "pipework_attach_duration_seconds_bucket"
        and {k: v for k, v in s.labels.items() if k != "le"} == created
    }
    assert sorted(buckets) == [*BUCKETS, math.inf]
    assert (buckets[0.001], buckets[0.0025], buckets[0.005], buckets[0.025]) == (1, 1, 2, 2)
    assert buckets[0.05] == buckets[30.0] == buckets[math.inf] == 3
    assert value(metrics, "pipework_attach_duration_seconds_count", **created) == 3
    assert math.isclose(value(metrics, "pipework_attach_duration_seconds_sum", **created), 0.0435)


def test_detaches_links_and_gc():
    metrics = Metrics()
    metrics.observe(
        {"type": "detach", "backend": "macvlan", "outcome": "removed", "duration_ms": 4}
    )
    metrics.observe({"type": "detach", "outcome": "absent", "duration_ms": 1})
    metrics.observe({"type": "link", "backend": "link", "outcome": "created", "duration_ms": 9})
    metrics.observe({"type": "unlink", "backend": "link", "outcome": "removed", "duration_ms": 2})
    metrics.observe({"type": "gc", "outcome": "removed", "count": 3})
    metrics.observe({"type": "gc", "outcome": "dry-run", "count": 5})  # removes nothing
    metrics.observe({"type": "gc", "outcome": "unchanged", "count": 0})
    assert value(metrics, "pipework_detaches_total", backend="macvlan", outcome="removed") == 1
    assert value(metrics, "pipework_detaches_total", backend=UNKNOWN, outcome="absent") == 1
    assert value(metrics, "pipework_links_total", operation="link", outcome="created") == 1
    assert value(metrics, "pipework_links_total", operation="unlink", outcome="removed") == 1
    unlink = {"operation": "unlink", "outcome": "removed"}
    assert value(metrics, "pipework_link_duration_seconds_sum", **unlink) == 0.002
    assert value(metrics, "pipework_gc_runs_total", outcome="dry-run") == 1
    assert value(metrics, "pipework_gc_removed_total") == 3


def test_dhcp_watch_and_api_requests():
    metrics = Metrics()
    metrics.observe({"type": "dhcp.renew", "provider": "udhcpc", "guest": "web1"})
    metrics.observe({"type": "dhcp.renew", "provider": "udhcpc"})
    metrics.observe({"type": "dhcp.exited", "provider": "dhclient", "exit_code": 1})
    metrics.observe({"type": "dhcp.adopted", "provider": "dhcpcd"})
    metrics.observe({"type": "dhcp.restarted", "provider": "udhcpc", "pid": 9})
    metrics.observe({"type": "dhcp.given-up", "provider": "dhclient", "error": "no lease"})
    metrics.observe({"type": "watch.reconcile", "outcome": "changed", "latency_ms": 10.5})
    metrics.observe({"type": "watch.reconcile", "outcome": "unchanged"})
    metrics.request("/v1/run", 200, 0.120)
    metrics.request("/v1/run", 400, 0.001)
    metrics.request("/v1/events", 200, -1.0)  # a clock that went back: counted, not timed
    assert value(metrics, "pipework_dhcp_renewals_total", provider="udhcpc") == 2
    assert value(metrics, "pipework_dhcp_client_exits_total", provider="dhclient") == 1
    assert value(metrics, "pipework_dhcp_adoptions_total", provider="dhcpcd") == 1
    assert value(metrics, "pipework_dhcp_restarts_total", provider="udhcpc") == 1
    assert value(metrics, "pipework_dhcp_given_up_total", provider="dhclient") == 1
    assert value(metrics, "pipework_watch_reconciles_total", outcome="changed") == 1
    assert value(metrics, "pipework_watch_latency_seconds_count") == 1
    assert value(metrics, "pipework_watch_latency_seconds_bucket", le="0.025") == 1
    assert value(metrics, "pipework_watch_latency_seconds_bucket", le="0.01") == 0
    assert value(metrics, "pipework_api_requests_total", route="/v1/run", status="400") == 1
    assert value(metrics, "pipework_api_request_duration_seconds_count", route="/v1/run") == 2
    assert values(metrics, "pipework_api_request_duration_seconds_count", route="/v1/events") == []
    assert value(metrics, "pipework_events_total", type="dhcp.renew") == 2


def test_hostile_label_values_are_escaped_and_read_back_as_written():
    metrics = Metrics()
    # A detach event's backend is the kind a guest's (forged) marker names.
    hostile = 'br"0\\\nx} 1\n# TYPE evil counter'
    metrics.observe({"type": "detach", "backend": hostile, "outcome": "removed", "guest": hostile})
    body = metrics.render()[0].decode()
    assert 'backend="br\\"0\\\\\\nx} 1\\n# TYPE evil counter"' in body
    assert not [line for line in body.splitlines() if "evil" in line and "backend=" not in line]
    assert value(metrics, "pipework_detaches_total", backend=hostile, outcome="removed") == 1
    # Guest names are no label: one series per guest would grow without bound.
    assert not any("guest" in s.labels for s in samples(metrics))


def test_label_values_are_bounded_in_length_and_number():
    metrics = Metrics()
    metrics.observe({"type": "detach", "backend": "k" * 500, "outcome": "removed"})
    assert value(metrics, "pipework_detaches_total", backend="k" * VALUE_MAX, outcome="removed")
    for i in range(VALUES_MAX + 10):
        metrics.observe({"type": "attach", "backend": f"kind{i}", "outcome": "created"})
    backends = {
        s.labels["backend"] for s in samples(metrics) if s.name == "pipework_attaches_total"
    }
    assert len(backends) == VALUES_MAX + 1 and OTHER in backends
    assert value(metrics, "pipework_attaches_total", backend=OTHER, outcome="created") == 10


def test_malformed_fields_count_the_event_but_time_nothing():
    metrics = Metrics()
    for duration in ("slow", True, float("nan"), -5, 1e300, None):
        metrics.observe({
            "type": "attach", "backend": "dummy", "outcome": "created", "duration_ms": duration,
        })  # fmt: skip
    metrics.observe({"type": ["attach"], "outcome": {"x": 1}})
    metrics.observe({"type": "gc", "outcome": "removed", "count": "3"})
    metrics.observe({"type": "gc", "outcome": "removed", "count": True})
    metrics.observe({})
    created = {"backend": "dummy", "outcome": "created"}
    assert value(metrics, "pipework_attaches_total", **created) == 6
    assert values(metrics, "pipework_attach_duration_seconds_count", **created) == []
    assert value(metrics, "pipework_gc_removed_total") == 0
    assert value(metrics, "pipework_events_total", type=UNKNOWN) == 2
