"""The thin client of ``pipework daemon``: HTTP/1.0 over its unix socket,
with the standard library only.

(A minimal version, for ``pipework events``: the daemon's own client
replaces it, with the same interface.)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping

SOCKET_NAME = "pipework.sock"
SOCKET_ENV = "PIPEWORK_SOCKET"
DEFAULT_RUN_DIR = "/run/pipework"
CONNECT_TIMEOUT = 1.0
"""Seconds for the daemon to accept a request and answer its headers."""
HEAD_MAX = 65536


class Unreachable(Exception):
    """No daemon answers (or not in HTTP)."""


class Response:
    """A response being read: its status, lowercased headers, then the body."""

    def __init__(
        self, sock: socket.socket, status: int, headers: dict[str, str], rest: bytes
    ) -> None:
        self.status = status
        self.headers = headers
        self._sock = sock
        self._buffer = rest

    def lines(self) -> Iterator[bytes]:
        """The body's lines (each with its newline; the last may have none)
        until the daemon closes the connection."""
        buffer, self._buffer = self._buffer, b""
        while True:
            *whole, buffer = buffer.split(b"\n")
            for line in whole:
                yield line + b"\n"
            chunk = self._sock.recv(65536)
            if not chunk:
                if buffer:
                    yield buffer
                return
            buffer += chunk

    def close(self) -> None:
        self._sock.close()


def socket_path(environ: Mapping[str, str] = os.environ) -> str:
    """Where the daemon listens: ``PIPEWORK_SOCKET``, else RUN_DIR/pipework.sock."""
    explicit = environ.get(SOCKET_ENV)
    if explicit:
        return explicit
    run_dir = environ.get("PIPEWORK_RUN_DIR") or DEFAULT_RUN_DIR
    return f"{run_dir}/{SOCKET_NAME}"


def open_stream(
    method: str, path: str, body: bytes | None = None, *, timeout: float | None = None
) -> Response:
    """Send one request; the response once its headers are in (``timeout``
    then bounds each read of the body; None: wait as long as it takes).
    Raises ``Unreachable`` when no daemon answers."""
    where = socket_path()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(where)
        except OSError as exc:
            raise Unreachable(f"no daemon answers at {where}: {exc.strerror or exc}") from None
        head = f"{method} {path} HTTP/1.0\r\nHost: pipework\r\n"
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


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_MAX:
            raise ValueError("the response's headers are too long")
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("the connection closed before the response's headers")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    first, *fields = head.decode("latin-1").split("\r\n")
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {first[:80]!r}")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


__all__ = ["Response", "Unreachable", "open_stream", "socket_path"]
