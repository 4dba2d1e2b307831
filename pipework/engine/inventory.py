"""What pipework has attached, found in the kernel: ``ls`` and ``gc``.

No state file: every interface pipework makes carries its marker (an
interface alias), so a fresh process finds the attachments by reading the
markers in every network namespace it can reach:

* the namespace of every process (``/proc/PID/ns/net``), de-duplicated by
  the namespace's inode, so a thousand containers cost a thousand stats;
* every namespace bind-mounted somewhere (``nsfs`` in mountinfo: the names
  under /run/netns, Docker's sandboxes, any path), which may have no process;
* the host namespace, for host sides and for what is left of dead guests.

Resolvers only lend the guests their names (``ls`` looks each guest key up):
liveness is decided by the kernel, so ``gc`` never removes anything because
a daemon was slow to answer.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import InitVar, asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import anyio

from pipework.engine.addressing import attribute, parse_methods
from pipework.engine.batch import BatchScope
from pipework.engine.compat import UNSET, LegacyRecordFields, drop_defaults
from pipework.engine.contract import DetachContext, GcContext, Lock, no_lock
from pipework.engine.errors import PipeworkError
from pipework.engine.kernel.netlink import Link, Netns, netns_identity
from pipework.engine.marker import LINK_KIND, Marker
from pipework.engine.specs import GuestInfo, short_hash

if TYPE_CHECKING:
    from pipework.engine.contract import AddressProvider, GuestResolver, LinkBackend
    from pipework.engine.guests import Guest
    from pipework.engine.kernel.netlink import NetlinkPool

log = logging.getLogger("pipework")

TEMP_NAME = re.compile(r"^pwt[0-9a-f]{10}$")
"""The name a guest interface has between its creation and its rename."""
NAME_LOOKUPS = 16
"""Guests ``ls`` asks its resolvers about at once (for names and PIDs)."""

State = Literal["attached", "orphan", "unverified"]


@dataclass(frozen=True)
class AttachmentRecord(LegacyRecordFields):
    """One attachment as ``pipework ls`` shows it, read back from the kernel."""

    guest: GuestInfo
    ifname: str
    kind: str
    host: str
    host_ifname: str | None
    mac: str | None
    mtu: int | None
    vlan: int | None
    address_method: str
    addresses: tuple[str, ...]
    dhcp: InitVar[str | None] = UNSET
    """0.1.0's keyword for ``address_state``."""
    state: State = "attached"
    """``orphan``: only a host side is left; its guest is gone (``gc`` removes it).
    ``unverified``: the guest interface's marker claims it, but nothing the
    host owns corroborates it; pipework leaves it alone."""
    address_state: str | None = None
    """How the address provider's client stands, in its own words (its
    ``describe()``: ``kept, running``...); None when it has nothing to say
    (static addressing). The ``dhcp`` column and JSON key of ``ls``."""
    peer: GuestInfo | None = None
    """A link between guests (kind ``link``): the guest of the other end
    (``host`` is its name, ``host_ifname`` its interface)."""
    address_sources: tuple[tuple[str, str], ...] = ()
    """``(ADDRESS/PREFIX, METHOD)``: how each address was obtained, as far as
    the kernel tells (engine/addressing.py ``attribute``)."""

    def __post_init__(self, dhcp: str | None) -> None:
        if dhcp is not UNSET:
            object.__setattr__(self, "address_state", dhcp)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["guest"] = self.guest.to_dict()
        data["addresses"] = list(self.addresses)
        data["peer"] = self.peer.to_dict() if self.peer is not None else None
        data["address_sources"] = dict(self.address_sources)
        state = data.pop("state")
        data["dhcp"] = data.pop("address_state")
        data["state"] = state
        return data


drop_defaults(AttachmentRecord, "dhcp")


