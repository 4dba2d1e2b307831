"""Engine.__aenter__/__aexit__: a failure anywhere leaves nothing open; the
caller's exception comes out as it went in."""

from __future__ import annotations

import anyio
import pytest

from pipework.engine import Engine, EngineConfig, PipeworkError, UsageError, hookimpl

pytestmark = pytest.mark.anyio


class Closable:
    name = "closable"
    default_ifname = "eth1"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def claim(self, request: object) -> int:
        return 0

    def check(self, request: object) -> None:
        return None

    async def attach(self, ctx: object) -> object:
        raise NotImplementedError

    async def detach(self, ctx: object) -> None:
        return None

    async def aclose(self) -> None:
        self.log.append("aclose")


class GoodPlugin:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @hookimpl
    def pipework_link_backends(self, config: EngineConfig) -> list[Closable]:
        return [Closable(self.log)]


class BrokenPlugin:
    @hookimpl
    def pipework_address_providers(self, config: EngineConfig) -> list[object]:
        raise RuntimeError("factory failed")


def _fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


async def test_a_failing_factory_closes_what_was_made_before_it() -> None:
    log: list[str] = []
    engine = Engine(plugins=[GoodPlugin(log), BrokenPlugin()], entry_points=False)
    with pytest.raises(PipeworkError, match=r"BrokenPlugin .*factory failed"):
        await engine.__aenter__()
    assert log == ["aclose"]
    assert engine._stack is None and engine._background is None


async def test_a_bad_host_namespace_closes_the_plugins_and_opens_no_fd() -> None:
    log: list[str] = []
    before = _fds()
    engine = Engine(
        plugins=[GoodPlugin(log)], entry_points=False, host_netns="/nonexistent/pipework-test"
    )
    with pytest.raises(UsageError, match="host namespace"):
        async with engine:
            pytest.fail("the block must not run")
    assert log == ["aclose"]
    assert engine._host_fd is None
    assert _fds() == before


async def test_the_callers_exception_comes_out_unchanged_and_plugins_are_closed() -> None:
    log: list[str] = []
    with pytest.raises(ValueError, match="the caller's") as caught:
        async with Engine(plugins=[GoodPlugin(log)], entry_points=False):
            raise ValueError("the caller's")
    assert type(caught.value) is ValueError  # not wrapped in an exception group
    assert log == ["aclose"]


async def test_a_cancelled_block_still_closes_everything() -> None:
    log: list[str] = []
    with anyio.move_on_after(0.01):
        async with Engine(plugins=[GoodPlugin(log)], entry_points=False):
            await anyio.sleep(10)
    assert log == ["aclose"]


async def test_a_clean_exit_closes_the_plugins_once() -> None:
    log: list[str] = []
    engine = Engine(plugins=[GoodPlugin(log)], entry_points=False)
    async with engine:
        assert "closable" in engine.backends
    assert log == ["aclose"]
    assert engine._stack is None
