"""The undo journal unwinds newest-first, survives failing inverses and cancellation."""

import anyio
import pytest

from pipework.engine import Journal

pytestmark = pytest.mark.anyio


async def test_rollback_runs_inverses_newest_first():
    done = []
    journal = Journal()
    for name in ("bridge", "veth", "route"):

        async def undo(name=name):
            done.append(name)

        journal.record(name, undo)
    assert journal.steps == ["bridge", "veth", "route"]
    assert await journal.rollback() == []
    assert done == ["route", "veth", "bridge"]
    assert journal.steps == []


async def test_a_failing_inverse_does_not_stop_the_rest():
    done = []
    journal = Journal()

    async def ok():
        done.append("ok")

    async def broken():
        raise RuntimeError("boom")

    journal.record("first", ok)
    journal.record("second", broken)
    failures = await journal.rollback()
    assert done == ["ok"]
    assert failures == ["second: boom"]


async def test_commit_forgets_everything():
    journal = Journal()

    async def never():
        raise AssertionError("must not run")

    journal.record("x", never)
    journal.commit()
    assert await journal.rollback() == []


async def test_rollback_is_shielded_from_cancellation():
    done = []
    journal = Journal()

    async def slow_undo():
        await anyio.sleep(0.05)
        done.append("undone")

    journal.record("slow", slow_undo)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await journal.rollback()
    assert done == ["undone"]
