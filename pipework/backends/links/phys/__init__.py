"""Physical pass-through (``--direct-phys``): the NIC itself moves into the guest.

The interface leaves the host, is renamed to the guest interface name, and
its marker (alias) records its original name and MAC address. Detach brings
it back under that name with that MAC, in the state (up or down) it was in.
If the guest's namespace disappears first, the kernel returns a physical NIC
to the host by itself; ``detach`` then finds it by its marker and restores
its name and MAC. (A veth is destroyed with the namespace instead.)

The marker is the guest's to write, so it is never what a NIC is given back
on: the host's own record (record.py) says which device was passed through
and how to restore it, and anything that is not that device is left alone.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipework.engine import (
    ARPHRD_LOOPBACK,
    DetachContext,
    EngineConfig,
    GcContext,
    GuestLink,
    HostInterfaceError,
    HostRequest,
    Link,
    LinkBackend,
    LinkContext,
    LinkExists,
    Marker,
    Netns,
    OptionSpec,
    UsageError,
    current_netns_fd,
    hookimpl,
)

if TYPE_CHECKING:
    from pipework.backends.links.phys.record import NicRecords

log = logging.getLogger("pipework")

#: Kinds that are not a NIC to hand over (other backends own them).
KIND_NAMES = {
    "bridge": "a bridge",
    "openvswitch": "an Open vSwitch device",
    "tun": "a tun/tap device (an Open vSwitch bridge?)",
}
NOT_A_NIC = frozenset(KIND_NAMES)


DIRECT_PHYS = "direct_phys"
"""The ``--direct-phys`` setting (``AttachSpec.settings``): it chooses this backend."""
RECORD_GRACE = 60.0
"""Seconds during which ``gc`` leaves a record alone whose guest side it does
not see (an attach writes it before the NIC moves)."""


class PhysBackend(LinkBackend):
    name = "phys"
    default_ifname = "eth1"
    options: Mapping[str, OptionSpec] = {
        DIRECT_PHYS: OptionSpec("move the NIC itself into the guest", flag="--direct-phys")
    }

    make_before_break = False  # one NIC cannot be in the guest twice

    def __init__(self, run_dir: str = "/run/pipework") -> None:
        self.run_dir = run_dir

    @functools.cached_property
    def records(self) -> NicRecords:
        """The host's records of the NICs moved (record.py: loaded on first use,
        not on every attach)."""
        from pipework.backends.links.phys.record import NicRecords

        return NicRecords(self.run_dir)

    async def claim(self, request: HostRequest) -> int:
        # Above everything, so that --direct-phys on a bridge reaches
        # check() and is refused with the reason.
        return 200 if request.spec.settings.get(DIRECT_PHYS) else 0

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        spec.backend_options(self.name, self.options)
        spec.refuse(self.name, vlan=True)
        link = request.host_link
        if link is None:
            return  # attach() says so, unless a re-run finds it in the guest already
        if link.kind in NOT_A_NIC or link.link_type == ARPHRD_LOOPBACK:
            raise UsageError(
                f"--direct-phys moves a NIC into the guest; {link.ifname} is"
                f" {KIND_NAMES.get(link.kind or '', 'the loopback')}",
                "name a network card, or drop --direct-phys",
            )

    async def attach(self, ctx: LinkContext) -> GuestLink:
        name = ctx.host_link.ifname if ctx.host_link is not None else ctx.spec.host
        async with ctx.lock(f"phys:{name}"):
            nic = await ctx.host.link(name)
            if nic is None:
                raise HostInterfaceError(
                    f"{name} does not exist", "--direct-phys needs an existing network card"
                )
            guest_ns, names = ctx.guest_ns, (ctx.temp_ifname, ctx.ifname)
            from pipework.backends.links.phys.record import NicRecord

            record = NicRecord.of(ctx.marker, nic)
            records = self.records
            records.write(record)

            async def forget() -> None:
                records.remove(record.guest, record.ifname)

            ctx.journal.record(f"the record of {name}", forget)
            await ctx.journal.step(
                f"{name} back to the host",
                ctx.host.move(nic.index, ctx.guest.fd, ctx.temp_ifname),
                lambda: _give_back(guest_ns, names, ctx.host, nic),
            )
            moved = await guest_ns.link(ctx.temp_ifname)
            if moved is None:
                raise HostInterfaceError(f"{name} vanished while moving into {ctx.guest.name}")
            self.records.write(record.moved(moved.index))
        return GuestLink(
            temp_ifname=ctx.temp_ifname,
            host=name,
            mtu=ctx.spec.mtu,
            owned=False,
            state=f"{nic.mac or ''},{'up' if nic.up else 'down'}",
        )

    async def verify(self, ctx: DetachContext) -> str | None:
        marker = ctx.marker
        record = self.records.read(marker.guest, marker.ifname)
        unknown = f"the host has no record of passing a NIC through as {marker.ifname}"
        if ctx.guest_link is not None:
            return unknown if record is None else record.mismatch(ctx.guest_link, in_guest=True)
        homes = await self._came_home(ctx)
        if not homes:
            return None  # nothing on the host claims to be it: nothing to do
        if record is None:
            return unknown
        if any(record.mismatch(link, in_guest=False) is None for link in homes):
            return None
        return f"the interface that came back is not {record.name}"

    async def detach(self, ctx: DetachContext) -> None:
        marker = ctx.marker
        record = self.records.read(marker.guest, marker.ifname)
        if record is None:
            return  # nothing of ours (the engine verified the guest's claim)
        original = _original(record.name, record.mac or "", record.up)
        if ctx.guest_ns is not None and ctx.guest_link is not None:
            if record.mismatch(ctx.guest_link, in_guest=True) is None:
                await _give_back(ctx.guest_ns, (ctx.guest_link.ifname,), ctx.host, original)
                self.records.remove(marker.guest, marker.ifname)
            return
        # The guest is gone: a NIC comes home by itself, still carrying our
        # marker; it is restored only if it is the device the record names.
        for link in await self._came_home(ctx):
            if record.mismatch(link, in_guest=False) is None:
                await ctx.host.set(link.index, state="down")
                await _restore(ctx.host, link.index, original)
                self.records.remove(marker.guest, marker.ifname)
                return

    async def _came_home(self, ctx: DetachContext) -> list[Link]:
        return [
            link
            for link in await ctx.host.links()
            if ctx.marker.same_attachment(Marker.parse(link.alias))
        ]

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """Records of NICs whose guest side is nowhere (a NIC unplugged while
        passed through): they can no longer be checked against anything."""
        live = {(m.guest, m.ifname) for m in ctx.live}
        found = []
        now = time.time()
        for path, record in self.records.all():
            if (record.guest, record.ifname) in live:
                continue
            try:
                if now - path.stat().st_mtime < RECORD_GRACE:
                    continue
            except OSError:
                continue
            found.append(f"record of NIC {record.name} ({record.ifname} of {record.guest}): gone")
            if not ctx.dry_run:
                path.unlink(missing_ok=True)
        return found


def _original(name: str, mac: str, up: bool) -> Link:
    return Link(
        index=0, ifname=name, kind=None, mtu=0, mac=mac or None, alias=None, master=None,
        up=up, operstate="", link_type=0, max_mtu=None,
    )  # fmt: skip


async def _give_back(guest_ns: Netns, names: tuple[str, ...], host: Netns, nic: Link) -> None:
    """Move the NIC from the guest back to the host, as it was."""
    for ifname in names:
        link = await guest_ns.link(ifname)
        if link is None:
            continue
        await guest_ns.set(link.index, state="down")
        fd = host.fd if host.fd is not None else current_netns_fd()
        try:
            await guest_ns.move(link.index, fd, nic.ifname)
        except LinkExists:
            raise HostInterfaceError(
                f"cannot give {link.ifname} back: the host has another {nic.ifname} now",
                f"rename the host's {nic.ifname}, then detach again",
            ) from None
        finally:
            if fd != host.fd:
                os.close(fd)
        back = await host.link(nic.ifname)
        if back is not None:
            await _restore(host, back.index, nic)
        return


async def _restore(host: Netns, index: int, nic: Link) -> None:
    attrs: dict[str, object] = {"ifname": nic.ifname, "ifalias": ""}
    if nic.mac:
        attrs["address"] = nic.mac
    if nic.up:
        attrs["state"] = "up"
    await host.set(index, **attrs)


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[PhysBackend]:
    return [PhysBackend(config.run_dir)]
