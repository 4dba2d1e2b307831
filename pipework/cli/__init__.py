"""The ``pipework`` command.

``main()`` is the console script. It stays light on purpose: a single legacy
attach (``pipework br1 web1 198.18.10.2/24``) is parsed by the pure grammar
and run without importing typer; everything else goes to the typer app.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

OPERATIONS = ("detach", "ls", "gc", "wait", "route", "rule", "tc")
"""Subcommands in cli/ops.py; route/rule/tc run through cli/fastpath.py."""
SUBCOMMANDS = ("attach", "plugins", "demo", "watch", "apply", "destroy", "batch", *OPERATIONS)
GLOBAL_FLAGS = ("--json", "--debug")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    code = run(args)
    # Everything is closed and flushed here; skip the interpreter's teardown,
    # which walks every object for ~30 ms (measured in bench/), longer than
    # the netlink work of an attach.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code)


def run(args: list[str]) -> int:
    if any(a.startswith(("--podman-host", "--lxcpath", "-P")) for a in args):
        from pipework.cli.runtime_options import take_runtime_options
        from pipework.engine.errors import UsageError

        try:
            args = take_runtime_options(args)
        except UsageError as exc:
            print(f"pipework: {exc}", file=sys.stderr)
            return exc.exit_code
    lead = 0  # global flags before a passthrough word are ours; after it, ip's/tc's
    while lead < len(args) and args[lead] in GLOBAL_FLAGS:
        lead += 1
    word, rest = (args[lead], args[lead + 1 :]) if lead < len(args) else ("", [])
    if word in ("route", "rule", "tc") and rest[:1] not in (["-h"], ["--help"]):
        from pipework.cli.fastpath import run_passthrough

        return run_passthrough(word, rest, debug="--debug" in args[:lead])
    words = [a for a in args if a not in GLOBAL_FLAGS]
    first = words[0] if words else ""
    if "--wait" in words and first not in SUBCOMMANDS:
        from pipework.cli.fastpath import run_wait_legacy

        return run_wait_legacy(words, json_output="--json" in args, debug="--debug" in args)
    if "--version" in args:
        from pipework import __version__

        print(f"pipework {__version__}")
        return 0
    if not words:
        from pipework.cli.app import run_app

        run_app(["--help"])
        return 2  # like the original: no arguments is a usage error
    if first and first not in SUBCOMMANDS and (not first.startswith("-") or _legacy_option(first)):
        from pipework.cli.legacy import run_legacy

        return run_legacy(words, json_output="--json" in args, debug="--debug" in args)
    from pipework.cli.app import run_app

    return run_app(args)


def _legacy_option(word: str) -> bool:
    from pipework.apps.grammar import OPTIONS

    return word.split("=", 1)[0] in OPTIONS or word[:2] in ("-i", "-l", "-a")
