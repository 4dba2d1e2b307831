"""``pipework daemon``: the resident process, from its socket to its stop.

Start-up, in this order:

1. The listening socket: the one systemd passes (socket activation,
   ``LISTEN_FDS``/``LISTEN_PID``, contrib/pipework.socket), or
   ``RUN_DIR/pipework.sock`` bound here, mode 0600 (0660 and the named
   group's with ``--group``). A socket another daemon answers on is left
   alone (the start fails); a stale one, from a daemon that died, is
   replaced; anything at that path that is not a socket is refused.
2. The zygote (daemon/workers.py), forked while this process has one
   thread: it has imported everything a command needs, and forks one
   worker per command.
3. The event loop: the API (daemon/server.py) on the socket, the hub that
   streams events and counts metrics (daemon/hub.py), the DHCP supervisor
   (daemon/supervisor.py) and, with ``--watch``, the watcher
   (apps/watch.py), all over one warm engine.

SIGTERM or SIGINT stops it: the socket stops accepting, commands that run
finish (up to ``STOP_GRACE`` seconds), event streams end, the zygote goes,
the socket file is removed. Attachments, kept DHCP clients and helper
containers stay: a daemon started again finds them from the kernel's
markers and its records, as any pipework command does.
"""

from __future__ import annotations

import functools
import grp
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pipework import client
from pipework.daemon.workers import Zygote
from pipework.engine.errors import ConflictError, PipeworkError, UsageError
from pipework.records import Record

log = logging.getLogger("pipework.daemon")

LISTEN_FDS_START = 3
"""The first descriptor systemd passes (sd_listen_fds(3))."""
STOP_GRACE = 30.0
"""Seconds running commands get to finish when the daemon stops."""
BACKLOG = 128


class Settings(Record):
    """How the daemon runs: ``group`` may use the socket besides root;
    ``watch`` (built by the CLI) runs the watcher over the daemon's engine;
    ``dhcp_interval`` is the DHCP supervisor's period in seconds."""

    group: str | None = None
    watch: Callable[[Any], Coroutine[Any, Any, None]] | None = None
    dhcp_interval: float = 10.0


