"""A small OVSDB client: JSON-RPC over ovsdb-server's unix socket (RFC 7047).

Used by the Open vSwitch backend (``ovs.py``) only. It speaks just what
pipework needs: ``transact``, with ``wait`` operations for optimistic
concurrency and for waiting until ovs-vswitchd has applied a change, and
answers to the server's ``echo`` probes. Why not ``ovs-vsctl``: one
``ovs-vsctl`` process per change costs several times the whole transaction
(figures in docs/BACKENDS.md, from ``bench/ovs_transport.py``).

Connections are pooled: a transaction takes an idle connection or opens one
(a unix ``connect`` costs microseconds) and gives it back afterwards, so
concurrent attaches never queue behind another one's slow ``wait``. A
connection whose request failed or was cancelled is closed, never reused:
its state is unknown.

Every error is a ``PipeworkError``: ``OvsdbUnavailable`` (exit 5) when no
server answers on the socket, ``TimeoutExpiredError`` (exit 10) when it
does not answer in time, ``OvsdbError`` (exit 9) for anything the server
refuses.
"""

from __future__ import annotations

import errno
import itertools
import json
import re
import socket
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from pipework.engine import (
    ExternalCommandError,
    NotPermittedError,
    RuntimeUnavailableError,
    TimeoutExpiredError,
    UsageError,
)

if TYPE_CHECKING:
    import anyio.abc

DEFAULT_RUNDIR = "/var/run/openvswitch"
DATABASE = "Open_vSwitch"
MAX_MESSAGE = 64 << 20
"""Bytes one JSON-RPC message may take before the stream is considered broken."""
MAX_IDLE = 8
"""Idle connections kept for reuse."""

Op = dict[str, Any]
Row = dict[str, Any]


# -- where the server is ----------------------------------------------------------


def socket_path(environ: Mapping[str, str]) -> str:
    """The OVSDB socket: ``PIPEWORK_OVSDB`` (a path or ``unix:PATH``), else
    ``$OVS_RUNDIR/db.sock`` like ``ovs-vsctl``, else the packaged default."""
    explicit = environ.get("PIPEWORK_OVSDB", "").strip()
    if explicit:
        scheme, sep, rest = explicit.partition(":")
        if sep and scheme == "unix" and rest:
            return rest
        if sep and not explicit.startswith("/"):
            raise UsageError(
                f"PIPEWORK_OVSDB={explicit}: only unix sockets are supported",
                "set it to unix:/PATH/db.sock or to the socket's path",
            )
        return explicit
    rundir = environ.get("OVS_RUNDIR", "").strip() or DEFAULT_RUNDIR
    return str(Path(rundir) / "db.sock")


# -- errors -------------------------------------------------------------------------


class OvsdbUnavailable(RuntimeUnavailableError):
    """No OVSDB server answers on the socket (exit code 5)."""


class OvsdbError(ExternalCommandError):
    """The server refused a request, or the stream broke (exit code 9).

    ``error`` and ``details`` are the server's (``"constraint violation"``,
    ``"timed out"``...); ``op`` is the operation that failed, or None when
    the whole transaction (its commit) failed.
    """

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        error: str = "",
        details: str = "",
        op: Op | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.error = error
        self.details = details
        self.op = op


def _unavailable(path: str, exc: OSError | None) -> OvsdbUnavailable | NotPermittedError:
    hint = (
        "start it (systemctl start openvswitch-switch), or point PIPEWORK_OVSDB "
        "(or OVS_RUNDIR) at its db.sock"
    )
    if exc is None or exc.errno == errno.ENOENT:
        return OvsdbUnavailable(f"Open vSwitch is not running (no OVSDB socket at {path})", hint)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return NotPermittedError(
            f"cannot connect to OVSDB at {path}: {exc.strerror}", "run as root"
        )
    if exc.errno == errno.ECONNREFUSED:
        return OvsdbUnavailable(
            f"Open vSwitch is not running (nothing listens on the OVSDB socket {path})", hint
        )
    return OvsdbUnavailable(f"cannot connect to OVSDB at {path}: {exc.strerror or exc}", hint)


# -- framing --------------------------------------------------------------------------

_OPENING = re.compile(rb"\S")
_STRUCTURE = re.compile(rb'[][{}"]')
_STRING_STOP = re.compile(rb'["\\]')


