"""``pipework link`` without typer: the plain lines it reads itself are read
as typer reads them; every other line goes to typer (its errors, its help)."""

from __future__ import annotations

import pytest
from support.plainpath import typer_reads

from pipework.cli import linkpath
from pipework.cli.commands import link
from pipework.cli.linkpath import plain_args
from pipework.cli.options import GlobalOptions

A, B = "netns:r1:eth1", "web2:eth3"
PLAIN = [
    [A, B],
    [A, B, "--ip", "198.18.40.1/30", "--peer-ip", "198.18.40.2/30"],
    ["--ip=198.18.40.1/30", A, "--peer-ip=udhcpc", B],
    [A, "--mac", "U:r1", B, "--peer-mac=02:aa:bb:cc:dd:ee"],
    [A, B, "--route", "198.18.0.0/24 via 198.18.40.2", "--route", "198.18.1.0/24 via 198.18.40.2"],
    [A, B, "--peer-route=198.18.2.0/24 via 198.18.40.1"],
    [A, B, "--mtu", "9000"],
    [A, B, "--mtu=1400", "--force", "--no-announce", "--ipv6-link-local"],
    ["--force", A, B],
    [A, B, "--ip", "-"],  # a value that looks like an option: typer takes it as the value
]
TYPER_ONLY = [
    [],
    [A],
    [A, B, "c:d"],
    ["--help"],
    [A, B, "--help"],
    ["-h"],
    ["--", A, B],
    [A, B, "--bogus"],
    [A, B, "-i", "x"],
    [A, B, "--ip"],
    [A, B, "--mtu", "x"],
    [A, B, "--mtu", "-5"],
    [A, B, "--mtu", "+5"],
    [A, B, "--mtu", "٣"],
    [A, B, "--mtu", "1", "--mtu", "2"],
    [A, B, "--ip", "a", "--ip", "b"],
    [A, B, "--force", "--force"],
    [A, B, "--force=1"],
]


@pytest.mark.parametrize("words", PLAIN)
def test_plain_lines_read_as_typer_reads_them(words, monkeypatch):
    assert plain_args(words) == typer_reads(monkeypatch, linkpath, "run_link", link.command, words)


@pytest.mark.parametrize("words", TYPER_ONLY)
def test_other_lines_go_to_typer(words):
    assert plain_args(words) is None


def test_run_plain_leaves_other_lines_to_typer(monkeypatch):
    monkeypatch.setattr(linkpath, "run_link", lambda args, options: pytest.fail("ran"))
    assert linkpath.run_plain(["--help"], GlobalOptions()) is None


@pytest.mark.parametrize(
    ("words", "fragment"),
    [
        (["web1", B], "names no interface"),
        ([A, B, "--ip", "198.18.40.1"], "netmask"),
        ([A, A], "both ends of the link"),
        ([A, B, "--mac", "zz"], "MAC"),
        ([A, B, "--mtu", "70000"], "MTU"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_engine(words, fragment, capsys):
    assert linkpath.run_plain(words, GlobalOptions()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pipework: ") and fragment in err[0], err


def test_a_plain_line_never_imports_typer():
    import subprocess
    import sys

    code = (
        "import sys; from pipework.cli import run; "
        "rc = run(['link', 'web1', 'netns:r2:eth1']); print(rc, 'typer' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert out.stderr.startswith("pipework: endpoint 'web1' names no interface")
