"""``pipework events``: its lines for people, and its talk with the daemon's socket."""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from support.unix_http import serve_once

import pipework.cli
from pipework import client
from pipework.cli.commands import events
from pipework.cli.commands.events import describe, events_path, follow, render_line, wanted_types
from pipework.engine.errors import UsageError

T = time.mktime((2026, 12, 2, 12, 34, 56, 0, 0, -1)) + 0.789
WHEN = "2026-12-02 12:34:56.789"


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            {"time": T, "type": "attach", "outcome": "created", "backend": "bridge",
             "guest": "web1", "key": "3a55e1", "ifname": "eth1", "duration_ms": 5.23},
            f"{WHEN} attach created web1 eth1 bridge 5.2 ms",
        ),
        (
            {"time": T, "type": "attach", "outcome": "error", "guest": "docker:ghost",
             "duration_ms": 1.0, "error": "no such container ghost", "exit_code": 3},
            f"{WHEN} attach error docker:ghost 1.0 ms exit_code=3: no such container ghost",
        ),
        (
            {"time": T, "type": "link", "outcome": "created", "backend": "link", "guest": "r1",
             "ifname": "eth1", "peer": "r2", "peer_key": "netns:r2", "peer_ifname": "eth3",
             "duration_ms": 2.0},
            f"{WHEN} link created r1 eth1 -- r2 eth3 2.0 ms",
        ),
        (
            {"time": T, "type": "unlink", "outcome": "removed", "backend": "link", "guest": "r1",
             "ifname": "eth1", "peer_key": "netns:r2", "peer_ifname": "eth3"},
            f"{WHEN} unlink removed r1 eth1 -- netns:r2 eth3",
        ),
        (
            {"time": T, "type": "gc", "outcome": "removed", "count": 3, "duration_ms": 12.0},
            f"{WHEN} gc removed 12.0 ms count=3",
        ),
        (
            {"time": T, "type": "watch.reconcile", "outcome": "changed", "guest": "web1",
             "action": "start", "count": 2, "duration_ms": 8.0, "latency_ms": 10.54},
            f"{WHEN} watch.reconcile changed web1 8.0 ms (10.5 ms after the start event)"
            " action=start count=2",
        ),
        (
            {"time": T, "type": "dhcp.renew", "provider": "udhcpc", "guest": "web1",
             "ifname": "eth1", "address": "198.18.0.9/24"},
            f"{WHEN} dhcp.renew web1 eth1 udhcpc address=198.18.0.9/24",
        ),
        ({"time": T, "type": "dropped", "count": 7}, f"{WHEN} dropped 7 events (this reader fell behind)"),
        ({"type": "attach", "time": "soon", "extra": [1, 2]}, '- attach extra=[1, 2]'),
        ({}, "- ?"),
    ],
)  # fmt: skip
def test_lines_for_people(event, line):
    assert describe(event) == line


def test_what_a_guest_named_stays_on_one_line():
    line = describe({
        "time": T, "type": "detach", "outcome": "removed", "guest": "evil\nname\x1b[2J",
        "ifname": "eth1\r", "error": "bad\nthing", "we\nird": "x",
    })  # fmt: skip
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "evil\\nname\\x1b[2J" in line and line.endswith(": bad\\nthing")


def test_types_are_checked_words():
    assert wanted_types(None) == []
    assert wanted_types("attach, detach,,dhcp.renew") == ["attach", "detach", "dhcp.renew"]
    assert events_path(["attach", "gc"]) == "/v1/events?types=attach,gc"
    assert events_path([]) == "/v1/events"
    for bad in ("attach&x=1", "Attach", "a b", "../v1/run", "dhcp."):
        with pytest.raises(UsageError, match="is not an event type"):
            wanted_types(bad)


def test_stream_lines_as_json_or_text():
    raw = json.dumps({"time": T, "type": "gc", "outcome": "unchanged"}).encode() + b"\n"
    assert render_line(raw, True) == raw.decode().strip()
    assert render_line(raw, False) == f"{WHEN} gc unchanged"
    assert render_line(b"\n", False) is None
    for bad in (b"{not json\n", b"[1, 2]\n"):
        with pytest.raises(ValueError):
            render_line(bad, False)
    with pytest.raises(ValueError):
        render_line(b"{not json\n", True)


@pytest.fixture
def sock(tmp_path, monkeypatch):
    path = str(tmp_path / "pipework.sock")
    monkeypatch.setenv(client.SOCKET_ENV, path)
    return path


def test_follows_the_stream_until_the_daemon_closes_it(sock, capsys):
    lines = [
        {"time": T, "type": "attach", "outcome": "created", "guest": "web1", "ifname": "eth1"},
        {"time": T, "type": "dropped", "count": 2},
    ]
    body = b"".join(json.dumps(e).encode() + b"\n" for e in lines) + b"garbage\n"
    seen = serve_once(sock, b"HTTP/1.0 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n" + body)
    out = io.StringIO()
    assert follow(["attach"], False, out) == 5
    assert out.getvalue().splitlines() == [
        f"{WHEN} attach created web1 eth1",
        f"{WHEN} dropped 2 events (this reader fell behind)",
    ]
    assert seen[0].startswith(b"GET /v1/events?types=attach HTTP/1.0\r\n")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "pipework: the daemon sent a line that is no event: b'garbage\\n'",
        f"pipework: the daemon at {sock} closed the event stream (did it stop?)",
    ]


def test_json_lines_are_passed_on_as_they_come(sock):
    line = b'{"type": "gc",  "outcome": "unchanged", "time": 1.5}\n'
    serve_once(sock, b"HTTP/1.0 200 OK\r\n\r\n" + line)
    out = io.StringIO()
    follow([], True, out)
    assert out.getvalue() == line.decode()


def test_a_refusal_is_one_line_with_an_exit_code(sock, capsys):
    serve_once(sock, b'HTTP/1.0 403 Forbidden\r\n\r\n{"error": "only root may use pipework"}')
    assert follow([], False, io.StringIO()) == 77
    assert capsys.readouterr().err == (
        "pipework: the daemon refused the event stream (HTTP 403): only root may use pipework"
        " (run it as root, or as a member of the daemon's group)\n"
    )
    os.unlink(sock)
    serve_once(sock, b"HTTP/1.0 500 Oops\r\n\r\nsomething broke")
    assert follow([], False, io.StringIO()) == 1
    assert "(HTTP 500): something broke" in capsys.readouterr().err


def test_no_daemon_is_one_line_and_exit_5(sock, capsys):
    assert pipework.cli.run(["events", "--json"]) == 5
    assert capsys.readouterr().err == (
        f"pipework: no daemon answers at {sock} (start one with `pipework daemon`)\n"
    )
    assert pipework.cli.run(["events", "--types", "nope!"]) == 2


def test_ctrl_c_ends_it_quietly(monkeypatch, capsys):
    class Interrupted:
        status, headers, closed = 200, {}, False

        def lines(self):
            yield b'{"type": "gc"}\n'
            raise KeyboardInterrupt

        def close(self) -> None:
            Interrupted.closed = True

    monkeypatch.setattr(client, "open_stream", lambda *a, **k: Interrupted())
    out = io.StringIO()
    assert follow([], False, out) == 0
    assert out.getvalue() == "- gc\n" and capsys.readouterr().err == ""
    assert Interrupted.closed
    assert events.command.__doc__
