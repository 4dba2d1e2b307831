"""Output: results for people or as JSON, errors as one line on stderr."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from pipework.engine.errors import EXIT_INTERRUPTED, PipeworkError
from pipework.engine.specs import Attachment, with_methods


class OneLineFormatter(logging.Formatter):
    """Each record one line: a message may quote what a guest wrote (an
    interface name, a marker), control characters included."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))


def setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("pipework: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    # pyroute2 logs every netlink message at DEBUG: too much even for --debug.
    logging.getLogger("pyroute2").setLevel(logging.WARNING)


def one_line(text: str) -> str:
    """``text`` with control characters escaped: an error stays one line even
    when it quotes input that holds a newline."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def error(message: str) -> None:
    print(f"pipework: {one_line(message)}", file=sys.stderr)


def run_async(func: Callable[[], Awaitable[int]], debug: bool) -> int:
    """Run ``func`` on an event loop and turn every failure into an exit code."""
    import anyio

    try:
        return anyio.run(func)
    except PipeworkError as exc:
        if debug:
            traceback.print_exc()
        error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        error("interrupted; what was in flight has been rolled back")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            traceback.print_exc()
        error(f"internal error: {exc!r} (run with --debug for the traceback and report it)")
        return 1


def describe(att: Attachment) -> str:
    parts = [f"{att.status}: {att.ifname} in {att.guest.name} on {att.kind} {att.host}"]
    details = []
    if att.host_ifname:
        details.append(f"host side {att.host_ifname}")
    if att.addresses:
        sources = dict(att.address_sources)
        details.append(", ".join(with_methods(att.addresses, att.address_method, sources)))
    elif att.address_method == "static":
        details.append("no address")
    gateways = att.gateways or ((att.gateway,) if att.gateway else ())
    if gateways:
        details.append(f"via {' and '.join(gateways)}")
    if att.dns:
        details.append(f"dns {', '.join(att.dns)}")
    if att.domain:
        details.append(f"domain {att.domain}")
    if att.mac:
        details.append(f"mac {att.mac}")
    return parts[0] + (f" ({'; '.join(details)})" if details else "")


def emit(data: Any, json_output: bool, human: str) -> None:
    if json_output:
        print(json.dumps(data), flush=True)
    else:
        print(human, flush=True)


def emit_attachment(att: Attachment, json_output: bool) -> None:
    emit(att.to_dict(), json_output, describe(att))
