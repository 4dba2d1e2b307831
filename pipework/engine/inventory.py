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

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import anyio

from pipework.engine.batch import BatchScope
from pipework.engine.contract import AddressProvider, DetachContext, GcContext, LinkBackend
from pipework.engine.errors import PipeworkError
from pipework.engine.kernel.netlink import Link, Netns, netns_identity
from pipework.engine.marker import Marker
from pipework.engine.specs import AddressSpec, GuestInfo, short_hash

if TYPE_CHECKING:
    from pipework.engine.engine import Engine

log = logging.getLogger("pipework")

TEMP_NAME = re.compile(r"^pwt[0-9a-f]{10}$")
"""The name a guest interface has between its creation and its rename."""
NAME_LOOKUPS = 16
"""Guests ``ls`` asks its resolvers about at once (for names and PIDs)."""

State = Literal["attached", "orphan"]


@dataclass(frozen=True)
class AttachmentRecord:
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
    dhcp: str | None
    """The DHCP client's state (``kept, running``...), None for static addressing."""
    state: State = "attached"
    """``orphan``: only a host side is left; its guest is gone (``gc`` removes it)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["addresses"] = list(self.addresses)
        return data


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


def namespaces(
    skip: Sequence[tuple[int, int]] = (),
) -> dict[tuple[int, int], tuple[str, int | None]]:
    """Every network namespace reachable from here: identity -> (a path, a PID in it)."""
    found: dict[tuple[int, int], tuple[str, int | None]] = {}
    seen = set(skip)
    for path, pid in [*_proc_namespaces(), *_mounted_namespaces()]:
        try:
            st = os.stat(path)
        except OSError:
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


async def scan(engine: Engine, only: tuple[int, int] | None = None) -> Scan:
    """Read the markers of every guest namespace (or of the one ``only`` names)."""
    result = Scan()
    host_identity = engine.host.key
    found = namespaces(skip=[host_identity])
    if only is not None:
        found = {k: v for k, v in found.items() if k == only}
    for identity, (path, pid) in found.items():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if netns_identity(fd) != identity:
                os.close(fd)
                continue  # the PID was reused meanwhile
            gns = engine._pool.acquire(fd, path)
        except BaseException:
            os.close(fd)
            raise
        result.handles.append((gns, fd))
        try:
            links = await gns.links()
        except PipeworkError as exc:
            log.debug("reading %s: %s", path, exc)
            continue
        for link in links:
            marker = Marker.parse(link.alias)
            if marker is not None and is_guest_side(marker, link):
                result.guest_sides.append(GuestSide(marker, link, gns, pid))
            elif marker is None and TEMP_NAME.match(link.ifname):
                result.temp_names.add(link.ifname)
    return result


def close_scan(engine: Engine, result: Scan) -> None:
    for gns, fd in result.handles:
        engine._pool.release(gns)
        os.close(fd)
    result.handles.clear()


async def known_guests(engine: Engine, keys: set[str]) -> dict[str, GuestInfo]:
    """Guest key -> who it is (name, PID), asked of the resolvers, a few at a
    time. A key no resolver can look up now (a daemon down, a guest gone)
    is left out: it is then shown as the key itself."""
    known: dict[str, GuestInfo] = {}
    limiter = anyio.CapacityLimiter(NAME_LOOKUPS)

    async def look_up(key: str) -> None:
        async with limiter:
            try:
                with anyio.fail_after(engine.config.timeout):
                    guest = await engine.resolve(key)
            except (PipeworkError, TimeoutError, OSError) as exc:
                log.debug("naming %s: %s", key, exc)
                return
            guest.close()
            known[key] = guest.info

    async with anyio.create_task_group() as tg:
        for key in sorted(keys):
            tg.start_soon(look_up, key)
    return known


def guest_info(engine: Engine, key: str, known: dict[str, GuestInfo], pid: int | None) -> GuestInfo:
    """Who the guest ``key`` is: as its resolver lists it, else from the key itself."""
    info = known.get(key)
    if info is not None:
        return info
    if key.startswith("pid:") and key[4:].isdigit():
        return GuestInfo(name=key, key=key, runtime="pid", pid=int(key[4:]))
    if key.startswith("/"):
        return GuestInfo(name=key, key=key, runtime="path")
    scored = [(r.claim(key), r.name) for r in engine.resolvers]
    score, runtime = max(scored, default=(0, "unknown"))
    runtime = runtime if score > 0 else "unknown"
    name = key[:12] if re.fullmatch(r"[0-9a-f]{64}", key) else key
    return GuestInfo(name=name, key=key, runtime=runtime, pid=pid)


# -- ls ------------------------------------------------------------------------------


async def list_attachments(engine: Engine, guest_ref: str | None = None) -> list[AttachmentRecord]:
    """Every attachment pipework made (or those of one guest), as it stands."""
    only_key: str | None = None
    only: tuple[int, int] | None = None
    known: dict[str, GuestInfo] = {}
    if guest_ref is not None:
        guest = await engine.resolve(guest_ref)
        try:
            only, only_key = netns_identity(guest.fd), guest.info.key
            known[only_key] = guest.info
        finally:
            guest.close()
    host_links = [] if only is not None else await engine.host.links()
    result = await scan(engine, only)
    try:
        if only is None:
            keys = {side.marker.guest for side in result.guest_sides}
            known.update(await known_guests(engine, keys))
        records = []
        for side in result.guest_sides:
            if only_key is not None and side.marker.guest != only_key:
                continue
            info = guest_info(engine, side.marker.guest, known, side.pid)
            records.append(await _record(engine, info, side))
        for link in host_links:
            marker = Marker.parse(link.alias)
            if marker is None or result.in_use(marker):
                continue
            info = guest_info(engine, marker.guest, known, None)
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
                    dhcp=None,
                    state="orphan",
                )
            )
    finally:
        close_scan(engine, result)
    return sorted(records, key=lambda r: (r.guest.name, r.guest.key, r.ifname))


async def _record(engine: Engine, info: GuestInfo, side: GuestSide) -> AttachmentRecord:
    marker, link = side.marker, side.link
    addresses = await side.netns.addresses(link.index)
    dhcp: str | None = None
    provider = _provider(engine, marker)
    if provider is not None:
        ctx = DetachContext(marker=marker, host=engine.host, guest_ns=side.netns, guest_link=link)
        try:
            dhcp = await provider.describe(ctx)
        except PipeworkError as exc:
            dhcp = f"unknown ({exc.message})"
    return AttachmentRecord(
        guest=info,
        ifname=link.ifname,
        kind=marker.kind,
        host=marker.host,
        host_ifname=marker.hostif or None,
        mac=link.mac,
        mtu=link.mtu,
        vlan=_int(marker.vlan),
        address_method=marker.addr or "static",
        addresses=tuple(str(a) for a in addresses if not a.ip.is_link_local),
        dhcp=dhcp,
    )


def _provider(engine: Engine, marker: Marker) -> AddressProvider | None:
    method = AddressSpec(method=marker.addr or "static")
    return next((p for p in engine.providers if p.handles(method)), None)


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


# -- gc ------------------------------------------------------------------------------


async def collect_garbage(engine: Engine, dry_run: bool = False) -> GcReport:
    """Remove what guests that are gone left behind (``dry_run``: only list it).

    The host is read *before* the guests: whatever an attach creates after
    that first look is not considered, and whatever was there had its guest
    side (or, mid-attach, its temporary interface) in place already.
    """
    items: list[str] = []
    skipped: list[str] = []
    host = engine.host
    host_links = await host.links()
    result = await scan(engine)
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
            items.append(what)
            if not dry_run:
                await _remove_orphan(engine, marker, link, came_home)
        live = frozenset(side.marker for side in result.guest_sides)
    finally:
        close_scan(engine, result)

    async def rescan() -> frozenset[Marker]:
        again = await scan(engine)
        try:
            return frozenset(side.marker for side in again.guest_sides)
        finally:
            close_scan(engine, again)

    ctx = GcContext(host=host, dry_run=dry_run, live=live, rescan=rescan, scope=BatchScope())
    collectors: list[LinkBackend | AddressProvider] = [*engine.backends.values(), *engine.providers]
    for plugin in collectors:
        try:
            items += await plugin.collect_garbage(ctx)
        except PipeworkError as exc:
            skipped.append(f"{plugin.name}: {exc}")
    return GcReport(items=tuple(items), skipped=tuple(skipped), dry_run=dry_run)


async def _remove_orphan(engine: Engine, marker: Marker, link: Link, came_home: bool) -> None:
    host = engine.host
    ctx = DetachContext(marker=marker, host=host, guest_ns=None, guest_link=None)
    with anyio.CancelScope(shield=True):
        provider = _provider(engine, marker)
        if provider is not None:
            await provider.release(ctx)
        backend = engine.backends.get(marker.kind)
        if backend is not None:
            await backend.detach(ctx)
        if came_home:
            return  # the user's device: only its backend may give it back
        current = await host.link_by_index(link.index)
        if current is not None and Marker.parse(current.alias) == marker:
            await host.delete(link.index)


__all__ = [
    "AttachmentRecord",
    "GcReport",
    "collect_garbage",
    "list_attachments",
    "namespaces",
    "nsfs_mountpoint",
]
