"""Grammar fuzzing: generated command lines either parse or are a usage error.

Every line goes through the same dispatch as ``pipework.cli.run`` (legacy
grammar, ``--wait``, ``route``/``rule``/``tc``, the subcommands' parser and
their own checks) in-process, parse only: nothing is attached, removed or
waited for. Each line must either parse or raise a usage error whose exit
code is 2; any other exception is a bug (it would be a traceback). A sample
of the failing lines then runs through the real CLI, in a subprocess, to
show the exit code and the one-line message.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support import infra

from pipework.apps.grammar import OPTIONS, parse_legacy
from pipework.cli.app import build_app, load_commands
from pipework.cli.commands.detach import check_detach
from pipework.cli.commands.wait import check_wait
from pipework.cli.fastpath import parse_wait, passthrough_argv
from pipework.cli.options import FLAGS, read
from pipework.cli.registry import COMMANDS
from pipework.cli.render import one_line
from pipework.engine.errors import UsageError

FUZZED_LINES = 10_000

NAMES = [
    "br1", "eth1", "eth2", "ovsbr0", "dummy0", "ib0", "web1", "x" * 15, "y" * 16, "é" * 8,
    "a/b", "a:b", "a b", "..", ".", "", "-", "--", "mac:02:aa:bb:cc:dd:ee", "mac:zz",
]  # fmt: skip
GUESTS = [
    "web1", "netns:blue", "netns:", "netns:../x", "pid:1", "pid:0", "pid:-3", "pid:x",
    "/proc/1/ns/net", "docker:web1", "docker:", "lxc:foo", "$(reboot)", "`id`", ";rm -rf /",
    "a'b\"c", "web1 && halt", "\N{SNOWMAN}",
]  # fmt: skip
IPSPECS = [
    "198.18.0.2/24", "198.18.0.2/24@198.18.0.1", "198.18.0.2", "198.18.0.2/33", "0/0",
    "2001:db8::2/64", "2001:db8::2/64@2001:db8::1", "2001:db8::2/64@198.18.0.1", "224.0.0.1/4",
    "dhcp", "dhcp:-f", "udhcpc", "udhcpc-f", "dhclient", "dhcpcd", "udhcpc:-O 121",
    "udhcpc:-i eth9", "dhcp:'unclosed", "carrierpigeon", "1.2.3.4/24@1.2.3.4", "@", "/",
]  # fmt: skip
MACSPECS = [
    "02:aa:bb:cc:dd:ee", "01:00:5e:00:00:01", "00:00:00:00:00:00", "U:web1", "U:", "@10",
    "@0", "@4095", "@8001", "@zz", "02:aa:bb:cc:dd:ee@10", "zz", "@",
]  # fmt: skip
VALUES = [
    "4",
    "6",
    "5",
    "1500",
    "67",
    "65536",
    "-1",
    "0",
    "0.5",
    "nan",
    "inf",
    "1e9",
    "x",
    "mode=bridge",
    "=x",
    "k=",
]
EXTRA_OPTIONS = [
    "--wait", "--timeout", "--all", "--prune-bridges", "--dry-run", "--allow-forward",
    "--ip", "--help", "-h", "--version", "--bogus", "-x", "-i", "--ifname", "-ieth2",
    "--ifname=eth3", "--timeout=2", "--timeout=-1", "--mtu=9000", "-omode=private", "--",
]  # fmt: skip
WORDS = [
    *COMMANDS, "pluginss", "detatch", "help", *FLAGS, *OPTIONS, *EXTRA_OPTIONS,
    *NAMES, *GUESTS, *IPSPECS, *MACSPECS, *VALUES,
]  # fmt: skip

# argv words cannot hold NUL; anything else goes.
free_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=20
)
token = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS), free_text)
command_lines = st.one_of(
    st.lists(token, max_size=9),
    st.tuples(st.sampled_from(COMMANDS), st.lists(token, max_size=8)).map(lambda t: [t[0], *t[1]]),
)


class Parsed(Exception):
    """A subcommand's line that parsed (raised instead of running the command)."""

    def __init__(self, name: str, params: dict[str, Any]) -> None:
        super().__init__(name)
        self.name, self.params = name, params


def parse_only_command(name: str, function: Callable[..., None]) -> Callable[..., None]:
    """``function``'s parameters (typer reads them through ``__wrapped__``), no body."""

    @functools.wraps(function)
    def parsed(**params: Any) -> None:
        raise Parsed(name, params)

    return parsed


