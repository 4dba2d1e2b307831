"""Fault injection for rollback tests."""

from __future__ import annotations

from collections.abc import Callable

from pipework.engine import Journal


class InjectedFault(Exception):
    pass


def fault_after(monkeypatch, n: int) -> list[str]:
    """Make the ``n``-th journal record raise right after the step it records.

    Returns the descriptions recorded so far (filled in as the attach runs).
    """
    seen: list[str] = []
    original = Journal.record

    def record(self, description, undo):
        original(self, description, undo)
        seen.append(description)
        if len(seen) == n:
            raise InjectedFault(f"after {description}")

    monkeypatch.setattr(Journal, "record", record)
    return seen


async def attach_with_each_fault(
    monkeypatch, host_netns: str, spec, check: Callable[[str], None]
) -> list[str]:
    """Attach ``spec`` with a fault after step 1, then 2, ... until a run gets
    through; ``check(step)`` inspects the system after each rolled-back run.

    Returns the steps, in order, that were faulted.
    """
    from pipework import Engine

    faulted: list[str] = []
    while True:
        with monkeypatch.context() as patch:
            seen = fault_after(patch, len(faulted) + 1)
            try:
                async with Engine(host_netns=host_netns) as engine:
                    await engine.attach(spec)
            except InjectedFault:
                faulted.append(seen[-1])
                check(seen[-1])
                continue
        return faulted
