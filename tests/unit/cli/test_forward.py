"""Which command lines go to the daemon, and which stdin with them."""

from __future__ import annotations

import pytest

from pipework.cli.forward import eligible, reads_stdin
from pipework.cli.options import read


@pytest.mark.parametrize(
    ("line", "served"),
    [
        ("br1 web1 198.18.1.2/24", True),
        ("attach br1 web1 198.18.1.2/24", True),
        ("--json ls", True),
        ("detach web1 --all", True),
        ("gc", True),
        ("batch lines.txt", True),
        ("apply lab.yaml --plan", True),
        ("link r1:eth1 r2:eth1", True),
        ("--wait", True),
        ("--no-daemon br1 web1 198.18.1.2/24", False),
        ("--version", False),
        ("", False),
        ("ls --help", False),
        ("daemon", False),
        ("watch --once", False),
        ("events --json", False),
        ("demo", False),
        ("shim", False),
        ("route web1 add default via 198.18.1.1", False),
        ("tc web1 qdisc show", False),
    ],
)
def test_what_the_daemon_serves(line, served):
    assert eligible(read(line.split())) is served


@pytest.mark.parametrize(
    ("words", "reads"),
    [
        ("batch", True),
        ("batch -", True),
        ("batch --jobs 4", True),
        ("batch -j 4 --all-or-nothing", True),
        ("batch lines.txt", False),
        ("batch -j 4 lines.txt", False),
        ("batch -- -", True),
        ("apply -", True),
        ("graph -", True),
        ("apply lab.yaml", False),
        ("br1 web1 198.18.1.2/24", False),
        ("ls", False),
    ],
)
def test_what_reads_stdin(words, reads):
    assert reads_stdin(tuple(words.split())) is reads
