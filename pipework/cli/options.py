"""How a command line is read: the global options, once, and the path that runs the rest.

``read(args)`` is the only parser of the options every command takes. It
returns an ``Invocation``: an immutable ``GlobalOptions``, which of the paths
runs the line (see docs/CLI.md, "How a command line is read"), and the words
that path gets. Everything after it (the original grammar, ``--wait``,
``route``/``rule``/``tc``, the typer app) receives the options as an argument
and never looks for them in the line again.

* ``--json`` and ``--debug`` may stand anywhere; they are taken out of the
  line. Before ``route``/``rule``/``tc`` they are ours; after the word, they
  are ``ip``'s or ``tc``'s.
* ``--podman-host URL`` and ``--lxcpath PATH`` (or ``-P PATH``, as the LXC
  tools spell it; also ``--lxcpath=PATH``, ``-PPATH``) may stand anywhere
  before a ``--``; for ``route``, ``rule`` and ``tc`` only up to the GUEST.
  ``GlobalOptions.export()`` sets, for this process, the environment the
  guest resolvers read: ``CONTAINER_HOST`` (Podman's own variable) and
  ``PIPEWORK_LXC_PATH``.

Pure and light: it imports neither typer nor the engine (not even its error
class until there is an error), so
``--version`` and an original-style attach pay nothing for it; for the same
reason its records are ``Record`` classes (pipework/records.py), not frozen
dataclasses: with bytecode cached, ``dataclasses`` costs ~6 ms of imports,
two ``NamedTuple`` classes with postponed annotations ~1.3 ms, these ~0.05 ms.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence

from pipework.cli.registry import COMMANDS, PASSTHROUGH
from pipework.records import Record

TYPE_CHECKING = False  # typing is not imported on the client's path (~5 ms)
if TYPE_CHECKING:
    from typing import NoReturn

FLAGS = ("--json", "--debug", "--no-daemon")
"""Global flags: taken out wherever they stand."""
RUNTIME_OPTIONS = {"--podman-host": "podman_host", "--lxcpath": "lxcpath", "-P": "lxcpath"}
"""Global options with a value -> the ``GlobalOptions`` field they set."""
ENVIRONMENT = {"podman_host": "CONTAINER_HOST", "lxcpath": "PIPEWORK_LXC_PATH"}
"""``GlobalOptions`` field -> the variable the guest resolvers read."""
HELP_WORDS = ("-h", "--help")


class GlobalOptions(Record):
    """The options every command takes. Built once, by ``read()``; immutable.

    ``json``: ``--json``, results as JSON on stdout; ``debug``: ``--debug``,
    log at DEBUG level and print tracebacks; ``no_daemon``: ``--no-daemon``,
    run in this process even when ``pipework daemon`` answers (pipework/client.py);
    ``version``: ``--version``;
    ``podman_host``: ``--podman-host URL``, Podman's API socket;
    ``lxcpath``: ``--lxcpath PATH`` / ``-P PATH``, where LXC containers live.
    """

    json: bool = False
    debug: bool = False
    no_daemon: bool = False
    version: bool = False
    podman_host: str | None = None
    lxcpath: str | None = None

    def environment(self) -> dict[str, str]:
        """The variables these options set for the guest resolvers."""
        values = {"podman_host": self.podman_host, "lxcpath": self.lxcpath}
        return {ENVIRONMENT[k]: v for k, v in values.items() if v is not None}

    def export(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Put ``environment()`` into ``environ`` (default: this process's)."""
        (os.environ if environ is None else environ).update(self.environment())


if TYPE_CHECKING:  # a Literal costs ~0.05 ms to build at import; only mypy needs it
    from typing import Literal

    Route = Literal["passthrough", "wait", "version", "help", "legacy", "app"]


class Invocation(Record):
    """What ``read()`` makes of a command line.

    ``path``: ``passthrough`` (``route``/``rule``/``tc``), ``wait`` (the
    original's ``--wait``), ``version``, ``help`` (no words at all: the help,
    exit 2), ``legacy`` (an attach in the original grammar) or ``app`` (the
    typer app). ``words``: for ``passthrough``, ``WORD GUEST ARGS...`` as
    written; otherwise the line without the global options.
    """

    path: Route
    options: GlobalOptions
    words: tuple[str, ...]


def read(args: Sequence[str]) -> Invocation:
    """Parse the global options of ``args`` and choose the path that runs it.

    Raises ``pipework.engine.errors.UsageError`` for a runtime option without
    its value or given twice.
    """
    rest, runtime = split_runtime_options(args)
    podman_host, lxcpath = runtime.get("podman_host"), runtime.get("lxcpath")
    lead = 0  # global flags before a passthrough word are ours; after it, ip's/tc's
    while lead < len(rest) and rest[lead] in FLAGS:
        lead += 1
    word, after = (rest[lead], rest[lead + 1 :]) if lead < len(rest) else ("", [])
    if word in PASSTHROUGH and not (after and after[0] in HELP_WORDS):
        ours = rest[:lead]
        options = GlobalOptions(
            json="--json" in ours,
            debug="--debug" in ours,
            no_daemon="--no-daemon" in ours,
            podman_host=podman_host,
            lxcpath=lxcpath,
        )
        return Invocation("passthrough", options, (word, *after))
    words = tuple(a for a in rest if a not in FLAGS)
    options = GlobalOptions(
        json="--json" in rest,
        debug="--debug" in rest,
        no_daemon="--no-daemon" in rest,
        version="--version" in words,
        podman_host=podman_host,
        lxcpath=lxcpath,
    )
    first = words[0] if words else ""
    path: Route
    if "--wait" in words and first not in COMMANDS:
        path = "wait"
    elif options.version:
        path = "version"
    elif not words:
        path = "help"
    elif first not in COMMANDS and (not first.startswith("-") or _legacy_option(first)):
        path = "legacy"
    else:
        path = "app"
    return Invocation(path, options, words)


def split_runtime_options(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``args`` without the runtime options, and their values by field name."""
    rest: list[str] = []
    values: dict[str, str] = {}
    positionals: list[str] = []
    words = iter(args)
    for arg in words:
        if arg == "--" or (
            positionals[:1] and positionals[0] in PASSTHROUGH and len(positionals) == 2
        ):
            rest.append(arg)
            rest.extend(words)
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in RUNTIME_OPTIONS:
            if not (arg.startswith("-P") and len(arg) > 2):
                rest.append(arg)
                if not arg.startswith("-"):
                    positionals.append(arg)
                continue
            name, eq, value = "-P", "=", arg[2:]  # -P/srv/lxc, as getopt allows
        if not eq:
            value = next(words, "")
        if not value:
            _refuse(f"option {name} needs a value", _example(name))
        field = RUNTIME_OPTIONS[name]
        if field in values:
            _refuse(f"option {name} is given twice")
        values[field] = value
    return rest, values


def _refuse(message: str, hint: str | None = None) -> NoReturn:
    from pipework.engine.errors import UsageError  # the engine, only once there is an error

    raise UsageError(message, hint)


def _example(name: str) -> str:
    if name == "--podman-host":
        return "e.g. --podman-host unix:///run/podman/podman.sock"
    return f"e.g. {name} /var/lib/lxc"


def _legacy_option(word: str) -> bool:
    """Does an original-style attach line start with ``word``?"""
    from pipework.apps.grammar import OPTIONS

    return word.split("=", 1)[0] in OPTIONS or word[:2] in ("-i", "-l", "-a")


__all__ = [
    "ENVIRONMENT",
    "FLAGS",
    "GlobalOptions",
    "Invocation",
    "read",
    "split_runtime_options",
]
