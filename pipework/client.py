"""The thin client of ``pipework daemon``: the standard library only.

The ``pipework`` and ``pipework-cni`` commands try the daemon first: when a
daemon answers at ``RUN_DIR/pipework.sock``, the command line is sent to it
(``POST /v1/run``), run there by a worker forked from the daemon's warm
process, and what the worker prints comes back as it is printed, with its
exit code. When nothing answers, or the daemon speaks another protocol
version, the caller runs the command in-process, as without a daemon.
``PIPEWORK_NO_DAEMON=1`` (or ``--no-daemon``) skips the daemon.

This module is on every command's start-up path, so it imports only what the
standard library loads anyway (``os``, ``socket``); ``json`` is loaded only
when a daemon answers. HTTP/1.0 requests: the response ends when the daemon
closes the connection, so the stream needs no chunked decoding.
See docs/API.md for the protocol.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence

TYPE_CHECKING = False  # typing is not imported on the client's path (~5 ms)
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = "1"
"""The protocol version (``Pipework-Protocol`` header, ``/v1/`` paths)."""
SOCKET_NAME = "pipework.sock"
SOCKET_ENV = "PIPEWORK_SOCKET"
NO_DAEMON_ENV = "PIPEWORK_NO_DAEMON"
DEFAULT_RUN_DIR = "/run/pipework"
CONNECT_TIMEOUT = 5.0
"""Seconds for the daemon to accept the request and answer its headers (it
answers them before it starts the command: without them, the command has
not run, and the client runs it in-process)."""
LOST = 11
"""Exit code: the daemon stopped before the command finished (docs/CLI.md)."""

FORWARDED_PREFIXES = ("PIPEWORK_", "DOCKER_", "CNI_")
FORWARDED_NAMES = frozenset(
    {"CONTAINER_HOST", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TERM", "TZ", "LANG"}
    | {"LC_ALL", "LC_CTYPE", "LC_MESSAGES"}
)
"""The client's environment the worker gets (never PATH, LD_*, PYTHON*: the
worker runs as the daemon's user with the daemon's search path)."""


class Unreachable(Exception):
    """No daemon answers (or not in a way this client understands)."""


class Response:
    """A response being read: status, lowercased headers, then the body."""

    def __init__(self, sock: socket.socket, status: int, headers: dict[str, str], rest: bytes):
        self.status = status
        self.headers = headers
        self._sock = sock
        self._buffer = rest

    def lines(self) -> Iterator[bytes]:
        """The body's lines (with their newline) until the daemon closes."""
        buffer = self._buffer
        self._buffer = b""
        while True:
            end = buffer.find(b"\n")
            while end >= 0:
                yield buffer[: end + 1]
                buffer = buffer[end + 1 :]
                end = buffer.find(b"\n")
            chunk = self._sock.recv(65536)
            if not chunk:
                if buffer:
                    yield buffer
                return
            buffer += chunk

    def read(self) -> bytes:
        return b"".join(self.lines())

    def json(self) -> Any:
        import json

        return json.loads(self.read())

    def close(self) -> None:
        self._sock.close()


def socket_path(environ: Mapping[str, str] = os.environ) -> str:
    """Where the daemon listens: ``PIPEWORK_SOCKET``, else RUN_DIR/pipework.sock."""
    explicit = environ.get(SOCKET_ENV)
    if explicit:
        return explicit
    run_dir = environ.get("PIPEWORK_RUN_DIR") or DEFAULT_RUN_DIR
    return f"{run_dir}/{SOCKET_NAME}"


def disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """``PIPEWORK_NO_DAEMON`` set to anything but empty or ``0``."""
    return environ.get(NO_DAEMON_ENV, "") not in ("", "0")


