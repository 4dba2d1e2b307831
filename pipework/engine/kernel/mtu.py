"""MTU policy: which MTU an interface made on a parent gets."""

from __future__ import annotations

from pipework.engine.errors import HostInterfaceError
from pipework.engine.kernel.netlink import Link


def pick_mtu(requested: int | None, parent: Link, ceiling: int | None = None) -> int:
    """The MTU for an interface on ``parent``: ``requested``, or the parent's.

    ``ceiling`` is the most the parent allows its children (a macvlan's
    parent MTU); by default its own maximum.
    """
    mtu = requested or parent.mtu
    limit = ceiling if ceiling is not None else parent.max_mtu
    if limit and mtu > limit:
        raise HostInterfaceError(
            f"MTU {mtu} is larger than {parent.ifname} allows (at most {limit})",
            f"choose --mtu {limit} or less, or raise {parent.ifname}'s MTU",
        )
    return mtu


__all__ = ["pick_mtu"]
