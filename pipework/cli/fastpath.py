"""Commands that bypass typer: ``route``/``rule``/``tc`` and the original's ``--wait``.

``pipework route GUEST ARGS...`` must hand ARGS to ``ip route`` exactly as
given (``-6``, ``--json``... are ``ip``'s, not ours), and ``pipework --wait``
runs at a container's start, where every millisecond is the container's. So
neither goes through the subcommand framework. The parsers here are pure.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Sequence

from pipework.cli.options import GlobalOptions
from pipework.cli.registry import PASSTHROUGH
from pipework.cli.render import emit, error, run_async, setup_logging
from pipework.engine.errors import ExternalCommandError, UnsupportedError, UsageError
from pipework.engine.specs import DEFAULT_IFNAME, validate_ifname

PACKAGES = {"ip": "iproute2", "tc": "iproute2"}
WAIT_USAGE = "pipework --wait [-i IF] [--timeout SECONDS]"


def passthrough_argv(word: str, args: Sequence[str]) -> tuple[str, list[str]]:
    """``route web1 add ...`` -> (``web1``, ``["ip", "route", "add", ...]``)."""
    if word not in PASSTHROUGH:
        raise UsageError(f"no such command {word!r}")
    if not args or not args[0]:
        raise UsageError(
            f"{word} needs a GUEST",
            f"usage: pipework {word} GUEST [{' '.join(PASSTHROUGH[word])} ARGS...]",
        )
    if "\0" in "".join(args):
        raise UsageError("arguments may not contain NUL characters")
    return args[0], [*PASSTHROUGH[word], *args[1:]]


def parse_seconds(text: str, option: str = "--timeout") -> float:
    """A number of seconds, 0 or more (0: look once)."""
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{option} {text} is out of range", "use 0 or more seconds")
    return seconds


def parse_wait(args: Sequence[str]) -> tuple[str, float | None]:
    """The original's ``--wait [-i IF]`` line (with ``--timeout S``) -> (ifname, seconds)."""
    ifname: str | None = None
    seconds: float | None = None
    it = iter(args)
    for arg in it:
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg == "--wait":
            continue
        if name in ("-i", "--ifname", "--timeout") or (arg.startswith("-i") and len(arg) > 2):
            if arg.startswith("-i") and len(arg) > 2:
                value: str | None = arg[2:]
                name = "-i"
            else:
                value = inline if eq else next(it, None)
            if value is None:
                raise UsageError(f"option {name} needs a value", f"usage: {WAIT_USAGE}")
            if name == "--timeout":
                if seconds is not None:
                    raise UsageError("option --timeout is given twice")
                seconds = parse_seconds(value)
            else:
                if ifname is not None:
                    raise UsageError(f"option {name} is given twice")
                ifname = validate_ifname(value, "interface name")
        else:
            raise UsageError(
                f"--wait does not take {arg!r}",
                f"usage: {WAIT_USAGE}; from the host: pipework wait GUEST",
            )
    return ifname or DEFAULT_IFNAME, seconds


def run_passthrough(word: str, args: Sequence[str], *, debug: bool) -> int:
    """Resolve GUEST, then become ``ip``/``tc`` inside its network namespace.

    The process enters the namespace and execs the program: its output and
    exit status are the command's own, and no shell ever sees the arguments.
    """
    setup_logging(debug)
    try:
        guest_ref, argv = passthrough_argv(word, args)
    except UsageError as exc:
        error(str(exc))
        return exc.exit_code
    program = shutil.which(argv[0])
    if program is None:
        exc2 = UnsupportedError(
            f"{argv[0]} is not installed", f"install the Debian package {PACKAGES[argv[0]]}"
        )
        error(str(exc2))
        return exc2.exit_code
    held: list[int] = []

    async def resolve() -> int:
        from pipework.engine import Engine
        from pipework.engine.engine import require_privileges

        require_privileges()
        async with Engine() as engine:
            guest = await engine.resolve(guest_ref)
        held.append(guest.fd)
        return 0

    code = run_async(resolve, debug)
    if code != 0:
        return code
    from pipework.engine.kernel.netlink import enter_netns

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        enter_netns(held[0])
        os.execv(program, argv)
    except OSError as exc:
        failure = ExternalCommandError(f"cannot run {' '.join(argv[:2])}: {exc.strerror}")
        error(str(failure))
        return failure.exit_code
    return 1  # pragma: no cover - execv does not return


def run_wait_legacy(args: Sequence[str], options: GlobalOptions) -> int:
    """``pipework --wait [-i IF] [--timeout S]``, run inside the guest itself.

    Like the original, it prints nothing when the interface is ready (with
    ``--json``: one object); it needs no privileges: it only reads its own
    namespace's interfaces.
    """
    setup_logging(options.debug)
    try:
        ifname, seconds = parse_wait(args)
    except UsageError as exc:
        error(str(exc))
        return exc.exit_code

    async def wait() -> int:
        from pipework.engine.kernel.netlink import NetlinkPool
        from pipework.engine.kernel.waiting import wait_for_link

        pool = NetlinkPool()
        try:
            link = await wait_for_link(
                pool.acquire(None, "this namespace"), ifname, seconds, "this namespace"
            )
        finally:
            pool.close()
        if options.json:
            emit({"ifname": link.ifname, "operstate": link.operstate, "mac": link.mac}, True, "")
        return 0

    return run_async(wait, options.debug)


__all__ = [
    "PASSTHROUGH",
    "parse_seconds",
    "parse_wait",
    "passthrough_argv",
    "run_passthrough",
    "run_wait_legacy",
]
