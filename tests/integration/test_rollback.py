"""Rollback: a fault injected after each step of an attach leaves nothing behind."""

from __future__ import annotations

import pytest
from support.checks import links, only_loopback, routes
from support.faults import attach_with_each_fault

from pipework import AddressSpec, AttachSpec, Engine
from pipework.engine import Journal

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.parametrize("bridge_exists", [False, True], ids=["new-bridge", "existing-bridge"])
async def test_fault_after_every_step(host_ns, make_netns, monkeypatch, bridge_exists):
    guest = make_netns("g")
    # A default route the attach will replace, so rollback must restore it.
    guest.exec("ip", "link", "add", "pwtup", "type", "veth", "peer", "name", "pwtup2")
    guest.exec("ip", "addr", "add", "198.18.50.2/24", "dev", "pwtup")
    guest.exec("ip", "link", "set", "pwtup", "up")
    guest.exec("ip", "link", "set", "pwtup2", "up")
    guest.exec("ip", "route", "add", "default", "via", "198.18.50.1")
    before_guest, before_routes = set(links(guest)), routes(guest)
    if bridge_exists:
        host_ns.exec("ip", "link", "add", "brpwtf", "type", "bridge")
    before_host = set(links(host_ns))
    spec = AttachSpec(
        host="brpwtf",
        guest=f"netns:{guest.name}",
        address=AddressSpec.parse("198.18.51.2/24@198.18.51.1"),
        mac="U:rollback",
    )

    def check(step: str) -> None:
        assert set(links(guest)) == before_guest, f"fault after {step}"
        assert set(links(host_ns)) == before_host, f"fault after {step}"
        assert routes(guest) == before_routes, f"fault after {step}"

    faulted = await attach_with_each_fault(monkeypatch, host_ns.path, spec, check)
    # Every recorded step had its fault: veth, guest interface, default route,
    # the host-side record of the route it replaced, and the bridge when the
    # attach created it.
    assert len(faulted) == (4 if bridge_exists else 5), faulted
    assert "eth1" in links(guest)  # the run without a fault succeeded


async def test_cancellation_rolls_back(host_ns, make_netns):
    import anyio

    guest = make_netns("g")
    original = Journal.record
    cancelled = False

    async with Engine(host_netns=host_ns.path) as engine:
        with anyio.CancelScope() as scope:

            def record(self, description, undo):
                original(self, description, undo)
                if description.startswith("guest interface"):
                    scope.cancel()

            Journal.record = record
            try:
                await engine.attach(
                    AttachSpec(
                        host="brpwtc",
                        guest=f"netns:{guest.name}",
                        address=AddressSpec.parse("198.18.52.2/24"),
                    )
                )
            finally:
                Journal.record = original
        cancelled = scope.cancelled_caught
    assert cancelled
    assert only_loopback(guest) and only_loopback(host_ns)
