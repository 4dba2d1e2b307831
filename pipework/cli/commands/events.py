"""``pipework events [--types TYPE,...]``: follow what the daemon does, as it happens.

The daemon streams its events (``GET /v1/events``, one JSON object a line;
docs/API.md, "Events"); this prints each as a line for people, or, with
``--json``, as the daemon sent it. It talks to the daemon through the thin
client (the standard library only) and needs no engine.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Annotated

import typer

from pipework.cli.commands.common import fail, options
from pipework.cli.render import error, one_line
from pipework.engine.errors import (
    NotPermittedError,
    PipeworkError,
    RuntimeUnavailableError,
    UsageError,
)

TYPE_WORD = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*")
SHOWN = ("outcome", "guest", "ifname", "backend", "provider")
"""Fields shown by value, in this order, before the others."""
HIDDEN = frozenset({"time", "type", "key", "peer_key", "duration_ms", "latency_ms", "error"})
"""Fields the line shows in its own way, or not at all (``--json`` has them)."""
BODY_MAX = 4096


def wanted_types(given: str | None) -> list[str]:
    """``--types attach,detach`` -> the types; a word that is no type is a ``UsageError``."""
    if given is None:
        return []
    types = [word.strip() for word in given.split(",") if word.strip()]
    for word in types:
        if not TYPE_WORD.fullmatch(word):
            raise UsageError(
                f"--types: {word!r} is not an event type",
                "give types such as attach,detach,dhcp (docs/API.md lists them)",
            )
    return types


def events_path(types: list[str]) -> str:
    """The request's path (the types are checked words: nothing to quote)."""
    return "/v1/events" + (f"?types={','.join(types)}" if types else "")


def _when(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    try:
        moment = time.localtime(value)
    except (OverflowError, OSError, ValueError):
        return "-"
    millis = int(value * 1000) % 1000
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', moment)}.{millis:03d}"


def _text(value: object) -> str:
    return one_line(value if isinstance(value, str) else json.dumps(value))


def _ms(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:.1f} ms"


def describe(event: Mapping[str, object]) -> str:
    """One line for people: time, type, outcome, guest, interface, backend,
    duration, then the other fields, then the error (control characters
    that a guest's name may hold escaped)."""
    kind = event.get("type")
    words = [_when(event.get("time")), _text(kind) if kind is not None else "?"]
    if kind == "dropped":
        return f"{words[0]} dropped {_text(event.get('count'))} events (this reader fell behind)"
    linked = kind in ("link", "unlink")
    for field in SHOWN:
        if field in event and not (linked and field == "backend"):
            words.append(_text(event[field]))
    if linked:
        peer = event.get("peer", event.get("peer_key"))
        if peer is not None:
            words += ["--", _text(peer)]
        if "peer_ifname" in event:
            words.append(_text(event["peer_ifname"]))
    duration = _ms(event.get("duration_ms"))
    if duration is not None:
        words.append(duration)
    latency = _ms(event.get("latency_ms"))
    if latency is not None:
        words.append(f"({latency} after the start event)")
    for field, value in event.items():
        if field in HIDDEN or field in SHOWN or (linked and field in ("peer", "peer_ifname")):
            continue
        words.append(f"{one_line(field)}={_text(value)}")
    line = " ".join(words)
    if "error" in event:
        line += f": {_text(event['error'])}"
    return line


def render_line(raw: bytes, json_output: bool) -> str | None:
    """What to print for one line of the stream (None: nothing; a line
    that is no event raises ``ValueError``)."""
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return None
    if json_output:
        json.loads(text)  # a line that is no JSON is not passed on as if it were
        return text
    event = json.loads(text)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    return describe(event)


def _refusal(status: int, body: bytes) -> PipeworkError:
    """The error for a daemon that does not serve the stream."""
    try:
        said = json.loads(body)
        reason = str(said.get("error") or said) if isinstance(said, dict) else str(said)
    except ValueError:
        reason = body.decode("utf-8", "replace").strip()[:200] or "no reason given"
    message = f"the daemon refused the event stream (HTTP {status}): {reason}"
    if status in (401, 403):
        return NotPermittedError(message, "run it as root, or as a member of the daemon's group")
    return PipeworkError(message)


def follow(types: list[str], json_output: bool, out: IO[str] | None = None) -> int:
    """Print the daemon's events until it closes the stream or Ctrl-C
    (exit 0); exit 5 when no daemon answers or it goes away."""
    from pipework import client

    out = out if out is not None else sys.stdout
    where = client.socket_path()
    try:
        response = client.open_stream("GET", events_path(types))
    except client.Unreachable:
        error(f"no daemon answers at {where} (start one with `pipework daemon`)")
        return RuntimeUnavailableError.exit_code
    except KeyboardInterrupt:
        return 0
    try:
        if response.status != 200:
            body = b""
            for chunk in response.lines():
                body += chunk
                if len(body) >= BODY_MAX:
                    break
            exc = _refusal(response.status, body[:BODY_MAX])
            error(str(exc))
            return exc.exit_code
        for raw in response.lines():
            try:
                line = render_line(raw, json_output)
            except ValueError:
                error(f"the daemon sent a line that is no event: {one_line(repr(raw[:80]))}")
                continue
            if line is not None:
                print(line, file=out, flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `pipework events | head`: the reader has seen enough
        _quiet_stdout()
        return 0
    except OSError as exc:
        error(f"lost the daemon at {where}: {exc.strerror or exc}")
        return RuntimeUnavailableError.exit_code
    finally:
        response.close()
    error(f"the daemon at {where} closed the event stream (did it stop?)")
    return RuntimeUnavailableError.exit_code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the exit's final flush does not fail again."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def command(
    ctx: typer.Context,
    types: Annotated[
        str | None,
        typer.Option(
            "--types",
            "-t",
            metavar="TYPE,...",
            help="Only these event types, and the types under them "
            "(dhcp: dhcp.renew, dhcp.exited...). Default: all.",
        ),
    ] = None,
) -> None:
    """Follow the daemon's events (attach, detach, gc, watch, DHCP...) as they happen."""
    opts = options(ctx)
    try:
        wanted = wanted_types(types)
    except PipeworkError as exc:
        raise fail(exc) from None
    raise typer.Exit(follow(wanted, opts.json))


__all__ = ["command", "describe", "events_path", "follow", "render_line", "wanted_types"]