@dataclass(frozen=True)
class GcReport:
    """What ``Engine.gc()`` removed (or, in a dry run, would remove)."""

    items: tuple[str, ...] = ()
    """One line per thing, for people."""
    skipped: tuple[str, ...] = ()
    """Collectors that could not look (a daemon down): nothing of theirs was removed."""
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "items": list(self.items), "skipped": list(self.skipped)}


# -- finding namespaces ----------------------------------------------------------


def _proc_namespaces() -> Iterator[tuple[str, int | None]]:
    for entry in os.listdir("/proc"):  # noqa: PTH208 (names only, fast)
        if entry.isdigit():
            yield f"/proc/{entry}/ns/net", int(entry)


def _mounted_namespaces(mountinfo: str = "/proc/self/mountinfo") -> Iterator[tuple[str, None]]:
    try:
        with open(mountinfo) as handle:
            lines = handle.readlines()
    except OSError:
        return
    for line in lines:
        path = nsfs_mountpoint(line)
        if path is not None:
            yield path, None


def nsfs_mountpoint(line: str) -> str | None:
    """The mount point of a mountinfo line if it is a bind-mounted network namespace."""
    fields = line.split()
    if " - " not in line or len(fields) < 5:
        return None
    fstype = line.split(" - ", 1)[1].split()[:1]
    if fstype != ["nsfs"] or not fields[3].startswith("net:"):
        return None
    return fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


SHORT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""What opening a namespace fails with when this process runs short: what is
in it is then unknown. (A file that vanished, or one root may not open, such
as a process's in another user namespace, holds nothing pipework attached:
pipework could not have opened it either.)"""


def namespaces(
    skip: Sequence[tuple[int, int]] = (),
    unreadable: list[str] | None = None,
) -> dict[tuple[int, int], tuple[str, int | None]]:
    """Every network namespace reachable from here: identity -> (a path, a PID in it).

    A namespace file that fails otherwise than by vanishing is added to
    ``unreadable``: what is in it is unknown."""
    found: dict[tuple[int, int], tuple[str, int | None]] = {}
    seen = set(skip)
    for path, pid in [*_proc_namespaces(), *_mounted_namespaces()]:
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno in SHORT_ERRNOS and unreadable is not None:
                unreadable.append(f"{path}: {exc.strerror}")
            continue  # the process exited meanwhile
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            found[key] = (path, pid)
    return found


# -- reading markers -------------------------------------------------------------


@dataclass
class GuestSide:
    """A marked guest interface, where it was found."""

    marker: Marker
    link: Link
    netns: Netns
    pid: int | None


@dataclass
class Scan:
    """Guest-side markers and interfaces in the middle of an attach."""

    guest_sides: list[GuestSide] = field(default_factory=list)
    temp_names: set[str] = field(default_factory=set)
    handles: list[tuple[Netns, int]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Namespaces that could not be read (descriptors exhausted...): what
    they hold is unknown, so nothing may be called gone."""

    @cached_property
    def slots(self) -> set[tuple[str, str]]:
        """(guest, ifname) of every guest side found (read once the scan is done)."""
        return {(side.marker.guest, side.marker.ifname) for side in self.guest_sides}

    def in_use(self, marker: Marker) -> bool:
        """Is the guest side of ``marker``'s attachment (or its attach) somewhere?"""
        temp = "pwt" + short_hash(marker.guest, marker.ifname, "tmp")
        return (marker.guest, marker.ifname) in self.slots or temp in self.temp_names


def is_guest_side(marker: Marker, link: Link) -> bool:
    """A guest interface, not the host side of an attachment made from
    another namespace that plays the host (``Engine(host_netns=...)``)."""
    return link.ifname == marker.ifname and (
        marker.hostif != link.ifname or marker.hostif == marker.ifname
    )


