"""Batch files: one original-style attach line per line -> jobs. Pure: no I/O.

    # comments and blank lines are fine
    br1 web1 198.18.1.2/24@198.18.1.1
    pipework br1 -i eth2 web2 198.18.2.2/24 U:web2     # a leading "pipework" is allowed

Words are split as a shell would (``shlex``), without a shell. A line
without quotes, backslashes or ``#`` splits the same on whitespace, which is
several times cheaper: that is how most lines of a generated batch look.
"""

from __future__ import annotations

import shlex

from pipework.apps.grammar import parse_legacy
from pipework.apps.runner import Job
from pipework.engine.errors import PipeworkError, UsageError

_SHELL_CHARACTERS = frozenset("'\"\\#\x0b\x0c\x1c\x1d\x1e\x1f")
"""What makes ``shlex.split(line, comments=True)`` differ from ``line.split()``
on an ASCII line: quoting, escapes, comments, and the whitespace that
``str.split`` knows and ``shlex`` does not."""


def split_line(line: str) -> list[str]:
    """The words of ``line``, as ``shlex.split(line, comments=True)`` gives
    them (and its ``ValueError`` for an unclosed quote)."""
    if line.isascii() and _SHELL_CHARACTERS.isdisjoint(line):
        return line.split()
    return shlex.split(line, comments=True)


def parse_batch(text: str, label: str) -> list[Job]:
    """One attach job per command line; a bad line is a ``UsageError`` naming it."""
    jobs: list[Job] = []
    seen: dict[tuple[str, str | None], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{label}:{number}"
        try:
            words = split_line(line)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if words[:1] == ["pipework"]:
            words = words[1:]
        if not words:
            continue
        try:
            spec = parse_legacy(words)
        except PipeworkError as exc:
            raise UsageError(f"{where}: {exc.message}", exc.hint) from None
        key = (spec.guest, spec.ifname)
        if key in seen:
            raise UsageError(
                f"{where}: {spec.ifname or 'the default interface'} in {spec.guest}"
                f" is already attached on line {seen[key]}",
                "give one of them another -i",
            )
        seen[key] = number
        jobs.append(Job.attach(spec, where))
    return jobs


__all__ = ["parse_batch", "split_line"]
