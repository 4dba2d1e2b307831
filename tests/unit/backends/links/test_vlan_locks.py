"""The users of a shared ``PARENT.VID`` (backends/shared/vlans.py) change
only under the lock ``vlan:PARENT.VID``, on both sides: an attach adding
its user, and a detach (or a rollback, or ``gc``) dropping the last one and
the sub-interface with it.

The integration test (tests/integration/test_lock_races.py) cannot run on a
kernel without 8021q; this one runs the same race on the fake kernel, with
two ``HostLocks`` on one directory standing for two processes. The fake
kernel answers at once and every request is an await, so the two tasks
interleave request by request: without the lock on both sides the attach
finds the sub-interface, the detach deletes it, and the attach's request to
add its user goes to a device that is gone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from support.fake_netlink import FakeNet

from pipework.backends.shared import vlans
from pipework.engine import BRIDGE_MARKER, AttachSpec, Lock, Marker
from pipework.engine.locks import HostLocks

pytestmark = pytest.mark.anyio


@pytest.fixture
def net() -> Iterator[FakeNet]:
    net = FakeNet()
    yield net
    net.close()


def marker(guest: str) -> Marker:
    return Marker(guest=guest, ifname="eth1", kind="macvlan", host="eth0", hostif="")


def user(guest: str) -> str:
    return "pw-" + hashlib.sha1(f"{guest}\0eth1".encode()).hexdigest()[:10]


async def race(net: FakeNet, leaving: Lock, joining: Lock, guest: str, late: int) -> None:
    """The last user of eth0.10 leaves while ``guest`` joins, ``late``
    scheduling steps after it (each step is one request of the other)."""
    ctx = net.link_context(
        AttachSpec(host="eth0", guest=guest, vlan=10), marker(guest), lock=joining
    )

    async def leave() -> None:
        await vlans.release_vlan(net.host, "eth0.10", user("netns:a"), leaving)

    async def join() -> None:
        for _ in range(late):
            await anyio.lowlevel.checkpoint()
        await vlans.parent_for(ctx, "macvlan", 10)  # as macvlan's attach does

    async with anyio.create_task_group() as tg:
        tg.start_soon(leave)
        tg.start_soon(join)


async def test_the_last_user_leaving_while_another_joins(net: FakeNet, tmp_path: Path) -> None:
    eth0 = net.kernel.add("host", "eth0", up=True, mtu=1500)
    for i in range(12):
        net.kernel.add(
            "host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10, up=True,
            alias=BRIDGE_MARKER, altnames=[user("netns:a")],
        )  # fmt: skip
        # Two processes: each its own locks on the one lock directory.
        leaving, joining = HostLocks(str(tmp_path), 5), HostLocks(str(tmp_path), 5)
        await race(net, leaving.hold, joining.hold, f"netns:b{i}", late=i % 6)
        # Whole: the sub-interface is there, with exactly the user that joined.
        link = net.kernel.find("host", "eth0.10")
        assert link is not None and link.alias == BRIDGE_MARKER
        assert link.altnames == [user(f"netns:b{i}")]
        # And it goes with its last user.
        await vlans.release_vlan(net.host, "eth0.10", user(f"netns:b{i}"), leaving.hold)
        assert net.kernel.find("host", "eth0.10") is None
        leaving.close()
        joining.close()
