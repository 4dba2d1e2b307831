"""``pipework batch`` without typer: the plain lines it reads itself are read
as typer reads them; every other line goes to typer (its errors, its help)."""

from __future__ import annotations

import pytest
from support.plainpath import typer_reads

from pipework.cli import batchpath
from pipework.cli.batchpath import plain_args
from pipework.cli.commands import batch
from pipework.cli.options import GlobalOptions

PLAIN = [
    [],
    ["-"],
    ["file.txt"],
    ["--jobs", "4", "file.txt"],
    ["--jobs=4"],
    ["-j", "12", "-"],
    ["-j7", "f"],
    ["--all-or-nothing"],
    ["f", "--all-or-nothing", "-j", "3"],
    ["-j", "100", "--all-or-nothing", "-"],
]
TYPER_ONLY = [
    ["--help"],
    ["-h"],
    ["--"],
    ["--", "-"],
    ["a", "b"],
    ["--jobs", "0"],
    ["--jobs", "03"],
    ["--jobs", "x"],
    ["--jobs", "-1"],
    ["-j"],
    ["-j="],
    ["-j=3"],
    ["--jobs="],
    ["-j", "2", "-j", "3"],
    ["--all-or-nothing", "--all-or-nothing"],
    ["--all-or-nothing=1"],
    ["--bogus"],
    ["-x"],
    ["-file"],
    ["--jobs", "٣"],
]


@pytest.mark.parametrize("words", PLAIN)
def test_plain_lines_read_as_typer_reads_them(words, monkeypatch):
    assert plain_args(words) == typer_reads(monkeypatch, batch, "run_batch", batch.command, words)


@pytest.mark.parametrize("words", TYPER_ONLY)
def test_other_lines_go_to_typer(words):
    assert plain_args(words) is None


def test_run_plain_leaves_other_lines_to_typer(monkeypatch):
    monkeypatch.setattr(batchpath, "run_batch", lambda args, options: pytest.fail("ran"))
    assert batchpath.run_plain(["--help"], GlobalOptions()) is None


def test_a_bad_line_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "b.txt"
    path.write_text("br1 netns:web1 198.18.1.2\n")
    assert batchpath.run_plain([str(path)], GlobalOptions()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pipework: {path}:1: The IP address")
