"""ADD, DEL, CHECK, STATUS and GC, each through the same engine and plugins
as the ``pipework`` command (VERSION needs no engine: see main.py).

Every command opens its own ``Engine`` (the plugin is exec'd once per call):
``hostNetns`` picks the namespace that plays the host, and a delegated IPAM
plugin joins as an address provider registered in code.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pipework.cni.config import Invocation, NetConf, network_prefix
from pipework.cni.protocol import INVALID_CONFIG, NOT_AVAILABLE, CniError, error_for
from pipework.engine import AddressSpec, AttachSpec, Engine, PipeworkError
from pipework.engine.engine import require_privileges

if TYPE_CHECKING:  # imported by the commands that use them: DEL needs neither
    from pipework.cni.ipam import IpamProvider
    from pipework.cni.result import Result

AUTO_CREATED = frozenset({"bridge", "ovs", "dummy"})
"""Built-in backends that need no existing host interface (they make their own)."""


@asynccontextmanager
async def open_engine(
    invocation: Invocation, conf: NetConf, container_id: str | None
) -> AsyncIterator[tuple[Engine, IpamProvider | None]]:
    provider = None
    plugins: list[object] = []
    if conf.ipam is not None:
        from pipework.cni.ipam import Delegate, IpamPlugin, IpamProvider

        delegate = Delegate(str(conf.ipam["type"]), invocation, conf)
        provider = IpamProvider(delegate, container_id)
        plugins.append(IpamPlugin(provider))
    async with Engine(host_netns=conf.host_netns, run_dir=conf.run_dir, plugins=plugins) as engine:
        yield engine, provider


async def add(invocation: Invocation, conf: NetConf) -> dict[str, Any]:
    from pipework.cni.result import Result, from_attachment

    spec = conf.attach_spec(invocation, invocation.container_id, invocation.ifname)
    async with open_engine(invocation, conf, invocation.container_id) as (engine, provider):
        attachment = await engine.attach(spec)
        host_mac = None
        if attachment.host_ifname:
            host_side = await engine.host.link(attachment.host_ifname)
            host_mac = host_side.mac if host_side is not None else None
    ours = from_attachment(
        attachment,
        sandbox=invocation.netns,
        host_mac=host_mac,
        ipam=provider.result if provider is not None else None,
        dns=conf.dns,
    )
    # In a chain after another interface plugin: its result, then ours.
    earlier = Result.decode(conf.prev_result, "prevResult") if conf.prev_result else Result()
    return earlier.then(ours).encode(conf.version)


async def delete(invocation: Invocation, conf: NetConf) -> None:
    """Idempotent: whatever is left (maybe nothing) goes; the IPAM delegate's
    DEL runs through the provider's release, exactly once.

    ``CNI_NETNS`` is entered only if it still is a network namespace: a
    path that is gone, or is now a file, directory or FIFO, means the guest
    is gone, and what is left of the attachment is found by its identity
    (host sides, OVS ports, kept DHCP clients, the IPAM allocation).
    """
    spec = conf.attach_spec(invocation, invocation.container_id, invocation.ifname)
    alive = is_netns(invocation.netns)
    async with open_engine(invocation, conf, invocation.container_id) as (engine, _):
        await engine.remove(spec, resolve=alive)


async def check(invocation: Invocation, conf: NetConf) -> None:
    if conf.prev_result is None:
        raise CniError(INVALID_CONFIG, "CHECK needs the prevResult of the ADD")
    from pipework.cni.result import Result

    expected = Result.decode(conf.prev_result, "prevResult")
    spec = conf.attach_spec(invocation, invocation.container_id, invocation.ifname)
    async with open_engine(invocation, conf, invocation.container_id) as (engine, provider):
        found = await engine.check(spec)
        compare(expected, found.mac, found.addresses, invocation)
        if provider is not None:
            await provider.delegate.call("CHECK", ifname=invocation.ifname)


def compare(
    expected: Result, mac: str | None, addresses: tuple[str, ...], invocation: Invocation
) -> None:
    """Raise if the interface as found differs from what ``prevResult`` says."""
    import ipaddress

    ours = [
        n
        for n, interface in enumerate(expected.interfaces)
        if interface.name == invocation.ifname and interface.sandbox == invocation.netns
    ]
    where = f"{invocation.ifname} in {invocation.netns}"
    if not ours:
        raise PipeworkError(f"prevResult lists no interface {where}")
    listed = expected.interfaces[ours[0]]
    if listed.mac and mac and listed.mac.lower() != mac.lower():
        raise PipeworkError(f"{where} has MAC address {mac}, prevResult says {listed.mac}")
    present = {ipaddress.ip_interface(a) for a in addresses}
    missing = [str(ip.address) for ip in expected.ips if ip.interface == ours[0]]
    missing = [a for a in missing if ipaddress.ip_interface(a) not in present]
    if missing:
        raise PipeworkError(f"{where} lacks the address {', '.join(missing)} of prevResult")


async def status(invocation: Invocation, conf: NetConf) -> None:
    """Can this plugin serve an ADD of this network now? (Code 50 if not.)"""
    try:
        require_privileges()
        async with open_engine(invocation, conf, None) as (engine, provider):
            if conf.backend not in engine.kinds:
                raise CniError(
                    NOT_AVAILABLE,
                    f"the {conf.backend} backend is not installed",
                    f"installed: {', '.join(engine.kinds)}",
                )
            if conf.backend not in AUTO_CREATED and await engine.host.link(conf.host) is None:
                raise CniError(NOT_AVAILABLE, f"the host interface {conf.host} does not exist")
            if provider is not None:
                provider.delegate.path()
                if await provider.delegate.supports(conf.version):
                    await provider.delegate.call("STATUS")
    except PipeworkError as exc:
        error = error_for(exc)
        raise CniError(NOT_AVAILABLE, error.msg, error.details) from None


async def gc(invocation: Invocation, conf: NetConf) -> None:
    """Remove this network's attachments that are not in ``cni.dev/valid-attachments``.

    Found by their markers, as ``pipework ls`` finds them (guest sides in
    every namespace, host sides whose guest is gone); then the IPAM delegate
    gets its GC.
    """
    valid = {(conf.key(cid), ifname) for cid, ifname in conf.valid_attachments or ()}
    prefix = network_prefix(conf.name)
    async with open_engine(invocation, conf, None) as (engine, provider):
        orphans: dict[tuple[str, str], tuple[str, str, str]] = {}
        for record in await engine.list_attachments():
            key = record.guest.key
            if not key.startswith(prefix):
                continue
            if record.state == "orphan":  # read from a host side: the host's own marker
                orphans[key, record.ifname] = (record.kind, record.host, record.address_method)
            else:  # a guest-side marker is the guest's claim: what to undo is the network's
                orphans.setdefault(
                    (key, record.ifname), (conf.backend, conf.host, record.address_method)
                )
        for (key, ifname), (kind, host, addr) in sorted(orphans.items()):
            if (key, ifname) in valid:
                continue
            spec = AttachSpec(
                host=host or conf.host or "none",
                guest=key,
                guest_key=key,
                kind=kind or conf.backend,
                ifname=ifname,
                address=AddressSpec(method=addr or "static"),
            )
            await engine.remove(spec, resolve=False)
        if provider is not None and await provider.delegate.supports(conf.version):
            await provider.delegate.call("GC")


def is_netns(path: str) -> bool:
    """Is ``path`` still a namespace file? (A runtime may DEL after removing it,
    or something else may be there now.) Only stat: nothing is opened."""
    if not path:
        return False
    try:
        found, nsfs = os.stat(path), os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_dev == nsfs.st_dev


COMMANDS = {"ADD": add, "DEL": delete, "CHECK": check, "STATUS": status, "GC": gc}
