"""One command run for a client: its peer, its descriptors, its output.

``Peer.of(sock)`` reads the connecting process's credentials from the
kernel (``SO_PEERCRED``). ``Peer.descriptors()`` opens what the worker needs
of the client: its mount and network namespaces, when they are not the
daemon's, and its working directory. A client in another user or PID
namespace (a container with the socket mounted) is refused with
``Misdirected``: paths and PIDs on its command line mean something else
there, and the client runs the command in-process instead.

``run_for()`` hands the job to the zygote (daemon/workers.py) and passes
the worker's output on as frames (``{"stdout": text}``, ``{"stderr": text}``)
as it comes; it returns the exit code.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import ExitStack
from typing import Any

import anyio

from pipework.daemon.workers import Zygote
from pipework.records import Record

_UCRED = struct.Struct("3i")
NAMESPACES = ("user", "pid", "mnt", "net")
READ_SIZE = 65536


class Misdirected(Exception):
    """The client is where the daemon cannot act for it (421)."""


class Peer(Record):
    """The process at the other end of a connection."""

    pid: int
    uid: int
    gid: int

    @classmethod
    def of(cls, sock: socket.socket) -> Peer:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        pid, uid, gid = _UCRED.unpack(raw)
        return cls(pid, uid, gid)

    def groups(self) -> set[int]:
        """Its primary and supplementary groups, from /proc (empty if it is gone)."""
        groups = {self.gid}
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("Groups:"):
                        groups.update(int(g) for g in line.split()[1:] if g.isdigit())
        except OSError:
            return set()
        return groups

    def check(self) -> None:
        """``Misdirected`` unless the daemon can act for this client."""
        self._differing()

    def _differing(self) -> list[str]:
        """The client's namespaces that are not the daemon's (mnt, net)."""
        if self.pid <= 0:
            raise Misdirected("the client's process is not visible from the daemon's namespace")
        kinds = []
        for kind in NAMESPACES:
            try:
                theirs = os.stat(f"/proc/{self.pid}/ns/{kind}")
                ours = os.stat(f"/proc/self/ns/{kind}")
            except OSError as exc:
                raise Misdirected(
                    f"cannot read the client's {kind} namespace: {exc.strerror}"
                ) from None
            if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                continue
            if kind in ("user", "pid"):
                raise Misdirected(f"the client is in another {kind} namespace than the daemon")
            kinds.append(kind)
        return kinds

    def descriptors(self, opened: list[int]) -> dict[str, int]:
        """``mnt``/``net`` (only where they differ from the daemon's) and
        ``cwd``, opened for the worker (and added to ``opened``)."""
        fds = {
            kind: _open(opened, f"/proc/{self.pid}/ns/{kind}", os.O_RDONLY)
            for kind in self._differing()
        }
        fds["cwd"] = _open(opened, f"/proc/{self.pid}/cwd", os.O_RDONLY | os.O_DIRECTORY)
        return fds


def _open(opened: list[int], path: str, flags: int) -> int:
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise Misdirected(f"cannot open {path}: {exc.strerror}") from None
    opened.append(fd)
    return fd


def _pipe(opened: list[int], terminal: Any) -> tuple[int, int]:
    """(read end, write end): a pipe, or a terminal of the client's size."""
    if (
        isinstance(terminal, list)
        and len(terminal) == 2
        and all(isinstance(n, int) for n in terminal)
    ):
        import fcntl
        import termios
        import tty

        master, slave = os.openpty()
        opened += (master, slave)
        tty.setraw(slave)  # bytes as written: no \r added, nothing echoed
        rows, cols = (max(0, min(n, 10000)) for n in terminal)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("4H", rows, cols, 0, 0))
        os.set_blocking(master, False)
        return master, slave
    read, write = os.pipe()
    opened += (read, write)
    os.set_blocking(read, False)
    return read, write


def _stdin(opened: list[int], data: str) -> int:
    fd = os.memfd_create("pipework-stdin", os.MFD_CLOEXEC)
    opened.append(fd)
    os.write(fd, data.encode("utf-8", "surrogateescape"))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


async def _drain(fd: int) -> AsyncIterator[bytes]:
    while True:
        await anyio.wait_readable(fd)
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            continue
        except OSError:  # EIO: a terminal's last writer has gone
            return
        if not chunk:
            return
        yield chunk


async def run_for(
    zygote: Zygote,
    job: Mapping[str, Any],
    peer: Peer,
    write: Callable[[dict[str, Any]], Awaitable[None]],
    on_event: Callable[[bytes], None],
) -> int:
    """Run ``job`` for ``peer``, passing each frame of its output to
    ``write`` as it comes; its exit code. Cancelled (the client went away):
    the worker gets SIGINT, as a Ctrl-C in-process would give it."""
    terminal = job.get("terminal") or {}
    state: dict[str, int] = {}
    opened: list[int] = []
    keep: set[int] = set()
    try:
        try:
            fds = peer.descriptors(opened)
        except Misdirected as exc:  # it changed since the check: said, not run
            await write({"stderr": f"pipework: the daemon cannot run this command: {exc}\n"})
            return 1
        out_r, out_w = _pipe(opened, terminal.get("stdout"))
        err_r, err_w = _pipe(opened, terminal.get("stderr"))
        res_r, res_w = _pipe(opened, None)
        ev_r, ev_w = _pipe(opened, None)
        fds.update(stdout=out_w, stderr=err_w, result=res_w, events=ev_w)
        if job.get("stdin") is not None:
            fds["stdin"] = _stdin(opened, job["stdin"])
        zygote.submit({k: job[k] for k in ("program", "argv", "env") if k in job}, fds)
        keep = {out_r, err_r, res_r, ev_r}
    finally:
        # The zygote has its copies (or there is no job): all but the reading
        # ends are closed now, or those would never see the end.
        for fd in opened:
            if fd not in keep:
                os.close(fd)
    with ExitStack() as reading:
        for fd in keep:
            reading.callback(os.close, fd)
        try:
            async with anyio.create_task_group() as tg:

                async def pump(key: str, fd: int) -> None:
                    async for chunk in _drain(fd):
                        await write({key: chunk.decode("utf-8", "surrogateescape")})

                async def lines(fd: int, take: Callable[[bytes], None]) -> None:
                    pending = b""
                    async for chunk in _drain(fd):
                        pending += chunk
                        *done, pending = pending.split(b"\n")
                        for line in done:
                            take(line)

                def result(line: bytes) -> None:
                    word, _, number = line.decode("ascii", "replace").partition(" ")
                    if number.isdigit():
                        state[word] = int(number)

                tg.start_soon(pump, "stdout", out_r)
                tg.start_soon(pump, "stderr", err_r)
                tg.start_soon(lines, res_r, result)
                tg.start_soon(lines, ev_r, on_event)
        except BaseException:
            pid = state.get("pid")
            if pid and "exit" not in state:
                try:
                    os.kill(pid, signal.SIGINT)
                except OSError:
                    pass
            raise
    code = state.get("exit")
    if code is None:
        await write({"stderr": "pipework: the daemon's worker died before the command finished\n"})
        code = 1
    return code
