"""Several addresses per interface: IPSPEC lists, families, the marker's
method list, how each address was obtained, one result of several providers."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from pipework.engine import AddressProvider, AddressResult, AddressSpec, AttachSpec, UsageError
from pipework.engine.addressing import (
    Addressing,
    attribute,
    marker_methods,
    merge,
    own_settings,
    parse_methods,
)
from pipework.engine.kernel.netlink import AddressEntry
from pipework.engine.kernel.rtnl import IFA_PROTO_KERNEL_RA
from pipework.engine.options import OptionSpec
from pipework.engine.specs import parse_addresses, split_ipspec

anyio_test = pytest.mark.anyio


def spec(ipspec: str, **fields: Any) -> AttachSpec:
    address, *extra = parse_addresses(ipspec)
    return AttachSpec(
        host="br1", guest="web1", address=address, extra_addresses=tuple(extra), **fields
    )


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("198.18.1.2/24", ["198.18.1.2/24"]),
        (
            "198.18.1.2/24@198.18.1.1,2001:db8:1::2/64@2001:db8:1::1",
            ["198.18.1.2/24@198.18.1.1", "2001:db8:1::2/64@2001:db8:1::1"],
        ),
        ("dhclient,slaac", ["dhclient", "slaac"]),
        ("dhclient/6", ["dhclient/6"]),
        # A client's options run to the end: they may hold commas.
        ("slaac,udhcpc:-O 121,-x a", ["slaac", "udhcpc:-O 121,-x a"]),
        ("2001:db8::2/64,dhclient:-v", ["2001:db8::2/64", "dhclient:-v"]),
    ],
)
def test_ipspec_items(text: str, items: list[str]) -> None:
    assert split_ipspec(text) == items


@pytest.mark.parametrize("text", ["a,,b", ",dhclient", "198.18.1.2/24,"])
def test_an_empty_item_is_one_line(text: str) -> None:
    with pytest.raises(UsageError, match="has an empty item"):
        split_ipspec(text)


def test_families_of_methods() -> None:
    six = AddressSpec.parse("dhclient/6")
    assert (six.method, six.family, str(six), six.word) == (
        "dhclient",
        6,
        "dhclient/6",
        "dhclient/6",
    )
    assert str(AddressSpec.parse("dhclient/6:-v")) == "dhclient/6:-v"
    assert AddressSpec.parse("dhclient").family is None
    with pytest.raises(UsageError, match="the family after '/' is 4 or 6"):
        AddressSpec.parse("dhclient/5")
    with pytest.raises(UsageError, match="is for DHCP methods"):
        AddressSpec(address=ipaddress.ip_interface("198.18.1.2/24"), family=6)


def test_dash_a_6_gives_the_dynamic_methods_their_family() -> None:
    request = spec("dhclient", family=6)
    assert request.address.family == 6 and str(request.address) == "dhclient/6"
    # Fingerprints differ: -a 6 used to be refused, and asks for something else.
    assert request.fingerprint("bridge", "br1") != spec("dhclient").fingerprint("bridge", "br1")
    mixed = spec("2001:db8::2/64,slaac", family=6)
    assert [str(a) for a in mixed.addresses] == ["2001:db8::2/64", "slaac/6"]
    with pytest.raises(UsageError, match=r"-a 6 does not match the address 198\.18\.1\.2/24"):
        spec("198.18.1.2/24,slaac", family=6)
    with pytest.raises(UsageError, match=r"-a 4 does not match dhclient/6"):
        spec("dhclient/6", family=4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r"0/0,slaac", r"0/0 \(no address\) cannot be combined"),
        ("198.18.1.2/24,198.18.1.2/25", "198.18.1.2 is given twice"),
        ("dhclient,dhclient", "dhclient is given twice"),
        ("198.18.1.2/24@198.18.1.1,198.18.1.3/24@198.18.1.9", "two IPv4 gateways"),
    ],
)
def test_lists_an_interface_cannot_take(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        spec(text)


def test_what_a_list_may_hold() -> None:
    request = spec("198.18.1.2/24@198.18.1.1,2001:db8:1::2/64@2001:db8:1::1,dhclient/6,slaac")
    assert [a.word for a in request.addresses] == ["static", "static", "dhclient/6", "slaac"]
    assert marker_methods(request) == "static,static,dhclient/6,slaac"
    assert spec("dhclient,dhclient/6").addresses[1].family == 6


def test_the_fingerprint_of_one_address_is_unchanged_and_every_extra_counts() -> None:
    one = spec("198.18.1.2/24@198.18.1.1")
    assert one.fingerprint("bridge", "br1") == AttachSpec(
        host="br1", guest="web1", address=AddressSpec.parse("198.18.1.2/24@198.18.1.1")
    ).fingerprint("bridge", "br1")
    two = spec("198.18.1.2/24@198.18.1.1,2001:db8::2/64")
    other = spec("198.18.1.2/24@198.18.1.1,2001:db8::3/64")
    prints = {s.fingerprint("bridge", "br1") for s in (one, two, other)}
    assert len(prints) == 3


def test_the_dhcp_flags_go_to_the_dynamic_methods() -> None:
    static, dhcp, six = parse_addresses("198.18.1.2/24,dhclient,dhclient/6", dns=True, timeout=5)
    assert static.settings == {}
    assert dhcp.settings == {"dns": True, "timeout": 5.0} == six.settings
    with pytest.raises(UsageError, match="apply to DHCP addressing only"):
        parse_addresses("198.18.1.2/24,2001:db8::2/64", dns=True)


def test_marker_methods_are_read_as_untrusted_words() -> None:
    words = [a.word for a in parse_methods("static,dhclient/6,slaac")]
    assert words == ["static", "dhclient/6", "slaac"]
    assert [a.word for a in parse_methods("")] == ["static"]
    assert [a.word for a in parse_methods("static,$(rm -rf /),dhcp/9,,x/6")] == ["static", "x/6"]
    assert len(parse_methods(",".join(["static"] * 500))) == 16


def entry(text: str, *, ra: bool = False) -> AddressEntry:
    return AddressEntry(ipaddress.ip_interface(text), 0, IFA_PROTO_KERNEL_RA if ra else 0)


def test_how_each_address_was_obtained() -> None:
    request = spec("198.18.1.2/24,dhclient/6,slaac")
    entries = [
        entry("198.18.1.2/24"),
        entry("2001:db8:100::61/128"),
        entry("2001:db8:100:0:1:2:3:4/64", ra=True),
        entry("fe80::1/64"),
    ]
    assert attribute(entries, request.addresses) == (
        ("198.18.1.2/24", "static"),
        ("2001:db8:100::61/128", "dhclient/6"),
        ("2001:db8:100:0:1:2:3:4/64", "slaac"),
    )
    # What a provider reported says it first.
    told = attribute(entries[:2], request.addresses, [("2001:db8:100::61/128", "other")])
    assert told[1] == ("2001:db8:100::61/128", "other")
    # From a marker (no static address known): by family; both named when both may have.
    marker = parse_methods("static,dhclient")
    assert attribute([entry("198.18.1.2/24")], marker) == (("198.18.1.2/24", "static|dhclient"),)
    assert attribute([entry("2001:db8::9/64")], parse_methods("dhclient")) == (
        ("2001:db8::9/64", "unknown"),
    )


class Fake(AddressProvider):
    def __init__(self, name: str, options: dict[str, OptionSpec], result: AddressResult) -> None:
        self.name = name
        self.options = options
        self.result = result
        self.seen: list[tuple[AddressSpec, AttachSpec]] = []
        self.released: list[AddressSpec | None] = []

    def handles(self, address: AddressSpec) -> bool:
        return address.method == self.name

    async def configure(self, ctx: Any) -> AddressResult:
        self.seen.append((ctx.address, ctx.spec))
        return self.result

    async def release(self, ctx: Any) -> None:
        self.released.append(ctx.address)
        if self.name == "bad":
            raise RuntimeError("release failed")


def test_own_settings_keeps_what_no_provider_takes() -> None:
    timeout = OptionSpec("seconds")
    dhcp = Fake("dhclient", {"timeout": timeout, "dns": OptionSpec("dns")}, AddressResult())
    slaac = Fake("slaac", {"timeout": timeout}, AddressResult())
    a = AddressSpec(method="slaac", settings={"timeout": 3.0, "dns": True, "image": "x"})
    # dns is dhclient's: slaac does not see it; image is nobody's: slaac refuses it.
    assert own_settings(a, slaac, [dhcp, slaac]).settings == {"timeout": 3.0, "image": "x"}


@anyio_test
async def test_addressing_configures_each_with_its_own_request_and_merges() -> None:
    v4 = Fake(
        "dhclient", {}, AddressResult(("198.18.100.37/24",), "198.18.100.1", ("198.18.100.53",))
    )
    v6 = Fake("slaac", {}, AddressResult(("2001:db8:100::5/64",), "fe80::1"))
    request = spec("dhclient,slaac")
    both = Addressing([(request.addresses[0], v4), (request.addresses[1], v6)])
    assert both.name == "dhclient,slaac" and not both.make_before_break

    import dataclasses

    from pipework.engine.contract import AddressContext

    ctx = AddressContext.__new__(AddressContext)
    for f in dataclasses.fields(AddressContext):
        object.__setattr__(ctx, f.name, None)
    object.__setattr__(ctx, "address", request.address)
    object.__setattr__(ctx, "spec", request)
    result = await both.configure(ctx)
    assert [a.word for a, _ in v4.seen] == ["dhclient"] and v4.seen[0][1].extra_addresses == ()
    assert [s.address.word for _, s in v6.seen] == ["slaac"]
    assert result.addresses == ("198.18.100.37/24", "2001:db8:100::5/64")
    assert result.gateways == ("198.18.100.1", "fe80::1") and result.gateway == "198.18.100.1"
    assert result.sources == (("198.18.100.37/24", "dhclient"), ("2001:db8:100::5/64", "slaac"))
    assert result.dns == ("198.18.100.53",)


@anyio_test
async def test_every_provider_releases_even_when_one_fails() -> None:
    import dataclasses

    from pipework.engine.contract import DetachContext

    bad = Fake("bad", {}, AddressResult())
    good = Fake("good", {}, AddressResult())
    both = Addressing(
        [(AddressSpec(method="bad"), bad), (AddressSpec(method="good", family=6), good)]
    )
    ctx = DetachContext.__new__(DetachContext)
    for f in dataclasses.fields(DetachContext):
        object.__setattr__(ctx, f.name, None)
    with pytest.raises(RuntimeError, match="release failed"):
        await both.release(ctx)
    assert [a.word for a in good.released if a] == ["good/6"]


def test_merge_keeps_one_of_each() -> None:
    a, b = AddressSpec(method="x"), AddressSpec(method="y")
    merged = merge(
        [
            (a, AddressResult(("198.18.1.2/24",), "198.18.1.1", ("198.18.1.53",), "one.test")),
            (b, AddressResult(("198.18.1.2/24",), "198.18.1.1", ("198.18.1.53",), "two.test")),
        ]
    )
    assert merged.addresses == ("198.18.1.2/24",) and merged.gateways == ("198.18.1.1",)
    assert merged.dns == ("198.18.1.53",) and merged.domain == "one.test"
