"""Options a plugin declares: the core carries them, only their plugin reads them.

A link backend or an address provider lists what it accepts in its class
attribute ``options``, a mapping of ``OptionSpec`` by key::

    class MacvlanBackend:
        options = {"mode": OptionSpec("bridge|private|vepa|passthru", choices=MODES)}

Two kinds of option travel in a request:

- ``-o KEY=VALUE`` (``flag`` is None): a string, in ``AttachSpec.options``.
- An option with a command-line flag of its own (``--pkey``,
  ``--direct-phys``, ``--dns``...): a typed value in ``AttachSpec.settings``
  (link backends) or ``AddressSpec.settings`` (address providers).

The core never interprets either: ``check_options`` refuses ``-o`` keys the
chosen backend does not declare and runs each declared option's ``parse``,
and the marker fingerprint (``AttachSpec.fingerprint``) covers every option
that is set, except those declared with ``fingerprint=False``. A setting the
chosen plugin does not declare is someone else's business: it is ignored
here (a backend may refuse it in its own ``check``, as most refuse
``--direct-phys``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipework.engine.errors import UsageError

OptionValue = str | int | float | bool
"""What an option holds: ``-o`` values are strings; settings are typed."""


@dataclass(frozen=True)
class OptionSpec:
    """One option a plugin accepts."""

    help: str
    """One line for people (``bridge|private|vepa|passthru``)."""
    flag: str | None = None
    """The command-line flag that sets it (``--pkey``); None: ``-o KEY=VALUE``."""
    choices: Sequence[str] = ()
    """The values allowed (empty: any value ``parse`` accepts)."""
    parse: Callable[[Any], OptionValue] | None = None
    """Checks a value and returns it normalised; raises ``UsageError``."""
    fingerprint: bool = True
    """False for options that say how, not what (a timeout): changing them
    does not make a re-run see "another configuration"."""


def check_options(
    kind: str,
    declared: Mapping[str, OptionSpec],
    options: Mapping[str, str],
    settings: Mapping[str, OptionValue] | None = None,
) -> None:
    """Raise ``UsageError`` for ``-o`` options (and settings) that ``declared`` refuses.

    ``kind`` names the plugin in messages (``the macvlan backend has no
    option 'colour'``).
    """
    accepted = sorted(key for key, spec in declared.items() if spec.flag is None)
    for key in options:
        option = declared.get(key)
        if option is None or option.flag is not None:
            raise UsageError(
                f"the {kind} backend has no option {key!r}",
                f"its options: {', '.join(accepted) or 'none'}",
            )
    for key, value in [*options.items(), *(settings or {}).items()]:
        option = declared.get(key)
        if option is None:
            continue  # another plugin's setting
        if option.choices and value not in option.choices:
            raise UsageError(
                f"{kind} has no {key} {value!r}", f"use one of {', '.join(option.choices)}"
            )
        if option.parse is not None:
            option.parse(value)


def given(settings: Mapping[str, OptionValue | None]) -> dict[str, OptionValue]:
    """The settings that are set: None and False (a flag not given) are left out."""
    return {k: v for k, v in settings.items() if v is not None and v is not False}


__all__ = [
    "OptionSpec",
    "OptionValue",
    "check_options",
    "given",
]
