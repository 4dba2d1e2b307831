"""IPv6 on a guest interface, for the address providers that need a usable
link-local address before they send (SLAAC's router solicitations, a
DHCPv6 client)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from pipework.engine.kernel.netlink import IFA_F_TENTATIVE, AddressEntry, Netns

POLL = 0.05


def link_local_ready(entries: Sequence[AddressEntry]) -> bool:
    """Has the interface a link-local address it may send from (past DAD)?"""
    return any(
        e.address.version == 6 and e.address.ip.is_link_local and not e.flags & IFA_F_TENTATIVE
        for e in entries
    )


async def wait_link_local(netns: Netns, index: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``link_local_ready``; False if it did not come."""
    with anyio.move_on_after(seconds):
        # Polling: the kernel's address events would need a subscribed socket.
        while not link_local_ready(await netns.address_entries(index)):  # noqa: ASYNC110
            await anyio.sleep(POLL)
        return True
    return False
