"""``pipework-cni``: the CNI plugin's entry point.

A runtime execs it once per call, so start-up is the cost that matters:
VERSION and every malformed invocation are answered with the standard
library and ``protocol``/``config`` only; the engine (anyio, pyroute2, the
plugins) is imported only by the commands that need it. Like the
``pipework`` command, it leaves with ``os._exit()`` once its output is
flushed, skipping the interpreter's teardown.

Output: the result (ADD), the version information (VERSION) or nothing, on
stdout, exit status 0; or the specification's error object on stdout, the
same message as one line on stderr (for people and runtime logs), and exit
status 1.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from pipework.cni.protocol import (
    INTERNAL,
    IO_FAILURE,
    LATEST,
    SUPPORTED_VERSIONS,
    CniError,
    version_info,
)

PROGRAM = "pipework-cni"


def main() -> None:
    code = _served() if os.environ.get("CNI_COMMAND", "VERSION") != "VERSION" else None
    if code is None:
        code = run(os.environ, _stdin(), sys.stdout, sys.stderr)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


_taken: list[bytes] = []
"""The configuration, once ``_served`` has read it from stdin for the daemon."""


def _served() -> int | None:
    """The call run by ``pipework daemon`` when one answers (the thick-plugin
    model: pipework/client.py): its exit code, or None to run it here."""
    from pipework import client

    if client.disabled():
        return None
    try:
        data = b"" if sys.stdin.isatty() else sys.stdin.buffer.read()
    except OSError:
        return None  # run() reports it
    _taken.append(data)
    return client.run(PROGRAM, [], stdin=data, debug=bool(os.environ.get("PIPEWORK_DEBUG")))


def _stdin() -> IO[bytes]:
    if _taken:
        import io

        return io.BytesIO(_taken[0])
    return sys.stdin.buffer


def run_stdio(argv: list[str]) -> int:
    """The call as a daemon's worker runs it: this process's environment and
    standard streams (``argv`` is the plugin's, always empty)."""
    return run(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr)


def run(env: Mapping[str, str], stdin: IO[bytes], stdout: IO[str], stderr: IO[str]) -> int:
    version = LATEST
    try:
        from pipework.cni.config import Invocation

        invocation = Invocation.from_env(env)
        data = _read(stdin)
        version = _declared_version(data) or version
        if invocation.command == "VERSION":
            _write(stdout, version_info(_requested(data)))
            return 0
        from pipework.cni.config import load

        conf = load(data, invocation.command)
        invocation.require()
        output = _dispatch(invocation, conf, env)
        if output is not None:
            _write(stdout, output)
        return 0
    except BaseException as exc:  # every failure becomes the spec's error object
        if isinstance(exc, Exception):
            from pipework.cni.protocol import error_for

            error = error_for(exc)
        else:  # KeyboardInterrupt, SystemExit: the engine has rolled back
            error = CniError(INTERNAL, "interrupted", "whatever was in flight has been rolled back")
        if env.get("PIPEWORK_DEBUG") and not isinstance(exc, CniError):
            import traceback

            traceback.print_exc(file=stderr)
        _write(stdout, error.to_dict(version))
        print(f"{PROGRAM}: {error}", file=stderr)
        return 1


def _dispatch(invocation: Any, conf: Any, env: Mapping[str, str]) -> Any:
    import logging

    import anyio

    from pipework.cni.commands import COMMANDS

    logging.basicConfig(
        level=logging.DEBUG if env.get("PIPEWORK_DEBUG") else logging.WARNING,
        format=f"{PROGRAM}: %(levelname)s: %(message)s",
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)
    command = COMMANDS[invocation.command]
    return anyio.run(command, invocation, conf)


def _read(stdin: IO[bytes]) -> bytes:
    try:
        if stdin.isatty():
            return b""  # a person typing `pipework-cni`: do not wait for input
        return stdin.read()
    except OSError as exc:
        raise CniError(IO_FAILURE, f"cannot read the network configuration: {exc}") from None


def _declared_version(data: bytes) -> str | None:
    """The configuration's cniVersion if it is one we speak, for error objects."""
    requested = _requested(data)
    return requested if requested in SUPPORTED_VERSIONS else None


def _requested(data: bytes) -> str | None:
    try:
        conf = json.loads(data) if data.strip() else {}
    except ValueError:
        return None
    version = conf.get("cniVersion") if isinstance(conf, dict) else None
    return version if isinstance(version, str) else None


def _write(stream: IO[str], data: Mapping[str, Any]) -> None:
    stream.write(json.dumps(data, indent=2) + "\n")
