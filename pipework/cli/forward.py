"""Which command lines go to ``pipework daemon``, and with what stdin.

When a daemon answers (pipework/client.py), a command line is run there by
a warm worker, with this process's namespaces, working directory and
environment, and prints what it would print here, with the same exit code.
Not forwarded: ``--version`` and help (nothing to gain), ``route``,
``rule`` and ``tc`` (they become ``ip`` or ``tc`` in the guest), the long-lived
commands (``daemon``, ``watch``, ``events``, ``demo``), ``shim`` (a
runtime's hook, which reads the runtime's state on its stdin), and a line
that reads a terminal's stdin. A line that reads stdin (``-`` as a file, or
``batch`` without a file) sends what stdin holds with the request.

The standard library only, as the client: this is on every command's path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipework.cli.options import HELP_WORDS, Invocation

KEPT_HERE = frozenset({"daemon", "watch", "events", "demo", "shim"})
BATCH_VALUED = frozenset({"--jobs", "-j"})


def reads_stdin(words: Sequence[str]) -> bool:
    """Does this line read its stdin: a ``-`` operand, or ``batch`` without FILE?"""
    if "-" in words:
        return True
    if list(words[:1]) != ["batch"]:
        return False
    rest = iter(words[1:])
    for word in rest:
        if word == "--":
            return next(rest, "-") == "-"
        if word in BATCH_VALUED:
            next(rest, None)
        elif not word.startswith("-"):
            return False
    return True


def eligible(invocation: Invocation) -> bool:
    """May this line be served by the daemon (when one answers)?"""
    words = invocation.words
    if invocation.options.no_daemon or invocation.path in ("version", "help", "passthrough"):
        return False
    return not ((words and words[0] in KEPT_HERE) or any(w in HELP_WORDS for w in words))


def forward(invocation: Invocation, args: Sequence[str]) -> int | None:
    """Run ``args`` through the daemon: its exit code, or None to run it here
    (then with the same stdin, when this has read it)."""
    if not eligible(invocation):
        return None
    from pipework import client

    if client.disabled():
        return None
    stdin = None
    if reads_stdin(invocation.words):
        if sys.stdin is None or sys.stdin.isatty():
            return None
        stdin = sys.stdin.buffer.read()
    code = client.run("pipework", args, stdin=stdin, debug=invocation.options.debug)
    if code is None and stdin is not None:  # what was read is the in-process run's
        import io

        encoding, errors = sys.stdin.encoding, sys.stdin.errors
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding=encoding, errors=errors)
    return code


__all__ = ["KEPT_HERE", "eligible", "forward", "reads_stdin"]
