"""Where the container runtimes are: options every command takes.

``--podman-host URL`` and ``--lxcpath PATH`` (or ``-P PATH``, as the LXC
tools spell it) may stand anywhere on the line, before a ``--``; for
``route``, ``rule`` and ``tc`` only up to the GUEST, as what follows is
``ip``'s or ``tc``'s. They set, for this process, the environment the guest
resolvers read: ``CONTAINER_HOST`` (Podman's own variable) and
``PIPEWORK_LXC_PATH``.
"""

from __future__ import annotations

import os

from pipework.engine.errors import UsageError

OPTIONS = {
    "--podman-host": "CONTAINER_HOST",
    "--lxcpath": "PIPEWORK_LXC_PATH",
    "-P": "PIPEWORK_LXC_PATH",
}
PASSTHROUGH = ("route", "rule", "tc")
"""Commands whose words after the GUEST belong to another program."""


def take_runtime_options(args: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """Remove the runtime options from ``args`` and put them in ``environ``
    (default: this process's environment); return the other words."""
    env: dict[str, str] | os._Environ[str] = os.environ if environ is None else environ
    rest: list[str] = []
    given: set[str] = set()
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
        if name not in OPTIONS:
            if not (arg.startswith("-P") and len(arg) > 2):
                rest.append(arg)
                if not arg.startswith("-"):
                    positionals.append(arg)
                continue
            name, eq, value = "-P", "=", arg[2:]  # -P/srv/lxc, as getopt allows
        if not eq:
            value = next(words, "")
        if not value:
            raise UsageError(f"option {name} needs a value", _example(name))
        variable = OPTIONS[name]
        if variable in given:
            raise UsageError(f"option {name} is given twice")
        given.add(variable)
        env[variable] = value
    return rest


def _example(name: str) -> str:
    if name == "--podman-host":
        return "e.g. --podman-host unix:///run/podman/podman.sock"
    return f"e.g. {name} /var/lib/lxc"


__all__ = ["OPTIONS", "take_runtime_options"]
