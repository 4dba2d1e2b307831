"""Commands run for clients: one worker process per command, forked warm.

The daemon forks a *zygote* before it starts its event loop or any thread:
a single-threaded process that has imported the CLI, the CNI plugin, the
engine and every plugin, and then only waits on a socketpair. For each
command the daemon sends it the request and the file descriptors the
command needs (its output pipes or terminals, its stdin, the client's
namespaces and working directory, a result pipe and an events pipe, by
``SCM_RIGHTS``); the zygote forks a worker and forgets it (SIGCHLD is
ignored: the kernel reaps).

The worker is a fresh process that paid for nothing: it enters the client's
mount and network namespaces (so the host of the command is the client's,
and paths mean what they meant to the client), changes to the client's
working directory, takes the client's forwarded environment, and runs the
program's ordinary entry, ``pipework.cli.run`` or the CNI plugin's, exactly
as ``pipework`` or ``pipework-cni`` would in-process. Its output goes to
the daemon, which streams it to the client; its exit code comes back on
the result pipe.

If the daemon dies, the zygote sees its socket close and exits; a worker
that is running finishes its command (every attach is all-or-nothing), and
the client reports the loss (pipework/client.py, exit 11).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pipework.client import FORWARDED_NAMES, FORWARDED_PREFIXES, NO_DAEMON_ENV
from pipework.engine.errors import EXIT_INTERRUPTED

log = logging.getLogger(__name__)

PROGRAMS: Mapping[str, str] = {
    "pipework": "pipework.cli:run",
    "pipework-cni": "pipework.cni.main:run_stdio",
}
"""What a worker may run: the console scripts' own entries (by name, as a
console script names them: the daemon sits below the CLI and the CNI
plugin, and launches them, as the scripts do)."""

WARM_MODULES = (
    "pipework.cli.app",
    "pipework.cli.fastpath",
    "pipework.cli.legacy",
    "pipework.cli.batchpath",
    "pipework.cli.linkpath",
    "pipework.cli.forward",
    "pipework.cni.main",
    "pipework.cni.commands",
    "pipework.engine.engine",
    "pyroute2",
    "aiodocker",
    "anyio._backends._asyncio",
)
"""Imported by the zygote before it forks anything: every worker starts with them."""

PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
FD_NAMES = ("stdin", "stdout", "stderr", "result", "events", "mnt", "net", "cwd")
"""The descriptors a job may carry, in this order; a job names those it has."""
MAX_MESSAGE = 1 << 22
"""The largest request the zygote reads (the daemon's own body limit is below it)."""


class Zygote:
    """The daemon's side of the zygote: ``start()`` it before any thread."""

    def __init__(self) -> None:
        self.pid = 0
        self._sock: socket.socket | None = None

    def start(self, close: Sequence[int] = ()) -> None:
        """Fork the zygote; it closes ``close`` (the daemon's listening socket:
        a worker that outlives the daemon must not hold it open)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        _warm()
        sys.stdout.flush()
        sys.stderr.flush()
        daemon = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the zygote (its behaviour is tested through the daemon)
            parent.close()
            for fd in close:
                os.close(fd)
            _on_parent_death(signal.SIGTERM, daemon)
            try:
                _serve(child)
            finally:
                os._exit(0)
        child.close()
        self.pid = pid
        self._sock = parent

    def submit(self, job: Mapping[str, Any], fds: Mapping[str, int]) -> None:
        """Hand one job to the zygote, with its descriptors (the daemon keeps
        and closes its own copies)."""
        if self._sock is None:
            raise RuntimeError("the zygote is not running")
        names = [name for name in FD_NAMES if name in fds]
        message = json.dumps({**job, "fds": names}).encode()
        socket.send_fds(self._sock, [message], [fds[name] for name in names])

    def alive(self) -> bool:
        if not self.pid:
            return False
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return done == 0

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()  # the zygote's recv sees the end and it exits
            self._sock = None
        if self.pid:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def _warm() -> None:
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # pragma: no cover - a broken install shows in the command
            log.debug("warming %s: %s", name, exc)
    try:  # every plugin, loaded and checked once: no worker does it again
        from pipework.engine.plugins import prepare_plugin_manager

        prepare_plugin_manager()
    except Exception as exc:  # pragma: no cover - reported by the commands themselves
        log.debug("warming the plugins: %s", exc)


def _on_parent_death(signum: int, parent: int) -> None:
    """Have the kernel send ``signum`` when the parent dies (a daemon killed
    outright takes its zygote along; a zygote gone interrupts its workers,
    which roll back what they were doing, as after a Ctrl-C)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signum)


