"""Links straight between two guests: ``Engine.link`` and ``Engine.examine_link``.

A link is a veth pair created by one netlink request in the host that names
both guests' namespaces as the two ends' homes: nothing of it is ever in the
host. Each end is then configured as an attachment's guest side is (rename,
marker, MAC, MTU, up, address, routes) and carries a marker of kind
``link`` whose ``host`` is the peer guest's key and ``peer`` its interface.

What corroborates those markers, and what detach does with them, is the
engine's own link kind (``linkends.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from pipework.engine.addressing import marker_methods
from pipework.engine.announcing import Announcement, announces, link_settings
from pipework.engine.contract import (
    AddressContext,
    AddressProvider,
    AddressResult,
    DetachContext,
)
from pipework.engine.errors import (
    ConflictError,
    GuestNotRunningError,
    PipeworkError,
    UnverifiedError,
    UsageError,
)
from pipework.engine.guests import Guest, still_there
from pipework.engine.journal import Journal
from pipework.engine.kernel.netlink import Link, Netns, netns_identity
from pipework.engine.linkends import mirrors
from pipework.engine.linkspec import LinkSpec
from pipework.engine.marker import LINK_KIND, Marker
from pipework.engine.replacement import add_routes
from pipework.engine.specs import Attachment, AttachSpec, Status, short_hash

if TYPE_CHECKING:
    from pipework.engine.engine import Action, Engine, Examination


@dataclass(frozen=True)
class LinkResult:
    """``Engine.link()``: the link as found in the kernel afterwards."""

    status: Status
    a: Attachment
    b: Attachment
    """Each end as an attachment: ``host`` is the peer guest's name and
    ``host_ifname`` the peer's interface."""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ends": [self.a.to_dict(), self.b.to_dict()]}


@dataclass(frozen=True)
class LinkExamination:
    """``Engine.examine_link()``: what ``link`` would do, and at each end."""

    action: Action
    a: Examination
    b: Examination


@dataclass
class _End:
    """One end while a link is made: its request, guest, and what is there."""

    spec: AttachSpec
    guest: Guest
    ns: Netns
    provider: AddressProvider
    marker: Marker
    action: Action = "create"
    link: Link | None = None
    existing: Marker | None = None
    unverified: str | None = None
    configured: AddressResult | None = None

    @property
    def where(self) -> str:
        return f"{self.marker.ifname} in {self.guest.name}"


_ORDER: tuple[Action, ...] = ("conflict", "update", "repair", "create", "unchanged")


def overall(actions: Sequence[Action]) -> Action:
    """What a link does, from what each end does: the most serious one,
    except that a link is unchanged only when both ends are."""
    return next(a for a in _ORDER if a in actions)


