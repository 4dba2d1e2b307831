"""The guest's default route: replaced by an attachment, given back by its
rollback and by its detach.

An address provider that replaces the guest's default route (a static
``@GATEWAY``, a DHCP router) first records how to undo it, then changes
it, so no cancellation falls between the change and its inverse. The
inverse removes only the route this attachment set (its gateway and
interface must match): a default route another attach set meanwhile stays.

What the route replaced is also written on the host, root-only, in
``RUN_DIR/routes/HASH.json`` (one file per guest and interface), for the
detach: the guest can write its interfaces' aliases (the markers), not
this. Detaching gives the guest that route back when pipework's is still
the one in use and the old route's interface is still there under the same
name. What is read back is checked strictly (a default route of one family,
a gateway that parses, an interface index and name, numbers in range) and
only ever goes into the guest's own namespace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any

from pipework.engine import AddressContext, DetachContext, GcContext, Netns

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ROUTES = "routes"
MAX_U32 = (1 << 32) - 1
FAMILIES: dict[int, str] = {int(socket.AF_INET): "0.0.0.0/0", int(socket.AF_INET6): "::/0"}


def record_path(run_dir: str, guest_key: str, ifname: str, version: int = 4) -> Path:
    """The record of one guest interface's default route of one family (an
    IPv4 record keeps the name it had before IPv6 had one of its own)."""
    seed = f"{guest_key}\0{ifname}" + ("\0v6" if version == 6 else "")
    digest = hashlib.sha256(seed.encode()).hexdigest()[:24]
    return Path(run_dir) / ROUTES / f"{digest}.json"


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("gateway", "oif", "priority"))


def _ours(routes: list[dict[str, Any]], oif: int, gateway: str | None) -> list[dict[str, Any]]:
    """The default routes through ``oif`` (via ``gateway``, if given): the ones an attachment set."""
    return [
        route
        for route in routes
        if route.get("oif") == oif and (gateway is None or route.get("gateway") == gateway)
    ]


async def _interface_is(gns: Netns, index: object, name: object) -> bool:
    link = await gns.link_by_index(index) if isinstance(index, int) else None
    return link is not None and (name is None or link.ifname == name)


def _checked(route: object) -> dict[str, Any] | None:
    """A route read back from a record, rebuilt from checked fields only (None: unusable)."""
    if not isinstance(route, dict):
        return None
    family, dst, gateway = route.get("family"), route.get("dst"), route.get("gateway")
    if not isinstance(family, int) or family not in FAMILIES or dst != FAMILIES[family]:
        return None
    attrs: dict[str, Any] = {"family": family, "dst": dst}
    if gateway is not None:
        try:
            parsed = ipaddress.ip_address(gateway) if isinstance(gateway, str) else None
        except ValueError:
            return None
        if parsed is None or parsed.version != (4 if family == socket.AF_INET else 6):
            return None
        attrs["gateway"] = str(parsed)
    for key, top in (("oif", MAX_U32), ("priority", MAX_U32), ("proto", 255)):
        value = route.get(key)
        if value is None and key != "oif":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
            return None
        attrs[key] = value
    return attrs


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, checked (None: none, or not one pipework wrote)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    oif, gateway = data.get("oif"), data.get("gateway")
    if not isinstance(oif, int) or isinstance(oif, bool) or not 0 < oif <= MAX_U32:
        return None
    if gateway is not None and not isinstance(gateway, str):
        return None
    version = data.get("version")
    if version not in (4, 6):
        return None
    previous = data.get("previous")
    previous_name = data.get("previous_ifname")
    checked = _checked(previous) if previous is not None else None
    if previous is not None and (checked is None or not isinstance(previous_name, str)):
        return None
    return {**data, "previous": checked}


def _write(path: Path, data: dict[str, Any] | None) -> None:
    """Write (or, for None, remove) a record atomically."""
    if data is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, sort_keys=True)
    tmp.replace(path)


async def _replaced(ctx: AddressContext, run_dir: str, version: int) -> dict[str, Any] | None:
    """The default route in use now, or, when pipework set it for the
    attachment this one replaces, the route that one replaced."""
    routes = await ctx.guest_ns.default_routes(version)
    current = routes[0] if routes else None
    record = read_record(record_path(run_dir, ctx.guest.info.key, ctx.ifname, version))
    if (
        current is not None
        and record is not None
        and record["version"] == version
        and current.get("oif") == record["oif"]
        and (record["gateway"] is None or current.get("gateway") == record["gateway"])
    ):
        previous = record["previous"]
        if previous is None or await _interface_is(
            ctx.guest_ns, previous.get("oif"), record.get("previous_ifname")
        ):
            return dict(previous) if previous is not None else None
    return current


async def keep_default_route(
    ctx: AddressContext, run_dir: str, version: int, gateway: IPAddress | None = None
) -> None:
    """Record how to undo a change of the guest's default route to one
    through ``ctx.index`` (via ``gateway``; None: whatever router a DHCP
    hook sets), before it is made: the journal's inverse, and the host-side
    record a detach reads."""
    gns, index = ctx.guest_ns, ctx.index
    via = str(gateway) if gateway is not None else None
    previous = await _replaced(ctx, run_dir, version)
    previous_name = None
    if previous is not None and isinstance(previous.get("oif"), int):
        link = await gns.link_by_index(previous["oif"])
        previous_name = link.ifname if link is not None else None

    async def restore() -> None:
        current = await gns.default_routes(version)
        ours = _ours(current, index, via)
        if not ours:
            return  # never set, or replaced by someone else since: leave it
        if (
            previous is not None
            and not any(_same(previous, route) for route in current)
            and await _interface_is(gns, previous.get("oif"), previous_name)
        ):
            await gns.restore_route(previous)  # takes our route's place (same metric)
        for route in ours:
            await gns.delete_route(route)

    ctx.journal.record("the guest's default route", restore)
    if previous is None:
        return  # nothing for a detach to give back
    path = record_path(run_dir, ctx.guest.info.key, ctx.ifname, version)
    before = read_record(path)

    async def put_back() -> None:
        _write(path, before)

    ctx.journal.record(f"the record {path}", put_back)
    _write(
        path,
        {
            "guest": ctx.guest.info.key,
            "ifname": ctx.ifname,
            "version": version,
            "oif": index,
            "gateway": via,
            "previous": previous,
            "previous_ifname": previous_name,
        },
    )


async def replace_default_route(ctx: AddressContext, run_dir: str, gateway: IPAddress) -> None:
    """Make ``gateway`` on ``ctx.index`` the guest's default route, its
    inverse recorded first."""
    await keep_default_route(ctx, run_dir, gateway.version, gateway)
    await ctx.guest_ns.set_default_route(gateway, ctx.index)


async def give_back_default_route(ctx: DetachContext, run_dir: str) -> None:
    """On detach: put back the default routes (IPv4, IPv6) the attachment
    replaced, if the one it set is still in use and the old one's interface
    is still there."""
    for version in (4, 6):
        await _give_back(ctx, run_dir, version)


async def _give_back(ctx: DetachContext, run_dir: str, version: int) -> None:
    path = record_path(run_dir, ctx.marker.guest, ctx.marker.ifname, version)
    record = read_record(path)
    if ctx.guest_ns is None or ctx.guest_link is None:
        if record is not None or path.exists():
            path.unlink(missing_ok=True)  # the guest is gone: nothing to give back
        return
    if record is None:
        if path.exists() and not path.is_symlink():
            path.unlink(missing_ok=True)
        return
    gns, index = ctx.guest_ns, ctx.guest_link.index
    if record["oif"] != index:
        return  # another interface's: the attachment that replaced this one
    version, previous = record["version"], record["previous"]
    routes = await gns.default_routes(version)
    in_use = routes[0] if routes else None
    if (
        previous is not None
        and in_use is not None
        and in_use.get("oif") == index
        and (record["gateway"] is None or in_use.get("gateway") == record["gateway"])
        and not any(_same(previous, route) for route in routes)
        and await _interface_is(gns, previous.get("oif"), record["previous_ifname"])
    ):
        await gns.restore_route(previous)
    path.unlink(missing_ok=True)


async def collect_records(ctx: GcContext, run_dir: str) -> list[str]:
    """``gc``: records of attachments whose guest interface is gone."""
    root = Path(run_dir) / ROUTES
    try:
        paths = sorted(p for p in root.iterdir() if p.suffix == ".json")
    except OSError:
        return []

    def gone(live: frozenset[Any]) -> list[Path]:
        keys = {record_path(run_dir, m.guest, m.ifname, v).name for m in live for v in (4, 6)}
        return [p for p in paths if p.name not in keys]

    candidates = gone(ctx.live)
    if candidates:
        candidates = [p for p in gone(await ctx.rescan()) if p in candidates]
    found = []
    for path in candidates:
        found.append(f"default-route record {path} (its interface is gone)")
        if not ctx.dry_run:
            path.unlink(missing_ok=True)
    return found
