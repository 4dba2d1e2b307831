"""Top-level test configuration: the session-end leak check.

At session start (as root) we snapshot the host: interfaces, network
namespaces, OVS bridges, DHCP/daemon processes, pwt mounts and temp dirs,
and the hashes of /etc/resolv.conf, /etc/hostname and /etc/hosts.  At
session end, after every fixture has been torn down, we compare; anything
left behind (or any host file changed) is reported and fails the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make `support` importable as a top-level package regardless of pytest's
# --import-mode (conftests and tests all use `from support import infra`).
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from support import infra  # noqa: E402
from support.leakcheck import Snapshot, SnapshotDiff, diff_snapshots  # noqa: E402

_BEFORE = pytest.StashKey[Snapshot]()
_RESULT = pytest.StashKey["SnapshotDiff | str"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-leak-check",
        action="store_true",
        default=False,
        help="skip the session-end check for leftover interfaces, namespaces, "
        "processes, ... (useful when another test session runs concurrently "
        "on the same machine)",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    # Only root can create anything worth checking (and read everything).
    if not infra.is_root() or session.config.getoption("no_leak_check"):
        return
    session.config.stash[_BEFORE] = infra.snapshot()


# trylast: pytest's own runner tears down remaining fixtures (including
# session-scoped ones, after an interrupted run) in its pytest_sessionfinish;
# we must compare only after that.
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_BEFORE, None)
    if before is None:
        return
    result: SnapshotDiff | str
    try:
        result = diff_snapshots(before, infra.snapshot())
    except Exception as exc:  # a broken check must not pass silently
        result = f"leak check could not take the final snapshot: {exc!r}"
    if not result:
        return
    session.config.stash[_RESULT] = result
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Called from the terminal reporter's sessionfinish, i.e. after ours.
    result = terminalreporter.config.stash.get(_RESULT, None)
    if result is None:
        return
    terminalreporter.section("leak check FAILED", sep="=", red=True, bold=True)
    text = result if isinstance(result, str) else result.report()
    for line in text.splitlines():
        terminalreporter.write_line(line, red=True)
    terminalreporter.write_line(
        "Every fixture and test must remove what it created; the run fails because of the above."
    )
