"""A batch scope: what the attaches of one batch may share.

A batch (``Engine.attach_many``, ``async with engine.batch():``) gives every
attach in it the same ``BatchScope``; a single attach gets a scope of its
own. Plugins use it to do host-wide work once per batch instead of once per
attach (the bridge backend reads the host's firewall once per bridge: each
read forks and execs the firewall tools). The engine knows nothing of what
is kept in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class BatchScope:
    """A memo shared by the attaches of one batch, keyed by the plugin's own keys."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, anyio.Lock] = {}

    async def once(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """``compute()``'s result, computed by the first caller with ``key`` in
        this batch (concurrent callers wait for it); an exception is not kept."""
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            if key not in self._values:
                self._values[key] = await compute()
            value: T = self._values[key]
            return value

    def peek(self, key: Hashable) -> Any:
        """What ``key`` holds in this batch (None: nothing)."""
        return self._values.get(key)

    def keep(self, key: Hashable, value: object) -> None:
        """Hold ``value`` under ``key`` for the rest of the batch."""
        self._values[key] = value

    def forget(self, key: Hashable) -> None:
        """Drop what ``key`` holds (the plugin changed what it described)."""
        self._values.pop(key, None)


_CURRENT: ContextVar[BatchScope | None] = ContextVar("pipework_batch_scope", default=None)


def current_scope() -> BatchScope:
    """The scope of the batch being run, or a new one for a lone attach."""
    return _CURRENT.get() or BatchScope()


@contextmanager
def batch_scope() -> Iterator[BatchScope]:
    """Within the block, every attach shares one scope (nested blocks share the outer one)."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    scope = BatchScope()
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)
