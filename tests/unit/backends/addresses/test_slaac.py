"""SLAAC without root: which addresses are the router's, what is refused,
the router solicitation's bytes."""

from __future__ import annotations

import ipaddress

import pytest

from pipework import AddressSpec, AttachSpec
from pipework.backends.addresses.slaac import (
    SlaacProvider,
    from_router,
    router_solicitation,
    slaac_timeout,
    usable,
)
from pipework.backends.shared.ipv6 import link_local_ready
from pipework.engine import GuestInfo, UsageError
from pipework.engine.kernel.netlink import (
    IFA_F_DADFAILED,
    IFA_F_PERMANENT,
    IFA_F_TENTATIVE,
    AddressEntry,
)
from pipework.engine.kernel.rtnl import IFA_PROTO_KERNEL_RA

GUEST = GuestInfo(key="netns:g", name="netns:g", runtime="netns")


def entry(text: str, flags: int = 0, proto: int = 0) -> AddressEntry:
    return AddressEntry(ipaddress.ip_interface(text), flags, proto)


def request(ipspec: str, **kw: object) -> AttachSpec:
    return AttachSpec(host="br1", guest="netns:g", address=AddressSpec.parse(ipspec, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "flags", "proto", "expected"),
    [
        ("2001:db8:1::5/64", 0, IFA_PROTO_KERNEL_RA, True),  # the kernel says so
        ("2001:db8:1::5/64", 0, 0, True),  # an old kernel: lifetimes, /64
        ("2001:db8:1::5/64", IFA_F_PERMANENT, 0, False),  # static
        ("2001:db8:1::5/128", 0, 0, False),  # DHCPv6's
        ("2001:db8:1::5/64", 0, 3, False),  # someone else said it is theirs
        ("fe80::1/64", 0, 0, False),
        ("198.18.1.2/24", 0, 0, False),
    ],
)
def test_from_router(address, flags, proto, expected):
    assert from_router(entry(address, flags, proto)) is expected


def test_usable_addresses_have_passed_duplicate_address_detection():
    entries = [
        entry("fe80::1/64"),
        entry("2001:db8:1::5/64", IFA_F_TENTATIVE, IFA_PROTO_KERNEL_RA),
        entry("2001:db8:2::5/64", IFA_F_DADFAILED | IFA_F_TENTATIVE, IFA_PROTO_KERNEL_RA),
        entry("2001:db8:3::5/64", 0, IFA_PROTO_KERNEL_RA),
    ]
    assert [str(e.address) for e in usable(entries)] == ["2001:db8:3::5/64"]


def test_link_local_ready():
    assert not link_local_ready([])
    assert not link_local_ready([entry("fe80::1/64", IFA_F_TENTATIVE), entry("198.18.1.2/24")])
    assert link_local_ready([entry("fe80::1/64", IFA_F_PERMANENT)])


def test_router_solicitation_is_icmpv6_type_133_without_options():
    assert router_solicitation() == bytes([133, 0, 0, 0, 0, 0, 0, 0])


def test_timeout_default_and_dhcp_timeout():
    assert slaac_timeout(AddressSpec.parse("slaac")) == 30.0
    assert slaac_timeout(AddressSpec.parse("slaac", timeout="4.5")) == 4.5


@pytest.mark.parametrize(
    ("ipspec", "kw", "family", "message"),
    [
        ("slaac/4", {}, None, "slaac configures IPv6 only"),
        ("slaac", {}, 4, "slaac configures IPv6 only"),
        ("slaac:-x", {}, None, "slaac takes no options"),
        ("slaac", {"dns": True}, None, "--dns is for DHCP methods"),
        ("slaac", {"image": "busybox"}, None, "--dhcp-image is for DHCP methods"),
    ],
)
def test_what_slaac_refuses(ipspec, kw, family, message):
    spec = request(ipspec, **kw)
    if family is not None:
        spec = AttachSpec(host="br1", guest="netns:g", address=spec.address, family=family)
    with pytest.raises(UsageError, match=message):
        SlaacProvider().validate(spec, GUEST)


@pytest.mark.parametrize("ipspec", ["slaac", "slaac/6"])
def test_what_slaac_accepts(ipspec):
    provider = SlaacProvider()
    spec = request(ipspec, timeout=5)
    assert provider.handles(spec.address)
    provider.validate(spec, GUEST)
    # The timeout says how, not what: not in the fingerprint.
    same = request(ipspec).fingerprint("bridge", "br1", address_declared=provider.options)
    assert spec.fingerprint("bridge", "br1", address_declared=provider.options) == same