def raise_descriptor_limit() -> None:
    """A scan opens every namespace: lift the soft descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):  # pragma: no cover - a limit we may not raise
            log.debug("cannot raise the descriptor limit from %s to %s", soft, hard)


def link_pairs(
    records: Sequence[AttachmentRecord],
) -> list[tuple[AttachmentRecord, AttachmentRecord | None]]:
    """The links between guests among ``records``, each once: its first end,
    and the other when it is listed and names this one back (``ls GUEST``
    lists one end; a forged marker may name a peer that does not answer)."""
    ends = {(r.guest.key, r.ifname): r for r in records if r.kind == LINK_KIND}
    pairs: list[tuple[AttachmentRecord, AttachmentRecord | None]] = []
    seen: set[tuple[str, str]] = set()
    for here, record in ends.items():
        if here in seen:
            continue
        seen.add(here)
        there = (record.peer.key if record.peer else record.host, record.host_ifname or "")
        other = ends.get(there)
        if other is not None and other.peer is not None and other.peer.key == here[0]:
            seen.add(there)
        else:
            other = None
        pairs.append((record, other))
    return pairs


def _guests_named(marker: Marker) -> tuple[str, ...]:
    """The guest keys a marker names: its own, and a link's peer."""
    return (marker.guest, marker.host) if marker.kind == LINK_KIND else (marker.guest,)


