"""``pipework batch`` without typer: the command's one implementation, and
its options read by hand when they are plain.

The dispatcher (cli/__init__.py) gives ``batch``'s words to ``plain_args``
first. A line it understands (``[FILE|-]``, ``--jobs N``/``-j N``/``--jobs=N``/
``-jN``, ``--all-or-nothing``, each at most once) runs here directly: typer
and its app cost about 30 ms to import, and nothing else changes. Anything
else (``--help``, ``--``, an unknown option, a value typer would refuse)
goes to the typer app, so every usage error keeps typer's wording.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipework.cli.options import GlobalOptions
from pipework.records import Record

_VALUE = {"--jobs": "jobs", "-j": "jobs"}
_FLAG = {"--all-or-nothing": "all_or_nothing"}


class BatchArgs(Record):
    """The plain arguments of one ``pipework batch`` line."""

    file: str = "-"
    jobs: int | None = None
    all_or_nothing: bool = False


def _count(text: str) -> int | None:
    """A job count as typer takes it without complaint: plain digits, at least 1."""
    if not (text.isascii() and text.isdigit()) or text.startswith("0"):
        return None
    return int(text)


def plain_args(words: Sequence[str]) -> BatchArgs | None:
    """``batch``'s arguments (the words after ``batch``), or None when the
    line is anything but plain: the typer app then reads it."""
    file: str | None = None
    jobs: int | None = None
    all_or_nothing = False
    it = iter(words)
    for word in it:
        name, eq, inline = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in _FLAG and not eq and not all_or_nothing:
            all_or_nothing = True
            continue
        if word.startswith("-j") and len(word) > 2 and not word.startswith("-j="):
            name, eq, inline = "-j", "=", word[2:]
        if name in _VALUE and jobs is None:
            value = inline if eq else next(it, None)
            count = _count(value) if value is not None else None
            if count is None:
                return None
            jobs = count
            continue
        if word == "-" or (word and not word.startswith("-")):
            if file is not None:
                return None
            file = word
            continue
        return None
    return BatchArgs(file or "-", jobs, all_or_nothing)


def run_batch(args: BatchArgs, options: GlobalOptions) -> int:
    """Read, check and run a batch; its exit code. Every line is parsed
    before anything runs: a bad one is ``FILE:LINE: message`` (exit 2)."""
    from pipework.apps.batchfile import parse_batch
    from pipework.apps.textinput import read
    from pipework.cli.batchrun import run_jobs
    from pipework.cli.render import error
    from pipework.engine.errors import PipeworkError

    try:
        text, label = read(args.file)
        todo = parse_batch(text, label)
    except PipeworkError as exc:
        error(str(exc))
        return exc.exit_code
    return run_jobs(
        todo,
        jobs=args.jobs,
        all_or_nothing=args.all_or_nothing,
        json_output=options.json,
        debug=options.debug,
        noun="attachment",
    )


def run_plain(words: Sequence[str], options: GlobalOptions) -> int | None:
    """``pipework batch WORDS...`` run here; None: the typer app must read it."""
    args = plain_args(words)
    if args is None:
        return None
    from pipework.cli.render import setup_logging

    setup_logging(options.debug)
    return run_batch(args, options)


__all__ = ["BatchArgs", "plain_args", "run_batch", "run_plain"]
