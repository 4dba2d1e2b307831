"""``pipework.engine`` imports its names on first use: the three lists that
say which (the typing imports, ``__all__`` and the name -> module map) agree."""

from __future__ import annotations

import ast
from pathlib import Path

import pipework.engine as engine


def test_every_public_name_has_its_module_and_resolves():
    where = vars(engine)["_WHERE"]
    assert set(where) == set(engine.__all__)
    for name in engine.__all__:
        assert getattr(engine, name) is getattr(__import__(where[name], fromlist=[name]), name)


def test_the_typing_imports_are_the_same_names_from_the_same_modules():
    tree = ast.parse(Path(engine.__file__).read_text())
    typed = {
        alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipework")
        for alias in node.names
    }
    assert typed == vars(engine)["_WHERE"]