def _int(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


class Inventory:
    """Reads the markers of every namespace, for ``Engine.list_attachments``
    and ``Engine.gc``. It is given what it works with; it knows no engine."""

    def __init__(
        self,
        *,
        host: Netns,
        pool: NetlinkPool,
        resolve: Callable[[str], Awaitable[Guest]],
        resolvers: Sequence[GuestResolver],
        backends: Mapping[str, LinkBackend],
        providers: Sequence[AddressProvider],
        provider_of: Callable[[Marker], AddressProvider | None],
        remove: Callable[..., Awaitable[None]],
        verify: Callable[[Marker, Netns | None, Link | None], Awaitable[str | None]],
        timeout: float,
        lock: Lock = no_lock,
    ) -> None:
        self.host = host
        self.pool = pool
        self.resolve = resolve
        self.resolvers = resolvers
        self.backends = backends
        self.providers = providers
        self.provider_of = provider_of
        self.remove = remove
        self.verify = verify
        self.timeout = timeout
        self.lock = lock

    async def scan(self, only: tuple[int, int] | None = None, *, keep: bool = True) -> Scan:
        """Read the markers of every guest namespace (or of the one ``only`` names).

        ``keep``: keep each namespace open for the caller (``ls`` reads the
        addresses); without it each is closed as soon as it is read, so a
        scan of thousands holds one descriptor at a time."""
        raise_descriptor_limit()
        result = Scan()
        host_identity = self.host.key
        found = namespaces(skip=[host_identity], unreadable=result.unreadable)
        if only is not None:
            found = {k: v for k, v in found.items() if k == only}
        for identity, (path, pid) in found.items():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno in SHORT_ERRNOS:
                    result.unreadable.append(f"{path}: {exc.strerror}")
                continue
            try:
                if netns_identity(fd) != identity:
                    os.close(fd)
                    continue  # the PID was reused meanwhile
                gns = self.pool.acquire(fd, path)
            except BaseException:
                os.close(fd)
                raise
            try:
                links = await gns.links()
            except PipeworkError as exc:
                log.debug("reading %s: %s", path, exc)
                result.unreadable.append(f"{path}: {exc.message}")
                links = []
            finally:
                if keep:
                    result.handles.append((gns, fd))
                else:
                    self.pool.release(gns)
                    os.close(fd)
            for link in links:
                marker = Marker.parse(link.alias)
                if marker is not None and is_guest_side(marker, link):
                    result.guest_sides.append(GuestSide(marker, link, gns, pid))
                elif marker is None and TEMP_NAME.match(link.ifname):
                    result.temp_names.add(link.ifname)
        return result

    def close_scan(self, result: Scan) -> None:
        for gns, fd in result.handles:
            self.pool.release(gns)
            os.close(fd)
        result.handles.clear()

    async def known_guests(self, keys: set[str]) -> dict[str, GuestInfo]:
        """Guest key -> who it is (name, PID), asked of the resolvers, a few at a
        time. A key no resolver can look up now (a daemon down, a guest gone)
        is left out: it is then shown as the key itself."""
        known: dict[str, GuestInfo] = {}
        limiter = anyio.CapacityLimiter(NAME_LOOKUPS)

        async def look_up(key: str) -> None:
            async with limiter:
                try:
                    with anyio.fail_after(self.timeout):
                        guest = await self.resolve(key)
                except (PipeworkError, TimeoutError, OSError) as exc:
                    log.debug("naming %s: %s", key, exc)
                    return
                guest.close()
                known[key] = guest.info

        async with anyio.create_task_group() as tg:
            for key in sorted(keys):
                tg.start_soon(look_up, key)
        return known

    def guest_info(self, key: str, known: dict[str, GuestInfo], pid: int | None) -> GuestInfo:
        """Who the guest ``key`` is: as its resolver lists it, else from the key itself."""
        info = known.get(key)
        if info is not None:
            return info
        if key.startswith("pid:") and key[4:].isdigit():
            return GuestInfo(name=key, key=key, runtime="pid", pid=int(key[4:]))
        if key.startswith("/"):
            return GuestInfo(name=key, key=key, runtime="path")
        scored = [(r.claim(key), r.name) for r in self.resolvers]
        score, runtime = max(scored, default=(0, "unknown"))
        runtime = runtime if score > 0 else "unknown"
        name = key[:12] if re.fullmatch(r"[0-9a-f]{64}", key) else key
        return GuestInfo(name=name, key=key, runtime=runtime, pid=pid)

    # -- ls ------------------------------------------------------------------------------

    async def list_attachments(self, guest_ref: str | None = None) -> list[AttachmentRecord]:
        """Every attachment pipework made (or those of one guest), as it stands."""
        only_key: str | None = None
        only: tuple[int, int] | None = None
        known: dict[str, GuestInfo] = {}
        if guest_ref is not None:
            guest = await self.resolve(guest_ref)
            try:
                only, only_key = netns_identity(guest.fd), guest.info.key
                known[only_key] = guest.info
            finally:
                guest.close()
        host_links = [] if only is not None else await self.host.links()
        result = await self.scan(only)
        try:
            if only is None:
                # A path in a marker is the guest's to write: never opened to
                # name it (guest_info names it by the path, as the resolver would).
                keys = {
                    key
                    for s in result.guest_sides
                    for key in _guests_named(s.marker)
                    if not key.startswith("/")
                }
                known.update(await self.known_guests(keys))
            records = []
            for side in result.guest_sides:
                if only_key is not None and side.marker.guest != only_key:
                    continue
                info = self.guest_info(side.marker.guest, known, side.pid)
                peer = (
                    self.guest_info(side.marker.host, known, None)
                    if side.marker.kind == LINK_KIND
                    else None
                )
                records.append(await self._record(info, side, peer))
            for link in host_links:
                marker = Marker.parse(link.alias)
                if marker is None or result.in_use(marker):
                    continue
                info = self.guest_info(marker.guest, known, None)
                records.append(
                    AttachmentRecord(
                        guest=info,
                        ifname=marker.ifname,
                        kind=marker.kind,
                        host=marker.host,
                        host_ifname=link.ifname,
                        mac=None,
                        mtu=None,
                        vlan=_int(marker.vlan),
                        address_method=marker.addr or "static",
                        addresses=(),
                        address_state=None,
                        state="orphan",
                    )
                )
        finally:
            self.close_scan(result)
        return sorted(records, key=lambda r: (r.guest.name, r.guest.key, r.ifname))

    async def _record(
        self, info: GuestInfo, side: GuestSide, peer: GuestInfo | None = None
    ) -> AttachmentRecord:
        marker, link = side.marker, side.link
        entries = await side.netns.address_entries(link.index)
        sources = attribute(entries, parse_methods(marker.addr))
        dhcp: str | None = None
        provider = self.provider_of(marker)
        if provider is not None:
            ctx = DetachContext(marker=marker, host=self.host, guest_ns=side.netns, guest_link=link)
            try:
                dhcp = await provider.describe(ctx)
            except PipeworkError as exc:
                dhcp = f"unknown ({exc.message})"
        try:
            unverified = await self.verify(marker, side.netns, link)
        except PipeworkError as exc:
            unverified = exc.message
        if unverified is not None:
            log.debug("%s in %s: %s", link.ifname, info.name, unverified)
        return AttachmentRecord(
            guest=info,
            ifname=link.ifname,
            kind=marker.kind,
            host=marker.host if peer is None else peer.name,
            host_ifname=(marker.hostif if peer is None else marker.peer) or None,
            mac=link.mac,
            mtu=link.mtu,
            vlan=_int(marker.vlan),
            address_method=marker.addr or "static",
            addresses=tuple(address for address, _ in sources),
            address_state=dhcp,
            state="attached" if unverified is None else "unverified",
            peer=peer,
            address_sources=sources,
        )

    # -- gc ------------------------------------------------------------------------------

    async def collect_garbage(self, dry_run: bool = False) -> GcReport:
        """Remove what guests that are gone left behind (``dry_run``: only list it).

        The host is read *before* the guests: whatever an attach creates after
        that first look is not considered, and whatever was there had its guest
        side (or, mid-attach, its temporary interface) in place already.
        """
        items: list[str] = []
        skipped: list[str] = []
        host = self.host
        host_links = await host.links()
        result = await self.scan(keep=False)
        if result.unreadable:
            # Any of them may hold the guest side of any host side: calling
            # one gone would be a guess, so nothing is removed.
            shown = "; ".join(result.unreadable[:3])
            more = f" and {len(result.unreadable) - 3} more" if len(result.unreadable) > 3 else ""
            skipped.append(
                f"{len(result.unreadable)} namespace(s) ({shown}{more}): nothing was removed"
            )
            return GcReport(items=(), skipped=tuple(skipped), dry_run=dry_run)
        try:
            for link in host_links:
                marker = Marker.parse(link.alias)
                if marker is None:
                    continue
                came_home = marker.hostif != link.ifname
                if not came_home and result.in_use(marker):
                    continue
                what = (
                    f"{link.ifname}: {marker.ifname} of {marker.guest} came back to the host"
                    if came_home
                    else f"host side {link.ifname} of {marker.ifname} in {marker.guest} (guest gone)"
                )
                reason = await self.verify(marker, self.host, link)
                if reason is not None:
                    skipped.append(f"{link.ifname}: {reason}; left alone")
                    continue
                items.append(what)
                if not dry_run:
                    await self.remove(marker, self.host, link, moved=came_home, verified=True)
            live = frozenset(side.marker for side in result.guest_sides)
        finally:
            self.close_scan(result)
        ctx = GcContext(
            host=host,
            dry_run=dry_run,
            live=live,
            rescan=self.rescan,
            scope=BatchScope(),
            lock=self.lock,
        )
        collectors: list[LinkBackend | AddressProvider] = [
            *self.backends.values(),
            *self.providers,
        ]
        for plugin in collectors:
            try:
                items += await plugin.collect_garbage(ctx)
            except PipeworkError as exc:
                skipped.append(f"{plugin.name}: {exc}")
        return GcReport(items=tuple(items), skipped=tuple(skipped), dry_run=dry_run)

    async def rescan(self) -> frozenset[Marker]:
        """The guest-side markers as they are now (for collectors that confirm
        after a delay); a namespace that cannot be read is an error, not a gap."""
        again = await self.scan(keep=False)
        if again.unreadable:
            raise PipeworkError(
                f"{len(again.unreadable)} namespace(s) could not be read ({again.unreadable[0]})"
            )
        return frozenset(side.marker for side in again.guest_sides)


__all__ = [
    "AttachmentRecord",
    "GcReport",
    "Inventory",
    "link_pairs",
    "namespaces",
    "nsfs_mountpoint",
]