PARSER = typer.main.get_command(
    build_app({name: parse_only_command(name, f) for name, f in load_commands().items()})
)
"""The real app (callback, options, help), whose commands stop after parsing;
built once (calling the Typer object would rebuild it for every line)."""


def parse_only(args: list[str]) -> str:
    """What ``pipework.cli.run`` does with ``args``, stopping after parsing.

    Returns which path took the line; raises ``UsageError`` or typer's
    usage errors for bad input.
    """
    invocation = read(args)
    words = list(invocation.words)
    if invocation.path == "passthrough":
        passthrough_argv(words[0], words[1:])
        return "passthrough"
    if invocation.path == "wait":
        parse_wait(words)
        return "wait"
    if invocation.path in ("version", "help"):
        return "version/help"
    if invocation.path == "legacy":
        parse_legacy(words)
        return "legacy"
    try:
        PARSER.main(words, "pipework", standalone_mode=False, obj=invocation.options)
    except Parsed as done:
        name, params = done.name, done.params
    else:
        return "help"  # --help: printed, and nothing to run
    if name == "detach":
        check_detach(params["ifname"], params["all_"])
    elif name == "wait":
        check_wait(params["ifname"], params["timeout"])
    return f"subcommand {name}"


def outcome(args: list[str]) -> str:
    """``parsed:PATH`` or ``usage:MESSAGE``; anything else propagates (a bug)."""
    try:
        return "parsed:" + parse_only(args)
    except UsageError as exc:
        assert exc.exit_code == 2
        assert "\n" not in one_line(str(exc))
        return f"usage:{exc}"
    except typer.TyperException as exc:
        assert exc.exit_code == 2, (args, exc)
        return f"usage:{exc.format_message()}"


def test_fuzzed_command_lines_parse_or_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[list[str], str]] = []
    started = time.perf_counter()

    @settings(
        max_examples=FUZZED_LINES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(command_lines)
    # One line per path for certain: what hypothesis generates depends on its
    # version, and the coverage assertion below must not.
    @example(["br1", "web1", "198.18.0.2/24"])
    @example(["--wait", "-i", "eth1"])
    @example(["route", "web1", "add", "198.18.2.0/24", "via", "198.18.0.1"])
    @example(["ls"])
    def check(args: list[str]) -> None:
        seen.append((args, outcome(args)))

    check()
    elapsed = time.perf_counter() - started
    capsys.readouterr()  # help output of --help lines
    paths = {
        result.split(":", 1)[0] + ":" + result.split(":", 2)[1]
        for _, result in seen
        if result.startswith("parsed:")
    }
    usage = sum(1 for _, result in seen if result.startswith("usage:"))
    print(
        f"\nfuzzed {len(seen)} command lines in {elapsed:.1f} s: {usage} usage errors, parsed by {sorted(paths)}"
    )
    assert len(seen) >= FUZZED_LINES
    # Both outcomes and every path were exercised.
    assert usage > len(seen) // 10
    assert {"parsed:legacy", "parsed:wait", "parsed:passthrough"} <= paths
    assert any(p.startswith("parsed:subcommand") for p in paths)


SAMPLE_SIZE = 24


def _runs_as(prefix: list[str]) -> bool:
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import pipework"],
        capture_output=True,
        cwd=infra.REPO_ROOT,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


def test_cli_exit_code_on_a_sample_of_fuzzed_usage_errors() -> None:
    """The real CLI, in a subprocess, on lines the parser refuses: exit 2, one
    line on stderr, no traceback. Run as an unprivileged user when possible,
    so that nothing could be touched even if a line were not refused."""
    samples: list[list[str]] = []

    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @given(command_lines)
    def collect(args: list[str]) -> None:
        if (
            len(samples) < SAMPLE_SIZE
            and outcome(args).startswith("usage:")
            and "--help" not in args
        ):
            samples.append(args)

    collect()
    assert len(samples) == SAMPLE_SIZE
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # As root, drop privileges, unless nobody cannot reach this checkout or
    # interpreter (a home directory): every line is refused by then anyway.
    prefix = nobody if infra.is_root() and _runs_as(nobody) else []
    for args in samples:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "pipework", *args],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=infra.REPO_ROOT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            check=False,
        )
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pipework: "), (args, done.stderr)
        assert "Traceback" not in done.stderr
