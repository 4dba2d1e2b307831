"""The undo journal: every step that creates something records its inverse.

``Journal.record()`` is called right *after* a step succeeded, with a
coroutine function that undoes it. On any exception or cancellation the
engine calls ``rollback()``, which runs the inverses newest-first under a
shielded cancel scope, so a Ctrl-C cannot interrupt the clean-up itself.
Every inverse must be idempotent (a cancelled netlink call may or may not
have happened, so an inverse can meet a half-done state).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio

Undo = Callable[[], Awaitable[object]]
T = TypeVar("T")

log = logging.getLogger("pipework.journal")


class Journal:
    def __init__(self) -> None:
        self._steps: list[tuple[str, Undo]] = []

    def record(self, description: str, undo: Undo) -> None:
        """Remember how to undo ``description``, which has just happened."""
        self._steps.append((description, undo))

    async def step(self, description: str, action: Awaitable[T], undo: Undo) -> T:
        """Run ``action`` and record ``undo``, with no cancellation in between.

        A request the kernel has carried out is thus always undone, even when
        a Ctrl-C arrives while its answer is on the way. (A failed action
        records nothing.)
        """
        with anyio.CancelScope(shield=True):
            result = await action
            self.record(description, undo)
        return result

    @property
    def steps(self) -> list[str]:
        return [description for description, _ in self._steps]

    def commit(self) -> None:
        """The transaction succeeded: forget the inverses."""
        self._steps.clear()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Journal]:
        """``async with journal.transaction():`` all or nothing: committed
        when the block ends, rolled back (and what stayed logged as an
        error) when it raises or is cancelled."""
        try:
            yield self
        except BaseException:
            failures = await self.rollback()
            if failures:
                logging.getLogger("pipework").error(
                    "rollback left things behind: %s", "; ".join(failures)
                )
            raise
        self.commit()

    async def rollback(self) -> list[str]:
        """Undo everything recorded, newest first; return what could not be undone."""
        failures: list[str] = []
        with anyio.CancelScope(shield=True):
            while self._steps:
                description, undo = self._steps.pop()
                try:
                    await undo()
                except Exception as exc:  # keep unwinding; report at the end
                    log.warning("could not undo %s: %s", description, exc)
                    failures.append(f"{description}: {exc}")
        return failures
