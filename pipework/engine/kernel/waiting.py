"""Waiting for an interface to be operationally up (``pipework --wait``, ``wait``).

The original waited forever for the interface to merely exist. An interface
exists before it is usable: its peer may still be down, or its address not
yet configured. Waiting for the kernel's operational state catches that.
"""

from __future__ import annotations

import anyio

from pipework.engine.errors import TimeoutExpiredError
from pipework.engine.kernel.netlink import Link, Netns

POLL_INTERVAL = 0.05
"""Seconds between two looks (a link lookup is a few microseconds of kernel work)."""


def operationally_up(link: Link) -> bool:
    """UP, or UNKNOWN for drivers that report no operstate (dummy, lo) but are up."""
    return link.operstate == "UP" or (link.operstate == "UNKNOWN" and link.up)


def describe_state(link: Link | None) -> str:
    if link is None:
        return "does not exist"
    if not link.up:
        return "exists but is down"
    return f"is {link.operstate} (administratively up, no carrier)"


async def wait_for_link(ns: Netns, ifname: str, seconds: float | None, where: str) -> Link:
    """Return ``ifname`` in ``ns`` once it is operationally up.

    ``seconds`` None waits forever; otherwise ``TimeoutExpiredError`` says
    what the interface looked like when time ran out.
    """
    deadline = None if seconds is None else anyio.current_time() + seconds
    while True:
        link = await ns.link(ifname)
        if link is not None and operationally_up(link):
            return link
        if deadline is not None and anyio.current_time() >= deadline:
            raise TimeoutExpiredError(
                f"{ifname} in {where} {describe_state(link)} after {seconds:g} s",
                "attach it first (pipework HOSTIF GUEST IPSPEC), or wait longer with --timeout",
            )
        await anyio.sleep(POLL_INTERVAL)


__all__ = ["describe_state", "operationally_up", "wait_for_link"]