class JsonSplitter:
    """Cuts a byte stream into JSON texts.

    OVSDB sends JSON-RPC messages back to back, with no length or delimiter,
    so a message ends where its outermost brace closes. This scanner tracks
    nesting and strings (with escapes) across ``feed`` calls, jumping from
    one structural character to the next, and decodes each complete text.
    """

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._pos = 0  # where scanning resumes
        self._depth = 0
        self._in_string = False
        self._limit = limit

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return every message it completed, in order."""
        self._buf += data
        out: list[Any] = []
        buf = self._buf
        pos = self._pos
        while True:
            if self._in_string:
                stop = _STRING_STOP.search(buf, pos)
                if stop is None:
                    pos = len(buf)
                    break
                if stop.group() == b"\\":
                    if stop.end() >= len(buf):  # the escaped character is still to come
                        pos = stop.start()
                        break
                    pos = stop.end() + 1
                    continue
                self._in_string = False
                pos = stop.end()
                continue
            if self._depth == 0:
                first = _OPENING.search(buf, pos)
                if first is None:  # white space between messages
                    del buf[:]
                    pos = 0
                    break
                if buf[first.start()] not in b"{[":
                    raise OvsdbError(
                        f"OVSDB sent something that is not JSON-RPC: {bytes(buf[first.start() :][:40])!r}"
                    )
                del buf[: first.start()]
                self._depth = 1
                pos = 1
                continue
            mark = _STRUCTURE.search(buf, pos)
            if mark is None:
                pos = len(buf)
                break
            char = mark.group()
            pos = mark.end()
            if char == b'"':
                self._in_string = True
            elif char in (b"{", b"["):
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    text = bytes(buf[:pos])
                    del buf[:pos]
                    pos = 0
                    try:
                        out.append(json.loads(text))
                    except ValueError as exc:
                        raise OvsdbError(f"OVSDB sent malformed JSON: {exc}") from None
        self._pos = pos
        if len(buf) > self._limit:
            raise OvsdbError(f"an OVSDB message exceeded {self._limit} bytes")
        return out


# -- the OVSDB data notation (RFC 7047, section 5.1) ---------------------------------


def uuid(value: str) -> list[str]:
    return ["uuid", value]


def named_uuid(name: str) -> list[str]:
    return ["named-uuid", name]


def oset(items: Iterable[Any]) -> list[Any]:
    return ["set", list(items)]


def omap(mapping: Mapping[str, str]) -> list[Any]:
    return ["map", [[key, value] for key, value in sorted(mapping.items())]]


def set_items(value: Any) -> list[Any]:
    """The members of a set column: ``["set", [...]]``, or one atom stands for itself."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return list(value[1])
    return [value]


def optional(value: Any) -> Any:
    """The value of a column with ``"min": 0, "max": 1``, or None when empty."""
    items = set_items(value)
    return items[0] if items else None


def map_items(value: Any) -> dict[str, Any]:
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(key): item for key, item in value[1]}
    raise OvsdbError(f"OVSDB sent {value!r} where a map was expected")


def uuid_str(atom: Any) -> str:
    if isinstance(atom, list) and len(atom) == 2 and atom[0] == "uuid":
        return str(atom[1])
    raise OvsdbError(f"OVSDB sent {atom!r} where a UUID was expected")


def uuids(value: Any) -> frozenset[str]:
    return frozenset(uuid_str(atom) for atom in set_items(value))


# -- operations -----------------------------------------------------------------------


def check_results(ops: Sequence[Op], results: Any) -> list[Row]:
    """The per-operation results of a transaction, or ``OvsdbError``.

    A failing operation has ``{"error": ...}`` at its index (the ones after
    it may be missing); a failing commit adds one extra error after the
    last operation.
    """
    if not isinstance(results, list):
        raise OvsdbError(f"OVSDB answered a transaction with {results!r}")
    for index, result in enumerate(results):
        if isinstance(result, dict) and result.get("error") is not None:
            op = ops[index] if index < len(ops) else None
            error = str(result["error"])
            details = str(result.get("details") or "")
            where = f"{op['op']} on {op.get('table', '?')}" if op else "commit"
            raise OvsdbError(
                f"OVSDB refused the transaction ({where}: {error}{': ' + details if details else ''})",
                error=error,
                details=details,
                op=op,
            )
    if len(results) < len(ops):
        raise OvsdbError(f"OVSDB answered {len(results)} of {len(ops)} operations")
    return [result if isinstance(result, dict) else {} for result in results]


