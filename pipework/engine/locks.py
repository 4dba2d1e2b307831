"""Locks on shared resources, held across processes: ``Engine.lock(name)``.

Two pipework processes (two command lines, the CLI and ``watch``, two CNI
calls) may act on the same host resource at once: a bridge to create, a
firewall rule to add or drop, the users of a ``PARENT.VID`` sub-interface,
one guest interface. Each such check-then-act runs under a named lock:
first an ``anyio.Lock`` for the tasks of this process, then an exclusive
``flock`` on ``RUN_DIR/locks/<file>.lock`` for the other processes.

* The file name is derived from the lock name, never taken from it: a
  readable part (letters, digits, ``._-`` only, cut short) and a hash of the
  whole name. The directory is created on demand, mode 0700.
* The event loop is never blocked: the ``flock`` is tried without waiting
  and retried after a short sleep, so a wait is cancellable; it is bounded
  (``LockTimeout``, a one-line error naming the holder's PID, which
  /proc/locks tells: writing it into the file would cost a block write
  per lock on a disk-backed /run).
* A lock is released however its block ends (cancellation included), and
  by the kernel when its process dies: a lock file left by a killed process
  holds nothing.
* The holder removes the file before it lets go, and a process that got the
  lock checks that the file it locked is still the one at that path (else it
  locks again): so files do not pile up, one per guest interface ever
  attached, and removing them does not race. The directory stays.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from pipework.engine.errors import PipeworkError, TimeoutExpiredError

LOCK_DIR = "locks"
"""Under RUN_DIR."""
POLL_FIRST = 0.001
POLL_MAX = 0.025
"""Seconds between two tries of a lock another process holds (backing off)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
READABLE = 40
"""Characters of the lock name kept readable in its file name."""


def lock_file_name(name: str) -> str:
    """``bridge:br1`` -> ``bridge_br1-<hash>.lock``: safe whatever ``name`` holds."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    readable = _UNSAFE.sub("_", name)[:READABLE].strip("._") or "lock"
    return f"{readable}-{digest}.lock"


def describe(name: str) -> str:
    """``bridge:br1`` -> ``bridge br1``, for messages."""
    kind, _, rest = name.partition(":")
    return f"{kind} {rest}" if rest else name


class LockTimeout(TimeoutExpiredError):
    """Another process held a lock longer than the wait allows."""


class HostLocks:
    """The named locks of one engine (``Engine.lock``).

    ``run_dir``: where the lock files go (``RUN_DIR/locks``); ``wait``:
    seconds to wait for a lock another process holds.
    """

    def __init__(self, run_dir: str, wait: float) -> None:
        self.directory = Path(run_dir) / LOCK_DIR
        self.wait = wait
        self._local: dict[str, tuple[anyio.Lock, int]] = {}
        self._dir_fd: int | None = None

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        """``async with locks.hold("bridge:br1"):`` the resource is ours."""
        lock, users = self._local.get(name) or (anyio.Lock(), 0)
        self._local[name] = (lock, users + 1)
        try:
            async with lock:
                fd = await self._flock(name)
                try:
                    yield
                finally:
                    self._unlock(name, fd)
        finally:
            lock, users = self._local[name]
            if users == 1:
                del self._local[name]  # a watcher sees thousands of guests over time
            else:
                self._local[name] = (lock, users - 1)

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    # -- the file lock -------------------------------------------------------------
    def _dir(self) -> int:
        if self._dir_fd is None:
            try:
                self.directory.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                self.directory.mkdir(mode=0o700, exist_ok=True)
                self._dir_fd = os.open(
                    self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                )
            except OSError as exc:
                raise PipeworkError(
                    f"cannot use the lock directory {self.directory}: {exc.strerror}",
                    "pipework keeps its locks under RUN_DIR; set PIPEWORK_RUN_DIR to a"
                    " writable directory",
                ) from None
        return self._dir_fd

    async def _flock(self, name: str) -> int:
        """Lock the file of ``name``; its open descriptor."""
        filename = lock_file_name(name)
        pause = POLL_FIRST
        with anyio.move_on_after(self.wait) as waited:
            while True:
                fd = self._open(filename)
                try:
                    while not _try_lock(fd):
                        await anyio.sleep(pause)
                        pause = min(pause * 2, POLL_MAX)
                    if self._still_at_path(fd, filename):
                        return fd
                except BaseException:
                    os.close(fd)
                    raise
                os.close(fd)  # its holder removed it meanwhile: lock the new one
        assert waited.cancel_called
        holder = self._holder(filename)
        raise LockTimeout(
            f"another pipework process{holder} has held the lock on {describe(name)}"
            f" for more than {self.wait:g} s",
            "wait for it to finish, or stop it if it is stuck",
        )

    def _open(self, filename: str) -> int:
        try:
            return os.open(
                filename,
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=self._dir(),
            )
        except OSError as exc:
            raise PipeworkError(
                f"cannot open the lock file {self.directory / filename}: {exc.strerror}",
                "pipework keeps its locks under RUN_DIR; set PIPEWORK_RUN_DIR to a"
                " writable directory",
            ) from None

    def _still_at_path(self, fd: int, filename: str) -> bool:
        try:
            there = os.stat(filename, dir_fd=self._dir(), follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)

    def _unlock(self, name: str, fd: int) -> None:
        # Removed while still held: whoever opened it meanwhile sees that it
        # is no longer at its path once it gets it, and locks a new one.
        try:
            os.unlink(lock_file_name(name), dir_fd=self._dir())
        except OSError:
            pass
        os.close(fd)  # releases the flock

    def _holder(self, filename: str) -> str:
        """`` (pid N)``: who holds the lock on ``filename``, from /proc/locks."""
        try:
            there = os.stat(filename, dir_fd=self._dir(), follow_symlinks=False)
            with open("/proc/locks", encoding="ascii", errors="replace") as table:
                pid = holder_pid(table.read(), there.st_dev, there.st_ino)
        except OSError:
            return ""
        return f" (pid {pid})" if pid is not None else ""


def holder_pid(table: str, dev: int, ino: int) -> int | None:
    """The PID holding a ``flock`` on the file (``dev``, ``ino``), read from
    /proc/locks (``1: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF``)."""
    wanted = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    for line in table.splitlines():
        fields = line.split()
        # Waiters are listed as "N: -> FLOCK ...": not the holder.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return int(fields[4]) if fields[4].isdigit() else None
    return None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise PipeworkError(f"cannot take a lock under RUN_DIR: {exc.strerror}") from None
    return True


__all__ = ["LOCK_DIR", "HostLocks", "LockTimeout", "describe", "holder_pid", "lock_file_name"]
