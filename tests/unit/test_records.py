"""``Record`` behaves as the frozen dataclass it replaces: equality, hash, repr, immutability."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from pipework.backends.addresses.dhcp.helper import Daemon
from pipework.backends.addresses.dhcp.toolbox import UDHCPC_OPTIONS, ClientOptions, Lease
from pipework.backends.links.bridge.firewall import Chain
from pipework.records import Record


@dataclasses.dataclass(frozen=True)
class Point:  # what a Record stands for
    x: int
    y: int
    label: str = ""


def _record_point(*args: object) -> Record:
    class Point(Record):  # the same name as the dataclass, for repr
        x: int
        y: int
        label: str = ""

    return Point(*args)


def test_same_repr_equality_and_hash_as_a_frozen_dataclass():
    for args in [(1, 2), (1, 2, "a"), (0, -1, "it's")]:
        ours, theirs = _record_point(*args), Point(*args)
        assert repr(ours) == repr(theirs)
        assert ours == type(ours)(*args) and hash(ours) == hash(type(ours)(*args))
        assert ours != type(ours)(9, 9)
    assert _record_point(1, 2) != (1, 2, "")  # only the same class compares equal


def test_immutable():
    point = _record_point(1, 2)
    with pytest.raises(AttributeError):
        point.x = 3  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del point.x  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        point.other = 1  # type: ignore[attr-defined]
    assert point.x == 1  # type: ignore[attr-defined]


def test_the_converted_classes():
    chain = Chain("inet", "filter", "forward")
    assert repr(chain) == "Chain(family='inet', table='filter', name='forward')"
    assert str(chain) == "nft chain inet filter forward" and chain.tool == "nft"
    assert list(dict.fromkeys([chain, Chain("inet", "filter", "forward")])) == [chain]
    assert Chain("ip", "filter", "FORWARD").tool == "iptables"
    lease = Lease(ipaddress.IPv4Interface("198.18.0.2/24"))
    assert lease == Lease(
        ipaddress.IPv4Interface("198.18.0.2/24"), (), (), None, None, None, "", 0, 0
    )
    assert repr(lease).startswith(
        "Lease(address=IPv4Interface('198.18.0.2/24'), routers=(), dns=()"
    )
    assert lease.gateway is None
    assert (
        Daemon("unix:///x") == Daemon("unix:///x", "docker")
        and Daemon("u", "podman").label == "Podman"
    )
    assert UDHCPC_OPTIONS.getopt and isinstance(UDHCPC_OPTIONS, ClientOptions)