# -- the client -----------------------------------------------------------------------


class _Connection:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.splitter = JsonSplitter()
        self.inbox: deque[Any] = deque()

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.stream.send(json.dumps(message, separators=(",", ":")).encode())

    async def receive(self) -> Any:
        while not self.inbox:
            data = await self.stream.receive(65536)
            self.inbox.extend(self.splitter.feed(data))
        return self.inbox.popleft()

    def idle_and_open(self) -> bool:
        """True if the server has not closed this idle connection or written to it."""
        if self.inbox or self.splitter.pending:
            return False
        # Imported here: anyio.abc's streams cost about 4 ms to import, and
        # this module is loaded by every pipework run.
        from anyio.abc import SocketAttribute

        sock: socket.socket = self.stream.extra(SocketAttribute.raw_socket)
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True  # nothing to read: alive and quiet
        except OSError:
            return False

    async def aclose(self) -> None:
        await self.stream.aclose()


class OvsdbClient:
    """``await client.transact(ops, what="adding port X")`` against one server."""

    def __init__(self, path: str, timeout: float, database: str = DATABASE) -> None:
        self.path = path
        self.timeout = timeout
        self.database = database
        self._idle: list[_Connection] = []
        self._ids = itertools.count(1)

    def available(self) -> bool:
        """Whether the socket exists (a cheap guess; connecting tells for sure)."""
        return Path(self.path).exists()

    async def _connect(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_and_open():
                return conn
            await conn.aclose()
        if not self.available():
            raise _unavailable(self.path, None)
        try:
            stream = await anyio.connect_unix(self.path)
        except OSError as exc:
            raise _unavailable(self.path, exc) from None
        return _Connection(stream)

    async def _release(self, conn: _Connection) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            await conn.aclose()

    async def request(self, method: str, params: list[Any], *, what: str, seconds: float) -> Any:
        """One JSON-RPC call, bounded by ``seconds``."""
        request_id = next(self._ids)
        conn: _Connection | None = None
        try:
            with anyio.fail_after(seconds):
                conn = await self._connect()
                await conn.send({"method": method, "params": params, "id": request_id})
                while True:
                    message = await conn.receive()
                    if not isinstance(message, dict):
                        raise OvsdbError(f"OVSDB sent {message!r}, not a JSON-RPC message")
                    if message.get("method") is not None:
                        # A request from the server: answer its inactivity
                        # probe; ignore notifications (we never monitor).
                        if message["method"] == "echo" and message.get("id") is not None:
                            await conn.send(
                                {
                                    "result": message.get("params", []),
                                    "error": None,
                                    "id": message["id"],
                                }
                            )
                        continue
                    if message.get("id") != request_id:
                        continue
                    if message.get("error") is not None:
                        raise OvsdbError(f"OVSDB refused {what}: {message['error']}")
                    result = message.get("result")
                    break
        except TimeoutError:
            if conn is not None:
                await _discard(conn)
            raise TimeoutExpiredError(
                f"OVSDB at {self.path} did not answer within {seconds:g} s ({what})",
                "is ovsdb-server stuck? see its log",
            ) from None
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
            if conn is not None:
                await _discard(conn)
            raise OvsdbUnavailable(
                f"lost the connection to OVSDB at {self.path} ({what}): {exc or 'closed'}",
                "is ovsdb-server restarting? try again",
            ) from None
        except BaseException:
            if conn is not None:
                await _discard(conn)
            raise
        await self._release(conn)
        return result

    async def transact(
        self, ops: Sequence[Op], *, what: str, seconds: float | None = None
    ) -> list[Row]:
        """Run ``ops`` as one transaction; return each operation's result."""
        results = await self.request(
            "transact",
            [self.database, *ops],
            what=what,
            seconds=self.timeout if seconds is None else seconds,
        )
        return check_results(ops, results)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _discard(conn)


async def _discard(conn: _Connection) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await conn.aclose()
        except OSError:  # pragma: no cover - closing a dead socket
            pass


__all__ = [
    "DATABASE",
    "DEFAULT_RUNDIR",
    "JsonSplitter",
    "Op",
    "OvsdbClient",
    "OvsdbError",
    "OvsdbUnavailable",
    "Row",
    "check_results",
    "map_items",
    "named_uuid",
    "omap",
    "optional",
    "oset",
    "set_items",
    "socket_path",
    "uuid",
    "uuid_str",
    "uuids",
]
