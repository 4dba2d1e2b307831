"""Run ``pipework-cni`` once, recording when each of its phases starts and ends.

cni_add.py runs ``python _cni_phases.py OUT.json`` with the same interpreter
as the ``pipework-cni`` console script, the same ``CNI_*`` environment and
the configuration on stdin. It imports what the plugin imports, in the same
order (the CNI modules, then the engine and the commands, then the event
loop's modules, which ``anyio.run`` would import), notes the time after
each, wraps a few functions to note when the configuration is parsed, the
loop has started, the engine is made and entered, the command's kernel work
runs and the engine is left (CLOCK_MONOTONIC, which the parent process
shares), and then calls the real ``pipework.cni.main.run``. The wrappers cost
microseconds and change nothing else. The marks are written to OUT.json and
the process leaves with ``os._exit``, as the plugin does.
"""

from __future__ import annotations

import sys
import time

START = time.monotonic()

from typing import Any  # noqa: E402  (after the first mark: typing takes milliseconds)


def main() -> None:
    marks: dict[str, float] = {"start": START}
    out = sys.argv[1]

    import os

    import pipework.cni.config
    import pipework.cni.main

    marks["cni_imported"] = time.monotonic()
    import pipework.cni.commands

    marks["engine_imported"] = time.monotonic()
    import anyio._backends._asyncio  # asyncio too: what anyio.run imports first  # noqa: F401

    marks["loop_imported"] = time.monotonic()
    instrument(pipework.cni.config, pipework.cni.commands, marks)
    code = pipework.cni.main.run(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr)
    marks["run_end"] = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    import json

    with open(out, "w") as f:
        json.dump(marks, f)
    os._exit(code)


def instrument(config: Any, commands: Any, marks: dict[str, float]) -> None:
    """Note the first time each phase starts or ends."""
    import inspect

    from pipework.engine.engine import Engine

    def mark(name: str) -> None:
        marks.setdefault(name, time.monotonic())

    def around(owner: Any, attr: str, begin: str, end: str) -> None:
        original = owner[attr] if isinstance(owner, dict) else getattr(owner, attr)

        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            mark(begin)
            try:
                return await original(*args, **kwargs)
            finally:
                mark(end)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            mark(begin)
            try:
                return original(*args, **kwargs)
            finally:
                mark(end)

        chosen = awrapper if inspect.iscoroutinefunction(original) else wrapper
        if isinstance(owner, dict):
            owner[attr] = chosen
        else:
            setattr(owner, attr, chosen)

    around(config, "load", "parse_start", "parse_end")
    around(Engine, "__init__", "engine_init", "engine_made")
    around(Engine, "__aenter__", "enter_start", "engine_entered")
    around(Engine, "attach", "work_start", "work_end")
    around(Engine, "remove", "work_start", "work_end")
    around(Engine, "__aexit__", "exit_start", "exit_end")
    for name in list(commands.COMMANDS):
        around(commands.COMMANDS, name, "loop_started", "command_end")


if __name__ == "__main__":
    main()
