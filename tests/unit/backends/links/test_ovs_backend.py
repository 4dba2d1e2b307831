"""The Open vSwitch backend's logic, without root or OVS: how it reads OVSDB,
what it decides, the transactions it builds, how it reads vswitchd's verdict,
and its claims, checks and removal against a scripted OVSDB."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pipework.backends.links import ovs
from pipework.backends.links.ovs import OvsBackend
from pipework.backends.links.ovs import plan as ovsplan
from pipework.backends.links.ovs.ovsdb import OvsdbError, OvsdbUnavailable
from pipework.backends.links.ovs.plan import (
    AttachPlan,
    BridgeRow,
    OvsView,
    PortRow,
    add_port_ops,
    applied_ops,
    may_drop,
    owns,
    parse_view,
    plan_attach,
    remove_port_ops,
    setup_failure,
)
from pipework.engine import (
    AttachSpec,
    DetachContext,
    EngineConfig,
    GuestLink,
    HostInterfaceError,
    HostRequest,
    Link,
    Marker,
    TimeoutExpiredError,
    UnsupportedError,
    UsageError,
)

pytestmark = pytest.mark.anyio


MARKER = Marker(
    guest="netns:blue", ifname="eth1", kind="ovs", host="ovsbr", hostif="pwabc", cfg="c1"
)
MINE = {"pipework-guest": "netns:blue", "pipework-ifname": "eth1", "pipework-cfg": "c1"}


def omap(d: dict[str, str]) -> list[Any]:
    return ["map", [[k, v] for k, v in d.items()]]


def bridge_row(
    uuid="b1", name="ovsbr", ports=("p0",), datapath_type="", datapath_id="0000aa", ids=None
) -> dict[str, Any]:
    return {
        "_uuid": ["uuid", uuid],
        "name": name,
        "ports": ["set", [["uuid", p] for p in ports]],
        "datapath_type": datapath_type,
        "datapath_id": ["set", [datapath_id] if datapath_id else []],
        "external_ids": omap(ids or {}),
    }


def port_row(uuid="p1", name="pwabc", ids=None) -> dict[str, Any]:
    return {"_uuid": ["uuid", uuid], "name": name, "external_ids": omap(ids or {})}


def view_results(
    *, root=True, types=("netdev", "system"), bridge=None, port=None, iface=False, mtu=None
):
    return [
        {
            "rows": [{"_uuid": ["uuid", "r"], "datapath_types": ["set", list(types)]}]
            if root
            else []
        },
        {"rows": [bridge] if bridge else []},
        {"rows": [port] if port else []},
        {"rows": [{"_uuid": ["uuid", "i1"]}] if iface else []},
        {"rows": [{"mtu": mtu if mtu is not None else ["set", []]}]},
    ]


def plan(view: OvsView, **kw) -> AttachPlan:
    args: dict[str, Any] = {
        "bridge": "ovsbr",
        "port": "pwabc",
        "marker": MARKER,
        "datapath": None,
        "default_datapath": "",
        "other_link": False,
        "where": "/run/db.sock",
    }
    return plan_attach(view, **(args | kw))


# -- reading ----------------------------------------------------------------------------------


def test_parse_view_of_a_bridge_holding_our_port():
    view = parse_view(
        view_results(
            bridge=bridge_row(ports=("p0", "p1"), datapath_type="netdev"),
            port=port_row(ids=MINE),
            mtu=9000,
        )
    )
    assert view.initialised and view.datapath_types == ("netdev", "system")
    assert view.bridge == BridgeRow("b1", "ovsbr", frozenset({"p0", "p1"}), "netdev", "0000aa", {})
    assert view.bridge.datapath == "netdev" and not view.bridge.auto_created
    assert view.port == PortRow("p1", "pwabc", MINE)
    assert (view.port_bridge, view.interface_taken, view.bridge_mtu) == ("ovsbr", False, 9000)


def test_parse_view_of_an_empty_database():
    view = parse_view(view_results(root=False))
    assert not view.initialised and view.bridge is None and view.port is None
    assert view.bridge_mtu is None and view.datapath_types == ()


def test_parse_view_interface_in_another_port():
    view = parse_view(view_results(bridge=bridge_row(), iface=True))
    assert view.interface_taken and view.port_bridge is None


def test_default_datapath_is_system():
    bridge = BridgeRow.from_row(bridge_row(ids={"pipework": "auto-created"}))
    assert bridge.datapath == "system" and bridge.auto_created


# -- deciding ---------------------------------------------------------------------------------


def test_an_uninitialised_database():
    with pytest.raises(
        OvsdbUnavailable, match=r"database at /run/db\.sock is not initialised"
    ) as e:
        plan(parse_view(view_results(root=False)))
    assert e.value.exit_code == 5 and "ovs-vsctl --no-wait init" in (e.value.hint or "")


def test_a_new_bridge_takes_the_option_then_the_environment():
    view = parse_view(view_results())
    assert plan(view).bridge is None and plan(view).new_datapath == ""
    assert plan(view).datapath == "system"
    assert plan(view, default_datapath="netdev").new_datapath == "netdev"
    chosen = plan(view, datapath="system", default_datapath="netdev")
    assert chosen.new_datapath == "system" and chosen.datapath == "system"


def test_a_datapath_this_ovs_lacks():
    with pytest.raises(UnsupportedError, match="no 'dpdk' datapath") as info:
        plan(parse_view(view_results()), datapath="dpdk")
    assert info.value.hint == "it has: netdev, system" and info.value.exit_code == 8


def test_an_ovs_that_does_not_list_its_datapaths_is_trusted():
    assert plan(parse_view(view_results(types=())), datapath="dpdk").new_datapath == "dpdk"


def test_a_host_interface_that_is_not_a_bridge():
    with pytest.raises(HostInterfaceError, match="ovsbr exists but is not an Open vSwitch bridge"):
        plan(parse_view(view_results()), other_link=True)


def test_an_existing_bridge_keeps_its_datapath():
    view = parse_view(view_results(bridge=bridge_row(datapath_type="netdev")))
    decided = plan(view, default_datapath="system")  # the default is for new bridges only
    assert decided.bridge == view.bridge and decided.datapath == "netdev"
    assert plan(view, datapath="netdev").stale is None
    with pytest.raises(HostInterfaceError, match="uses the netdev datapath, not system"):
        plan(view, datapath="system")


def test_someone_elses_port():
    theirs = {"pipework-guest": "netns:red", "pipework-ifname": "eth1"}
    for ids in ({}, theirs):
        view = parse_view(view_results(bridge=bridge_row(ports=("p1",)), port=port_row(ids=ids)))
        with pytest.raises(
            HostInterfaceError, match="port pwabc on bridge ovsbr exists and is not"
        ):
            plan(view)


def test_our_port_from_an_earlier_attachment_is_stale():
    earlier = MINE | {"pipework-cfg": "old"}
    view = parse_view(view_results(bridge=bridge_row(ports=("p1",)), port=port_row(ids=earlier)))
    assert plan(view).stale == view.port


def test_an_interface_of_that_name_in_another_port():
    with pytest.raises(HostInterfaceError, match="already has an interface named pwabc"):
        plan(parse_view(view_results(bridge=bridge_row(), iface=True)))


def test_ownership_is_the_slot_not_the_config():
    assert owns(MINE | {"pipework-cfg": "other"}, MARKER)
    assert not owns(MINE | {"pipework-ifname": "eth2"}, MARKER)
    assert not owns(MINE | {"pipework-guest": "netns:red"}, MARKER)
    assert not owns({}, MARKER)


def test_mtu_without_the_bridge_device():
    assert ovsplan.choose_mtu(None, None, None) == 1500
    assert ovsplan.choose_mtu(None, None, 9000) == 9000
    assert ovsplan.choose_mtu(1400, None, 9000) == 1400


def link(name="ovsbr", kind="tun", mtu=1500, max_mtu=65521) -> Link:
    return Link(
        index=7,
        ifname=name,
        kind=kind,
        mtu=mtu,
        mac="02:00:00:00:00:01",
        alias=None,
        master=None,
        up=True,
        operstate="UNKNOWN",
        link_type=1,
        max_mtu=max_mtu,
    )


def test_mtu_from_the_bridge_device():
    assert ovsplan.choose_mtu(None, link(mtu=1450), 9000) == 1450
    with pytest.raises(HostInterfaceError, match="MTU 65535 is larger than ovsbr allows"):
        ovsplan.choose_mtu(65535, link(), None)


# -- the transactions ------------------------------------------------------------------------


def named_refs(value: Any) -> set[str]:
    if isinstance(value, list):
        if len(value) == 2 and value[0] == "named-uuid":
            return {value[1]}
        return set().union(*(named_refs(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(named_refs(v) for v in value.values())) if value else set()
    return set()


def assert_well_formed(ops: list[dict]) -> None:
    """Every named UUID used is defined by an insert, each defined once."""
    defined = [op["uuid-name"] for op in ops if op["op"] == "insert"]
    assert len(defined) == len(set(defined))
    assert named_refs(ops) <= set(defined)


def by_op(ops, op, table):
    return [o for o in ops if o["op"] == op and o["table"] == table]


def test_adding_a_port_to_an_existing_bridge():
    decided = plan(parse_view(view_results(bridge=bridge_row())))
    ops = add_port_ops(decided, bridge="ovsbr", port="pwabc", marker=MARKER, vlan=10)
    assert_well_formed(ops)
    # Preconditions first: the bridge is still there, the port name still free.
    assert ops[0] == {
        "op": "wait",
        "timeout": 0,
        "table": "Bridge",
        "where": [["_uuid", "==", ["uuid", "b1"]]],
        "columns": ["name"],
        "until": "==",
        "rows": [{"name": "ovsbr"}],
    }
    assert ops[1]["table"] == "Port" and ops[1]["where"] == [["name", "==", "pwabc"]]
    assert ops[1]["rows"] == []
    (port,) = by_op(ops, "insert", "Port")
    (iface,) = by_op(ops, "insert", "Interface")
    ids = [
        "map",
        [["pipework-cfg", "c1"], ["pipework-guest", "netns:blue"], ["pipework-ifname", "eth1"]],
    ]
    assert port["row"] == {
        "name": "pwabc",
        "interfaces": ["named-uuid", "iface"],
        "external_ids": ids,
        "tag": 10,
    }
    assert iface["row"] == {"name": "pwabc", "external_ids": ids}
    (mutate,) = by_op(ops, "mutate", "Bridge")
    assert mutate["mutations"] == [["ports", "insert", ["set", [["named-uuid", "port"]]]]]
    assert ops[-2:] == ovsplan.BUMP and not by_op(ops, "insert", "Bridge")


def test_no_vlan_no_tag():
    decided = plan(parse_view(view_results(bridge=bridge_row())))
    ops = add_port_ops(decided, bridge="ovsbr", port="pwabc", marker=MARKER, vlan=None)
    assert "tag" not in by_op(ops, "insert", "Port")[0]["row"]


def test_adding_a_port_with_a_new_bridge():
    decided = plan(parse_view(view_results()), datapath="netdev")
    ops = add_port_ops(decided, bridge="ovsbr", port="pwabc", marker=MARKER, vlan=None)
    assert_well_formed(ops)
    assert ops[0]["table"] == "Bridge" and ops[0]["where"] == [["name", "==", "ovsbr"]]
    assert ops[0]["rows"] == []  # abort if someone created it meanwhile
    (bridge,) = by_op(ops, "insert", "Bridge")
    assert bridge["row"]["datapath_type"] == "netdev"
    assert bridge["row"]["external_ids"] == ["map", [["pipework", "auto-created"]]]
    assert named_refs(bridge["row"]["ports"]) == {"bridge_port", "port"}
    internal = [op for op in by_op(ops, "insert", "Interface") if op["row"]["name"] == "ovsbr"]
    assert internal[0]["row"]["type"] == "internal"
    (root,) = by_op(ops, "mutate", "Open_vSwitch")[:1]
    assert root["mutations"] == [["bridges", "insert", ["set", [["named-uuid", "bridge"]]]]]
    assert ops[-2:] == ovsplan.BUMP


def test_a_new_bridge_on_the_default_datapath_leaves_the_column_alone():
    ops = add_port_ops(
        plan(parse_view(view_results())), bridge="ovsbr", port="pwabc", marker=MARKER, vlan=None
    )
    assert "datapath_type" not in by_op(ops, "insert", "Bridge")[0]["row"]


def test_removing_a_port():
    holder = BridgeRow.from_row(bridge_row(ports=("p0", "p1")))
    ops = remove_port_ops(PortRow("p1", "pwabc", MINE), holder, drop_bridge=False)
    assert ops[0] == {
        "op": "mutate",
        "table": "Bridge",
        "where": [["_uuid", "==", ["uuid", "b1"]]],
        "mutations": [["ports", "delete", ["set", [["uuid", "p1"]]]]],
    }
    assert ops[1:] == ovsplan.BUMP


def test_removing_a_port_and_its_bridge():
    holder = BridgeRow.from_row(bridge_row(ports=("p1", "p0")))
    ops = remove_port_ops(PortRow("p1", "pwabc", MINE), holder, drop_bridge=True)
    # Only if the bridge's ports are still exactly the ones looked at.
    assert ops[0]["op"] == "wait" and ops[0]["columns"] == ["ports"]
    assert ops[0]["rows"] == [{"ports": ["set", [["uuid", "p0"], ["uuid", "p1"]]]}]
    assert ops[-3]["mutations"] == [["bridges", "delete", ["set", [["uuid", "b1"]]]]]
    assert ops[-2:] == ovsplan.BUMP


def test_may_drop_only_an_empty_bridge_pipework_made():
    port = PortRow("p1", "pwabc", MINE)
    ours = BridgeRow.from_row(bridge_row(ports=("p0", "p1"), ids={"pipework": "auto-created"}))
    assert may_drop(ours, port, frozenset({"p0"}))
    assert not may_drop(ours, port, frozenset())  # p0 is somebody's port
    theirs = BridgeRow.from_row(bridge_row(ports=("p0", "p1")))
    assert not may_drop(theirs, port, frozenset({"p0"}))


def test_waiting_for_vswitchd_tolerates_a_jump_past_our_number():
    ops = applied_ops(41, 2.5, port="pwabc", bridge="ovsbr")
    assert ops[0] == {
        "op": "wait",
        "timeout": 2500,
        "table": "Open_vSwitch",
        "where": [["cur_cfg", "<", 41]],
        "columns": ["cur_cfg"],
        "until": "==",
        "rows": [],
    }
    assert ops[1]["where"] == [["name", "==", "pwabc"]]
    assert ops[2]["where"] == [["name", "==", "ovsbr"]]


# -- vswitchd's verdict ------------------------------------------------------------------------


def verdict(ofport: Any, error: Any = None, datapath_id: Any = "00aa", datapath_type=""):
    iface = {"ofport": ofport, "error": ["set", [error] if error else []]}
    bridge = {
        "datapath_type": datapath_type,
        "datapath_id": ["set", [datapath_id] if datapath_id else []],
    }
    return setup_failure([{}, {"rows": [iface]}, {"rows": [bridge]}], port="pwabc", bridge="ovsbr")


def test_a_port_with_an_openflow_number_is_fine():
    assert verdict(3) is None


def test_a_port_ovs_could_not_open():
    failure = verdict(-1, "could not open network device pwabc (No such device)")
    assert isinstance(failure, HostInterfaceError)
    assert failure.message == (
        "Open vSwitch could not add pwabc to bridge ovsbr: could not open network device pwabc"
        " (No such device)"
    )
    assert failure.hint == "see the ovs-vswitchd log"
    assert "no OpenFlow port" in verdict(["set", []]).message


def test_a_kernel_datapath_without_its_module():
    failure = verdict(["set", []], datapath_id=None)
    assert isinstance(failure, UnsupportedError) and failure.exit_code == 8
    assert "kernel datapath of bridge ovsbr" in failure.message
    assert "datapath_type=netdev" in (failure.hint or "")


def test_a_userspace_bridge_that_failed():
    failure = verdict(["set", []], datapath_id=None, datapath_type="netdev")
    assert isinstance(failure, HostInterfaceError)
    assert failure.message == "Open vSwitch could not create bridge ovsbr with the netdev datapath"


def test_a_port_that_vanished():
    failure = setup_failure([{}, {"rows": []}, {"rows": []}], port="pwabc", bridge="ovsbr")
    assert isinstance(failure, HostInterfaceError) and "vanished" in failure.message


# -- the backend against a scripted OVSDB ------------------------------------------------------


class ScriptedOvsdb:
    """Stands in for ``OvsdbClient``: ``answer(ops)`` returns results or an exception."""

    def __init__(self, answer, available=True):
        self.answer = answer
        self.path = "/fake/db.sock"
        self.calls: list[list[dict]] = []
        self._available = available

    def available(self) -> bool:
        return self._available

    async def transact(self, ops, *, what, seconds=None):
        self.calls.append(list(ops))
        result = self.answer(list(ops))
        if isinstance(result, Exception):
            raise result
        return result

    async def aclose(self):
        pass


def backend(answer=None, *, available=True, **environ) -> OvsBackend:
    b = OvsBackend(EngineConfig(timeout=3), environ={"PIPEWORK_OVSDB": "/fake/db.sock", **environ})
    if answer is not None or not available:
        b.client = ScriptedOvsdb(answer or (lambda ops: []), available=available)  # type: ignore[assignment]
    return b


def request(host="ovsbr", link_=None, **kw) -> HostRequest:
    return HostRequest(
        spec=AttachSpec(host=host, guest="netns:blue", **kw), host_link=link_, host=None
    )  # type: ignore[arg-type]


def bridges_named(*names):
    def answer(ops):
        (op,) = ops
        assert op["table"] == "Bridge" and op["where"][0][:2] == ["name", "=="]
        return [{"rows": [{"_uuid": ["uuid", "b"]}] if op["where"][0][2] in names else []}]

    return answer


async def test_claims_without_looking_anything_up():
    b = backend(bridges_named())
    assert await b.claim(request("ovsnew")) == 10  # auto-create prefix
    assert await b.claim(request("br1")) == 0
    assert await b.claim(request("br1", link("br1", kind="bridge"))) == 0
    assert await b.claim(request("eth0", link("eth0", kind=None))) == 0
    assert b.client.calls == []


async def test_a_tap_device_is_a_bridge_only_if_ovsdb_says_so():
    b = backend(bridges_named("pwtovs0"))
    assert await b.claim(request("pwtovs0", link("pwtovs0"))) == 100
    assert await b.claim(request("tap0", link("tap0"))) == 0
    assert len(b.client.calls) == 2


async def test_a_kernel_internal_port_is_not_a_bridge():
    b = backend(bridges_named("ovsbr"))
    assert await b.claim(request("ovsbr", link("ovsbr", kind="openvswitch"))) == 100
    assert await b.claim(request("vlan10", link("vlan10", kind="openvswitch"))) == 0


async def test_claims_when_ovs_is_not_running():
    b = backend(available=False)
    assert await b.claim(request("ovsnew")) == 10  # attach then says OVS is not running
    assert await b.claim(request("tap0", link("tap0"))) == 0
    assert await b.claim(request("ovsbr", link("ovsbr", kind="openvswitch"))) == 100
    assert b.client.calls == []


async def test_claims_when_the_socket_refuses():
    b = backend(lambda ops: OvsdbUnavailable("not running"))
    assert await b.claim(request("tap0", link("tap0"))) == 0


async def test_claims_with_a_bad_socket_setting_do_not_fail():
    b = OvsBackend(EngineConfig(), environ={"PIPEWORK_OVSDB": "tcp:198.18.0.1:6640"})
    assert await b.claim(request("tap0", link("tap0"))) == 0
    assert await b.claim(request("ovsnew")) == 10
    with pytest.raises(UsageError, match="only unix sockets"):
        b.validate(request("ovsnew"))


def test_check_accepts_what_it_knows():
    backend().validate(request(options={"datapath_type": "netdev"}, tag="10"))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"options": {"colour": "red"}}, "the ovs backend has no option 'colour'"),
        ({"options": {"mode": "bridge"}}, "the ovs backend has no option 'mode'"),
        (
            {"options": {"datapath_type": "Net Dev"}},
            "datapath_type='Net Dev' is not a datapath type",
        ),
        (
            {"direct_phys": True},
            "--direct-phys moves a NIC into the guest; ovsbr is an Open vSwitch",
        ),
        ({"tag": "8001"}, "VLAN ID 8001 is out of range"),
    ],
)
def test_check_refuses(kw, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as info:
        backend().validate(request(**kw))
    assert info.value.exit_code == 2
    if "option" in message:
        assert "datapath_type" in (info.value.hint or "")


def test_check_refuses_a_bad_default_datapath():
    b = backend(PIPEWORK_OVS_DATAPATH="user space")
    with pytest.raises(UsageError, match="PIPEWORK_OVS_DATAPATH='user space'"):
        b.validate(request())


def test_the_factory_reads_the_environment(monkeypatch):
    monkeypatch.setenv("OVS_RUNDIR", "/tmp/pwt-ovs-x")
    monkeypatch.delenv("PIPEWORK_OVSDB", raising=False)
    monkeypatch.setenv("PIPEWORK_OVS_DATAPATH", "netdev")
    (b,) = ovs.pipework_link_backends(EngineConfig(timeout=7))
    assert (b.name, b.default_ifname) == ("ovs", "eth1")
    assert b.client.path == "/tmp/pwt-ovs-x/db.sock" and b.client.timeout == 7
    assert b.default_datapath == "netdev"


class Removal:
    """A scripted OVSDB for ``_remove_port``: the lookups, then the removal."""

    def __init__(self, port=None, bridge=None, internal=(), holder=None, conflicts=0):
        self.port, self.bridge, self.internal, self.holder = port, bridge, internal, holder
        self.conflicts = conflicts
        self.removals: list[list[dict]] = []

    def __call__(self, ops):
        first = ops[0]
        if first["op"] == "select" and first["table"] == "Port":
            return [
                {"rows": [self.port] if self.port else []},
                {"rows": [self.bridge] if self.bridge else []},
                {"rows": [{"_uuid": ["uuid", u]} for u in self.internal]},
            ]
        if first["op"] == "select" and first["table"] == "Bridge":
            return [{"rows": [self.holder] if self.holder else []}]
        if first["op"] == "wait" and first["table"] == "Open_vSwitch":
            return [{}, {"rows": [{"ofport": ["set", []]}]}, {"rows": []}]
        self.removals.append(ops)
        if self.conflicts:
            self.conflicts -= 1
            return OvsdbError("refused", error="timed out")
        return [{}] * (len(ops) - 1) + [{"rows": [{"next_cfg": 12}]}]


async def test_removing_a_port_that_is_gone():
    script = Removal()
    b = backend(script)
    await b._remove_port("pwabc", MARKER, bridge="ovsbr", drop_bridge=True)
    assert script.removals == [] and len(b.client.calls) == 1


async def test_a_port_that_is_not_ours_is_left_alone():
    script = Removal(port=port_row(ids={}), bridge=bridge_row(ports=("p1",)))
    await backend(script)._remove_port("pwabc", MARKER, bridge="ovsbr", drop_bridge=True)
    assert script.removals == []


async def test_rollback_removes_our_port_and_our_empty_bridge():
    auto = {"pipework": "auto-created"}
    script = Removal(
        port=port_row(ids=MINE), bridge=bridge_row(ports=("p0", "p1"), ids=auto), internal=("p0",)
    )
    b = backend(script)
    await b._remove_port("pwabc", MARKER, bridge="ovsbr", drop_bridge=True)
    (ops,) = script.removals
    assert ops[0]["op"] == "wait" and by_op(ops, "mutate", "Open_vSwitch")[0]["mutations"][0][
        :2
    ] == [
        "bridges",
        "delete",
    ]
    # Then it waits for ovs-vswitchd to let go of the port.
    assert b.client.calls[-1][0]["where"] == [["cur_cfg", "<", 12]]


async def test_detach_keeps_the_bridge():
    auto = {"pipework": "auto-created"}
    script = Removal(
        port=port_row(ids=MINE), bridge=bridge_row(ports=("p0", "p1"), ids=auto), internal=("p0",)
    )
    await backend(script)._remove_port("pwabc", MARKER, bridge="ovsbr", drop_bridge=False)
    (ops,) = script.removals
    assert ops[0]["op"] == "mutate" and not by_op(ops, "mutate", "Open_vSwitch")[:-1]


async def test_a_port_moved_to_another_bridge_is_found_there():
    script = Removal(
        port=port_row(ids=MINE),
        bridge=bridge_row(ports=("p0",), ids={"pipework": "auto-created"}),
        internal=("p0",),
        holder=bridge_row(uuid="b2", name="other", ports=("p1",)),
    )
    await backend(script)._remove_port("pwabc", MARKER, bridge="ovsbr", drop_bridge=True)
    (ops,) = script.removals
    assert ops[0]["where"] == [["_uuid", "==", ["uuid", "b2"]]]
    assert len(ops) == 3  # just the port: "other" is not the bridge this attach made


async def test_a_conflicting_change_is_retried():
    script = Removal(port=port_row(ids=MINE), bridge=bridge_row(ports=("p1",)), conflicts=2)
    await backend(script)._remove_port("pwabc", MARKER, bridge="ovsbr", drop_bridge=False)
    assert len(script.removals) == 3


async def test_other_errors_are_not_retried():
    def answer(ops):
        if ops[0]["op"] == "select":
            return Removal(port=port_row(ids=MINE), bridge=bridge_row(ports=("p1",)))(ops)
        return OvsdbError("refused", error="referential integrity violation")

    b = backend(answer)
    with pytest.raises(OvsdbError):
        await b._remove_port("pwabc", MARKER, bridge="ovsbr", drop_bridge=False)
    assert len(b.client.calls) == 2


async def test_vswitchd_that_never_catches_up():
    b = backend(lambda ops: OvsdbError("refused", error="timed out"))
    with pytest.raises(
        TimeoutExpiredError, match="ovs-vswitchd did not apply the change to pwabc within 3 s"
    ) as info:
        await b._applied(5, port="pwabc", bridge="ovsbr")
    assert info.value.hint == "is ovs-vswitchd running? see its log"


async def test_detach_without_ovs_changes_nothing_and_says_what_to_do():
    b = backend(available=False)
    b.client = ScriptedOvsdb(
        lambda ops: OvsdbUnavailable("Open vSwitch is not running (no OVSDB socket at /x)")
    )  # type: ignore[assignment]
    ctx = DetachContext(marker=MARKER, host=None, guest_ns=None, guest_link=None)  # type: ignore[arg-type]
    with pytest.raises(OvsdbUnavailable, match="cannot remove port pwabc") as info:
        await b.detach(ctx)
    assert "ip link del pwabc" in (info.value.hint or "")


async def test_detach_of_an_attachment_without_host_side_does_nothing():
    b = backend(lambda ops: pytest.fail("no OVSDB request expected"))
    ctx = DetachContext(
        marker=Marker("netns:blue", "eth1", "ovs", "ovsbr"),
        host=None,
        guest_ns=None,
        guest_link=None,
    )  # type: ignore[arg-type]
    await b.detach(ctx)


# -- attach and detach against a fake kernel and a scripted OVSDB -----------------------------


class Ovsdb:
    """Answers each transaction by what it is, keeping a little state: the
    bridge (holding port p1 once added) and our port."""

    def __init__(self, *, bridge=True, port=None, conflicts=0, add_error=None, ofport=3):
        self.bridge = bridge_row(ports=("p0", "p1")) if bridge else None
        self.port = port
        self.conflicts = conflicts
        self.add_error = add_error
        self.ofport = ofport
        self.sent: list[str] = []
        self.ops: dict[str, list[list[dict]]] = {}

    @staticmethod
    def kind(ops) -> str:
        first = ops[0]
        if first["op"] == "select":
            return {"Open_vSwitch": "view", "Port": "lookup", "Bridge": "holder"}[first["table"]]
        if first["op"] == "wait" and first["table"] == "Open_vSwitch":
            return "applied"
        return "add" if any(op["op"] == "insert" for op in ops) else "remove"

    def __call__(self, ops):
        kind = self.kind(ops)
        self.sent.append(kind)
        self.ops.setdefault(kind, []).append(ops)
        committed = [{}] * (len(ops) - 1) + [{"rows": [{"next_cfg": 9}]}]
        if kind == "view":
            return view_results(bridge=self.bridge, port=self.port)
        if kind == "lookup":
            internal = {"rows": [{"_uuid": ["uuid", "p0"]}]}  # the bridge's own port
            return [{"rows": [self.port] if self.port else []}, {"rows": [self.bridge]}, internal]
        if kind == "applied":
            iface = {"ofport": self.ofport, "error": ["set", []]}
            return [{}, {"rows": [iface]}, {"rows": [{"datapath_id": ["set", ["00aa"]]}]}]
        if kind == "remove":
            self.port = None
            return committed
        if self.add_error is not None:
            error, self.add_error = self.add_error, None
            return error
        if self.conflicts:
            self.conflicts -= 1
            self.bridge = bridge_row(name=ops[0]["where"][0][2], ports=("p0", "p1"))
            return OvsdbError("refused", error="timed out")
        self.port = port_row(ids=MINE)
        return committed


async def context(net, attach: AttachSpec):
    host_link = await net.host.link(attach.host)
    host = host_link.ifname if host_link else attach.host
    marker = replace(MARKER, host=host, cfg=attach.fingerprint("ovs", host))
    return net.link_context(attach, marker, host_link=host_link)


async def test_attach_to_an_existing_bridge(net):
    net.kernel.add("host", "ovsbr", kind="tun", mtu=1450, up=True)
    db = Ovsdb()
    ctx = await context(net, AttachSpec(host="ovsbr", guest="netns:blue", tag="10"))
    glink = await backend(db).attach(ctx)
    assert glink == GuestLink(temp_ifname="pwttemp", host="ovsbr", host_ifname="pwabc", mtu=1450)
    assert db.sent == ["view", "add", "applied"]
    (port,) = by_op(db.ops["add"][0], "insert", "Port")
    assert port["row"]["tag"] == 10
    veth = net.kernel.find("host", "pwabc")
    assert veth.kind == "veth" and veth.up and veth.mtu == 1450
    assert Marker.parse(veth.alias) == ctx.marker
    assert net.kernel.find("guest", "pwttemp").mtu == 1450
    assert ctx.journal.steps == ["veth pwabc", "ovs port pwabc on ovsbr"]


async def test_a_bridge_created_meanwhile_is_used(net):
    db = Ovsdb(bridge=False, conflicts=1)
    ctx = await context(net, AttachSpec(host="ovsnew", guest="netns:blue"))
    glink = await backend(db).attach(ctx)
    assert db.sent == ["view", "add", "view", "add", "applied"]
    assert by_op(db.ops["add"][0], "insert", "Bridge") and not by_op(
        db.ops["add"][1], "insert", "Bridge"
    )
    assert ctx.journal.steps == ["veth pwabc", "ovs port pwabc on ovsnew"]  # not ours to remove
    assert glink.mtu == 1500


async def test_a_port_add_that_may_have_committed_is_undone(net):
    db = Ovsdb(bridge=False, add_error=TimeoutExpiredError("OVSDB at /fake did not answer"))
    ctx = await context(net, AttachSpec(host="ovsnew", guest="netns:blue"))
    with pytest.raises(TimeoutExpiredError):
        await backend(db).attach(ctx)
    assert ctx.journal.steps == ["veth pwabc", "ovs bridge ovsnew and port pwabc"]
    # It did commit after all: the bridge and our port are there.
    db.bridge = bridge_row(name="ovsnew", ports=("p0", "p1"), ids={"pipework": "auto-created"})
    db.port = port_row(ids=MINE)
    assert await ctx.journal.rollback() == []
    assert db.sent[-3:] == ["lookup", "remove", "applied"]
    (removal,) = db.ops["remove"]
    assert by_op(removal, "mutate", "Open_vSwitch")[0]["mutations"][0][:2] == ["bridges", "delete"]
    assert net.kernel.names("host") == [] and net.kernel.names("guest") == []


async def test_a_port_ovs_could_not_open_is_rolled_back(net):
    net.kernel.add("host", "ovsbr", kind="tun", up=True)
    db = Ovsdb(ofport=-1)
    ctx = await context(net, AttachSpec(host="ovsbr", guest="netns:blue"))
    with pytest.raises(HostInterfaceError, match="could not add pwabc to bridge ovsbr"):
        await backend(db).attach(ctx)
    await ctx.journal.rollback()
    assert db.port is None and db.sent[-3:] == ["lookup", "remove", "applied"]
    assert net.kernel.names("host") == ["ovsbr"] and net.kernel.names("guest") == []


async def test_a_stale_port_of_ours_goes_first(net):
    net.kernel.add("host", "ovsbr", kind="tun", up=True)
    db = Ovsdb(port=port_row(ids=MINE | {"pipework-cfg": "old"}))
    ctx = await context(net, AttachSpec(host="ovsbr", guest="netns:blue"))
    await backend(db).attach(ctx)
    assert db.sent == ["view", "lookup", "remove", "applied", "view", "add", "applied"]
    assert ctx.journal.steps == ["veth pwabc", "ovs port pwabc on ovsbr"]


async def test_an_mtu_too_large_makes_nothing(net):
    net.kernel.add("host", "ovsbr", kind="tun", up=True, max_mtu=65521)
    db = Ovsdb()
    ctx = await context(net, AttachSpec(host="ovsbr", guest="netns:blue", mtu=65535))
    with pytest.raises(HostInterfaceError, match="at most 65521"):
        await backend(db).attach(ctx)
    assert db.sent == ["view"] and net.kernel.names("host") == ["ovsbr"]
    assert ctx.journal.steps == []


async def test_detach_removes_the_port_then_the_veth(net):
    net.kernel.add("host", "ovsbr", kind="tun", up=True)
    db = Ovsdb()
    ctx = await context(net, AttachSpec(host="ovsbr", guest="netns:blue"))
    await backend(db).attach(ctx)
    ctx.journal.commit()
    detach = DetachContext(marker=ctx.marker, host=net.host, guest_ns=net.guest_ns, guest_link=None)
    await backend(db).detach(detach)
    assert db.sent[-3:] == ["lookup", "remove", "applied"] and db.port is None
    assert net.kernel.names("host") == ["ovsbr"] and net.kernel.names("guest") == []
    await backend(db).detach(detach)  # again: nothing to do
    assert db.sent[-1] == "lookup"


@pytest.mark.parametrize(
    ("port", "ofport", "healthy"),
    [
        (port_row(ids=MINE), 3, True),
        (port_row(ids=MINE), -1, False),  # OVS lost the device
        (port_row(ids=MINE), ["set", []], False),
        (None, None, False),  # someone removed the port
        (port_row(ids={}), 3, False),  # someone else's port now
    ],
    ids=["whole", "lost-device", "no-ofport", "removed", "taken-over"],
)
async def test_healthy(port, ofport, healthy):
    def answer(ops):
        assert [op["table"] for op in ops] == ["Port", "Interface"]
        iface = [{"ofport": ofport}] if ofport is not None else []
        return [{"rows": [port] if port else []}, {"rows": iface}]

    ctx = DetachContext(marker=MARKER, host=None, guest_ns=None, guest_link=None)  # type: ignore[arg-type]
    assert await backend(answer).healthy(ctx) is healthy
