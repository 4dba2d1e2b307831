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
import re
import socket
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import anyio

from pipework.engine import (
    DetachContext,
    EngineConfig,
    GuestLink,
    HostInterfaceError,
    HostRequest,
    Link,
    LinkContext,
    Marker,
    PipeworkError,
    TimeoutExpiredError,
    UnsupportedError,
    UsageError,
    create_veth,
    hookimpl,
    pick_mtu,
    socket_in_netns,
)

# Not re-exported by pipework.engine yet; it is the engine's public helper for
# a socket inside a namespace.
from .ovsdb import (
    Op,
    OvsdbClient,
    OvsdbError,
    OvsdbUnavailable,
    Row,
    map_items,
    named_uuid,
    omap,
    optional,
    oset,
    set_items,
    socket_path,
    uuid,
    uuid_str,
    uuids,
)

log = logging.getLogger("pipework.ovs")

OPTIONS = {"datapath_type": "the datapath of a bridge pipework creates: system or netdev"}
"""Backend options (``-o KEY=VALUE``) and what they mean."""
DATAPATH_ENV = "PIPEWORK_OVS_DATAPATH"
"""Default ``datapath_type`` for bridges pipework creates."""
EXT_GUEST = "pipework-guest"
EXT_IFNAME = "pipework-ifname"
EXT_CFG = "pipework-cfg"
AUTO_KEY, AUTO_VALUE = "pipework", "auto-created"
"""``external_ids`` of a bridge pipework created."""
RETRIES = 5
"""Write transactions re-planned after another client changed what they relied on."""
WAIT_GRACE = 2.0
"""Seconds the client waits beyond a server-side ``wait`` timeout."""
DEFAULT_MTU = 1500
_DATAPATH_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_CONFLICTS = frozenset({"timed out", "constraint violation"})
"""Errors of a write transaction that mean "someone else changed it first"."""

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17

BRIDGE_COLUMNS = ["_uuid", "name", "ports", "datapath_type", "datapath_id", "external_ids"]


# -- rows ------------------------------------------------------------------------------


class BridgeRow(NamedTuple):
    uuid: str
    name: str
    ports: frozenset[str]
    datapath_type: str
    datapath_id: str | None
    external_ids: Mapping[str, str]

    @classmethod
    def from_row(cls, row: Row) -> BridgeRow:
        return cls(
            uuid=uuid_str(row["_uuid"]),
            name=str(row["name"]),
            ports=uuids(row.get("ports", ["set", []])),
            datapath_type=str(row.get("datapath_type") or ""),
            datapath_id=optional(row.get("datapath_id", ["set", []])),
            external_ids=map_items(row.get("external_ids", ["map", []])),
        )

    @property
    def datapath(self) -> str:
        """The datapath type, with OVS's default spelled out."""
        return self.datapath_type or "system"

    @property
    def auto_created(self) -> bool:
        return self.external_ids.get(AUTO_KEY) == AUTO_VALUE


class PortRow(NamedTuple):
    uuid: str
    name: str
    external_ids: Mapping[str, str]

    @classmethod
    def from_row(cls, row: Row) -> PortRow:
        return cls(
            uuid=uuid_str(row["_uuid"]),
            name=str(row["name"]),
            external_ids=map_items(row.get("external_ids", ["map", []])),
        )


def port_ids(marker: Marker) -> dict[str, str]:
    """``external_ids`` of a port (and its interface) that pipework adds."""
    return {EXT_GUEST: marker.guest, EXT_IFNAME: marker.ifname, EXT_CFG: marker.cfg}


def owns(external_ids: Mapping[str, str], marker: Marker) -> bool:
    """Does a port with these ``external_ids`` belong to the attachment slot
    (guest, ifname) of ``marker``? The slot, not the config: a port left from
    an earlier configuration of the same guest interface is ours too."""
    return (
        external_ids.get(EXT_GUEST) == marker.guest
        and external_ids.get(EXT_IFNAME) == marker.ifname
    )


# -- reading -----------------------------------------------------------------------------


def _select(table: str, where: list[Any], columns: list[str]) -> Op:
    return {"op": "select", "table": table, "where": where, "columns": columns}


def _rows(result: Row) -> list[Row]:
    rows = result.get("rows", [])
    return rows if isinstance(rows, list) else []


class OvsView(NamedTuple):
    """What an attach decides on: one read transaction's worth of OVSDB."""

    initialised: bool
    """The Open_vSwitch root record exists."""
    datapath_types: tuple[str, ...]
    bridge: BridgeRow | None
    port: PortRow | None
    port_bridge: str | None
    """The name of the bridge holding ``port``, if known."""
    interface_taken: bool
    """An Interface named like the port exists in a port of another name."""
    bridge_mtu: int | None


