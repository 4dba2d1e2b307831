"""What a batch of attaches looks up once: the privilege check, and each host
interface found (looked for again after an attach fails)."""

from __future__ import annotations

import pytest

from pipework.engine import AddressSpec, AttachSpec, Engine, UnknownHostInterfaceError
from pipework.engine import engine as engine_module
from pipework.engine.kernel.rtnl import RTM_GETLINK

pytestmark = pytest.mark.anyio


def lookups(net) -> int:
    return sum(1 for r in net.kernel.log if r.type == RTM_GETLINK)


@pytest.fixture
def engine(net, tmp_path):
    engine = Engine(entry_points=False, run_dir=str(tmp_path))
    engine._host = net.host  # the fake kernel plays the host
    return engine


def spec(host: str = "br0") -> AttachSpec:
    return AttachSpec(host=host, guest="netns:blue", address=AddressSpec.parse("0/0"))


async def test_a_host_interface_found_is_looked_up_once_per_batch(net, engine):
    net.kernel.add("host", "br0", kind="bridge", up=True)
    with engine.batch():
        first = await engine._batch_host_link(spec())
        again = await engine._batch_host_link(spec())
    assert first == again and first is not None and first.ifname == "br0"
    assert lookups(net) == 1
    await engine._batch_host_link(spec())  # outside a batch: every time
    await engine._batch_host_link(spec())
    assert lookups(net) == 3


async def test_a_missing_host_interface_is_looked_for_again(net, engine):
    with engine.batch():
        assert await engine._batch_host_link(spec("br9")) is None
        net.kernel.add("host", "br9", kind="bridge", up=True)  # a backend made it
        found = await engine._batch_host_link(spec("br9"))
    assert found is not None and found.ifname == "br9"


async def test_a_failed_attach_forgets_what_it_found(net, engine, monkeypatch):
    monkeypatch.setattr(engine_module, "require_privileges", lambda: None)
    net.kernel.add("host", "br0", kind="bridge", up=True)
    with engine.batch():
        await engine._batch_host_link(spec())
        with pytest.raises(UnknownHostInterfaceError):  # no backend loaded
            await engine.attach(spec())
        assert lookups(net) == 1  # the attach used what the batch found
        await engine._batch_host_link(spec())
    assert lookups(net) == 2


async def test_privileges_are_checked_once_per_batch(net, engine, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(engine_module, "require_privileges", lambda: calls.append(1))
    net.kernel.add("host", "br0", kind="bridge", up=True)
    with engine.batch():
        for _ in range(3):
            with pytest.raises(UnknownHostInterfaceError):
                await engine.attach(spec())
    assert len(calls) == 1
    with pytest.raises(UnknownHostInterfaceError):
        await engine.attach(spec())
    assert len(calls) == 2