def open_stream(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Response:
    """Send one request; the response once its headers are in.

    ``timeout`` bounds the whole body too (None: the body may take as long
    as the command does). Raises ``Unreachable`` when no daemon answers.
    """
    where = socket_path(environ)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(where)
        except OSError as exc:
            raise Unreachable(f"no daemon answers at {where}: {exc.strerror or exc}") from None
        head = f"{method} {path} HTTP/1.0\r\nHost: pipework\r\nPipework-Protocol: {PROTOCOL}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        try:
            sock.sendall(head.encode() + b"\r\n" + (body or b""))
            status, headers, rest = _read_head(sock)
        except (OSError, ValueError) as exc:
            raise Unreachable(f"the daemon at {where} did not answer: {exc}") from None
        sock.settimeout(timeout)
        return Response(sock, status, headers, rest)
    except BaseException:
        sock.close()
        raise


def fetch(path: str, *, timeout: float = 5.0, environ: Mapping[str, str] = os.environ) -> bytes:
    """``GET path``'s whole body (``/v1/version``, ``/metrics``...); raises
    ``Unreachable`` when no daemon answers."""
    response = open_stream("GET", path, timeout=timeout, environ=environ)
    try:
        return response.read()
    finally:
        response.close()


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("the connection closed before the response's headers")
        data += chunk
        if len(data) > 65536:
            raise ValueError("the response's headers are too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


def forwarded_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    return {
        k: v for k, v in environ.items() if k in FORWARDED_NAMES or k.startswith(FORWARDED_PREFIXES)
    }


def _terminal(stream: Any) -> list[int] | None:
    """[rows, columns] of a terminal stream, None for anything else."""
    try:
        if not stream.isatty():
            return None
        size = os.get_terminal_size(stream.fileno())
        return [size.lines, size.columns]
    except (OSError, ValueError, AttributeError):
        return None


def run(
    program: str,
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    debug: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> int | None:
    """Run ``program argv`` through the daemon; its exit code, or None when
    no daemon serves it (the caller then runs it in-process)."""
    if disabled(environ):
        return None
    import json

    request = {
        "program": program,
        "argv": list(argv),
        "env": forwarded_environment(environ),
        "stdin": None if stdin is None else stdin.decode("utf-8", "surrogateescape"),
        "terminal": {"stdout": _terminal(sys.stdout), "stderr": _terminal(sys.stderr)},
    }
    try:
        response = open_stream("POST", "/v1/run", json.dumps(request).encode(), environ=environ)
    except Unreachable as exc:
        _debug(debug, f"{exc}; running in-process")
        return None
    try:
        if response.headers.get("pipework-protocol") != PROTOCOL or response.status != 200:
            reason = _refusal(response)
            _debug(debug, f"the daemon does not serve this command ({reason}); running in-process")
            return None
        _debug(debug, f"served by the daemon at {socket_path(environ)}")
        return _relay(response)
    finally:
        response.close()


def _refusal(response: Response) -> str:
    try:
        body = response.json()
        return str(body.get("error", response.status))
    except (OSError, ValueError, AttributeError):
        return f"status {response.status}"


def _relay(response: Response) -> int:
    """Copy the worker's output as it comes; its exit code."""
    import json

    streams = {"stdout": sys.stdout, "stderr": sys.stderr}
    try:
        for line in response.lines():
            frame = json.loads(line)
            if not isinstance(frame, dict):
                raise ValueError("a frame that is not an object")
            if "exit" in frame:
                code = frame["exit"]
                return code if type(code) is int and 0 <= code < 256 else 1
            for key, stream in streams.items():
                data = frame.get(key)
                if isinstance(data, str):
                    try:
                        stream.buffer.write(data.encode("utf-8", "surrogateescape"))
                        stream.flush()
                    except BrokenPipeError:  # our reader left, as in-process: SIGINT the worker
                        return 1
    except KeyboardInterrupt:  # closing the connection interrupts the worker (runs.py)
        sys.stderr.write("pipework: interrupted; what was in flight is rolled back\n")
        return 130
    except (OSError, ValueError) as exc:
        print(f"pipework: lost the daemon during the command: {exc}", file=sys.stderr)
        return LOST
    sys.stderr.write(
        "pipework: the daemon stopped before the command finished; "
        "see `pipework ls`, and `pipework gc` removes what is half-made\n"
    )
    return LOST


def _debug(enabled: bool, message: str) -> None:
    if enabled:
        print(f"pipework: DEBUG: {message}", file=sys.stderr)