def view_ops(bridge: str, port: str) -> list[Op]:
    return [
        _select("Open_vSwitch", [], ["_uuid", "datapath_types"]),
        _select("Bridge", [["name", "==", bridge]], BRIDGE_COLUMNS),
        _select("Port", [["name", "==", port]], ["_uuid", "name", "external_ids"]),
        _select("Interface", [["name", "==", port]], ["_uuid"]),
        _select("Interface", [["name", "==", bridge]], ["mtu"]),
    ]


def parse_view(results: list[Row]) -> OvsView:
    root, bridges, ports, port_ifaces, bridge_ifaces = (_rows(r) for r in results[:5])
    bridge = BridgeRow.from_row(bridges[0]) if bridges else None
    port = PortRow.from_row(ports[0]) if ports else None
    mtu = optional(bridge_ifaces[0].get("mtu", ["set", []])) if bridge_ifaces else None
    return OvsView(
        initialised=bool(root),
        datapath_types=tuple(sorted(str(t) for t in set_items(root[0]["datapath_types"])))
        if root and "datapath_types" in root[0]
        else (),
        bridge=bridge,
        port=port,
        port_bridge=bridge.name if bridge and port and port.uuid in bridge.ports else None,
        interface_taken=bool(port_ifaces) and port is None,
        bridge_mtu=int(mtu) if isinstance(mtu, int) else None,
    )


# -- deciding ----------------------------------------------------------------------------


class AttachPlan(NamedTuple):
    bridge: BridgeRow | None
    """The existing bridge, or None to create one."""
    new_datapath: str
    """The datapath type of a bridge to create ("" = OVS's default, system)."""
    stale: PortRow | None
    """Our own port left from an earlier attachment (its device is gone): it
    must be removed, and ovs-vswitchd must see that, before the new one."""

    @property
    def datapath(self) -> str:
        return self.bridge.datapath if self.bridge else self.new_datapath or "system"


def check_datapath(value: str, source: str) -> str:
    if not _DATAPATH_RE.match(value):
        raise UsageError(
            f"{source}={value!r} is not a datapath type",
            "use system (kernel) or netdev (userspace)",
        )
    return value


def plan_attach(
    view: OvsView,
    *,
    bridge: str,
    port: str,
    marker: Marker,
    datapath: str | None,
    default_datapath: str,
    other_link: bool,
    where: str,
) -> AttachPlan:
    """Decide what to do, or raise the error that explains why not.

    ``datapath`` is the explicit option, ``default_datapath`` the
    environment's default for new bridges; ``other_link`` says a host
    interface named ``bridge`` exists; ``where`` names the database.
    """
    if not view.initialised:
        raise OvsdbUnavailable(
            f"the Open vSwitch database at {where} is not initialised",
            "run `ovs-vsctl --no-wait init` (the openvswitch-switch service does it)",
        )
    if view.bridge is None:
        if other_link:
            raise HostInterfaceError(
                f"{bridge} exists but is not an Open vSwitch bridge",
                "choose another bridge name, or another kind with --kind",
            )
        new = datapath or default_datapath
        if new and view.datapath_types and new not in view.datapath_types:
            raise UnsupportedError(
                f"this Open vSwitch has no {new!r} datapath",
                f"it has: {', '.join(view.datapath_types)}",
            )
    elif datapath and view.bridge.datapath != datapath:
        raise HostInterfaceError(
            f"Open vSwitch bridge {bridge} uses the {view.bridge.datapath} datapath, not {datapath}",
            "drop the datapath_type option, or choose another bridge",
        )
    stale = None
    if view.port is not None:
        if not owns(view.port.external_ids, marker):
            on = f" on bridge {view.port_bridge}" if view.port_bridge else ""
            raise HostInterfaceError(
                f"Open vSwitch port {port}{on} exists and is not this attachment's",
                "choose another host-side name with -l, or remove that port",
            )
        stale = view.port
    elif view.interface_taken:
        raise HostInterfaceError(
            f"Open vSwitch already has an interface named {port} (in another port)",
            "choose another host-side name with -l",
        )
    return AttachPlan(
        bridge=view.bridge,
        new_datapath="" if view.bridge else (datapath or default_datapath),
        stale=stale,
    )


def choose_mtu(requested: int | None, link: Link | None, ovsdb_mtu: int | None) -> int:
    """``--mtu``, else the bridge's; no more than the bridge device allows.

    ``link`` is the bridge's own device when it is in this namespace;
    otherwise OVSDB's idea of its MTU (or OVS's default) is used.
    """
    if link is not None:
        return pick_mtu(requested, link)
    return requested or ovsdb_mtu or DEFAULT_MTU


# -- writing -------------------------------------------------------------------------------

BUMP: list[Op] = [
    {"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["next_cfg", "+=", 1]]},
    {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]},
]
"""Ask ovs-vswitchd to reconfigure, and read the number to wait for."""


