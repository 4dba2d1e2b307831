"""Every subcommand of ``pipework``: the one list both the dispatcher and the
typer app read.

A command named ``NAME`` is the function ``command`` of the module
``pipework.cli.commands.NAME``. This module imports nothing, so the dispatcher
can tell a subcommand from an original-style attach line without loading
typer or any command (tests/unit/cli/test_registry.py checks that the app
built from it has exactly these commands).
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "attach",
    "link",
    "plugins",
    "demo",
    "watch",
    "daemon",
    "events",
    "detach",
    "ls",
    "gc",
    "wait",
    "route",
    "rule",
    "tc",
    "apply",
    "destroy",
    "batch",
    "graph",
    "shim",
)
"""In the order ``pipework --help`` lists them."""

PASSTHROUGH: dict[str, tuple[str, ...]] = {
    "route": ("ip", "route"),
    "rule": ("ip", "rule"),
    "tc": ("tc",),
}
"""``pipework WORD GUEST ARGS...`` runs this argv + ARGS inside GUEST: the
words after the GUEST are that program's, never ours."""


def module_of(name: str) -> str:
    """The module that implements the command ``name``."""
    return f"{__package__}.commands.{name}"


__all__ = ["COMMANDS", "PASSTHROUGH", "module_of"]
