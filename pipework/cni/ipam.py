"""Delegation to other CNI plugins: the IPAM plugin named by ``ipam.type``.

As the specification describes, the delegate is found on ``CNI_PATH``, run
with our environment (``CNI_COMMAND`` and ``CNI_IFNAME`` set for the call)
and the network configuration exactly as we received it on stdin; its error
object is passed on with its own code.

``IpamProvider`` is an address provider registered in code for one
invocation: the engine calls it once the interface is up in the guest (the
``dhcp`` IPAM plugin needs the interface), so the addresses and routes the
delegate chose are configured inside the attach transaction, and its DEL is
on the journal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipework.cni.config import IPAM_METHOD, Invocation, NetConf
from pipework.cni.protocol import INTERNAL, INVALID_CONFIG, CniError
from pipework.cni.result import Result
from pipework.engine import (
    AddressContext,
    AddressProvider,
    AddressResult,
    AddressSpec,
    DetachContext,
    EngineConfig,
    hookimpl,
)

DELEGATE_TIMEOUT = 60.0
"""Seconds a delegated plugin may take (the dhcp IPAM plugin waits for a lease)."""


class Delegate:
    """One plugin on ``CNI_PATH``, run for this invocation."""

    def __init__(self, plugin: str, invocation: Invocation, conf: NetConf) -> None:
        if not plugin or "/" in plugin or plugin in (".", ".."):
            raise CniError(INVALID_CONFIG, f"IPAM plugin type {plugin!r} is not a plugin name")
        self.plugin = plugin
        self.invocation = invocation
        self.conf = conf

    def path(self) -> str:
        for directory in self.invocation.path:
            candidate = Path(directory) / self.plugin
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        searched = ":".join(self.invocation.path) or "(CNI_PATH is empty)"
        raise CniError(
            INVALID_CONFIG,
            f"the IPAM plugin {self.plugin!r} is not installed",
            f"looked in {searched}",
        )

    async def call(
        self, command: str, *, ifname: str | None = None, stdin: bytes | None = None
    ) -> Any:
        """Run the delegate; its JSON output, or None if it printed nothing."""
        import anyio

        env = dict(self.invocation.env)
        env["CNI_COMMAND"] = command
        if ifname is not None:
            env["CNI_IFNAME"] = ifname
        try:
            with anyio.fail_after(DELEGATE_TIMEOUT):
                done = await anyio.run_process(
                    [self.path()], input=self.conf.raw if stdin is None else stdin, env=env,
                    check=False,
                )  # fmt: skip
        except TimeoutError:
            raise CniError(
                11, f"the IPAM plugin {self.plugin} did not answer {command} in time"
            ) from None
        out = done.stdout.decode(errors="replace").strip()
        try:
            data = json.loads(out) if out else None
        except ValueError:
            data = None
        if done.returncode == 0:
            return data
        if isinstance(data, dict) and isinstance(data.get("code"), int):
            raise CniError(
                data["code"],
                f"IPAM plugin {self.plugin}: {data.get('msg', '')}",
                str(data.get("details") or ""),
            )
        said = (done.stderr.decode(errors="replace").strip() or out).splitlines()
        raise CniError(
            INTERNAL,
            f"IPAM plugin {self.plugin} failed ({command}, exit status {done.returncode})",
            said[-1] if said else "no output",
        )

    async def supports(self, version: str) -> bool:
        """Does the delegate speak ``version`` (for GC and STATUS, which are new)?"""
        data = await self.call("VERSION", stdin=json.dumps({"cniVersion": version}).encode())
        return isinstance(data, dict) and version in data.get("supportedVersions", [])


class IpamProvider(AddressProvider):
    """Addresses from a delegated CNI IPAM plugin, for one invocation."""

    name = IPAM_METHOD

    def __init__(self, delegate: Delegate, container_id: str | None) -> None:
        self.delegate = delegate
        self.container_id = container_id
        self.result: Result | None = None
        """What the delegate answered to ADD (for our own result)."""

    def handles(self, address: AddressSpec) -> bool:
        return address.method == IPAM_METHOD

    async def configure(self, ctx: AddressContext) -> AddressResult:
        # DEL is idempotent: on the journal before ADD, so that an allocation
        # is released even when ADD was interrupted (a timeout). A delegate
        # that answered ADD with an error cleaned up itself (the spec says so).
        refused = False

        async def release() -> None:
            if not refused:
                await self.delegate.call("DEL", ifname=ctx.ifname)

        ctx.journal.record(f"IPAM {self.delegate.plugin} allocation", release)
        try:
            data = await self.delegate.call("ADD", ifname=ctx.ifname)
        except CniError:
            refused = True
            raise
        result = Result.decode(data, f"answer of the IPAM plugin {self.delegate.plugin}")
        if not result.ips:
            raise CniError(INTERNAL, f"the IPAM plugin {self.delegate.plugin} gave no address")
        gns = ctx.guest_ns
        for ip in result.ips:
            await gns.add_address(ctx.index, ip.address)
        for route in result.routes:
            # As the reference plugins do: a route without a gateway goes via
            # the gateway of its family, if the IPAM result has one.
            gateway = route.gw or result.gateway(route.dst.version)
            await gns.add_route(ctx.index, route.dst, gateway, route.priority)
        self.result = result
        default = next((r for r in result.routes if r.dst.prefixlen == 0), None)
        gateway = (default.gw or result.gateway(default.dst.version)) if default else None
        return AddressResult(
            addresses=tuple(str(ip.address) for ip in result.ips),
            gateway=str(gateway) if gateway else None,
            dns=tuple(result.dns.get("nameservers") or ()),
            domain=result.dns.get("domain"),
        )

    async def release(self, ctx: DetachContext) -> None:
        # Only this invocation's container: GC delegates GC instead.
        if self.container_id is None:
            return
        if ctx.marker.guest != self.delegate.conf.key(self.container_id):
            return
        await self.delegate.call("DEL", ifname=ctx.marker.ifname)

    async def inspect(self, ctx: DetachContext) -> AddressResult | None:
        """A re-ADD of an intact attachment: the addresses are the kernel's."""
        if ctx.guest_ns is None or ctx.guest_link is None:
            return None
        found = await ctx.guest_ns.addresses(ctx.guest_link.index)
        if not found:
            return None
        return AddressResult(addresses=tuple(str(a) for a in found))


class IpamPlugin:
    """Registers one ``IpamProvider`` with the engine (a plugin object in code)."""

    def __init__(self, provider: IpamProvider) -> None:
        self.provider = provider

    @hookimpl
    def pipework_address_providers(self, config: EngineConfig) -> list[IpamProvider]:
        return [self.provider]