def _wait(table: str, where: list[Any], columns: list[str], rows: list[Row]) -> Op:
    """Abort unless ``where`` selects exactly ``rows`` (a precondition)."""
    return {
        "op": "wait",
        "timeout": 0,
        "table": table,
        "where": where,
        "columns": columns,
        "until": "==",
        "rows": rows,
    }


def _insert(table: str, row: Row, name: str) -> Op:
    return {"op": "insert", "table": table, "row": row, "uuid-name": name}


def _mutate(table: str, where: list[Any], column: str, mutator: str, value: Any) -> Op:
    return {"op": "mutate", "table": table, "where": where, "mutations": [[column, mutator, value]]}


def add_port_ops(
    plan: AttachPlan, *, bridge: str, port: str, marker: Marker, vlan: int | None
) -> list[Op]:
    """One transaction: the port (and, when planned, its new bridge)."""
    ids = omap(port_ids(marker))
    port_row: Row = {"name": port, "interfaces": named_uuid("iface"), "external_ids": ids}
    if vlan is not None:
        port_row["tag"] = vlan
    ops: list[Op] = [
        _wait("Port", [["name", "==", port]], ["name"], []),
        _insert("Interface", {"name": port, "external_ids": ids}, "iface"),
        _insert("Port", port_row, "port"),
    ]
    if plan.bridge is not None:
        where = [["_uuid", "==", uuid(plan.bridge.uuid)]]
        ops.insert(0, _wait("Bridge", where, ["name"], [{"name": bridge}]))
        ops.append(_mutate("Bridge", where, "ports", "insert", oset([named_uuid("port")])))
        return ops + BUMP
    bridge_row: Row = {
        "name": bridge,
        "ports": oset([named_uuid("bridge_port"), named_uuid("port")]),
        "external_ids": omap({AUTO_KEY: AUTO_VALUE}),
    }
    if plan.new_datapath:
        bridge_row["datapath_type"] = plan.new_datapath
    ops.insert(0, _wait("Bridge", [["name", "==", bridge]], ["name"], []))
    ops += [
        # Like `ovs-vsctl add-br`: the bridge's own internal port.
        _insert("Interface", {"name": bridge, "type": "internal"}, "bridge_iface"),
        _insert("Port", {"name": bridge, "interfaces": named_uuid("bridge_iface")}, "bridge_port"),
        _insert("Bridge", bridge_row, "bridge"),
        _mutate("Open_vSwitch", [], "bridges", "insert", oset([named_uuid("bridge")])),
    ]
    return ops + BUMP


def remove_port_ops(port: PortRow, holder: BridgeRow, *, drop_bridge: bool) -> list[Op]:
    """One transaction: the port leaves its bridge (OVSDB then garbage-collects
    the Port and Interface rows); with ``drop_bridge`` the bridge goes too,
    provided its ports are still exactly those we looked at."""
    where = [["_uuid", "==", uuid(holder.uuid)]]
    ops = [_mutate("Bridge", where, "ports", "delete", oset([uuid(port.uuid)]))]
    if drop_bridge:
        ports = oset(uuid(u) for u in sorted(holder.ports))
        ops.insert(0, _wait("Bridge", where, ["ports"], [{"ports": ports}]))
        ops.append(_mutate("Open_vSwitch", [], "bridges", "delete", oset([uuid(holder.uuid)])))
    return ops + BUMP


def applied_ops(next_cfg: int, timeout: float, *, port: str, bridge: str) -> list[Op]:
    """Wait until ovs-vswitchd has caught up with ``next_cfg``, then read how
    the port and its bridge came out.

    The condition is "no record has ``cur_cfg < next_cfg``" rather than
    ``cur_cfg == next_cfg``: another client's change may be applied together
    with ours, and ``cur_cfg`` then jumps past our number.
    """
    return [
        {
            "op": "wait",
            "timeout": max(1, int(timeout * 1000)),
            "table": "Open_vSwitch",
            "where": [["cur_cfg", "<", next_cfg]],
            "columns": ["cur_cfg"],
            "until": "==",
            "rows": [],
        },
        _select("Interface", [["name", "==", port]], ["ofport", "error"]),
        _select("Bridge", [["name", "==", bridge]], ["datapath_type", "datapath_id"]),
    ]


