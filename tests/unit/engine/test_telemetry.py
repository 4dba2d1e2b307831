"""engine/telemetry.py: sinks, spans, and nothing done when nobody listens."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.events import collected

from pipework.engine import telemetry
from pipework.engine.errors import ConflictError, GuestNotFoundError


@pytest.fixture
def seen() -> Iterator[list[dict[str, Any]]]:
    with collected() as events:
        yield events
    assert not telemetry.active()


def test_an_event_gets_a_time_and_loses_its_empty_fields(seen):
    before = time.time()
    telemetry.emit({"type": "gc", "outcome": "unchanged", "guest": None})
    (event,) = seen
    assert event.keys() == {"type", "outcome", "time"}
    assert before <= event["time"] <= time.time()
    telemetry.emit({"type": "gc", "time": 12.5})
    assert seen[1] == {"type": "gc", "time": 12.5}


def test_sinks_come_and_go():
    got: list[object] = []
    telemetry.add_sink(got.append)
    telemetry.emit({"type": "attach"})
    telemetry.remove_sink(got.append)
    telemetry.remove_sink(got.append)  # twice: nothing to remove, no error
    telemetry.emit({"type": "detach"})
    assert [e["type"] for e in got] == ["attach"]  # type: ignore[index]
    assert not telemetry.active()


def test_a_failing_sink_is_logged_and_the_others_still_hear(seen, caplog):
    def broken(event: object) -> None:
        raise RuntimeError("pipe closed")

    telemetry.add_sink(broken)
    try:
        with caplog.at_level(logging.DEBUG, logger="pipework.telemetry"):
            telemetry.emit({"type": "attach", "outcome": "created"})
            telemetry.emit(42)  # type: ignore[arg-type]  # no mapping: dropped, not raised
    finally:
        telemetry.remove_sink(broken)
    assert [e["type"] for e in seen] == ["attach"]
    assert "dropped a attach event: pipe closed" in caplog.text
    assert "not an event: 42" in caplog.text


def test_without_a_sink_nothing_is_timed_or_built(monkeypatch):
    class NoClock:
        def time(self) -> float:
            raise AssertionError("time.time() called without a sink")

        def perf_counter(self) -> float:
            raise AssertionError("time.perf_counter() called without a sink")

    monkeypatch.setattr(telemetry, "time", NoClock())
    span = telemetry.span("attach", guest="web1")
    assert span is telemetry.IDLE
    span.update(backend="bridge")
    span.done("created", count=1)
    span.failed(ConflictError("taken"))
    telemetry.emit({"type": "gc"})
    assert telemetry.IDLE.fields is None


def test_a_span_times_the_operation_and_keeps_what_it_learns(seen):
    span = telemetry.span("attach", guest="docker:web1", ifname=None, backend="bridge")
    time.sleep(0.02)
    span.update(guest="web1", key="3a55", ifname="eth1", backend=None)
    span.done("created")
    (event,) = seen
    assert event["type"] == "attach" and event["outcome"] == "created"
    assert (event["guest"], event["key"], event["ifname"], event["backend"]) == (
        "web1", "3a55", "eth1", "bridge",
    )  # fmt: skip
    assert 20 <= event["duration_ms"] < 2000


def test_a_failed_span_carries_the_error_and_its_exit_code(seen):
    telemetry.span("attach", guest="ghost").failed(
        GuestNotFoundError("no such container ghost", "see docker ps")
    )
    telemetry.span("detach").failed(ConflictError("unverified"), "skipped")
    telemetry.span("gc").failed(ValueError("bad"))
    telemetry.span("attach").failed(KeyboardInterrupt())
    telemetry.span("attach").failed(asyncio.CancelledError())
    error, skipped, internal, interrupted, cancelled = seen
    assert (error["outcome"], error["exit_code"]) == ("error", 3)
    assert error["error"] == "no such container ghost (see docker ps)"
    assert (skipped["outcome"], skipped["exit_code"]) == ("skipped", 7)
    assert internal["error"] == "internal error: ValueError('bad')" and internal["exit_code"] == 1
    assert interrupted["outcome"] == cancelled["outcome"] == "cancelled"
    assert "exit_code" not in cancelled and "error" not in cancelled


def test_a_span_around_a_block_reports_what_it_raises(seen):
    with pytest.raises(ConflictError), telemetry.span("gc", dry_run=True):
        raise ConflictError("taken")
    with telemetry.span("gc") as span:
        span.update(count=2)
    span.done("removed")
    failed, done = seen
    assert (failed["outcome"], failed["exit_code"], failed["dry_run"]) == ("error", 7, True)
    assert (done["outcome"], done["count"]) == ("removed", 2)


def test_the_attach_path_gains_no_json_prometheus_or_aiohttp():
    code = (
        "import sys\n"
        "import pipework.engine.engine, pipework.apps.grammar\n"
        "from pipework.engine import telemetry\n"
        "span = telemetry.span('attach', guest='web1'); span.done('created')\n"
        "telemetry.emit({'type': 'gc'})\n"
        "print(sorted(m for m in ('json', 'prometheus_client', 'aiohttp', 'pipework.daemon')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
