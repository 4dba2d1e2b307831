"""Reading a named input: a file, or ``-`` for standard input, with one-line errors.

Its own module (standard library only) so that ``pipework batch`` reads its
lines without loading the topology file's schema (pydantic, ~60 ms).
"""

from __future__ import annotations

import sys

from pipework.engine.errors import UsageError


def read(name: str) -> tuple[str, str]:
    """The text of ``name`` (``-`` is standard input) and how to call it in messages."""
    if name == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        with open(name, encoding="utf-8") as handle:
            return handle.read(), name
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None


__all__ = ["read"]