def setup_failure(results: list[Row], *, port: str, bridge: str) -> PipeworkError | None:
    """Why OVS could not use the new port, from ``applied_ops``' results."""
    ifaces, bridges = _rows(results[1]), _rows(results[2])
    if not ifaces:
        return HostInterfaceError(
            f"Open vSwitch port {port} vanished while it was being added",
            "another program removed it; try again",
        )
    ofport = optional(ifaces[0].get("ofport", ["set", []]))
    if isinstance(ofport, int) and ofport != -1:
        return None
    if bridges and optional(bridges[0].get("datapath_id", ["set", []])) is None:
        datapath = str(bridges[0].get("datapath_type") or "") or "system"
        if datapath == "system":
            return UnsupportedError(
                f"Open vSwitch could not create the kernel datapath of bridge {bridge}",
                "this kernel may lack the openvswitch module: load it, "
                "or use the userspace datapath (datapath_type=netdev)",
            )
        return HostInterfaceError(
            f"Open vSwitch could not create bridge {bridge} with the {datapath} datapath",
            "see the ovs-vswitchd log",
        )
    error = optional(ifaces[0].get("error", ["set", []]))
    return HostInterfaceError(
        f"Open vSwitch could not add {port} to bridge {bridge}: "
        f"{error or 'it got no OpenFlow port number'}",
        "see the ovs-vswitchd log",
    )


def removal_ops(port: str, bridge: str) -> list[Op]:
    return [
        _select("Port", [["name", "==", port]], ["_uuid", "name", "external_ids"]),
        _select("Bridge", [["name", "==", bridge]], BRIDGE_COLUMNS),
        _select("Port", [["name", "==", bridge]], ["_uuid"]),
    ]


def holder_ops(port_uuid: str) -> list[Op]:
    return [_select("Bridge", [["ports", "includes", uuid(port_uuid)]], BRIDGE_COLUMNS)]


def may_drop(bridge: BridgeRow, port: PortRow, internal: frozenset[str]) -> bool:
    """Remove the bridge with the port? Only one pipework created, and only
    when nothing but its own internal port would remain."""
    return bridge.auto_created and bridge.ports - {port.uuid} <= internal


def _conflict(exc: OvsdbError) -> bool:
    return exc.error in _CONFLICTS


# -- the guest side ------------------------------------------------------------------------


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


class OvsBackend:
    name = "ovs"
    default_ifname = "eth1"
    auto_prefix = "ovs"

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
                [_select("Bridge", [["name", "==", name]], ["_uuid"])],
                what=f"looking up bridge {name}",
            )
        except OvsdbUnavailable as exc:
            log.debug("choosing a backend for %s without OVSDB: %s", name, exc)
            return None
        return bool(_rows(results[0]))

    def check(self, request: HostRequest) -> None:
        spec = request.spec
        if spec.direct_phys:
            raise UsageError(
                f"--direct-phys moves a NIC into the guest; {spec.host} is an Open vSwitch bridge",
                "drop --direct-phys, or name the NIC itself",
            )
        spec.backend_options(self.name, OPTIONS)
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
        await ctx.host.set(veth.index, ifalias=ctx.marker.format(), state="up")
        if decided.datapath == "netdev":
            disable_tx_checksum(ctx.guest.fd, ctx.temp_ifname)

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
                if not (isinstance(exc, OvsdbError) and _conflict(exc) and attempt < RETRIES - 1):
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
        return GuestLink(temp_ifname=ctx.temp_ifname, host=bridge, host_ifname=port, mtu=mtu)

    def _record_port(self, ctx: LinkContext, bridge: str, port: str, created: bool) -> None:
        marker = ctx.marker
        ctx.journal.record(
            f"ovs bridge {bridge} and port {port}" if created else f"ovs port {port} on {bridge}",
            lambda: self._remove_port(port, marker, bridge=bridge, drop_bridge=created),
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
            rows = _rows(holders[0])
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
            ports, bridges, internal = (_rows(r) for r in results)
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
                rows = _rows(more[0])
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
                if _conflict(exc) and attempt < RETRIES - 1:
                    continue
                raise
            await self._applied(_next_cfg(done), port=port, bridge=holder.name)
            return

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
                _select("Port", [["name", "==", port]], ["_uuid", "name", "external_ids"]),
                _select("Interface", [["name", "==", port]], ["ofport"]),
            ],
            what=f"looking up port {port}",
        )
        ports, ifaces = _rows(results[0]), _rows(results[1])
        if not ports or not owns(PortRow.from_row(ports[0]).external_ids, ctx.marker):
            return False
        ofport = optional(ifaces[0].get("ofport", ["set", []])) if ifaces else None
        return isinstance(ofport, int) and ofport != -1

    async def aclose(self) -> None:
        await self.client.aclose()


def _next_cfg(results: list[Row]) -> int:
    rows = _rows(results[-1])
    if not rows or not isinstance(rows[0].get("next_cfg"), int):
        raise OvsdbError("OVSDB did not report next_cfg (is the Open_vSwitch record missing?)")
    return int(rows[0]["next_cfg"])


@hookimpl
def pipework_link_backends(config: EngineConfig) -> list[OvsBackend]:
    return [OvsBackend(config)]
