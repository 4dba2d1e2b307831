"""The ``pipework`` command.

``main()`` is the console script. It stays light on purpose: the global
options are read once (cli/options.py) and the line goes to its path; a
single legacy attach (``pipework br1 web1 198.18.10.2/24``) is parsed by the
pure grammar and run without importing typer; the subcommands and ``--help``
go to the typer app (cli/app.py), which builds itself from cli/registry.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pipework.cli.options import read


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


def run(args: Sequence[str]) -> int:
    """Run one command line; its exit code."""
    try:
        invocation = read(args)
    except Exception as exc:  # a UsageError; its class lives in the engine, not loaded yet
        from pipework.cli.render import error
        from pipework.engine.errors import PipeworkError

        if not isinstance(exc, PipeworkError):
            raise
        error(str(exc))
        return exc.exit_code
    from pipework.cli.forward import forward

    served = forward(invocation, args)
    if served is not None:
        return served
    options, words = invocation.options, list(invocation.words)
    options.export()
    if invocation.path == "passthrough":
        from pipework.cli.fastpath import run_passthrough

        return run_passthrough(words[0], words[1:], debug=options.debug)
    if invocation.path == "wait":
        from pipework.cli.fastpath import run_wait_legacy

        return run_wait_legacy(words, options)
    if invocation.path == "version":
        from pipework import __version__

        print(f"pipework {__version__}")
        return 0
    if invocation.path == "legacy":
        from pipework.cli.legacy import run_legacy

        return run_legacy(words, options)
    if words[:1] == ["batch"]:  # plain options: no typer (cli/batchpath.py)
        from pipework.cli.batchpath import run_plain

        code = run_plain(words[1:], options)
        if code is not None:
            return code
    if words[:1] == ["link"]:  # the same for link (cli/linkpath.py)
        from pipework.cli.linkpath import run_plain as run_plain_link

        code = run_plain_link(words[1:], options)
        if code is not None:
            return code
    from pipework.cli.app import run_app

    if invocation.path == "help":
        run_app(["--help"], options)
        return 2  # like the original: no arguments is a usage error
    return run_app(words, options)
