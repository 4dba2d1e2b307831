"""A one-shot HTTP server on a unix socket, standing in for a container
runtime's API in unit tests."""

from __future__ import annotations

import socket
import threading


def serve_once(path: str, response: bytes) -> list[bytes]:
    """Answer one connection on ``path`` with ``response``; returns a list that
    receives the request it saw."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    seen: list[bytes] = []

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            seen.append(conn.recv(4096))
            conn.sendall(response)
        server.close()

    threading.Thread(target=run, daemon=True).start()
    return seen
