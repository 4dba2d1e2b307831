"""Run ``pipework link ...`` or ``pipework apply FILE`` once, noting its phases.

guest_links.py runs ``python _link_phases.py OUT.json ARGS...`` (ARGS as for
the ``pipework`` command) with the interpreter of the console script.  It
calls the real ``pipework.cli.run`` after wrapping a few engine methods to
note the time (CLOCK_MONOTONIC, shared with the parent process): the first
start and the last end of each, and the time spent inside each summed over
its calls.  The wrappers cost microseconds and change nothing else; the
marks are written to OUT.json.  It exits as the console script does
(``os._exit``, no interpreter teardown).
"""

from __future__ import annotations

import sys
import time

START = time.monotonic()

from typing import Any  # noqa: E402  (after the first mark: typing takes milliseconds)


def main() -> int:
    marks: dict[str, float] = {"start": START}
    sums: dict[str, float] = {}
    calls: dict[str, int] = {}
    out, args = sys.argv[1], sys.argv[2:]

    import pipework.cli  # the console script's module

    marks["cli_imported"] = time.monotonic()
    # Subcommands go through typer (cli/app.py): imported first here, to be
    # timed apart; the CLI would import it on the same line.
    import pipework.cli.app

    marks["app_imported"] = time.monotonic()
    # The commands import the engine inside their event loop, on first use;
    # here it comes first, to be timed apart (and to wrap its methods).
    from pipework.engine import engine, guestlinks

    marks["engine_imported"] = time.monotonic()
    instrument(engine.Engine, guestlinks.Linker, marks, sums, calls)
    code: int = pipework.cli.run(args)
    marks["run_end"] = time.monotonic()

    import json
    from pathlib import Path

    Path(out).write_text(json.dumps({"marks": marks, "sums": sums, "calls": calls}))
    return code


def exit_as_the_cli_does(code: int) -> None:
    """``pipework.cli.main``'s exit: flush, then skip the interpreter's teardown."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def instrument(
    engine_cls: Any,
    linker_cls: Any,
    marks: dict[str, float],
    sums: dict[str, float],
    calls: dict[str, int],
) -> None:
    """Wrap the engine's and the linker's steps: first start, last end, sum."""

    def wrap(cls: Any, name: str, label: str) -> None:
        inner = getattr(cls, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            begin = time.monotonic()
            marks.setdefault(f"{label}_start", begin)
            try:
                return await inner(*args, **kwargs)
            finally:
                end = time.monotonic()
                marks[f"{label}_end"] = end
                sums[label] = sums.get(label, 0.0) + end - begin
                calls[label] = calls.get(label, 0) + 1

        setattr(cls, name, wrapper)

    init = engine_cls.__init__

    def init_wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        marks.setdefault("engine_init", time.monotonic())
        init(self, *args, **kwargs)

    engine_cls.__init__ = init_wrapper
    wrap(engine_cls, "__aenter__", "enter")
    wrap(engine_cls, "__aexit__", "exit")
    wrap(engine_cls, "link", "link")
    wrap(engine_cls, "resolve", "resolve")
    wrap(engine_cls, "_announce", "announce")
    wrap(engine_cls, "_result", "result")
    wrap(linker_cls, "_classify", "classify")
    wrap(linker_cls, "_create", "create")


if __name__ == "__main__":
    exit_as_the_cli_does(main())