def _serve(sock: socket.socket) -> None:  # pragma: no cover - runs in the zygote
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon's Ctrl-C is the daemon's
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, len(FD_NAMES))
        except InterruptedError:
            continue
        except OSError:
            return
        if not message:
            return
        zygote = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            for fd in fds:
                os.close(fd)
            continue
        if pid == 0:
            sock.close()
            _work(message, fds, zygote)
        for fd in fds:
            os.close(fd)


def _work(
    message: bytes, fds: Sequence[int], zygote: int
) -> None:  # pragma: no cover - runs in a worker
    """Run one job in this (forked) process; never returns."""
    code = 1
    result = -1
    try:
        job = json.loads(message)
        named = dict(zip(job["fds"], fds, strict=True))
        result = named["result"]
        _reset_signals()
        _on_parent_death(signal.SIGINT, zygote)
        _enter(named)
        _take_environment(job.get("env") or {})
        _take_stdio(named)
        os.write(result, f"pid {os.getpid()}\n".encode())
        if "events" in named:
            _send_events(named["events"])
        code = _run(job["program"], job.get("argv") or [])
    except KeyboardInterrupt:  # the client went away before the program's own handler ran
        code = EXIT_INTERRUPTED
    except BaseException as exc:  # the job's own errors are the program's to print
        try:
            print(f"pipework: the daemon could not run the command: {exc}", file=sys.stderr)
        except OSError:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    try:
        os.write(result, f"exit {code}\n".encode())
    except OSError:
        pass
    os._exit(code)


def _reset_signals() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: the client went away
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass


def _enter(named: Mapping[str, int]) -> None:
    """The client's mount namespace, then its network namespace, then its
    working directory (the daemon passes a namespace only when it is not
    the daemon's own)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for name, kind in (("mnt", CLONE_NEWNS), ("net", CLONE_NEWNET)):
        fd = named.get(name)
        if fd is None:
            continue
        if libc.setns(fd, kind) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot enter the client's {name} namespace: {os.strerror(err)}")
        os.close(fd)
    cwd = named.get("cwd")
    if cwd is not None:
        try:
            os.fchdir(cwd)
        except OSError:
            os.chdir("/")
        os.close(cwd)


def _take_environment(env: Mapping[str, str]) -> None:
    for name in list(os.environ):
        if name in FORWARDED_NAMES or name.startswith(FORWARDED_PREFIXES):
            del os.environ[name]
    for name, value in env.items():
        if (
            isinstance(name, str)
            and isinstance(value, str)
            and "\0" not in name + value
            and (name in FORWARDED_NAMES or name.startswith(FORWARDED_PREFIXES))
        ):
            os.environ[name] = value
    os.environ[NO_DAEMON_ENV] = "1"  # the worker is the in-process run


def _take_stdio(named: Mapping[str, int]) -> None:
    """The job's descriptors as 0, 1 and 2, and new ``sys`` streams over them,
    buffered as a process started on them would be (line by line on a
    terminal, in blocks on a pipe)."""
    for target, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        fd = named.get(name)
        if fd is None:
            fd = os.open(os.devnull, os.O_RDWR)
        os.dup2(fd, target)
        os.close(fd)
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = open(0, encoding=sys.stdin.encoding, closefd=False)  # noqa: SIM115
    sys.stdout = open(  # noqa: SIM115
        1, "w", buffering=1 if os.isatty(1) else -1, encoding=encoding, errors=errors, closefd=False
    )
    sys.stderr = open(  # noqa: SIM115
        2, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False
    )


def _send_events(fd: int) -> None:
    """Engine events (engine/telemetry.py) go to the daemon as JSON lines."""
    try:
        from pipework.engine import telemetry
    except ImportError:
        os.close(fd)
        return

    def sink(event: Mapping[str, object]) -> None:
        os.write(fd, json.dumps(event, default=str).encode() + b"\n")

    telemetry.add_sink(sink)


def _run(program: str, argv: Sequence[str]) -> int:
    entry = PROGRAMS.get(program)
    if entry is None:
        print(f"pipework: the daemon runs no program {program!r}", file=sys.stderr)
        return 2
    module, _, attribute = entry.partition(":")
    func = getattr(importlib.import_module(module), attribute)
    try:
        return int(func(list(argv)))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
