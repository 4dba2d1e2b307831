"""The value classes' base: ``pipework.records`` (shared with the CLI and the plugins)."""

from pipework.records import EMPTY, Record

__all__ = ["EMPTY", "Record"]
