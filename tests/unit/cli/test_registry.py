"""The CLI's wiring: one list of commands, one parse of the global options,
one module per command without a cycle, typer kept off the fast paths."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import pipework.cli
from pipework.cli.app import build_app
from pipework.cli.options import GlobalOptions, read
from pipework.cli.registry import COMMANDS, PASSTHROUGH, module_of

CLI = Path(pipework.cli.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_app_has_exactly_the_registered_commands_in_order() -> None:
    group = typer.main.get_command(build_app())
    assert isinstance(group, typer.main.TyperGroup)
    assert tuple(group.commands) == COMMANDS
    for name in PASSTHROUGH:
        assert group.commands[name].context_settings["ignore_unknown_options"], name


def test_one_module_per_command_none_imports_the_app_or_a_sibling() -> None:
    modules = {path.stem for path in (CLI / "commands").glob("*.py")} - {"__init__", "common"}
    assert modules == set(COMMANDS)
    for name in COMMANDS:
        assert callable(importlib.import_module(module_of(name)).command)
        imported = imports_of(CLI / "commands" / f"{name}.py")
        assert "pipework.cli.app" not in imported, name
        siblings = {
            m
            for m in imported
            if m.startswith("pipework.cli.commands.")
            and not m.startswith("pipework.cli.commands.common")
        }
        assert not siblings, (name, siblings)


def test_no_private_typer_or_click_imports() -> None:
    for path in [*CLI.rglob("*.py"), Path(__file__).with_name("test_fuzz_command_line.py")]:
        private = {m for m in imports_of(path) if m.startswith(("typer._", "click"))}
        assert not private, (path, private)


def test_global_options_are_immutable() -> None:
    options = read(["--json", "ls"]).options
    assert options == GlobalOptions(json=True)
    with pytest.raises(AttributeError):
        options.json = False
    assert {options: 1}[GlobalOptions(json=True)] == 1
    assert repr(options).startswith("GlobalOptions(")


@pytest.mark.parametrize(
    ("line", "path", "words", "options"),
    [
        (["br1", "web1", "198.18.10.2/24", "--json"], "legacy",
         ("br1", "web1", "198.18.10.2/24"), GlobalOptions(json=True)),
        (["--debug", "-i", "eth2", "br1", "web1", "0/0"], "legacy",
         ("-i", "eth2", "br1", "web1", "0/0"), GlobalOptions(debug=True)),
        (["ls", "--debug", "-P", "/srv/lxc"], "app", ("ls",),
         GlobalOptions(debug=True, lxcpath="/srv/lxc")),
        (["--debug", "route", "web1", "--json", "show"], "passthrough",
         ("route", "web1", "--json", "show"), GlobalOptions(debug=True)),
        (["route", "--help"], "app", ("route", "--help"), GlobalOptions()),
        (["--wait", "-i", "eth2", "--json"], "wait", ("--wait", "-i", "eth2"),
         GlobalOptions(json=True)),
        (["br1", "--version"], "version", ("br1", "--version"), GlobalOptions(version=True)),
        (["--json"], "help", (), GlobalOptions(json=True)),
        (["--podman-host=unix:///p.sock", "--help"], "app", ("--help",),
         GlobalOptions(podman_host="unix:///p.sock")),
        (["plugins", "--jsn"], "app", ("plugins", "--jsn"), GlobalOptions()),
    ],
)  # fmt: skip
def test_one_parse_chooses_the_path(
    line: list[str], path: str, words: tuple[str, ...], options: GlobalOptions
) -> None:
    invocation = read(line)
    assert (invocation.path, invocation.options, invocation.words) == (path, options, words)


LOADED = (
    "import sys\n"
    "heavy = ('typer', 'click', 'rich', 'pyroute2', 'pydantic', 'yaml', 'aiodocker')\n"
    "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
)


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_legacy_attach_imports_neither_typer_nor_pyroute2() -> None:
    # Up to the engine: the attach itself is stubbed (it would need root).
    code = (
        "import pipework.cli, pipework.cli.legacy as legacy\n"
        "legacy.run_attach = lambda spec, options: 0\n"
        "assert pipework.cli.run(['br1', 'web1', '198.18.10.2/24']) == 0\n" + LOADED
    )
    assert python(code) == "[]"


def test_version_imports_neither_the_engine_nor_typer() -> None:
    code = (
        "import pipework.cli\n"
        "assert pipework.cli.run(['--version']) == 0\n"
        "assert 'pipework.engine' not in sys.modules, 'engine'\n" + LOADED
    )
    assert python("import sys\n" + code) == "[]"