def group_id(name: str) -> int:
    """The id of the group ``name`` (or a number), or a one-line ``UsageError``."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isdigit():
            return int(name)
        raise UsageError(
            f"--group: no group named {name!r}", "create it, or name another"
        ) from None


def activated_socket(
    environ: os._Environ[str] | dict[str, str] = os.environ,
) -> socket.socket | None:
    """The listening socket systemd passed, or None when it passed none."""
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)  # not for the workers' children
    if not count.isdigit() or int(count) < 1:
        return None
    if int(count) > 1:
        raise UsageError(
            f"systemd passed {count} sockets; pipework listens on one",
            "give pipework.socket a single ListenStream=",
        )
    sock = socket.socket(fileno=LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise UsageError(
            "the socket systemd passed is not a unix stream socket",
            "ListenStream= takes a path in pipework.socket",
        )
    sock.set_inheritable(False)
    return sock


def bound_socket(path: str, gid: int | None) -> socket.socket:
    """A new listening socket at ``path``: only root (and ``gid``) may connect."""
    where = Path(path)
    where.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        mode = where.lstat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISSOCK(mode):
            raise UsageError(
                f"{path} exists and is not a socket",
                "remove it, or point PIPEWORK_SOCKET elsewhere",
            )
        if _answers(path):
            raise ConflictError(
                f"a daemon already answers at {path}",
                f"stop it first; curl --unix-socket {path} http://pipework/v1/version shows its pid",
            )
        where.unlink()  # a daemon that died left it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise PipeworkError(f"cannot listen at {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    if gid is not None:
        os.chown(path, 0, gid)
        where.chmod(0o660)
    sock.listen(BACKLOG)
    return sock


def _answers(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def serve(settings: Settings) -> int:
    """Run the daemon until a signal stops it; its exit code."""
    gid = group_id(settings.group) if settings.group is not None else None
    sock = activated_socket()
    path = None
    if sock is None:
        path = client.socket_path()
        sock = bound_socket(path, gid)
    identity = os.fstat(sock.fileno()) if path is None else os.stat(path)
    notify_to = os.environ.pop("NOTIFY_SOCKET", "")  # systemd's, not the workers'
    zygote = Zygote()
    try:
        zygote.start(close=(sock.fileno(),))
        import anyio

        return anyio.run(_loop, sock, zygote, settings, gid, notify_to)
    finally:
        zygote.stop()
        sock.close()
        if path is not None:
            _remove(path, identity)


def _remove(path: str, identity: os.stat_result) -> None:
    """Remove the socket file, if it is still the one this daemon made."""
    try:
        now = os.lstat(path)
    except OSError:
        return
    if (now.st_dev, now.st_ino) == (identity.st_dev, identity.st_ino):
        Path(path).unlink()


async def _loop(
    sock: socket.socket, zygote: Zygote, settings: Settings, gid: int | None, notify_to: str
) -> int:
    import anyio
    from aiohttp import web

    from pipework.daemon.hub import Hub
    from pipework.daemon.metrics import Metrics
    from pipework.daemon.server import REQUEST_TIMEOUT, Api
    from pipework.daemon.supervisor import supervise
    from pipework.engine import Engine, telemetry

    hub = Hub(Metrics())
    telemetry.add_sink(hub.publish)
    api = Api(zygote, hub, group=gid)
    runner = web.AppRunner(
        api.app(),
        handle_signals=False,
        access_log=None,
        keepalive_timeout=REQUEST_TIMEOUT,
        shutdown_timeout=STOP_GRACE,
        handler_cancellation=True,  # a client that leaves interrupts its command
    )
    await runner.setup()
    stopped_by: list[str] = []
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with Engine() as engine, anyio.create_task_group() as tg:
                await web.SockSite(runner, sock).start()
                log.info(
                    "serving at %s (pid %d, protocol %s)",
                    _name(sock), os.getpid(), client.PROTOCOL,
                    extra={"event": "started"},
                )  # fmt: skip
                tg.start_soon(
                    functools.partial(
                        supervise, engine, telemetry.emit, interval=settings.dhcp_interval
                    )
                )
                if settings.watch is not None:
                    tg.start_soon(settings.watch, engine)
                tg.start_soon(_keep_zygote, zygote, stopped_by)
                notify(notify_to, "READY=1")
                async for signum in signals:
                    stopped_by.append(signal.Signals(signum).name)
                    break
                log.info(
                    "%s: stopping; attachments stay in place",
                    stopped_by[0], extra={"event": "stopped"},
                )  # fmt: skip
                notify(notify_to, "STOPPING=1")
                tg.cancel_scope.cancel()
    finally:  # event streams end, running commands finish, then the socket closes
        telemetry.remove_sink(hub.publish)
        hub.close()
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
    return 0 if stopped_by and stopped_by[0] != "zygote" else 1


async def _keep_zygote(zygote: Zygote, stopped_by: list[str]) -> None:
    """A daemon whose zygote died cannot run commands: it stops, with an
    error (systemd's Restart= starts a whole new one)."""
    import anyio

    while zygote.alive():  # noqa: ASYNC110 - a child process has no event to await
        await anyio.sleep(1.0)
    log.error("the worker process died; stopping (start the daemon again)")
    stopped_by.append("zygote")
    os.kill(os.getpid(), signal.SIGTERM)


def notify(where: str, state: str) -> None:
    """Tell systemd (``Type=notify``), when it gave a ``NOTIFY_SOCKET``."""
    if not where.startswith(("/", "@")):
        return
    address = "\0" + where[1:] if where.startswith("@") else where
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.debug("cannot notify systemd at %s: %s", where, exc)


def _name(sock: socket.socket) -> str:
    name = sock.getsockname()
    return name if isinstance(name, str) and name else "the socket systemd passed"


__all__ = ["STOP_GRACE", "Settings", "activated_socket", "bound_socket", "group_id", "serve"]
