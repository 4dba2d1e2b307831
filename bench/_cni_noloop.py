"""What would ``pipework-cni`` start-up cost without an event loop? (cni_add.py)

    python _cni_noloop.py real|stub

Does what a ``pipework-cni`` ADD does before its first netlink request,
without running it: imports the CNI modules, the commands, the engine, and
makes an ``Engine`` and collects its plugins (the built-ins and every
``pipework`` entry point). ``real`` first imports what ``anyio.run`` would
(asyncio, anyio's backend). ``stub`` puts a meta-path finder in front that
answers every import of ``anyio``, ``asyncio`` and ``sniffio`` with an inert
stand-in, so nothing they alone would import is imported, and every other
module is. The parent times both processes; the difference is what the
event loop's libraries cost. Measurement only: nothing here runs the
engine's work, and no code path of pipework changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

LOOP_ROOTS = ("anyio", "asyncio", "sniffio")


class _Inert:
    """Anything a module body may do with a name from the stubbed packages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Inert()

    def __getattr__(self, name: str) -> Any:
        return _Inert

    def __class_getitem__(cls, item: Any) -> Any:
        return cls


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert


class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.partition(".")[0] in LOOP_ROOTS:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def main() -> int:
    mode = sys.argv[1]
    if mode == "stub":
        sys.meta_path.insert(0, _Stubs())
    else:
        import anyio._backends._asyncio  # noqa: F401  (what anyio.run imports first)
    import pipework.cni.commands
    import pipework.cni.config
    import pipework.cni.main
    import pipework.cni.result  # noqa: F401
    from pipework.engine.engine import Engine

    engine = Engine(host_netns=None, run_dir="/nonexistent-pipework-bench")
    engine._collect_plugins()
    if not engine.backends or not engine.resolvers:
        print("no plugins collected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
