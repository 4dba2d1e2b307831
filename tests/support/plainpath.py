"""For the commands the dispatcher runs without typer (cli/batchpath.py,
cli/linkpath.py): what the typer app makes of a line, to compare."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import pytest
import typer

from pipework.cli.options import GlobalOptions


def typer_reads(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    runner: str,
    command: Callable[..., Any],
    words: Sequence[str],
) -> Any:
    """The arguments typer's ``command`` hands to ``module.runner`` for ``words``."""
    seen: list[Any] = []

    def fake_run(args: Any, options: GlobalOptions) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(module, runner, fake_run)
    app = typer.Typer()
    app.command()(command)
    app(args=list(words), standalone_mode=False, obj=GlobalOptions())
    return seen[0]
