"""Open vSwitch backend: a veth pair whose host end is a port of an OVS bridge.

Chosen when the host interface is an OVS bridge: a kernel-datapath bridge is
an ``openvswitch`` link; a userspace (``netdev``) bridge is a tap device,
so OVSDB is asked whether a Bridge of that name exists. A name that does not
exist and starts with ``ovs`` gets a new bridge, as the original did (any
name with ``--kind ovs``).

pipework talks to ovsdb-server itself, in JSON-RPC on its unix socket
(``ovsdb.py``): one process per ``ovs-vsctl`` call would cost more than the
whole attach (docs/BACKENDS.md has the measurement). Like ``ovs-vsctl`` it
waits until ovs-vswitchd has applied each change (``cur_cfg`` catching up
with ``next_cfg``) and then reads the port's ``ofport``/``error``, so a port
OVS could not open fails the attach instead of passing silently.

Ownership lives in OVSDB ``external_ids``: ports carry ``pipework-guest``,
``pipework-ifname`` and ``pipework-cfg``; bridges pipework created carry
``pipework=auto-created``. Concurrency is optimistic, as in ``ovs-vsctl``:
each write transaction starts with ``wait`` operations asserting what the
decision was based on, and is re-planned when another client got there
first (a bridge created concurrently is simply used).
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable, Mapping

import anyio

from pipework.backends.links.ovs.ovsdb import (
    OvsdbClient,
    OvsdbError,
    OvsdbUnavailable,
    Row,
    optional,
    socket_path,
    uuid_str,
)
from pipework.backends.links.ovs.plan import (
    DATAPATH_ENV,
    EXT_GUEST,
    EXT_IFNAME,
    OPTIONS,
    RETRIES,
    WAIT_GRACE,
    AttachPlan,
    BridgeRow,
    OvsView,
    PortRow,
    add_port_ops,
    applied_ops,
    bridge_ops,
    check_datapath,
    choose_mtu,
    drop_bridge_ops,
    holder_ops,
    is_conflict,
    may_drop,
    may_release,
    owns,
    parse_view,
    plan_attach,
    removal_ops,
    remove_port_ops,
    result_rows,
    select_op,
    setup_failure,
    view_ops,
)
from pipework.engine import (
    DetachContext,
    EngineConfig,
    GcContext,
    GuestLink,
    HostContext,
    HostInterfaceError,
    HostRequest,
    LinkBackend,
    LinkContext,
    Marker,
    PipeworkError,
    TimeoutExpiredError,
    UsageError,
    create_veth,
    hookimpl,
    socket_in_netns,
    veth_evidence,
)

log = logging.getLogger("pipework.ovs")

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def disable_tx_checksum(netns_fd: int, ifname: str) -> None:
    """``ethtool -K IFNAME tx off`` inside the namespace ``netns_fd``.

    The userspace datapath reads frames from the host end with a packet
    socket and forwards them as they are. A veth transmits TCP and UDP with
    the checksum left for the hardware to fill in, and nobody fills it in:
    the receiver drops them (ping still works, TCP does not). Checksumming
    in the guest's stack avoids that.
    """
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    try:
        with socket_in_netns(netns_fd, socket.AF_INET, socket.SOCK_DGRAM, 0) as sock:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError as exc:
        raise PipeworkError(
            f"cannot turn off TX checksum offload on {ifname}: {exc.strerror}",
            "TCP would not work across the userspace datapath without it",
        ) from None


# -- the backend ------------------------------------------------------------------------------


class OvsBackend(LinkBackend):
    name = "ovs"
    default_ifname = "eth1"
    auto_prefix = "ovs"
    options = OPTIONS

    def __init__(self, config: EngineConfig, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.timeout = config.timeout
        self._setup_error: UsageError | None = None
        try:
            path = socket_path(env)
        except UsageError as exc:
            path, self._setup_error = "", exc
        self.client = OvsdbClient(path, config.timeout)
        self.default_datapath = env.get(DATAPATH_ENV, "").strip()

    # -- choosing ------------------------------------------------------------------------
    async def claim(self, request: HostRequest) -> int:
        link = request.host_link
        if link is None:
            return 10 if request.spec.host.startswith(self.auto_prefix) else 0
        if link.kind not in ("openvswitch", "tun"):
            return 0
        # "openvswitch" links are bridges or internal ports (kernel datapath);
        # tap devices are userspace-datapath bridges, or anything else.
        known = await self._is_bridge(link.ifname)
        if known is None:  # OVS not reachable: attach says so
            return 100 if link.kind == "openvswitch" else 0
        return 100 if known else 0

    async def _is_bridge(self, name: str) -> bool | None:
        """True/False from OVSDB, or None when no OVSDB answers."""
        if self._setup_error is not None or not self.client.available():
            return None
        try:
            results = await self.client.transact(
                [select_op("Bridge", [["name", "==", name]], ["_uuid"])],
                what=f"looking up bridge {name}",
            )
        except OvsdbUnavailable as exc:
            log.debug("choosing a backend for %s without OVSDB: %s", name, exc)
            return None
        return bool(result_rows(results[0]))

    def validate(self, request: HostRequest) -> None:
        spec = request.spec
        if spec.direct_phys:
            raise UsageError(
                f"--direct-phys moves a NIC into the guest; {spec.host} is an Open vSwitch bridge",
                "drop --direct-phys, or name the NIC itself",
            )
        spec.backend_options(self.name, self.options)
        spec.vlan_id(self.name)  # a VLAN ID, not an IPoIB partition key
        if "datapath_type" in spec.options:
            check_datapath(spec.options["datapath_type"], "datapath_type")
        if self.default_datapath:
            check_datapath(self.default_datapath, DATAPATH_ENV)
        if self._setup_error is not None:
            raise self._setup_error

    # -- attaching -----------------------------------------------------------------------
    async def attach(self, ctx: LinkContext) -> GuestLink:
        spec = ctx.spec
        if self._setup_error is not None:
            raise self._setup_error
        bridge = ctx.host_link.ifname if ctx.host_link is not None else spec.host
        port = ctx.host_ifname
        vlan = spec.vlan_id(self.name)

        def plan(view: OvsView) -> AttachPlan:
            return plan_attach(
                view,
                bridge=bridge,
                port=port,
                marker=ctx.marker,
                datapath=spec.options.get("datapath_type"),
                default_datapath=self.default_datapath,
                other_link=ctx.host_link is not None,
                where=self.client.path,
            )

        view = await self._view(bridge, port)
        decided = plan(view)
        if decided.stale is not None:
            # Its device died with an earlier guest. ovs-vswitchd keeps a port
            # bound to the old device: it must see the port go before a new
            # one of the same name comes.
            await self._remove_port(port, ctx.marker, bridge=bridge, drop_bridge=False)
            view = await self._view(bridge, port)
            decided = plan(view)
        link = ctx.host_link if decided.bridge is not None else None
        mtu = choose_mtu(spec.mtu, link, view.bridge_mtu)
        veth = await create_veth(ctx, mtu)
        # A port needs no IPv6 address of its own (no DAD, router or MLD solicitations).
        await ctx.host.set(
            veth.index, ifalias=ctx.marker.format(), state="up", addr_gen_mode="none"
        )
        if decided.datapath == "netdev":
            disable_tx_checksum(ctx.guest.fd, ctx.temp_ifname)

        if decided.bridge is None:
            # A new bridge: made under its lock, so that no other pipework
            # process removes it (``release_host``) before the port is in.
            async with ctx.lock(bridge_lock(bridge)):
                await self._add_port(ctx, plan, decided, bridge=bridge, port=port, vlan=vlan)
        else:
            await self._add_port(ctx, plan, decided, bridge=bridge, port=port, vlan=vlan)
        return GuestLink(temp_ifname=ctx.temp_ifname, host=bridge, host_ifname=port, mtu=mtu)

    async def _add_port(
        self,
        ctx: LinkContext,
        plan: Callable[[OvsView], AttachPlan],
        decided: AttachPlan,
        *,
        bridge: str,
        port: str,
        vlan: int | None,
    ) -> None:
        """The port (and its bridge, if planned) in one transaction, re-planned
        when another client got there first (the transaction asserts what the
        plan saw); applied by ovs-vswitchd."""
        for attempt in range(RETRIES):
            created = decided.bridge is None
            ops = add_port_ops(decided, bridge=bridge, port=port, marker=ctx.marker, vlan=vlan)
            try:
                # Shielded: once sent, a transaction may commit even if we stop
                # waiting, and the journal must know how to undo it.
                with anyio.CancelScope(shield=True):
                    results = await self.client.transact(
                        ops, what=f"adding port {port} to {bridge}"
                    )
            except BaseException as exc:
                if not (isinstance(exc, OvsdbError) and is_conflict(exc) and attempt < RETRIES - 1):
                    # A timeout or a lost connection may hide a commit; the
                    # inverse removes only a port (and bridge) that is ours.
                    self._record_port(ctx, bridge, port, created)
                    raise
            else:
                self._record_port(ctx, bridge, port, created)
                break
            # Aborted, nothing committed: another client changed the bridge or
            # took the name meanwhile. Look again.
            decided = plan(await self._view(bridge, port))
            if decided.stale is not None:
                raise HostInterfaceError(
                    f"Open vSwitch port {port} appeared while this attach was adding it",
                    "is another pipework attaching the same guest interface?",
                )
        applied = await self._applied(_next_cfg(results), port=port, bridge=bridge)
        failure = setup_failure(applied, port=port, bridge=bridge)
        if failure is not None:
            raise failure
        if created:
            # Up, like a Linux bridge pipework creates, so that an address
            # on it reaches the guests (OVS leaves it down).
            device = await ctx.host.link(bridge)
            if device is not None and not device.up:
                await ctx.host.set(device.index, state="up")

    def _record_port(self, ctx: LinkContext, bridge: str, port: str, created: bool) -> None:
        marker, lock = ctx.marker, ctx.lock

        async def undo() -> None:
            if created:  # the bridge goes too if nothing else joined it: under its lock
                async with lock(bridge_lock(bridge)):
                    await self._remove_port(port, marker, bridge=bridge, drop_bridge=True)
            else:
                await self._remove_port(port, marker, bridge=bridge, drop_bridge=False)

        ctx.journal.record(
            f"ovs bridge {bridge} and port {port}" if created else f"ovs port {port} on {bridge}",
            undo,
        )

    async def _view(self, bridge: str, port: str) -> OvsView:
        results = await self.client.transact(
            view_ops(bridge, port), what=f"looking up bridge {bridge} and port {port}"
        )
        view = parse_view(results)
        if view.port is not None and view.port_bridge is None:
            holders = await self.client.transact(
                holder_ops(view.port.uuid), what=f"looking up the bridge of port {port}"
            )
            rows = result_rows(holders[0])
            if rows:
                view = view._replace(port_bridge=str(rows[0]["name"]))
        return view

    async def _applied(self, next_cfg: int, *, port: str, bridge: str) -> list[Row]:
        """Wait for ovs-vswitchd to apply configuration ``next_cfg``."""
        try:
            return await self.client.transact(
                applied_ops(next_cfg, self.timeout, port=port, bridge=bridge),
                what=f"waiting for ovs-vswitchd to configure {port}",
                seconds=self.timeout + WAIT_GRACE,
            )
        except OvsdbError as exc:
            if exc.error != "timed out":
                raise
        raise TimeoutExpiredError(
            f"ovs-vswitchd did not apply the change to {port} within {self.timeout:g} s",
            "is ovs-vswitchd running? see its log",
        )

    # -- removing ----------------------------------------------------------------------------
    async def _remove_port(
        self, port: str, marker: Marker, *, bridge: str, drop_bridge: bool
    ) -> None:
        """Remove our port ``port`` (and the bridge, if asked and it is ours and
        empty), then wait until ovs-vswitchd has let go of it. Idempotent."""
        for attempt in range(RETRIES):
            results = await self.client.transact(
                removal_ops(port, bridge), what=f"looking up port {port}"
            )
            ports, bridges, internal = (result_rows(r) for r in results)
            if not ports:
                return
            found = PortRow.from_row(ports[0])
            if not owns(found.external_ids, marker):
                return  # someone else's now: not ours to remove
            holder = BridgeRow.from_row(bridges[0]) if bridges else None
            if holder is None or found.uuid not in holder.ports:
                drop_bridge = False
                more = await self.client.transact(
                    holder_ops(found.uuid), what=f"looking up the bridge of port {port}"
                )
                rows = result_rows(more[0])
                if not rows:
                    return  # in no bridge: OVSDB deletes it by itself
                holder = BridgeRow.from_row(rows[0])
            drop = drop_bridge and may_drop(
                holder, found, frozenset(uuid_str(r["_uuid"]) for r in internal)
            )
            try:
                done = await self.client.transact(
                    remove_port_ops(found, holder, drop_bridge=drop),
                    what=f"removing port {port} from {holder.name}",
                )
            except OvsdbError as exc:
                if is_conflict(exc) and attempt < RETRIES - 1:
                    continue
                raise
            await self._applied(_next_cfg(done), port=port, bridge=holder.name)
            return

    async def verify(self, ctx: DetachContext) -> str | None:
        # The port is removed only if its external_ids (the host's) say it
        # is this attachment's; the veth is the evidence for the rest.
        return await veth_evidence(ctx)

    async def detach(self, ctx: DetachContext) -> None:
        marker = ctx.marker
        if not marker.hostif:
            return
        if self._setup_error is not None:
            raise self._setup_error
        try:
            await self._remove_port(marker.hostif, marker, bridge=marker.host, drop_bridge=False)
        except OvsdbUnavailable as exc:
            raise OvsdbUnavailable(
                f"{exc.message}; cannot remove port {marker.hostif}",
                f"start Open vSwitch and detach again, or remove the interface: ip link del {marker.hostif}",
            ) from None
        veth = await ctx.host.link(marker.hostif)
        if veth is not None and marker.same_attachment(Marker.parse(veth.alias)):
            await ctx.host.delete(veth.index)

    async def owns_host(self, ctx: HostContext) -> bool:
        """An OVS bridge pipework created has ``external_ids:pipework=auto-created``
        in OVSDB; False when OVSDB does not answer."""
        if self._setup_error is not None or not self.client.available():
            return False
        try:
            results = await self.client.transact(
                bridge_ops(ctx.name)[:1], what=f"looking up bridge {ctx.name}"
            )
        except (OvsdbUnavailable, OvsdbError):
            return False
        rows = result_rows(results[0])
        return bool(rows) and BridgeRow.from_row(rows[0]).auto_created

    async def release_host(self, ctx: HostContext) -> bool:
        """Remove an OVS bridge pipework created, once no port but its own
        internal one is left (``pipework destroy``, ``detach --prune-bridges``).
        A port is removed without its bridge (``detach`` never drops it), so
        attachments removed concurrently cannot each leave it to the other."""
        if self._setup_error is not None:
            raise self._setup_error
        async with ctx.lock(bridge_lock(ctx.name)):  # an attach may be making it anew
            return await self._release_bridge(ctx)

    async def _release_bridge(self, ctx: HostContext) -> bool:
        for attempt in range(RETRIES):
            results = await self.client.transact(
                bridge_ops(ctx.name), what=f"looking up bridge {ctx.name}"
            )
            bridges, internal = (result_rows(r) for r in results)
            if not bridges:
                return False
            bridge = BridgeRow.from_row(bridges[0])
            if not may_release(bridge, frozenset(uuid_str(r["_uuid"]) for r in internal)):
                return False
            if ctx.dry_run:
                return True
            try:
                done = await self.client.transact(
                    drop_bridge_ops(bridge), what=f"removing bridge {ctx.name}"
                )
            except OvsdbError as exc:
                if is_conflict(exc) and attempt < RETRIES - 1:
                    continue  # a port joined or left meanwhile: look again
                raise
            await self._applied(_next_cfg(done), port=ctx.name, bridge=ctx.name)
            return True
        return False

    async def healthy(self, ctx: DetachContext) -> bool:
        """Is the OVS side of an existing attachment still whole: our port, with
        an OpenFlow port number? For an "unchanged" re-run, beside the engine's
        own check of the veth: a port someone removed, or one OVS lost, is
        then replaced instead of reported as fine."""
        port = ctx.marker.hostif
        if not port:
            return True
        results = await self.client.transact(
            [
                select_op("Port", [["name", "==", port]], ["_uuid", "name", "external_ids"]),
                select_op("Interface", [["name", "==", port]], ["ofport"]),
            ],
            what=f"looking up port {port}",
        )
        ports, ifaces = result_rows(results[0]), result_rows(results[1])
        if not ports or not owns(PortRow.from_row(ports[0]).external_ids, ctx.marker):
            return False
        ofport = optional(ifaces[0].get("ofport", ["set", []])) if ifaces else None
        return isinstance(ofport, int) and ofport != -1

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """Ports pipework added whose interface is gone (their guest died and
        took the veth with it; OVS keeps the port). Not an error without OVS:
        then there are no ports to look at."""
        if self._setup_error is not None or not self.client.available():
            return []
        results = await self.client.transact(
            [select_op("Port", [], ["_uuid", "name", "external_ids"])], what="listing ports"
        )
        found = []
        for row in result_rows(results[0]):
            port = PortRow.from_row(row)
            guest = port.external_ids.get(EXT_GUEST)
            if guest is None or await ctx.host.link(port.name) is not None:
                continue  # not ours, or its interface is still there
            ifname = port.external_ids.get(EXT_IFNAME, "")
            found.append(f"Open vSwitch port {port.name} of {ifname} in {guest} (interface gone)")
            if not ctx.dry_run:
                marker = Marker(guest=guest, ifname=ifname, kind=self.name, host="")
                await self._remove_port(port.name, marker, bridge="", drop_bridge=False)
        return found

    async def aclose(self) -> None:
        await self.client.aclose()


def bridge_lock(name: str) -> str:
    """The lock around making and removing the bridge ``name`` (the Linux
    bridge backend's name for it too: both are interface names)."""
    return f"bridge:{name}"


def _next_cfg(results: list[Row]) -> int:
    rows = result_rows(results[-1])
    if not rows or not isinstance(rows[0].get("next_cfg"), int):
        raise OvsdbError("OVSDB did not report next_cfg (is the Open_vSwitch record missing?)")
    return int(rows[0]["next_cfg"])


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[OvsBackend]:
    return [OvsBackend(config)]