class Linker:
    """``Engine.link`` and ``Engine.examine_link``, on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def ends(
        self, spec: LinkSpec, *, classify: bool = True
    ) -> AsyncIterator[tuple[_End, _End]]:
        """Both ends resolved (and classified); the guests stay open inside.
        Bad input is refused before any guest is looked up."""
        engine = self.engine
        providers = [engine.choose_provider(spec.end_spec(i, "-")) for i in (0, 1)]
        async with AsyncExitStack() as stack:
            guests: list[Guest] = []
            for end in spec.ends:
                guest = await engine.resolve(end.guest)
                stack.callback(guest.close)
                guests.append(guest)
            a, b = guests
            if a.info.key == b.info.key or netns_identity(a.fd) == netns_identity(b.fd):
                raise UsageError(
                    f"{spec.a.guest} and {spec.b.guest} are the same guest ({a.name})",
                    "a link joins two different guests",
                )
            for guest in guests:
                # Nothing of a link is in the host: gc would take an end
                # there for an attachment's host side whose guest is gone.
                engine._refuse_host(guest)
            made: list[_End] = []
            for i, (guest, other) in enumerate(((a, b), (b, a))):
                end_spec = spec.end_spec(i, other.info.key)
                provider = providers[i]
                provider.validate(end_spec, guest.info)
                ns = engine._pool.acquire(guest.fd, guest.name)
                stack.callback(engine._pool.release, ns)
                peer_ifname = spec.ends[1 - i].ifname
                made.append(
                    _End(
                        end_spec,
                        guest,
                        ns,
                        provider,
                        self._marker(end_spec, guest, peer_ifname, other),
                    )
                )
            first, second = made
            if classify:
                await self._classify(first, second)
                await self._classify(second, first)
            yield first, second

    @staticmethod
    def _marker(end_spec: AttachSpec, guest: Guest, peer_ifname: str, other: Guest) -> Marker:
        """The marker of the end ``end_spec`` asks for in ``guest``, linked to
        ``peer_ifname`` in ``other``."""
        assert end_spec.ifname is not None
        marker = Marker(
            guest=guest.info.key,
            ifname=end_spec.ifname,
            kind=LINK_KIND,
            host=other.info.key,
            hostif="",
            addr=marker_methods(end_spec),
            cfg=end_spec.fingerprint(LINK_KIND, other.info.key),
            peer=peer_ifname,
        )
        if len(marker.format().encode()) > 255:
            raise UsageError(
                f"the marker of {end_spec.guest}:{end_spec.ifname} would exceed the 255 bytes"
                " an interface alias holds",
                "name the guests by shorter references (container IDs, netns:NAME)",
            )
        return marker

    async def _classify(self, end: _End, other: _End) -> None:
        """What is at ``end``'s interface, against the request (as
        ``Engine._classify`` does for an attachment)."""
        engine = self.engine
        existing = await end.ns.link(end.marker.ifname)
        end.link = existing
        if existing is None:
            end.action = "create"
            return
        old = Marker.parse(existing.alias)
        if old is None or (old.guest, old.ifname) != (end.marker.guest, end.marker.ifname):
            end.action = "conflict"
            return
        end.existing = old
        if old.kind != LINK_KIND or old.cfg != end.marker.cfg or old.peer != end.marker.peer:
            end.action = "update"
        elif await self._paired(end, other) and existing.up:
            ctx = DetachContext(
                marker=old, host=engine.host, guest_ns=end.ns, guest_link=existing, spec=end.spec
            )
            end.configured = await end.provider.inspect(ctx)
            end.action = "unchanged" if end.configured is not None else "repair"
            if end.action == "unchanged":
                return  # the pair corroborates itself: checked just now
        else:
            end.action = "repair"
        # Rebuilding it acts because of what its marker says.
        end.unverified = await engine._verify(old, end.ns, existing)
        if end.unverified is not None:
            end.action = "conflict"

    @staticmethod
    async def _paired(end: _End, other: _End) -> bool:
        """Are the two interfaces there the two ends of one veth, as marked?"""
        mine, theirs = end.link, await other.ns.link(other.marker.ifname)
        if mine is None or theirs is None or mine.kind != "veth" or theirs.kind != "veth":
            return False
        if (mine.parent, theirs.parent) != (theirs.index, mine.index):
            return False
        if mine.link_netnsid is None or mine.link_netnsid != await end.ns.nsid_of(other.guest.fd):
            return False
        found = Marker.parse(theirs.alias)
        return found is not None and found.cfg == other.marker.cfg and mirrors(found, end.marker)

    async def examine(self, spec: LinkSpec) -> LinkExamination:
        from pipework.engine.engine import Examination

        async with self.ends(spec) as (a, b):
            looked = [
                Examination(
                    action=end.action,
                    guest=end.guest.info,
                    marker=end.marker,
                    existing=end.existing if end.action != "conflict" else None,
                )
                for end in (a, b)
            ]
        return LinkExamination(overall([a.action, b.action]), looked[0], looked[1])

    async def link(self, spec: LinkSpec) -> LinkResult:
        engine = self.engine
        async with self.ends(spec, classify=False) as (a, b):
            names = sorted(f"guest:{e.marker.guest}:{e.marker.ifname}" for e in (a, b))
            async with engine.lock(names[0]), engine.lock(names[1]):  # as detach takes them
                await self._classify(a, b)  # under the locks
                await self._classify(b, a)
                ends = (a, b)
                action = overall([a.action, b.action])
                if action == "unchanged":
                    return await self._result(ends, "unchanged")
                self._refuse(ends, spec.force)
                status: Status = "created"
                for end in ends:
                    if end.existing is not None and end.link is not None:
                        status = "replaced"
                        current = await end.ns.link_by_index(end.link.index)
                        if current is not None:  # the other end's removal may have taken it
                            await engine._remove(end.existing, end.ns, current, verified=True)
                await self._create(spec, a, b)
                with anyio.CancelScope(shield=True):
                    return await self._result(ends, status)
        raise AssertionError("unreachable")  # pragma: no cover - mypy: the block returns

    @staticmethod
    def _refuse(ends: tuple[_End, _End], force: bool) -> None:
        for end in ends:
            if end.unverified is not None:
                raise UnverifiedError(
                    f"{end.where} carries a pipework marker, but {end.unverified}: "
                    "pipework leaves it alone",
                    "remove it inside the guest, or choose another interface name",
                )
            if end.action == "conflict":
                raise ConflictError(
                    f"{end.where} already exists and pipework did not create it",
                    "choose another interface name",
                )
        for end in ends:
            if end.action == "update" and not force:
                raise ConflictError(
                    f"{end.where} is attached with another configuration",
                    "add --force to replace it, or choose another interface name",
                )

    async def _create(self, spec: LinkSpec, a: _End, b: _End) -> None:
        engine = self.engine
        journal = Journal()
        temps = ["pwt" + short_hash(e.marker.guest, e.marker.ifname, "tmp") for e in (a, b)]
        mtu = {"mtu": spec.mtu} if spec.mtu else {}
        async with journal.transaction():
            await journal.step(
                f"veth between {a.guest.name} and {b.guest.name}",
                engine.host.create(
                    temps[0],
                    "veth",
                    net_ns_fd=a.guest.fd,
                    **mtu,
                    peer={"ifname": temps[1], "net_ns_fd": b.guest.fd, **mtu},
                ),
                lambda: a.ns.delete_named(temps[0]),
            )
            made: list[tuple[_End, int]] = []
            for end, temp in zip((a, b), temps, strict=True):
                created = await end.ns.link(temp)
                if created is None:
                    raise PipeworkError(f"the veth end {temp} did not appear in {end.guest.name}")
                # Renamed below: undone by its index (either end takes both).
                journal.record(
                    f"link end in {end.guest.name}", partial(end.ns.delete, created.index)
                )
                before_up, with_up = link_settings(end.spec, True)
                if before_up:
                    await end.ns.set(created.index, **before_up)
                attrs: dict[str, Any] = {
                    "ifname": end.marker.ifname,
                    "ifalias": end.marker.format(),
                    "state": "up",
                    **with_up,
                }
                if end.spec.mac:
                    attrs["address"] = end.spec.mac
                await end.ns.set(created.index, **attrs)
                made.append((end, created.index))
            # Static addresses first: the other end's DHCP server may be behind one.
            for end, index in sorted(made, key=lambda m: m[0].spec.address.method != "static"):
                end.configured = await end.provider.configure(
                    AddressContext(
                        address=end.spec.address,
                        spec=end.spec,
                        guest=end.guest,
                        guest_ns=end.ns,
                        index=index,
                        ifname=end.marker.ifname,
                        journal=journal,
                    )
                )
                await add_routes(end.ns, index, end.spec.routes)
            for end in (a, b):
                if not still_there(end.guest):
                    raise GuestNotRunningError(
                        f"{end.guest.name} stopped during the link",
                        "nothing was left behind; start it and link again",
                    )
        for end, index in made:
            link = await end.ns.link_by_index(index)
            end.link = link
            if link is not None and announces(end.spec):
                await engine._announce(end.guest, end.ns, link, Announcement(end.spec, True, None))

    async def _result(self, ends: tuple[_End, _End], status: Status) -> LinkResult:
        results = []
        for end, other in (ends, ends[::-1]):
            link = await end.ns.link(end.marker.ifname)
            if link is None or end.configured is None:
                raise PipeworkError(f"{end.where} vanished")
            attachment = await self.engine._result(
                end.guest, end.ns, link, end.marker, end.spec, status, end.configured
            )
            results.append(
                replace(attachment, host=other.guest.name, host_ifname=other.marker.ifname)
            )
        return LinkResult(status, results[0], results[1])


__all__ = ["LinkExamination", "LinkResult", "Linker", "overall"]
