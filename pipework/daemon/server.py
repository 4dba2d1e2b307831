"""The daemon's HTTP API (aiohttp), on its unix socket: docs/API.md.

Every request is checked twice before anything runs: the peer's
credentials, from the kernel (root, or a member of the group the
administrator named), and the protocol version when the client sends one.
Bodies are JSON objects of at most ``MAX_BODY`` bytes, read within
``BODY_TIMEOUT``; a connection that has not sent a whole request within
``REQUEST_TIMEOUT`` is answered 408 and closed. Whatever a request holds,
the answer is a JSON error and the daemon goes on serving the others.

The commands themselves are checked where they always are: a worker runs
the ordinary command line (daemon/workers.py), so ``/v1/run`` and
``/v1/commands/NAME`` take exactly what the ``pipework`` command takes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from pipework import __version__
from pipework.client import PROTOCOL
from pipework.daemon.hub import Hub
from pipework.daemon.runs import Misdirected, Peer, run_for
from pipework.daemon.workers import PROGRAMS, Zygote

log = logging.getLogger("pipework.daemon")

MAX_BODY = 1 << 20
BODY_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
MAX_ARGS = 4096
MAX_TYPES = 64
LOCAL_COMMANDS = frozenset({"daemon", "watch", "events", "demo"})
"""Commands the daemon does not run for a client (they are long-lived, or
about the daemon itself): the client runs them in-process."""
STATUS_OF_EXIT = {0: 200, 2: 400, 3: 404, 4: 409, 5: 503, 7: 409, 8: 501, 10: 504, 77: 403}
PEER = web.RequestKey("peer", Peer)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    """The request itself is wrong (400), said in one line."""


def problem(status: int, message: str, code: str) -> web.Response:
    return web.json_response(
        {"error": message, "code": code},
        status=status,
        headers={"Pipework-Protocol": PROTOCOL},
    )


class Api:
    """The routes, over one zygote and one hub."""

    def __init__(self, zygote: Zygote, hub: Hub, *, group: int | None = None) -> None:
        self.zygote = zygote
        self.hub = hub
        self.group = group
        self.started = time.time()
        self.running = 0
        self.served = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.router.add_get("/v1/version", self.version)
        app.router.add_post("/v1/run", self.run)
        app.router.add_post("/v1/commands/{name}", self.command)
        app.router.add_get("/v1/attachments", self.attachments)
        app.router.add_get("/v1/events", self.events)
        app.router.add_get("/v1/metrics", self.metrics)
        app.router.add_get("/metrics", self.metrics)
        return app

    # -- checks on every request ----------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unknown"
        response = await self._checked(request, handler)
        self.hub.metrics.request(name, response.status, time.perf_counter() - started)
        return response

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is None:
            return problem(500, "cannot read the peer's credentials", "peer")
        peer = Peer.of(sock)
        if not self._allowed(peer):
            log.warning("refused a request from uid %d (pid %d)", peer.uid, peer.pid)
            return problem(403, "only root (or the daemon's --group) may use pipework", "denied")
        spoken = request.headers.get("Pipework-Protocol")
        if spoken is not None and spoken != PROTOCOL:
            return problem(
                400, f"this daemon speaks protocol {PROTOCOL}, not {spoken[:20]!r}", "protocol"
            )
        request[PEER] = peer
        try:
            response = await handler(request)
        except BadRequest as exc:
            return problem(400, str(exc), "request")
        except Misdirected as exc:
            return problem(421, f"{exc}; run pipework in-process there", "namespace")
        except web.HTTPException as exc:
            if exc.status >= 400:
                return problem(exc.status, exc.reason, "http")
            raise
        if not response.prepared:
            response.headers["Pipework-Protocol"] = PROTOCOL
        return response

    def _allowed(self, peer: Peer) -> bool:
        if peer.uid == 0:
            return True
        return self.group is not None and self.group in peer.groups()

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                raw = await request.read()
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                reason="the request's body did not arrive in time"
            ) from None
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    # -- routes ---------------------------------------------------------------------
    async def version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "version": __version__,
                "protocol": PROTOCOL,
                "pid": os.getpid(),
                "started": self.started,
                "running": self.running,
                "served": self.served,
            }
        )

    async def run(self, request: web.Request) -> web.StreamResponse:
        """A command line, its output streamed as JSON lines, then its exit code."""
        job = checked_job(await self._body(request))
        if job["program"] == "pipework" and local_command(job["argv"]):
            raise BadRequest(f"{local_command(job['argv'])} is not run by the daemon")
        request[PEER].check()
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Pipework-Protocol": PROTOCOL}
        )
        # The head goes before the job does: a client that has it knows the
        # command is the daemon's to run, and never runs it itself as well.
        await response.prepare(request)
        if request.transport is None or request.transport.is_closing():
            return response

        async def write(frame: Mapping[str, Any]) -> None:
            await response.write(json.dumps(frame).encode() + b"\n")

        code = await self._run(job, request[PEER], write)
        await write({"exit": code})
        await response.write_eof()
        return response

    async def command(self, request: web.Request) -> web.StreamResponse:
        """``pipework --json NAME ARGS...``: its result as one JSON answer."""
        name = request.match_info["name"]
        body = await self._body(request)
        if not name.isalpha() or name in LOCAL_COMMANDS:
            raise web.HTTPNotFound(reason=f"no command {name[:40]!r} is served here")
        args = body.get("args", [])
        if not _strings(args):
            raise BadRequest("args must be a list of strings")
        stdin = body.get("stdin")
        if stdin is not None and not isinstance(stdin, str):
            raise BadRequest("stdin must be a string")
        env = body.get("env", {})
        job = checked_job(
            {"program": "pipework", "argv": ["--json", name, *args], "env": env, "stdin": stdin}
        )
        return await self._collected(job, request[PEER])

    async def attachments(self, request: web.Request) -> web.StreamResponse:
        """What ``pipework ls --json`` prints."""
        job: dict[str, Any] = {
            "program": "pipework",
            "argv": ["--json", "ls"],
            "env": {},
            "stdin": None,
        }
        return await self._collected(job, request[PEER])

    async def events(self, request: web.Request) -> web.StreamResponse:
        wanted = [t for t in request.query.get("types", "").split(",") if t]
        if len(wanted) > MAX_TYPES or not all(len(t) <= 64 for t in wanted):
            raise BadRequest(f"types: at most {MAX_TYPES} types of at most 64 characters")
        response = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson", "Pipework-Protocol": PROTOCOL}
        )
        await response.prepare(request)
        async with self.hub.subscribe(wanted or None) as stream:
            async for event in stream:
                await response.write(json.dumps(event, default=str).encode() + b"\n")
        return response

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body, content_type = self.hub.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    # -- running ----------------------------------------------------------------------
    async def _run(
        self,
        job: Mapping[str, Any],
        peer: Peer,
        write: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> int:
        self.running += 1
        self.served += 1
        try:
            return await run_for(self.zygote, job, peer, write, self._event)
        finally:
            self.running -= 1

    async def _collected(self, job: Mapping[str, Any], peer: Peer) -> web.StreamResponse:
        peer.check()
        out: list[str] = []
        err: list[str] = []

        async def write(frame: Mapping[str, Any]) -> None:
            out.append(frame.get("stdout", ""))
            err.append(frame.get("stderr", ""))

        code = await self._run(job, peer, write)
        stdout, stderr = "".join(out), "".join(err)
        answer: dict[str, Any] = {"exit_code": code, "stderr": stderr}
        try:
            answer["result"] = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            answer["stdout"] = stdout
        return web.json_response(answer, status=STATUS_OF_EXIT.get(code, 500))

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self.hub.publish(event)


def _strings(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_ARGS
        and all(isinstance(v, str) and "\0" not in v for v in value)
    )


def checked_job(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a ``/v1/run`` body, each of its type, or ``BadRequest``."""
    program = body.get("program", "pipework")
    if not isinstance(program, str) or program not in PROGRAMS:
        raise BadRequest(f"program must be one of {', '.join(PROGRAMS)}")
    argv = body.get("argv", [])
    if not _strings(argv):
        raise BadRequest(f"argv must be a list of at most {MAX_ARGS} strings without NUL")
    env = body.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise BadRequest("env must be an object of strings")
    stdin = body.get("stdin")
    if stdin is not None and not isinstance(stdin, str):
        raise BadRequest("stdin must be a string or null")
    terminal = body.get("terminal") or {}
    if not isinstance(terminal, dict):
        raise BadRequest("terminal must be an object")
    sizes = {k: terminal.get(k) for k in ("stdout", "stderr")}
    for key, size in sizes.items():
        if size is not None and not (
            isinstance(size, list) and len(size) == 2 and all(type(n) is int for n in size)
        ):
            raise BadRequest(f"terminal.{key} must be [rows, columns] or null")
    return {"program": program, "argv": argv, "env": env, "stdin": stdin, "terminal": sizes}


VALUED_OPTIONS = frozenset({"--podman-host", "--lxcpath", "-P"})
"""The global options that take the next word (cli/options.py)."""


def local_command(argv: list[str]) -> str | None:
    """The subcommand of a ``pipework`` line when it is one the daemon does not run."""
    words = iter(argv)
    for word in words:
        if word in VALUED_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            return word if word in LOCAL_COMMANDS else None
    return None
