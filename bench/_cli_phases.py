"""Run the pipework CLI once, recording when each of its phases starts and ends.

single_attach.py runs ``python _cli_phases.py OUT.json BRIDGE netns:GUEST ADDR``
with the same interpreter as the ``pipework`` console script.  It calls the
real ``pipework.cli.run`` after wrapping a few engine methods to note the time
(CLOCK_MONOTONIC, which the parent process shares); the wrappers cost
microseconds and change nothing else.  The marks are written to OUT.json.
"""

from __future__ import annotations

import sys
import time

START = time.monotonic()

from typing import Any  # noqa: E402  (after the first mark: typing takes milliseconds)


def main() -> int:
    marks: dict[str, float] = {"start": START}
    out, args = sys.argv[1], sys.argv[2:]

    import pipework  # the package: its names load on first use

    marks["pipework_imported"] = time.monotonic()
    import pipework.cli
    import pipework.cli.legacy  # what the console script's fast path imports next

    marks["cli_imported"] = time.monotonic()
    # The CLI imports the engine inside its event loop, on first use; here
    # it comes first, to be timed apart (and to wrap its methods).
    from pipework.engine import engine
    from pipework.engine.kernel import netlink

    marks["engine_imported"] = time.monotonic()
    instrument(engine.Engine, netlink, marks)
    code: int = pipework.cli.run(args)
    marks["run_end"] = time.monotonic()

    import json
    from pathlib import Path

    Path(out).write_text(json.dumps(marks))
    return code


def instrument(engine_cls: Any, netlink: Any, marks: dict[str, float]) -> None:
    """Note the first time each phase starts or ends."""

    def mark(name: str) -> None:
        marks.setdefault(name, time.monotonic())

    init, aenter, attach, aexit = (
        engine_cls.__init__,
        engine_cls.__aenter__,
        engine_cls.attach,
        engine_cls.__aexit__,
    )

    def init_wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        mark("engine_init")
        init(self, *args, **kwargs)

    async def aenter_wrapper(self: Any) -> Any:
        entered = await aenter(self)
        mark("engine_entered")
        return entered

    async def attach_wrapper(self: Any, spec: Any) -> Any:
        mark("attach_start")
        try:
            return await attach(self, spec)
        finally:
            mark("attach_end")

    async def aexit_wrapper(self: Any, *exc_info: Any) -> Any:
        mark("exit_start")
        try:
            return await aexit(self, *exc_info)
        finally:
            mark("exit_end")

    compile_ = netlink._pyroute2_compile

    def compile_wrapper(*args: Any) -> Any:
        # pyroute2 is imported by its first compile (a request rtnl.py cannot encode).
        first = "pyroute2_start" not in marks
        mark("pyroute2_start")
        try:
            return compile_(*args)
        finally:
            if first:
                marks["pyroute2_end"] = time.monotonic()

    engine_cls.__init__ = init_wrapper
    engine_cls.__aenter__ = aenter_wrapper
    engine_cls.attach = attach_wrapper
    engine_cls.__aexit__ = aexit_wrapper
    netlink._pyroute2_compile = compile_wrapper


if __name__ == "__main__":
    sys.exit(main())
