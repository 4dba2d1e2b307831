"""Several addresses on one interface, each configured by its own provider.

An attachment's addresses (``AttachSpec.addresses``: IPSPEC
``198.18.1.2/24@198.18.1.1,2001:db8:1::2/64``, ``dhclient,slaac``...) are
configured in order, each by the provider that handles its method, in the
one journal of the attach: a failure rolls all of them back. ``Addressing``
makes those providers look like one to the rest of the engine; an
attachment with one address uses its provider as it is.

Each provider sees a request of its own address only (``spec.address`` is
it, ``extra_addresses`` empty) and only the settings it declares: ``--dns``
or ``--dhcp-timeout`` given once reach every dynamic method that takes them,
and one that no provider of the list takes is still refused by them.

The marker's ``addr`` lists the methods, comma-separated, each with its
family when one was asked for (``static,dhclient/6,slaac``); it is read
back from the guest, so it is parsed as untrusted input.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from pipework.engine.contract import (
    AddressContext,
    AddressProvider,
    AddressResult,
    DetachContext,
)
from pipework.engine.kernel.netlink import AddressEntry
from pipework.engine.specs import AddressSpec, AttachSpec, GuestInfo

log = logging.getLogger("pipework.engine")

MAX_ADDRESSES = 16
"""The most methods a marker's ``addr`` may list (it holds 255 bytes in all)."""
_WORD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_.+-]*)(?:/([46]))?$")


def marker_methods(spec: AttachSpec) -> str:
    """The marker's ``addr``: every address's method word, comma-separated."""
    return ",".join(a.word for a in spec.addresses)


def parse_methods(text: str) -> list[AddressSpec]:
    """The methods a marker's ``addr`` lists (``static`` if empty); words that
    are not method words are skipped: the guest may have written anything."""
    found: list[AddressSpec] = []
    for word in (text or "static").split(",")[:MAX_ADDRESSES]:
        match = _WORD_RE.match(word)
        if match is None:
            log.debug("marker method %r is not a method word: skipped", word)
            continue
        family: Literal[4, 6] | None = None
        if match.group(2):
            family = 4 if match.group(2) == "4" else 6
        found.append(AddressSpec(method=match.group(1), family=family))
    return found


def own_settings(
    address: AddressSpec, provider: AddressProvider, others: Sequence[AddressProvider]
) -> AddressSpec:
    """``address`` with only the settings its provider declares, and those
    no provider of the attachment declares (so that it refuses them)."""
    keep = {
        key: value
        for key, value in address.settings.items()
        if key in provider.options or not any(key in p.options for p in others)
    }
    if len(keep) == len(address.settings):
        return address
    return AddressSpec(  # not replace(): it would pass the legacy keywords' values back in
        method=address.method,
        address=address.address,
        gateway=address.gateway,
        options=address.options,
        settings=keep,
        family=address.family,
    )


class Addressing(AddressProvider):
    """The providers of an attachment's several addresses, as one provider."""

    def __init__(self, parts: Sequence[tuple[AddressSpec, AddressProvider]]) -> None:
        providers = [p for _, p in parts]
        self.parts = [(own_settings(a, p, providers), p) for a, p in parts]
        self.name = ",".join(p.name for _, p in parts)
        self.options = {}
        self.make_before_break = all(p.make_before_break for p in providers)

    @property
    def declared(self) -> list[AddressProvider]:
        return [p for _, p in self.parts]

    def handles(self, address: AddressSpec) -> bool:
        return False  # never chosen by a method: the engine builds it

    @staticmethod
    def _own(spec: AttachSpec, address: AddressSpec) -> AttachSpec:
        return replace(spec, address=address, extra_addresses=())

    def validate(self, spec: AttachSpec, guest: GuestInfo) -> None:
        for address, provider in self.parts:
            provider.validate(self._own(spec, address), guest)

    async def configure(self, ctx: AddressContext) -> AddressResult:
        results = []
        for address, provider in self.parts:
            own = replace(ctx, address=address, spec=self._own(ctx.spec, address))
            results.append((address, await provider.configure(own)))
        return merge(results)

    async def adopt(self, ctx: AddressContext) -> None:
        for address, provider in self.parts:
            await provider.adopt(replace(ctx, address=address, spec=self._own(ctx.spec, address)))

    def _detach_contexts(self, ctx: DetachContext) -> list[tuple[AddressSpec, DetachContext]]:
        return [
            (
                address,
                replace(
                    ctx,
                    address=address,
                    spec=self._own(ctx.spec, address) if ctx.spec is not None else None,
                ),
            )
            for address, _ in self.parts
        ]

    async def release(self, ctx: DetachContext) -> None:
        """Every provider releases its own, even when one fails (the first
        failure is raised once all have been asked)."""
        failure: BaseException | None = None
        for (_, own), (_, provider) in zip(self._detach_contexts(ctx), self.parts, strict=True):
            try:
                await provider.release(own)
            except Exception as exc:  # each one must be asked
                failure = failure or exc
        if failure is not None:
            raise failure

    async def inspect(self, ctx: DetachContext) -> AddressResult | None:
        results = []
        for (address, own), (_, provider) in zip(
            self._detach_contexts(ctx), self.parts, strict=True
        ):
            result = await provider.inspect(own)
            if result is None:
                return None
            results.append((address, result))
        return merge(results)

    async def describe(self, ctx: DetachContext) -> str | None:
        phrases = []
        for (address, own), (_, provider) in zip(
            self._detach_contexts(ctx), self.parts, strict=True
        ):
            phrase = await provider.describe(own)
            if phrase:
                phrases.append(f"{address.word}: {phrase}")
        return "; ".join(phrases) or None


