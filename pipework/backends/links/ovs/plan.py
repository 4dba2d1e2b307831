"""The OVSDB side of the ovs backend, as pure functions: what the database
says (rows, one read ``view``), what to do about it (``plan_attach``), and the
transactions that do it (``add_port_ops``, ``remove_port_ops``...).

Kept apart from ``ovs.py`` so that every decision can be unit-tested
without a socket; ``ovs.py`` only sends these and reacts to the answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from pipework.backends.links.ovs.ovsdb import (
    Op,
    OvsdbError,
    OvsdbUnavailable,
    Row,
    map_items,
    named_uuid,
    omap,
    optional,
    oset,
    set_items,
    uuid,
    uuid_str,
    uuids,
)
from pipework.engine import (
    HostInterfaceError,
    Link,
    Marker,
    OptionSpec,
    PipeworkError,
    UnsupportedError,
    UsageError,
    pick_mtu,
)

OPTIONS = {
    "datapath_type": OptionSpec("the datapath of a bridge pipework creates: system or netdev")
}
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


def select_op(table: str, where: list[Any], columns: list[str]) -> Op:
    return {"op": "select", "table": table, "where": where, "columns": columns}


def result_rows(result: Row) -> list[Row]:
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
        select_op("Open_vSwitch", [], ["_uuid", "datapath_types"]),
        select_op("Bridge", [["name", "==", bridge]], BRIDGE_COLUMNS),
        select_op("Port", [["name", "==", port]], ["_uuid", "name", "external_ids"]),
        select_op("Interface", [["name", "==", port]], ["_uuid"]),
        select_op("Interface", [["name", "==", bridge]], ["mtu"]),
    ]


def parse_view(results: list[Row]) -> OvsView:
    root, bridges, ports, port_ifaces, bridge_ifaces = (result_rows(r) for r in results[:5])
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
        select_op("Interface", [["name", "==", port]], ["ofport", "error"]),
        select_op("Bridge", [["name", "==", bridge]], ["datapath_type", "datapath_id"]),
    ]


def setup_failure(results: list[Row], *, port: str, bridge: str) -> PipeworkError | None:
    """Why OVS could not use the new port, from ``applied_ops``' results."""
    ifaces, bridges = result_rows(results[1]), result_rows(results[2])
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
        select_op("Port", [["name", "==", port]], ["_uuid", "name", "external_ids"]),
        select_op("Bridge", [["name", "==", bridge]], BRIDGE_COLUMNS),
        select_op("Port", [["name", "==", bridge]], ["_uuid"]),
    ]


def holder_ops(port_uuid: str) -> list[Op]:
    return [select_op("Bridge", [["ports", "includes", uuid(port_uuid)]], BRIDGE_COLUMNS)]


def bridge_ops(bridge: str) -> list[Op]:
    """A bridge and its own internal port (for ``release_host``)."""
    return [
        select_op("Bridge", [["name", "==", bridge]], BRIDGE_COLUMNS),
        select_op("Port", [["name", "==", bridge]], ["_uuid"]),
    ]


def may_release(bridge: BridgeRow, internal: frozenset[str]) -> bool:
    """Remove the bridge? Only one pipework created, with no port but its own."""
    return bridge.auto_created and bridge.ports <= internal


def drop_bridge_ops(bridge: BridgeRow) -> list[Op]:
    """One transaction: remove ``bridge``, provided its ports are still exactly
    those we looked at (no port joined meanwhile)."""
    where = [["_uuid", "==", uuid(bridge.uuid)]]
    ports = oset(uuid(u) for u in sorted(bridge.ports))
    return [
        _wait("Bridge", where, ["ports"], [{"ports": ports}]),
        _mutate("Open_vSwitch", [], "bridges", "delete", oset([uuid(bridge.uuid)])),
        *BUMP,
    ]


def may_drop(bridge: BridgeRow, port: PortRow, internal: frozenset[str]) -> bool:
    """Remove the bridge with the port? Only one pipework created, and only
    when nothing but its own internal port would remain."""
    return bridge.auto_created and bridge.ports - {port.uuid} <= internal


def is_conflict(exc: OvsdbError) -> bool:
    return exc.error in _CONFLICTS


# -- the guest side ------------------------------------------------------------------------