def merge(results: Sequence[tuple[AddressSpec, AddressResult]]) -> AddressResult:
    """One result of several providers': their addresses in order, each with
    the method that got it; every gateway (the first is ``gateway``)."""
    addresses: list[str] = []
    sources: list[tuple[str, str]] = []
    gateways: list[str] = []
    dns: list[str] = []
    domain = None
    for address, result in results:
        for item in result.addresses:
            if item not in addresses:
                addresses.append(item)
                sources.append((item, address.word))
        for gateway in result.gateways or ((result.gateway,) if result.gateway else ()):
            if gateway not in gateways:
                gateways.append(gateway)
        dns += [server for server in result.dns if server not in dns]
        domain = domain or result.domain
    return AddressResult(
        addresses=tuple(addresses),
        gateway=gateways[0] if gateways else None,
        dns=tuple(dns),
        domain=domain,
        gateways=tuple(gateways),
        sources=tuple(sources),
    )


def attribute(
    entries: Sequence[AddressEntry],
    methods: Sequence[AddressSpec],
    reported: Sequence[tuple[str, str]] = (),
) -> tuple[tuple[str, str], ...]:
    """How each of an interface's addresses (but link-local ones) was
    obtained: ``(ADDRESS/PREFIX, METHOD)``.

    What a provider reported having configured (``reported``) says it;
    then a static address that was asked for; then the kernel's word (an
    address made from a router advertisement is SLAAC's); then the family:
    the one method of the address's family (a method of no family is
    IPv4's, but ``slaac``). Where that leaves several, they are all named,
    ``|``-separated.
    """
    told = dict(reported)
    statics = {str(a.address.ip) for a in methods if a.method == "static" and a.address}
    # A kernel that says who made an address (Linux 6.3+) said so of SLAAC's.
    kernel_tells = any(e.proto for e in entries)
    found = []
    for entry in entries:
        ip = entry.address.ip
        if ip.is_link_local:
            continue
        text = str(entry.address)
        if text in told:
            found.append((text, told[text]))
        elif str(ip) in statics:
            found.append((text, "static"))
        elif entry.from_router:
            found.append((text, "slaac"))
        else:
            found.append((text, _by_family(ip, methods, bool(statics), kernel_tells)))
    return tuple(found)


def _by_family(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    methods: Sequence[AddressSpec],
    statics_known: bool,
    kernel_tells: bool,
) -> str:
    candidates = []
    for a in methods:
        if a.method == "slaac" and kernel_tells:
            continue  # the kernel would have said
        if a.method == "static":
            if a.address is None and statics_known:
                continue
            if a.address is not None and a.address.version != ip.version:
                continue
            if a.address is not None and statics_known:
                continue  # a static address asked for is matched by value
        elif (a.family or (6 if a.method == "slaac" else 4)) != ip.version:
            continue
        word = a.word
        if word not in candidates:
            candidates.append(word)
    return "|".join(candidates) or "unknown"


def providers_of(
    addresses: Sequence[AddressSpec], find: Callable[[AddressSpec], AddressProvider | None]
) -> AddressProvider | None:
    """One provider for ``addresses``: the only one's, or ``Addressing`` over
    each one's (those ``find`` knows; None if it knows none)."""
    parts = [(a, p) for a in addresses if (p := find(a)) is not None]
    if not parts:
        return None
    if len(addresses) == 1:
        return parts[0][1]
    return Addressing(parts)
