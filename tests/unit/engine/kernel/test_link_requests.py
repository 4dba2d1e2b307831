"""The netlink requests pipework sends, checked as the bytes production sends.

Everything here runs the production code, ``Netns`` and ``rtnl`` (and the
backends, the bridge's VLAN requests, the static address provider, the
batched teardown above them), against ``support.fake_netlink``: a fake
kernel behind the socket ``Netns`` writes to. It decodes every request with
pyroute2's message classes (``Request.msg``) and by the kernel's attribute
numbers (``Request.wire``/``number``/``string``), applies it to tables of
links, addresses and routes per namespace, and answers with messages
pyroute2 encodes, which production decodes. So these tests check message
types, flags and attributes on the wire, what the fake kernel holds
afterwards, and what rolling back the journal does. No root needed.

No request of a built-in backend may need pyroute2's compiler (the
``allow_pyroute2`` fixture allows it, for the tests of the fallback).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import itertools
import os
import socket
import struct
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from support.fake_netlink import (
    AF_BRIDGE,
    IFA_ADDRESS,
    IFA_BROADCAST,
    IFA_F_NODAD,
    IFA_FLAGS,
    IFA_LOCAL,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_AF_SPEC,
    IFLA_ALT_IFNAME,
    IFLA_BR_VLAN_FILTERING,
    IFLA_BRIDGE_VLAN_INFO,
    IFLA_EXT_MASK,
    IFLA_GROUP,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_IPOIB_MODE,
    IFLA_IPOIB_PKEY,
    IFLA_IPVLAN_MODE,
    IFLA_LINK,
    IFLA_LINKINFO,
    IFLA_MACVLAN_MODE,
    IFLA_MASTER,
    IFLA_MTU,
    IFLA_NET_NS_FD,
    IFLA_PROP_LIST,
    IFLA_VLAN_ID,
    LOOKUPS,
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTA_PRIORITY,
    RTEXT_FILTER_SKIP_STATS,
    RTM_DELLINK,
    RTM_DELLINKPROP,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWLINKPROP,
    RTM_NEWROUTE,
    RTM_SETLINK,
    RTN_UNICAST,
    RTPROT_STATIC,
    VETH_INFO_PEER,
    FakeAddress,
    FakeNet,
    FakeRoute,
    Request,
)

from pipework.backends.addresses.static import StaticProvider
from pipework.backends.links.bridge import BridgeBackend
from pipework.backends.links.bridge.vlans import disable_vlan_filtering, vlan_filtering
from pipework.backends.links.dummy import DummyBackend
from pipework.backends.links.ipoib import IpoibBackend
from pipework.backends.links.ipvlan import IpvlanBackend
from pipework.backends.links.macvlan import MacvlanBackend
from pipework.backends.links.phys import PhysBackend
from pipework.backends.links.phys.record import NicRecords
from pipework.backends.links.vxlan import VxlanBackend
from pipework.engine import (
    BRIDGE_MARKER,
    AddressContext,
    AddressSpec,
    AttachSpec,
    ConflictError,
    DetachContext,
    EngineConfig,
    Guest,
    GuestInfo,
    GuestLink,
    HostInterfaceError,
    HostRequest,
    Journal,
    Link,
    LinkContext,
    LinkExists,
    Marker,
    NetlinkFailure,
    NoSuchLink,
    NotPermittedError,
    PipeworkError,
    UnsupportedError,
    UsageError,
)
from pipework.engine.kernel.teardown import deferred_deletes

pytestmark = pytest.mark.anyio

GUEST = "netns:blue"
CREATE = NLM_F_CREATE | NLM_F_EXCL
REQ_ACK = NLM_F_REQUEST | NLM_F_ACK
PVID_UNTAGGED = 0x2 | 0x4  # BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED
ARPHRD_INFINIBAND = 32
ARPHRD_LOOPBACK = 772
BACKENDS = {
    b.name: b
    for b in (
        BridgeBackend(),
        MacvlanBackend(),
        IpvlanBackend(),
        IpoibBackend(),
        DummyBackend(),
        PhysBackend(),
        VxlanBackend(),
    )
}


@pytest.fixture(autouse=True)
def phys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PhysBackend:
    """``--direct-phys``, its host records in a private RUN_DIR."""
    backend = BACKENDS["phys"]
    assert isinstance(backend, PhysBackend)
    monkeypatch.setattr(backend, "records", NicRecords(str(tmp_path)))
    return backend


@pytest.fixture(autouse=True)
def no_pyroute2(request, monkeypatch):
    """Every request is encoded by rtnl.py: pyroute2's compiler is never asked
    (unless the test asks for ``allow_pyroute2``)."""
    if "allow_pyroute2" in request.fixturenames:
        return

    def refuse(*args):
        raise AssertionError(f"pyroute2 asked to compile {args}")

    monkeypatch.setattr("pipework.engine.kernel.netlink._pyroute2_compile", refuse)


@pytest.fixture
def allow_pyroute2():
    """The test exercises pyroute2's compiler (the fallback for unknown attributes)."""


def hash10(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:10]


def spec(host: str, **kwargs) -> AttachSpec:
    return AttachSpec(host=host, guest=GUEST, **kwargs)


@asynccontextmanager
async def no_lock(name: str):
    yield


async def context(net: FakeNet, kind: str, attach: AttachSpec) -> LinkContext:
    """A LinkContext as the engine builds one; the kernel's log starts empty."""
    backend = BACKENDS[kind]
    host_link = await net.host.link(attach.host)
    ifname = attach.ifname or backend.default_ifname
    host = host_link.ifname if host_link else attach.host
    marker = Marker(
        guest=GUEST,
        ifname=ifname,
        kind=kind,
        host=host,
        hostif=attach.host_ifname or "pw" + hash10(GUEST, ifname),
        addr="static",
        cfg=attach.fingerprint(kind, host),
    )
    net.kernel.log.clear()
    return LinkContext(
        spec=attach,
        guest=Guest(GuestInfo(name="blue", key=GUEST, runtime="netns"), net.guest_fd),
        host=net.host,
        guest_ns=net.guest_ns,
        journal=Journal(),
        host_link=host_link,
        ifname=ifname,
        temp_ifname="pwt" + hash10(GUEST, ifname, "tmp"),
        host_ifname=marker.hostif,
        marker=marker,
        lock=no_lock,
    )


async def attached(net: FakeNet, ctx: LinkContext, glink: GuestLink) -> DetachContext:
    """Finish the attach as the engine does (rename, marker, up), commit, and
    return what a later detach would get; the kernel's log starts empty."""
    ctx.journal.commit()
    created = await net.guest_ns.link(glink.temp_ifname)
    final = replace(ctx.marker, hostif=glink.host_ifname or "", state=glink.state)
    await net.guest_ns.set(created.index, ifname=ctx.ifname, ifalias=final.format(), state="up")
    link = await net.guest_ns.link(ctx.ifname)
    net.kernel.log.clear()
    return DetachContext(marker=final, host=net.host, guest_ns=net.guest_ns, guest_link=link)


def only(requests: list[Request], type_: int, kind: str | None = None) -> Request:
    """The one request of this message type (and link kind)."""
    found = [r for r in requests if r.type == type_ and (kind is None or r.kind == kind)]
    assert len(found) == 1, requests
    return found[0]


def is_create(r: Request) -> bool:
    return r.type == RTM_NEWLINK and r.flags & CREATE == CREATE


def plain_set(r: Request) -> bool:
    return r.type == RTM_NEWLINK and not r.flags & NLM_F_CREATE


# -- claims and checks: which backend, and what it refuses before touching anything --

CLAIMS = [
    # id, host name, the host link (None: missing), --direct-phys, every non-zero claim
    ("bridge", "br0", {"kind": "bridge"}, False, {"bridge": 100}),
    ("missing-br", "br1", None, False, {"bridge": 10}),
    ("nic", "eth0", {}, False, {"macvlan": 1}),
    ("vlan-if", "eth0.10", {"kind": "vlan"}, False, {"macvlan": 1}),
    ("existing-dummy", "dummy0", {"kind": "dummy"}, False, {"macvlan": 1}),
    ("missing-dummy", "dummy0", None, False, {"dummy": 10}),
    ("missing-other", "eth9", None, False, {}),
    ("tun", "tap0", {"kind": "tun"}, False, {}),
    ("openvswitch", "ovs0", {"kind": "openvswitch"}, False, {}),
    ("loopback", "lo", {"link_type": ARPHRD_LOOPBACK}, False, {}),
    ("infiniband", "ib0", {"link_type": ARPHRD_INFINIBAND}, False, {"ipoib": 100}),
    ("direct-phys-nic", "eth0", {}, True, {"phys": 200, "macvlan": 1}),
    ("direct-phys-bridge", "br0", {"kind": "bridge"}, True, {"phys": 200, "bridge": 100}),
    ("direct-phys-missing", "eth9", None, True, {"phys": 200}),
]


@pytest.mark.parametrize(
    ("host", "link", "direct_phys", "expected"), [c[1:] for c in CLAIMS], ids=[c[0] for c in CLAIMS]
)
async def test_claims(net, host, link, direct_phys, expected):
    if link is not None:
        net.kernel.add("host", host, **link)
    request = HostRequest(
        spec=spec(host, direct_phys=direct_phys), host_link=await net.host.link(host), host=net.host
    )
    claims = {name: await backend.claim(request) for name, backend in BACKENDS.items()}
    assert claims == {name: expected.get(name, 0) for name in BACKENDS}


REFUSALS = [
    # id, backend, host link (name, attrs), request, message, hint
    ("bridge-direct-phys", "bridge", ("br0", {"kind": "bridge"}), {"direct_phys": True},
     "--direct-phys moves a NIC into the guest; br0 is a bridge", None),
    ("phys-bridge", "phys", ("br0", {"kind": "bridge"}), {"direct_phys": True},
     "--direct-phys moves a NIC into the guest; br0 is a bridge",
     "name a network card, or drop --direct-phys"),
    ("phys-loopback", "phys", ("lo", {"link_type": ARPHRD_LOOPBACK}), {"direct_phys": True},
     "--direct-phys moves a NIC into the guest; lo is the loopback",
     "name a network card, or drop --direct-phys"),
    ("phys-vlan", "phys", ("eth0", {}), {"direct_phys": True, "tag": "10"},
     "phys interfaces cannot carry a VLAN tag", "drop @VID / --vlan"),
    ("macvlan-vlan4095", "macvlan", ("eth0", {}), {"tag": "4095"},
     "VLAN ID 4095 is out of range", "use 1 to 4094"),
    ("ipvlan-vlan4095", "ipvlan", ("eth0", {}), {"tag": "4095"},
     "VLAN ID 4095 is out of range", "use 1 to 4094"),
    ("bridge-vlan4095", "bridge", ("br0", {"kind": "bridge"}), {"tag": "4095"},
     "VLAN ID 4095 is out of range", "use 1 to 4094"),
    ("macvlan-pkey-as-vlan", "macvlan", ("eth0", {}), {"tag": "8001"},
     "VLAN ID 8001 is out of range", "use 1 to 4094"),
    ("bridge-pkey", "bridge", ("br0", {"kind": "bridge"}), {"pkey": 0x8001},
     "a partition key is for IPoIB, not for Linux bridges", None),
    ("macvlan-option", "macvlan", ("eth0", {}), {"options": {"foo": "1"}},
     "the macvlan backend has no option 'foo'", "its options: mode"),
    ("bridge-option", "bridge", ("br0", {"kind": "bridge"}), {"options": {"mode": "vepa"}},
     "the bridge backend has no option 'mode'", "its options: none"),
    ("phys-option", "phys", ("eth0", {}), {"direct_phys": True, "options": {"mode": "x"}},
     "the phys backend has no option 'mode'", "its options: none"),
    ("dummy-option", "dummy", None, {"options": {"mtu": "1"}},
     "the dummy backend has no option 'mtu'", "its options: none"),
    ("macvlan-mode", "macvlan", ("eth0", {}), {"options": {"mode": "bogus"}},
     "macvlan has no mode 'bogus'", "use one of bridge, private, vepa, passthru"),
    ("ipvlan-mode", "ipvlan", ("eth0", {}), {"options": {"mode": "l4"}},
     "ipvlan has no mode 'l4'", "use one of l2, l3, l3s"),
    ("ipoib-mode", "ipoib", ("ib0", {"link_type": ARPHRD_INFINIBAND}),
     {"options": {"mode": "bridge"}}, "ipoib has no mode 'bridge'",
     "use one of datagram, connected"),
    ("ipvlan-mac", "ipvlan", ("eth0", {}), {"mac": "02:aa:bb:cc:dd:ee"},
     "ipvlan interfaces cannot take a MAC address", "drop the MAC"),
    ("ipoib-mac", "ipoib", ("ib0", {"link_type": ARPHRD_INFINIBAND}),
     {"mac": "02:aa:bb:cc:dd:ee", "tag": "8001"},
     "IPoIB interfaces cannot take a MAC address (the InfiniBand adapter sets it)",
     "drop the MAC from MACSPEC; @PKEY alone selects the partition"),
    ("ipoib-vlan", "ipoib", ("ib0", {"link_type": ARPHRD_INFINIBAND}), {"vlan": 10},
     "IPoIB takes a partition key, not a VLAN ID", "write @PKEY in hex, e.g. @8001"),
    ("macvlan-direct-phys", "macvlan", ("eth0", {}), {"direct_phys": True},
     "--direct-phys moves a NIC into the guest; it does not apply to macvlan", None),
    ("dummy-vlan", "dummy", None, {"tag": "10"},
     "dummy interfaces cannot carry a VLAN tag", "drop @VID / --vlan"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "host", "given", "message", "hint"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
async def test_check_refuses_in_one_line(net, kind, host, given, message, hint):
    name, attrs = host or ("dummy0", None)
    if attrs is not None:
        net.kernel.add("host", name, **attrs)
    request = HostRequest(
        spec=spec(name, **given), host_link=await net.host.link(name), host=net.host
    )
    net.kernel.log.clear()
    with pytest.raises(UsageError) as err:
        BACKENDS[kind].validate(request)
    assert (err.value.message, err.value.hint, err.value.exit_code) == (message, hint, 2)
    assert "\n" not in str(err.value)
    assert net.kernel.log == []


async def test_direct_phys_on_a_bridge_is_refused_by_the_backend_that_wins(net):
    net.kernel.add("host", "br0", kind="bridge", up=True)
    request = HostRequest(
        spec=spec("br0", direct_phys=True), host_link=await net.host.link("br0"), host=net.host
    )
    scores = {name: await backend.claim(request) for name, backend in BACKENDS.items()}
    winner = max(scores, key=scores.__getitem__)
    assert winner == "phys"
    with pytest.raises(UsageError, match=r"^--direct-phys moves a NIC into the guest; br0 is a"):
        BACKENDS[winner].validate(request)


@pytest.mark.parametrize("given", [{"vlan": 0}, {"vlan": 4095}, {"tag": "0"}])
def test_vlan_0_and_4095_are_refused_in_the_request(given):
    with pytest.raises(UsageError, match=r"^(VLAN ID (0|4095) is out of range|@0 is neither)"):
        spec("eth0", **given)


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        ("macvlan", {}),
        ("macvlan", {"tag": "10", "options": {"mode": "vepa"}}),
        ("ipvlan", {"options": {"mode": "l3s"}}),
        ("ipoib", {"tag": "8001", "options": {"mode": "connected"}}),
        ("bridge", {"tag": "4094"}),
        ("phys", {"direct_phys": True, "mac": "02:aa:bb:cc:dd:ee"}),
        ("dummy", {"mtu": 9000}),
    ],
)
async def test_check_accepts_what_the_backend_can_do(net, kind, given):
    net.kernel.add("host", "if0", kind="bridge" if kind == "bridge" else None)
    request = HostRequest(
        spec=spec("if0", **given), host_link=await net.host.link("if0"), host=net.host
    )
    BACKENDS[kind].validate(request)


# -- Linux bridge -----------------------------------------------------------------------


async def test_bridge_veth_pair_goes_into_the_bridge_and_the_guest(net):
    br0 = net.kernel.add("host", "br0", kind="bridge", up=True, mtu=1450)
    ctx = await context(net, "bridge", spec("br0"))
    glink = await BACKENDS["bridge"].attach(ctx)

    add, enslave = net.kernel.changes()  # enslaved, marked and up in one request
    assert (add.ns, add.type, add.flags & CREATE, add.kind) == ("host", RTM_NEWLINK, CREATE, "veth")
    assert add.string(IFLA_IFNAME) == ctx.host_ifname == "pw" + hash10(GUEST, "eth1")
    assert add.number(IFLA_MTU) == 1450
    peer = add.msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "VETH_INFO_PEER")
    assert peer.get("IFLA_IFNAME") == ctx.temp_ifname
    assert peer.get("IFLA_NET_NS_FD") == net.guest_fd
    assert peer.get("IFLA_MTU") == 1450
    veth = net.kernel.find("host", ctx.host_ifname)
    assert plain_set(enslave) and enslave.index == veth.index
    assert enslave.number(IFLA_MASTER) == br0.index
    assert enslave.string(IFLA_IFALIAS) == ctx.marker.format()
    assert (enslave.msg["flags"], enslave.msg["change"]) == (IFF_UP, IFF_UP)
    assert not [r for r in net.kernel.log if r.family == AF_BRIDGE]  # no VLAN: no vlan_filter

    assert net.kernel.names("guest") == [ctx.temp_ifname]
    assert glink == GuestLink(
        temp_ifname=ctx.temp_ifname, host="br0", host_ifname=ctx.host_ifname, mtu=1450
    )
    assert ctx.journal.steps == [f"veth {ctx.host_ifname}"]


async def test_bridge_created_on_demand_is_marked_and_removed_on_rollback(net):
    before = net.kernel.snapshot()
    ctx = await context(net, "bridge", spec("br1"))
    await BACKENDS["bridge"].attach(ctx)

    create_bridge, mark, add_veth = net.kernel.changes()[:3]
    assert is_create(create_bridge) and create_bridge.kind == "bridge"
    assert create_bridge.string(IFLA_IFNAME) == "br1"
    bridge = net.kernel.find("host", "br1")
    assert plain_set(mark) and mark.index == bridge.index
    assert mark.string(IFLA_IFALIAS) == BRIDGE_MARKER
    assert (mark.msg["flags"], mark.msg["change"]) == (IFF_UP, IFF_UP)
    assert is_create(add_veth) and add_veth.kind == "veth"
    assert ctx.journal.steps == ["bridge br1", f"veth {ctx.host_ifname}"]

    veth = net.kernel.find("host", ctx.host_ifname)
    net.kernel.log.clear()
    assert await ctx.journal.rollback() == []
    assert [(r.type, r.index) for r in net.kernel.changes()] == [
        (RTM_DELLINK, veth.index),
        (RTM_DELLINK, bridge.index),
    ]
    assert net.kernel.snapshot() == before


@pytest.mark.parametrize(
    ("vid", "filtering_before"),
    [(10, 0), (10, 1), (1, 0)],
    ids=["vid10", "vid10-filtering-on-already", "vid1"],
)
async def test_bridge_vlan_filtering_and_port_vlan(net, vid, filtering_before):
    br0 = net.kernel.add("host", "br0", kind="bridge", up=True, vlan_filtering=filtering_before)
    ctx = await context(net, "bridge", spec("br0", tag=str(vid)))
    await BACKENDS["bridge"].attach(ctx)
    veth = net.kernel.find("host", ctx.host_ifname)
    changes = net.kernel.changes()

    filtering = [r for r in changes if r.index == br0.index]
    if filtering_before:
        assert filtering == []
    else:
        (turn_on,) = filtering
        assert plain_set(turn_on) and turn_on.kind == "bridge"
        assert turn_on.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_BR_VLAN_FILTERING) == 1
        assert changes.index(turn_on) == 0  # before the veth exists
    add_vlan = only(changes, RTM_SETLINK)
    assert (add_vlan.family, add_vlan.index) == (AF_BRIDGE, veth.index)
    flags_vid = add_vlan.wire(IFLA_AF_SPEC, IFLA_BRIDGE_VLAN_INFO)
    assert struct.unpack("=HH", flags_vid) == (PVID_UNTAGGED, vid)
    removals = [r for r in changes if r.type == RTM_DELLINK]
    if vid == 1:
        assert removals == []
    else:
        (drop_vid1,) = removals
        assert (drop_vid1.family, drop_vid1.index) == (AF_BRIDGE, veth.index)
        assert struct.unpack("=HH", drop_vid1.wire(IFLA_AF_SPEC, IFLA_BRIDGE_VLAN_INFO))[1] == 1
    up = changes[-1]
    assert plain_set(up) and up.index == veth.index and up.msg["flags"] == IFF_UP

    assert br0.vlan_filtering == 1
    assert veth.port_vlans == {vid: PVID_UNTAGGED}


async def test_bridge_host_side_name_taken(net):
    net.kernel.add("host", "br0", kind="bridge", up=True)
    net.kernel.add("host", "pw" + hash10(GUEST, "eth1"))
    before = net.kernel.snapshot()
    ctx = await context(net, "bridge", spec("br0"))
    with pytest.raises(HostInterfaceError) as err:
        await BACKENDS["bridge"].attach(ctx)
    assert err.value.message == f"host-side interface name {ctx.host_ifname} is already taken"
    assert ctx.journal.steps == []
    assert net.kernel.snapshot() == before


# -- children of a host interface: macvlan, ipvlan, IPoIB ---------------------------


@pytest.mark.parametrize(
    ("mode", "wire_mode"),
    [(None, 4), ("bridge", 4), ("private", 1), ("vepa", 2), ("passthru", 8)],
)
async def test_macvlan_child_request(net, mode, wire_mode):
    eth0 = net.kernel.add("host", "eth0", up=True, mtu=9000)
    options = {"mode": mode} if mode else {}
    ctx = await context(net, "macvlan", spec("eth0", options=options))
    glink = await BACKENDS["macvlan"].attach(ctx)

    (add,) = net.kernel.changes()
    assert (add.ns, add.type, add.flags & CREATE) == ("host", RTM_NEWLINK, CREATE)
    assert add.string(IFLA_LINKINFO, IFLA_INFO_KIND) == "macvlan"
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_MACVLAN_MODE) == wire_mode
    assert add.string(IFLA_IFNAME) == ctx.temp_ifname
    assert add.number(IFLA_LINK) == eth0.index
    assert add.number(IFLA_NET_NS_FD) == net.guest_fd
    assert add.number(IFLA_MTU) == 9000  # the parent's
    assert net.kernel.names("guest") == [ctx.temp_ifname]
    assert glink == GuestLink(temp_ifname=ctx.temp_ifname, host="eth0", mtu=9000)
    # The child's inverse deletes it by its temporary name (the engine's own
    # inverse, recorded later, deletes it by index once it is renamed).
    assert ctx.journal.steps == ["macvlan interface in blue"]


@pytest.mark.parametrize(("mode", "wire_mode"), [(None, 0), ("l2", 0), ("l3", 1), ("l3s", 2)])
async def test_ipvlan_child_request(net, mode, wire_mode):
    eth0 = net.kernel.add("host", "eth0", up=True)
    options = {"mode": mode} if mode else {}
    ctx = await context(net, "ipvlan", spec("eth0", options=options, mtu=1400))
    glink = await BACKENDS["ipvlan"].attach(ctx)

    (add,) = net.kernel.changes()
    assert is_create(add) and add.string(IFLA_LINKINFO, IFLA_INFO_KIND) == "ipvlan"
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_IPVLAN_MODE) == wire_mode
    assert add.number(IFLA_LINK) == eth0.index
    assert add.number(IFLA_NET_NS_FD) == net.guest_fd
    assert add.number(IFLA_MTU) == 1400  # asked for, below the parent's
    assert glink.mtu == 1400


@pytest.mark.parametrize(
    ("given", "pkey", "mode"),
    [
        ({}, None, None),
        ({"tag": "8001"}, 0x8001, None),
        ({"pkey": 0x8001}, 0x8001, None),
        ({"tag": "0x7fff", "options": {"mode": "datagram"}}, 0x7FFF, 0),
        ({"options": {"mode": "connected"}}, None, 1),
    ],
    ids=["default", "@8001", "--pkey", "@0x7fff-datagram", "connected"],
)
async def test_ipoib_child_request(net, given, pkey, mode):
    ib0 = net.kernel.add("host", "ib0", up=True, mtu=2044, link_type=ARPHRD_INFINIBAND)
    ctx = await context(net, "ipoib", spec("ib0", **given))
    await BACKENDS["ipoib"].attach(ctx)

    assert ctx.ifname == "ib0"  # the backend's default guest name
    (add,) = net.kernel.changes()
    assert is_create(add) and add.string(IFLA_LINKINFO, IFLA_INFO_KIND) == "ipoib"
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_IPOIB_PKEY) == pkey
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_IPOIB_MODE) == mode
    assert add.number(IFLA_LINK) == ib0.index
    assert add.number(IFLA_NET_NS_FD) == net.guest_fd
    assert add.number(IFLA_MTU) == 2044


@pytest.mark.parametrize(
    ("kind", "parent", "limit"),
    [
        ("macvlan", {"mtu": 1500}, 1500),
        ("ipvlan", {"mtu": 1500}, 1500),
        ("ipoib", {"mtu": 2044, "link_type": ARPHRD_INFINIBAND}, 2044),
        ("bridge", {"mtu": 1500, "max_mtu": 9000, "kind": "bridge"}, 9000),
    ],
)
async def test_mtu_above_what_the_parent_allows(net, kind, parent, limit):
    net.kernel.add("host", "if0", up=True, **parent)
    before = net.kernel.snapshot()
    ctx = await context(net, kind, spec("if0", mtu=limit + 1))
    with pytest.raises(HostInterfaceError) as err:
        await BACKENDS[kind].attach(ctx)
    assert err.value.message == f"MTU {limit + 1} is larger than if0 allows (at most {limit})"
    assert err.value.hint == f"choose --mtu {limit} or less, or raise if0's MTU"
    assert net.kernel.changes() == []
    assert net.kernel.snapshot() == before


# -- 802.1q sub-interfaces under macvlan and ipvlan ---------------------------------


@pytest.mark.parametrize("kind", ["macvlan", "ipvlan"])
async def test_vlan_subinterface_created_marked_and_used_as_parent(net, kind):
    eth0 = net.kernel.add("host", "eth0", up=True, mtu=1600)
    ctx = await context(net, kind, spec("eth0", tag="10"))
    glink = await BACKENDS[kind].attach(ctx)

    changes = net.kernel.changes()
    add_vlan = only(changes, RTM_NEWLINK, "vlan")
    assert add_vlan.flags & CREATE == CREATE
    assert add_vlan.string(IFLA_IFNAME) == "eth0.10"
    assert add_vlan.number(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_VLAN_ID) == 10
    assert add_vlan.number(IFLA_LINK) == eth0.index
    assert add_vlan.number(IFLA_NET_NS_FD) is None  # it stays on the host
    assert add_vlan.number(IFLA_MTU) == 1600
    vlan = net.kernel.find("host", "eth0.10")
    mark = next(r for r in changes if plain_set(r) and r.index == vlan.index)
    assert mark.string(IFLA_IFALIAS) == BRIDGE_MARKER
    assert vlan.up and vlan.alias == BRIDGE_MARKER
    child = only(changes, RTM_NEWLINK, kind)
    assert changes.index(child) > changes.index(add_vlan)
    assert child.number(IFLA_LINK) == vlan.index
    assert child.number(IFLA_NET_NS_FD) == net.guest_fd
    assert (glink.host, glink.state) == ("eth0.10", "eth0.10")
    assert ctx.journal.steps[0] == "VLAN interface eth0.10"


async def test_vlan_creator_counts_as_a_user(net):
    net.kernel.add("host", "eth0", up=True)
    ctx = await context(net, "macvlan", spec("eth0", tag="10"))
    await BACKENDS["macvlan"].attach(ctx)
    vlan = net.kernel.find("host", "eth0.10")
    assert vlan.altnames == ["pw-" + hash10(GUEST, "eth1")]


async def test_pipework_vlan_subinterface_is_shared_with_an_altname(net):
    eth0 = net.kernel.add("host", "eth0", up=True)
    vlan = net.kernel.add(
        "host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10, up=True,
        alias=BRIDGE_MARKER, altnames=["pw-0123456789"],
    )  # fmt: skip
    ctx = await context(net, "macvlan", spec("eth0", tag="10"))
    await BACKENDS["macvlan"].attach(ctx)

    use, child = net.kernel.changes()
    user = "pw-" + hash10(GUEST, "eth1")
    assert (use.type, use.index) == (RTM_NEWLINKPROP, vlan.index)
    assert use.flags & (NLM_F_CREATE | NLM_F_APPEND) == NLM_F_CREATE | NLM_F_APPEND
    assert use.string(IFLA_PROP_LIST, IFLA_ALT_IFNAME) == user
    assert is_create(child) and child.number(IFLA_LINK) == vlan.index
    assert vlan.altnames == ["pw-0123456789", user]
    assert ctx.journal.steps == ["use of eth0.10", "macvlan interface in blue"]


async def test_users_own_vlan_subinterface_is_used_as_it_is(net):
    eth0 = net.kernel.add("host", "eth0", up=True)
    vlan = net.kernel.add("host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10)
    ctx = await context(net, "ipvlan", spec("eth0", tag="10"))
    await BACKENDS["ipvlan"].attach(ctx)

    bring_up, child = net.kernel.changes()
    assert plain_set(bring_up) and bring_up.index == vlan.index
    assert bring_up.string(IFLA_IFALIAS) is None and bring_up.msg["flags"] == IFF_UP
    assert child.number(IFLA_LINK) == vlan.index
    assert vlan.alias is None and vlan.altnames == []
    assert ctx.journal.steps == ["ipvlan interface in blue"]


async def test_vlan_name_taken_by_something_else(net):
    net.kernel.add("host", "eth0", up=True)
    net.kernel.add("host", "eth0.10", kind="dummy")
    ctx = await context(net, "macvlan", spec("eth0", tag="10"))
    with pytest.raises(HostInterfaceError) as err:
        await BACKENDS["macvlan"].attach(ctx)
    assert err.value.message == "eth0.10 exists but is not VLAN 10 of eth0"
    assert net.kernel.changes() == []


async def test_vlan_subinterface_name_fits_ifnamsiz(net):
    net.kernel.add("host", "enx0123456789ab", up=True)
    ctx = await context(net, "macvlan", spec("enx0123456789ab", tag="4094"))
    await BACKENDS["macvlan"].attach(ctx)
    add_vlan = only(net.kernel.changes(), RTM_NEWLINK, "vlan")
    assert add_vlan.string(IFLA_IFNAME) == "enx0123456.4094"


async def test_detach_without_a_vlan_leaves_the_child_to_the_engine(net):
    net.kernel.add("host", "eth0", up=True)
    ctx = await context(net, "macvlan", spec("eth0"))
    detach = await attached(net, ctx, await BACKENDS["macvlan"].attach(ctx))
    await BACKENDS["macvlan"].detach(detach)
    assert net.kernel.changes() == []


async def test_detach_from_the_users_vlan_deletes_only_the_child(net):
    eth0 = net.kernel.add("host", "eth0", up=True)
    net.kernel.add("host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10, up=True)
    ctx = await context(net, "macvlan", spec("eth0", tag="10"))
    detach = await attached(net, ctx, await BACKENDS["macvlan"].attach(ctx))
    await BACKENDS["macvlan"].detach(detach)

    (delete,) = net.kernel.changes()
    assert (delete.ns, delete.type, delete.index) == ("guest", RTM_DELLINK, detach.guest_link.index)
    assert net.kernel.names("host") == ["eth0", "eth0.10"]


@pytest.mark.parametrize("others", [[], ["pw-0123456789"]], ids=["last-user", "not-last"])
async def test_detach_drops_its_altname_and_deletes_with_the_last_user(net, others):
    eth0 = net.kernel.add("host", "eth0", up=True)
    vlan = net.kernel.add(
        "host", "eth0.10", kind="vlan", parent=eth0.index, vlan_id=10, up=True,
        alias=BRIDGE_MARKER, altnames=list(others),
    )  # fmt: skip
    ctx = await context(net, "macvlan", spec("eth0", tag="10"))
    detach = await attached(net, ctx, await BACKENDS["macvlan"].attach(ctx))
    await BACKENDS["macvlan"].detach(detach)

    changes = net.kernel.changes()
    assert (changes[0].ns, changes[0].type) == ("guest", RTM_DELLINK)
    assert changes[0].index == detach.guest_link.index
    drop = changes[1]
    assert (drop.ns, drop.type, drop.index) == ("host", RTM_DELLINKPROP, vlan.index)
    assert drop.string(IFLA_PROP_LIST, IFLA_ALT_IFNAME) == "pw-" + hash10(GUEST, "eth1")
    if others:
        assert len(changes) == 2
        assert vlan.altnames == others
    else:
        assert [(r.type, r.index) for r in changes[2:]] == [(RTM_DELLINK, vlan.index)]
        assert net.kernel.names("host") == ["eth0"]


async def test_detaching_a_second_user_keeps_the_vlan_of_the_first(net):
    """A creates eth0.10, B shares it; B leaves: A's child must keep its parent."""
    net.kernel.add("host", "eth0", up=True)
    first = await context(net, "macvlan", spec("eth0", tag="10"))
    await attached(net, first, await BACKENDS["macvlan"].attach(first))
    second = await context(net, "macvlan", spec("eth0", tag="10", ifname="eth2"))
    detach = await attached(net, second, await BACKENDS["macvlan"].attach(second))
    await BACKENDS["macvlan"].detach(detach)
    assert net.kernel.names("host") == ["eth0", "eth0.10"]
    assert net.kernel.names("guest") == ["eth1"]


# -- dummy ------------------------------------------------------------------------------


async def test_dummy_is_created_in_the_guest(net):
    ctx = await context(net, "dummy", spec("dummy0", mtu=9000))
    glink = await BACKENDS["dummy"].attach(ctx)

    (add,) = net.kernel.changes()
    assert (add.ns, add.type, add.flags & CREATE) == ("guest", RTM_NEWLINK, CREATE)
    assert add.string(IFLA_LINKINFO, IFLA_INFO_KIND) == "dummy"
    assert add.string(IFLA_IFNAME) == ctx.temp_ifname
    assert add.number(IFLA_NET_NS_FD) is None and add.number(IFLA_LINK) is None
    assert net.kernel.names("guest") == [ctx.temp_ifname]
    assert net.kernel.names("host") == []
    assert glink == GuestLink(temp_ifname=ctx.temp_ifname, host="", mtu=9000)


# -- vxlan ------------------------------------------------------------------------------


async def test_vxlan_is_made_in_the_host_with_the_guest_as_its_home(net):
    ul0 = net.kernel.add("host", "ul0", up=True, mtu=1500)
    options = {"vni": "42", "remote": "198.18.9.2", "dev": "ul0"}
    ctx = await context(net, "vxlan", spec("vxlan0", kind="vxlan", options=options))
    glink = await BACKENDS["vxlan"].attach(ctx)

    (add,) = net.kernel.changes()
    assert (add.ns, add.type, add.flags & CREATE) == ("host", RTM_NEWLINK, CREATE)
    assert add.string(IFLA_LINKINFO, IFLA_INFO_KIND) == "vxlan"
    assert add.number(IFLA_NET_NS_FD) == net.guest_fd
    assert add.number(IFLA_MTU) == 1450  # the underlay's less 50
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, 1) == 42  # IFLA_VXLAN_ID
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, 3) == ul0.index  # IFLA_VXLAN_LINK
    assert net.kernel.names("guest") == [ctx.temp_ifname]
    assert glink == GuestLink(temp_ifname=ctx.temp_ifname, host="vxlan0", mtu=1450)


async def test_vxlan_hostif_is_the_underlay_when_it_exists(net):
    ul0 = net.kernel.add("host", "ul0", up=True, mtu=9000)
    options = {"vni": "7", "remote": "2001:db8::2"}
    ctx = await context(net, "vxlan", spec("ul0", kind="vxlan", options=options))
    glink = await BACKENDS["vxlan"].attach(ctx)
    (add,) = net.kernel.changes()
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, 3) == ul0.index
    assert glink.mtu == 9000 - 70 and glink.host == "ul0"


@pytest.mark.parametrize(
    ("options", "mtu", "message"),
    [
        ({"dev": "nope0"}, None, "vxlan underlay nope0 does not exist"),
        ({"dev": "ul0"}, 1451, "MTU 1451 is larger than a vxlan interface over ul0 carries"),
    ],
)
async def test_vxlan_refuses_before_anything_is_made(net, options, mtu, message):
    net.kernel.add("host", "ul0", up=True, mtu=1500)
    options = {"vni": "42", "remote": "198.18.9.2", **options}
    ctx = await context(net, "vxlan", spec("vxlan0", kind="vxlan", options=options, mtu=mtu))
    with pytest.raises(HostInterfaceError, match=message):
        await BACKENDS["vxlan"].attach(ctx)
    assert net.kernel.changes() == [] and net.kernel.names("guest") == []


# -- phys (--direct-phys) -------------------------------------------------------------


async def test_phys_moves_the_nic_in_one_request(net, phys):
    eth2 = net.kernel.add("host", "eth2", up=True, mac="52:54:00:12:34:56")
    ctx = await context(net, "phys", spec("eth2", direct_phys=True))
    glink = await phys.attach(ctx)

    (move,) = net.kernel.changes()
    assert (move.ns, move.type, move.index) == ("host", RTM_NEWLINK, eth2.index)
    assert not move.flags & NLM_F_CREATE
    assert move.number(IFLA_NET_NS_FD) == net.guest_fd
    assert move.string(IFLA_IFNAME) == ctx.temp_ifname
    assert move.kind is None and move.msg["change"] == 0
    assert net.kernel.names("host") == []
    assert net.kernel.names("guest") == [ctx.temp_ifname]
    assert glink.owned is False
    assert (glink.host, glink.state) == ("eth2", "52:54:00:12:34:56,up")
    assert ctx.journal.steps == ["the record of eth2", "eth2 back to the host"]
    record = phys.records.read(ctx.marker.guest, ctx.marker.ifname)
    assert record is not None and (record.name, record.mac, record.up) == (
        "eth2", "52:54:00:12:34:56", True,
    )  # fmt: skip
    assert record.guest_index == eth2.index
    path = phys.records.path(ctx.marker.guest, ctx.marker.ifname)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


async def test_phys_missing_nic(net, phys):
    ctx = await context(net, "phys", spec("eth9", direct_phys=True))
    with pytest.raises(HostInterfaceError) as err:
        await phys.attach(ctx)
    assert err.value.message == "eth9 does not exist"
    assert net.kernel.changes() == []


@pytest.mark.parametrize("was_up", [True, False], ids=["up", "down"])
async def test_phys_detach_gives_the_nic_back_as_it_was(net, phys, was_up):
    eth2 = net.kernel.add("host", "eth2", up=was_up, mac="52:54:00:12:34:56")
    before = net.kernel.snapshot()
    ctx = await context(net, "phys", spec("eth2", direct_phys=True, mac="02:aa:bb:cc:dd:ee"))
    detach = await attached(net, ctx, await phys.attach(ctx))
    await net.guest_ns.set(eth2.index, address="02:aa:bb:cc:dd:ee")  # as the engine would
    net.kernel.log.clear()
    assert detach.marker.state == f"52:54:00:12:34:56,{'up' if was_up else 'down'}"

    await phys.detach(detach)
    down, move, restore = net.kernel.changes()
    assert (down.ns, down.index, down.msg["flags"], down.msg["change"]) == (
        "guest", eth2.index, 0, IFF_UP,
    )  # fmt: skip
    assert (move.ns, move.index) == ("guest", eth2.index)
    assert move.number(IFLA_NET_NS_FD) == net.host_fd
    assert move.string(IFLA_IFNAME) == "eth2"
    assert (restore.ns, restore.index) == ("host", eth2.index)
    assert restore.msg.get("IFLA_ADDRESS") == "52:54:00:12:34:56"
    assert restore.string(IFLA_IFALIAS) == ""
    assert restore.msg["flags"] == (IFF_UP if was_up else 0)
    assert net.kernel.names("guest") == []
    assert net.kernel.snapshot() == before


async def test_phys_detach_after_the_guest_vanished(net, phys):
    """The kernel returned the NIC to the host under its guest name, marker and all."""
    eth2 = net.kernel.add("host", "eth2", up=True, mac="52:54:00:12:34:56")
    before = net.kernel.snapshot()
    ctx = await context(net, "phys", spec("eth2", direct_phys=True))
    detach = await attached(net, ctx, await phys.attach(ctx))
    net.kernel.namespaces["host"][eth2.index] = net.kernel.namespaces["guest"].pop(eth2.index)
    await phys.detach(replace(detach, guest_ns=None, guest_link=None))

    down, restore = net.kernel.changes()
    assert (down.ns, down.index, down.msg["flags"]) == ("host", eth2.index, 0)
    assert restore.string(IFLA_IFNAME) == "eth2"
    assert restore.msg.get("IFLA_ADDRESS") == "52:54:00:12:34:56"
    assert net.kernel.snapshot() == before


async def test_phys_gives_back_only_the_nic_its_record_names(net, phys):
    """The marker is the guest's: a forged one (no record) or one moved onto
    another interface (not the recorded index) moves nothing to the host."""
    eth2 = net.kernel.add("host", "eth2", up=True, mac="52:54:00:12:34:56")
    ctx = await context(net, "phys", spec("eth2", direct_phys=True))
    detach = await attached(net, ctx, await phys.attach(ctx))
    assert await phys.verify(detach) is None
    # The guest renames the NIC and puts the marker on an interface of its own.
    await net.guest_ns.set(eth2.index, ifname="hidden", ifalias="")
    forged = net.kernel.add("guest", detach.marker.ifname, mac="02:00:00:00:00:42")
    await net.guest_ns.set(forged.index, ifalias=detach.marker.format())
    fake = replace(detach, guest_link=await net.guest_ns.link(detach.marker.ifname))
    assert "not the interface pipework moved there" in (await phys.verify(fake) or "")
    net.kernel.log.clear()
    await phys.detach(fake)
    assert net.kernel.changes() == []
    # No record at all: another guest key, the same claim.
    stranger = replace(fake, marker=replace(fake.marker, guest="netns:evil"))
    assert "no record" in (await phys.verify(stranger) or "")


async def test_phys_a_forged_nic_that_comes_home_is_left_alone(net, phys):
    net.kernel.add("host", "eth2", up=True, mac="52:54:00:12:34:56")
    ctx = await context(net, "phys", spec("eth2", direct_phys=True))
    detach = await attached(net, ctx, await phys.attach(ctx))
    gone = replace(detach, guest_ns=None, guest_link=None)
    # What comes home carrying the marker is not the recorded device.
    other = net.kernel.add("host", "weird0", kind="veth", mac="02:00:00:00:00:42")
    await net.host.set(other.index, ifalias=detach.marker.format())
    assert "not eth2" in (await phys.verify(gone) or "")
    net.kernel.log.clear()
    await phys.detach(gone)
    assert net.kernel.changes() == []


# -- EOPNOTSUPP names the missing module ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "host", "given", "refused", "module"),
    [
        ("macvlan", {"ifname": "eth0"}, {}, "macvlan", "macvlan"),
        ("ipvlan", {"ifname": "eth0"}, {}, "ipvlan", "ipvlan"),
        ("macvlan", {"ifname": "eth0"}, {"tag": "10"}, "vlan", "8021q"),
        ("ipvlan", {"ifname": "eth0"}, {"tag": "10"}, "vlan", "8021q"),
        ("ipoib", {"ifname": "eth0", "link_type": ARPHRD_INFINIBAND}, {}, "ipoib", "ib_ipoib"),
        ("dummy", None, {}, "dummy", "dummy"),
        ("bridge", {"ifname": "eth0", "kind": "bridge"}, {}, "veth", "veth"),
    ],
    ids=["macvlan", "ipvlan", "macvlan-vlan", "ipvlan-vlan", "ipoib", "dummy", "bridge-veth"],
)
async def test_eopnotsupp_names_the_module(net, kind, host, given, refused, module):
    if host is not None:
        net.kernel.add("host", up=True, **host)
    before = net.kernel.snapshot()
    net.kernel.fail(errno.EOPNOTSUPP, when=lambda r: r.kind == refused)
    ctx = await context(net, kind, spec("eth0" if host else "dummy0", **given))
    with pytest.raises(UnsupportedError) as err:
        await BACKENDS[kind].attach(ctx)
    assert err.value.message == f"this kernel has no {refused} support (module {module})"
    assert err.value.hint == f"load it with `modprobe {module}` or pick another link kind"
    assert err.value.exit_code == 8
    assert ctx.journal.steps == []
    assert net.kernel.snapshot() == before


# -- rollback -------------------------------------------------------------------------

BRIDGE = {"br1": {"kind": "bridge", "up": True}}
NIC = {"eth0": {"up": True}}
#: eth0.10 made by pipework for another attachment, which still uses it.
SHARED_VLAN = {
    **NIC,
    "eth0.10": {"kind": "vlan", "vlan_id": 10, "parent": "eth0", "up": True,
                "alias": BRIDGE_MARKER, "altnames": ["pw-0123456789"]},
}  # fmt: skip
#: name -> (host links to start with, the request); the kind is the name's first word.
SCENARIOS = {
    "bridge-new": ({}, spec("br1")),
    "bridge-existing": (BRIDGE, spec("br1")),
    "bridge-new-vlan": ({}, spec("br1", tag="10")),
    "bridge-existing-vlan": (BRIDGE, spec("br1", tag="10")),
    "macvlan": (NIC, spec("eth0")),
    "macvlan-vlan": (NIC, spec("eth0", tag="10")),
    "ipvlan-shared-vlan": (SHARED_VLAN, spec("eth0", tag="10", options={"mode": "l3"})),
    "phys": (NIC, spec("eth0", direct_phys=True)),
}


async def prepared(net: FakeNet, name: str) -> LinkContext:
    links, attach = SCENARIOS[name]
    for ifname, attrs in links.items():
        if "parent" in attrs:
            attrs = {**attrs, "parent": net.kernel.find("host", attrs["parent"]).index}
        net.kernel.add("host", ifname, **attrs)
    return await context(net, name.split("-")[0], attach)


@pytest.mark.parametrize(
    "name",
    list(SCENARIOS),
)
async def test_rollback_after_attach_restores_the_host(net, name):
    ctx = await prepared(net, name)
    host_before = net.kernel.snapshot()["host"]
    glink = await BACKENDS[ctx.marker.kind].attach(ctx)
    if glink.owned and glink.host_ifname is None:
        # The engine, not the backend, deletes a child it created in the guest.
        await net.guest_ns.delete((await net.guest_ns.link(glink.temp_ifname)).index)
    assert await ctx.journal.rollback() == []
    assert net.kernel.snapshot()["host"] == host_before
    assert net.kernel.names("guest") == []


@pytest.mark.parametrize(
    "name",
    list(SCENARIOS),
)
async def test_a_refused_change_at_any_step_leaves_nothing_behind(name):
    """Refuse the 1st, 2nd... change request (EBUSY) until an attach gets
    through; after each rollback both namespaces are exactly as before."""
    refused: list[Request] = []
    for n in itertools.count(1):
        net = FakeNet()
        try:
            ctx = await prepared(net, name)
            before = net.kernel.snapshot()
            changes = itertools.count(1)
            net.kernel.fail(
                errno.EBUSY, when=lambda r, c=changes, n=n: r.type not in LOOKUPS and next(c) == n
            )
            try:
                await BACKENDS[ctx.marker.kind].attach(ctx)
            except PipeworkError:
                failures = await ctx.journal.rollback()
                refused.append(next(r for r in net.kernel.log if r.error == errno.EBUSY))
                assert failures == [], refused[-1]
                assert net.kernel.snapshot() == before, refused[-1]
            else:
                if not any(r.error == errno.EBUSY for r in net.kernel.log):
                    break  # there was no n-th change: every step has been refused once
        finally:
            net.close()
    assert refused  # at least the first change was refused


@pytest.mark.parametrize("name", ["bridge-new", "bridge-existing", "macvlan-vlan"])
async def test_a_failed_lookup_right_after_a_create_leaves_nothing_behind(net, name):
    ctx = await prepared(net, name)
    before = net.kernel.snapshot()
    created = []

    def first_lookup_after_a_create(r: Request) -> bool:
        created.extend([r] if is_create(r) else [])
        return bool(created) and r.type == RTM_GETLINK

    net.kernel.fail(errno.ENOBUFS, when=first_lookup_after_a_create)
    with pytest.raises(PipeworkError, match="No buffer space available"):
        await BACKENDS[ctx.marker.kind].attach(ctx)
    assert await ctx.journal.rollback() == []
    assert net.kernel.snapshot() == before


# -- lookups --------------------------------------------------------------------------


async def test_lookups_by_name_and_index_leave_statistics_out(net):
    eth0 = net.kernel.add("host", "eth0", up=True, mtu=9000, mac="52:54:00:12:34:56")
    link = await net.host.link("eth0")
    assert await net.host.link_by_index(eth0.index) == link
    assert await net.host.link("eth9") is None
    assert await net.host.link_by_index(999) is None

    by_name, by_index, missing, missing_index = net.kernel.log
    for r in net.kernel.log:
        assert (r.type, r.flags) == (RTM_GETLINK, NLM_F_REQUEST)  # one answer, no ACK
        assert r.number(IFLA_EXT_MASK) == RTEXT_FILTER_SKIP_STATS
    assert (by_name.index, by_name.string(IFLA_IFNAME)) == (0, "eth0")
    assert (by_index.index, by_index.wire(IFLA_IFNAME)) == (eth0.index, None)
    assert (missing.error, missing_index.error) == (errno.ENODEV, errno.ENODEV)
    assert link == Link(
        index=eth0.index, ifname="eth0", kind=None, mtu=9000, mac="52:54:00:12:34:56",
        alias=None, master=None, up=True, operstate="UNKNOWN", link_type=1, max_mtu=65535,
    )  # fmt: skip


async def test_a_lookup_finds_an_alternative_name(net):
    vlan = net.kernel.add("host", "eth0.10", kind="vlan", vlan_id=10, altnames=["pw-0123456789"])
    found = await net.host.link("pw-0123456789")
    assert (found.index, found.ifname, found.kind, found.vlan_id) == (
        vlan.index,
        "eth0.10",
        "vlan",
        10,
    )


async def test_links_is_one_dump(net):
    br0 = net.kernel.add("host", "br0", kind="bridge", up=True)
    port = net.kernel.add("host", "pwport", kind="veth", master=br0.index, alias="marker")
    vlan = net.kernel.add("host", "eth0.10", kind="vlan", vlan_id=10, parent=port.index)
    links = await net.host.links()
    (dump,) = net.kernel.log
    assert (dump.type, dump.flags, dump.index) == (RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 0)
    assert dump.number(IFLA_EXT_MASK) == RTEXT_FILTER_SKIP_STATS
    assert [(x.index, x.ifname, x.kind, x.master, x.alias, x.parent, x.vlan_id) for x in links] == [
        (br0.index, "br0", "bridge", None, None, None, None),
        (port.index, "pwport", "veth", br0.index, "marker", None, None),
        (vlan.index, "eth0.10", "vlan", None, None, port.index, 10),
    ]
    assert [x.ifname for x in await net.host.ports(br0.index)] == ["pwport"]


# -- link set: the engine's final request, and errors -------------------------------


async def test_the_engines_final_set_is_one_request(net):
    """Rename, marker, MAC, MTU and up at once, as Engine._attach sends it."""
    temp = net.kernel.add("guest", "pwt0123456789", mtu=1500)
    await net.guest_ns.set(
        temp.index, ifname="eth1", ifalias="marker", state="up",
        address="02:aa:bb:cc:dd:ee", mtu=1400,
    )  # fmt: skip
    (r,) = net.kernel.log
    assert (r.ns, r.type, r.flags, r.index) == ("guest", RTM_NEWLINK, REQ_ACK, temp.index)
    assert r.ifi == (IFF_UP, IFF_UP)
    assert r.string(IFLA_IFNAME) == "eth1"
    assert r.string(IFLA_IFALIAS) == "marker"
    assert r.wire(IFLA_ADDRESS) == bytes.fromhex("02aabbccddee")
    assert r.msg.get("IFLA_ADDRESS") == "02:aa:bb:cc:dd:ee"  # pyroute2 reads the same
    assert r.number(IFLA_MTU) == 1400
    assert r.wire(IFLA_LINKINFO) is None
    assert (temp.ifname, temp.alias, temp.up, temp.mac, temp.mtu) == (
        "eth1", "marker", True, "02:aa:bb:cc:dd:ee", 1400,
    )  # fmt: skip


async def test_down_and_an_empty_alias(net):
    link = net.kernel.add("host", "eth2", up=True, alias="old")
    await net.host.set(link.index, state="down", ifalias="")
    (r,) = net.kernel.log
    assert r.ifi == (0, IFF_UP)
    assert r.wire(IFLA_IFALIAS) == b"\0"
    assert (link.up, link.alias) == (False, None)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (errno.EEXIST, LinkExists),
        (errno.ENODEV, NoSuchLink),
        (errno.EPERM, NotPermittedError),
        (errno.EOPNOTSUPP, UnsupportedError),
        (errno.ERANGE, HostInterfaceError),
        (errno.EBUSY, NetlinkFailure),
    ],
)
async def test_refusals_are_translated(net, code, error):
    link = net.kernel.add("guest", "eth1")
    net.kernel.fail(code)
    with pytest.raises(error) as err:
        await net.guest_ns.set(link.index, state="up")
    assert type(err.value) is error
    assert err.value.message == (
        f"configuring interface #{link.index} in blue failed: {os.strerror(code)}"
    )
    if isinstance(err.value, NetlinkFailure):
        assert err.value.code == code


async def test_veth_create_layout(net):
    await net.host.create(
        "pwx", "veth", mtu=1400, peer={"ifname": "pwt", "net_ns_fd": net.guest_fd, "mtu": 1400}
    )
    (r,) = net.kernel.log
    assert (r.type, r.flags, r.index, r.ifi) == (RTM_NEWLINK, REQ_ACK | CREATE, 0, (0, 0))
    assert r.nested(IFLA_LINKINFO) and r.nested(IFLA_LINKINFO, IFLA_INFO_DATA)
    assert r.string(IFLA_LINKINFO, IFLA_INFO_KIND) == "veth"
    peer = r.peer()
    assert peer.index == 0 and peer.ifi == (0, 0)
    assert (peer.string(IFLA_IFNAME), peer.number(IFLA_NET_NS_FD), peer.number(IFLA_MTU)) == (
        "pwt", net.guest_fd, 1400,
    )  # fmt: skip
    assert peer.wire(IFLA_LINKINFO) is None
    assert r.wire(IFLA_LINKINFO, IFLA_INFO_DATA, VETH_INFO_PEER) is not None
    assert net.kernel.names("host") == ["pwx"] and net.kernel.names("guest") == ["pwt"]


# -- deletes ------------------------------------------------------------------------


async def test_delete_and_delete_named(net):
    link = net.kernel.add("host", "pwa")
    assert await net.host.delete(link.index) is True
    assert await net.host.delete(link.index) is False  # ENODEV: already gone
    assert await net.host.delete_named("pwa") is False
    first, again, lookup = net.kernel.log
    assert (first.type, first.flags, first.index) == (RTM_DELLINK, REQ_ACK, link.index)
    assert first.attrs == b""
    assert again.error == errno.ENODEV
    assert (lookup.type, lookup.string(IFLA_IFNAME)) == (RTM_GETLINK, "pwa")


async def test_deferred_deletes_become_one_group_delete_per_namespace(net):
    net.kernel.add("host", "eth0", group=7)
    first = net.kernel.add("host", "pwa")
    second = net.kernel.add("host", "pwb")
    child = net.kernel.add("guest", "eth1")
    sockets = len(net.kernel.sockets)
    async with deferred_deletes() as batch:
        assert await net.host.delete(first.index)
        assert await net.host.delete(second.index)
        assert await net.guest_ns.delete(child.index)
        assert net.kernel.log == []  # only recorded so far
    assert (batch.deleted, batch.failures) == (3, [])

    dump, join_a, join_b, group_delete, guest_delete = net.kernel.log
    assert (dump.ns, dump.type, dump.flags) == ("host", RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP)
    group = join_a.number(IFLA_GROUP)
    assert group >= 1 << 24 and group != 7  # fresh, far above hand-picked numbers
    for join, link in ((join_a, first), (join_b, second)):
        assert (join.ns, join.type, join.flags, join.index) == (
            "host", RTM_NEWLINK, REQ_ACK, link.index,
        )  # fmt: skip
        assert join.number(IFLA_GROUP) == group and join.wire(IFLA_IFNAME) is None
    assert ("host", 2) in net.kernel.datagrams  # both joins in one datagram
    assert (group_delete.ns, group_delete.type, group_delete.flags) == (
        "host", RTM_DELLINK, REQ_ACK,
    )  # fmt: skip
    assert (group_delete.index, group_delete.number(IFLA_GROUP)) == (0, group)
    assert (guest_delete.ns, guest_delete.type, guest_delete.index) == (
        "guest", RTM_DELLINK, child.index,
    )  # fmt: skip
    assert guest_delete.wire(IFLA_GROUP) is None  # one interface: a plain delete
    assert net.kernel.names("host") == ["eth0"] and net.kernel.names("guest") == []
    opened = net.kernel.sockets[sockets:]
    assert len(opened) == 2 and all(s.closed for s in opened)  # the batch's own sockets


async def test_a_deferred_delete_of_an_interface_already_gone(net):
    first = net.kernel.add("host", "pwa")
    second = net.kernel.add("host", "pwb")
    net.kernel.fail(errno.ENODEV, when=lambda r: r.index == first.index and r.type == RTM_NEWLINK)
    async with deferred_deletes() as batch:
        await net.host.delete(first.index)
        await net.host.delete(second.index)
    assert (batch.deleted, batch.failures) == (1, [])
    assert net.kernel.names("host") == ["pwa"]  # the fault kept it: it was "gone"


# -- alternative names ----------------------------------------------------------------


async def test_altname_requests(net):
    link = net.kernel.add("host", "eth0.10", kind="vlan", vlan_id=10)
    assert await net.host.add_altname(link.index, "pw-0123456789") is True
    assert await net.host.add_altname(link.index, "pw-0123456789") is False  # EEXIST
    assert await net.host.add_altname(link.index, "pw-abcdefabcd") is True
    assert await net.host.altnames(link.index) == ["pw-0123456789", "pw-abcdefabcd"]
    await net.host.del_altname(link.index, "pw-0123456789")
    await net.host.del_altname(link.index, "pw-0123456789")  # ENOENT: nothing to do
    add, again, _, lookup, drop, drop_again = net.kernel.log
    assert (add.type, add.flags, add.index) == (
        RTM_NEWLINKPROP, REQ_ACK | NLM_F_CREATE | NLM_F_APPEND, link.index,
    )  # fmt: skip
    assert add.nested(IFLA_PROP_LIST)
    assert add.string(IFLA_PROP_LIST, IFLA_ALT_IFNAME) == "pw-0123456789"
    assert again.error == errno.EEXIST
    assert (lookup.type, lookup.index) == (RTM_GETLINK, link.index)
    assert (drop.type, drop.flags, drop.index) == (RTM_DELLINKPROP, REQ_ACK, link.index)
    assert drop.string(IFLA_PROP_LIST, IFLA_ALT_IFNAME) == "pw-0123456789"
    assert drop_again.error == errno.ENOENT
    assert link.altnames == ["pw-abcdefabcd"]


# -- bridge VLAN filtering (backends/links/bridge/vlans.py) ---------------------------


async def test_bridge_vlan_filtering_read_and_turned_off(net):
    br0 = net.kernel.add("host", "br0", kind="bridge", vlan_filtering=1)
    assert await vlan_filtering(net.host, br0.index) is True
    await disable_vlan_filtering(net.host, br0.index)
    assert await vlan_filtering(net.host, br0.index) is False
    lookup, off, _ = net.kernel.log
    assert (lookup.type, lookup.flags, lookup.index) == (RTM_GETLINK, NLM_F_REQUEST, br0.index)
    assert (off.type, off.flags, off.index, off.ifi) == (RTM_NEWLINK, REQ_ACK, br0.index, (0, 0))
    assert off.kind == "bridge" and off.nested(IFLA_LINKINFO)
    assert off.wire(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_BR_VLAN_FILTERING) == b"\0"
    assert br0.vlan_filtering == 0


async def test_a_kernel_without_bridge_vlan_filtering(net):
    net.kernel.add("host", "br0", kind="bridge", up=True)
    before = net.kernel.snapshot()
    net.kernel.fail(
        errno.EOPNOTSUPP,
        when=lambda r: r.wire(IFLA_LINKINFO, IFLA_INFO_DATA, IFLA_BR_VLAN_FILTERING) is not None,
    )
    ctx = await context(net, "bridge", spec("br0", tag="10"))
    with pytest.raises(UnsupportedError) as err:
        await BACKENDS["bridge"].attach(ctx)
    assert err.value.message == (
        "this kernel has no bridge VLAN filtering support (CONFIG_BRIDGE_VLAN_FILTERING)"
    )
    assert err.value.hint == "attach without a VLAN, or use Open vSwitch (an ovs* bridge)"
    assert ctx.journal.steps == []
    assert net.kernel.snapshot() == before


# -- addresses ----------------------------------------------------------------------


@pytest.fixture
def sysctls(monkeypatch):
    """IPv6 addresses enable IPv6 on their interface; the fake namespaces'
    fds are no namespaces to enter: record the writes."""
    written = []

    def write(fd, key, value):
        written.append((fd, key, value))
        return True

    monkeypatch.setattr("pipework.engine.kernel.netlink.write_sysctl", write)
    return written


@pytest.mark.parametrize(
    ("address", "broadcast", "flags"),
    [
        ("198.18.0.2/24", "198.18.0.255", 0),
        ("198.18.0.2/31", None, IFA_F_NODAD),
        ("198.18.0.2/32", None, IFA_F_NODAD),
        ("2001:db8::2/64", None, IFA_F_NODAD),
    ],
)
async def test_add_address(net, sysctls, address, broadcast, flags):
    eth1 = net.kernel.add("guest", "eth1")
    iface = ipaddress.ip_interface(address)
    await net.guest_ns.add_address(eth1.index, iface)
    await net.guest_ns.add_address(eth1.index, iface)  # EEXIST: already there
    first, again = [r for r in net.kernel.log if r.type == RTM_NEWADDR]
    assert (first.ns, first.flags) == ("guest", REQ_ACK | CREATE)
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    assert struct.unpack("=BBBBI", first.body) == (
        family, iface.network.prefixlen, flags, 0, eth1.index,
    )  # fmt: skip
    assert first.wire(IFA_LOCAL) == first.wire(IFA_ADDRESS) == iface.ip.packed
    assert first.msg.get("IFA_ADDRESS") == str(iface.ip)  # pyroute2 reads the same
    assert first.wire(IFA_BROADCAST) == (
        ipaddress.ip_address(broadcast).packed if broadcast else None
    )
    assert first.number(IFA_FLAGS) == (flags or None)
    assert again.error == errno.EEXIST
    if iface.version == 6:
        assert sysctls == [(net.guest_fd, "net/ipv6/conf/eth1/disable_ipv6", "0")] * 2
    else:
        assert sysctls == []

    net.kernel.log.clear()
    assert await net.guest_ns.addresses(eth1.index) == [iface]
    (dump,) = net.kernel.log
    assert (dump.type, dump.flags, dump.family) == (RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 0)
    assert dump.index == eth1.index


async def test_addresses_are_those_of_the_interface(net, sysctls):
    eth1 = net.kernel.add("guest", "eth1")
    eth2 = net.kernel.add("guest", "eth2")
    await net.guest_ns.add_address(eth2.index, ipaddress.ip_interface("198.18.1.2/24"))
    await net.guest_ns.add_address(eth1.index, ipaddress.ip_interface("198.18.0.2/24"))
    await net.guest_ns.add_address(eth1.index, ipaddress.ip_interface("2001:db8::2/64"))
    assert await net.guest_ns.addresses(eth1.index) == [
        ipaddress.ip_interface("198.18.0.2/24"),
        ipaddress.ip_interface("2001:db8::2/64"),
    ]


# -- routes (the static provider; add_route) ------------------------------------------


def rtmsg_of(r: Request) -> tuple[int, ...]:
    """(family, dst_len, src_len, tos, table, protocol, scope, type)."""
    return struct.unpack_from("=BBBBBBBB", r.body)


def address_context(net: FakeNet, index: int, address: str, gateway: str | None) -> AddressContext:
    return AddressContext(
        address=AddressSpec(
            address=ipaddress.ip_interface(address),
            gateway=ipaddress.ip_address(gateway) if gateway else None,
        ),
        spec=AttachSpec(host="br0", guest=GUEST),
        guest=Guest(GuestInfo(name="blue", key=GUEST, runtime="netns"), net.guest_fd),
        guest_ns=net.guest_ns,
        index=index,
        ifname="eth1",
        journal=Journal(),
    )


@pytest.mark.parametrize(
    ("address", "gateway"), [("198.18.0.2/24", "198.18.0.1"), ("2001:db8::2/64", "2001:db8::1")]
)
async def test_static_gateway_on_the_subnet(net, sysctls, address, gateway, tmp_path):
    eth1 = net.kernel.add("guest", "eth1", up=True)
    ctx = address_context(net, eth1.index, address, gateway)
    result = await StaticProvider(EngineConfig(run_dir=str(tmp_path))).configure(ctx)
    assert (result.addresses, result.gateway) == ((address,), gateway)

    family = socket.AF_INET if ":" not in address else socket.AF_INET6
    newaddr, dump, route = [r for r in net.kernel.log if r.type != RTM_GETLINK]
    assert newaddr.type == RTM_NEWADDR
    assert (dump.type, dump.flags, dump.family) == (
        RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, family,
    )  # fmt: skip
    assert (route.type, route.flags) == (RTM_NEWROUTE, REQ_ACK | NLM_F_CREATE | NLM_F_REPLACE)
    assert rtmsg_of(route) == (
        family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST,
    )  # fmt: skip
    assert route.wire(RTA_DST) is None
    assert route.wire(RTA_GATEWAY) == ipaddress.ip_address(gateway).packed
    assert route.msg.get("RTA_GATEWAY") == gateway  # pyroute2 reads the same
    assert route.number(RTA_OIF) == eth1.index and route.wire(RTA_PRIORITY) is None
    defaults = [x for x in net.kernel.routes["guest"] if x.dst_len == 0]
    assert defaults == [FakeRoute(family, None, 0, eth1.index, gateway=gateway)]

    # Rolled back, with no default route before: the one made is deleted,
    # and only that one (its gateway and interface are named).
    net.kernel.log.clear()
    assert await ctx.journal.rollback() == []
    dump, delete = net.kernel.log
    assert dump.type == RTM_GETROUTE
    assert (delete.type, delete.flags) == (RTM_DELROUTE, REQ_ACK)
    assert rtmsg_of(delete) == (family, 0, 0, 0, RT_TABLE_MAIN, 0, 255, 0)
    assert delete.number(RTA_OIF) == eth1.index
    assert delete.wire(RTA_GATEWAY) == ipaddress.ip_address(gateway).packed
    assert not [x for x in net.kernel.routes["guest"] if x.dst_len == 0]
    assert not list(tmp_path.rglob("*.json"))  # the record went with it


async def test_static_gateway_off_the_subnet_gets_an_onlink_route_first(net, tmp_path):
    eth1 = net.kernel.add("guest", "eth1", up=True)
    ctx = address_context(net, eth1.index, "198.18.0.2/32", "198.19.0.1")
    await StaticProvider(EngineConfig(run_dir=str(tmp_path))).configure(ctx)
    onlink, default = [r for r in net.kernel.log if r.type == RTM_NEWROUTE]
    assert onlink.flags == REQ_ACK | CREATE
    assert rtmsg_of(onlink) == (
        socket.AF_INET, 32, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST,
    )  # fmt: skip
    assert onlink.wire(RTA_DST) == ipaddress.ip_address("198.19.0.1").packed
    assert (onlink.number(RTA_OIF), onlink.wire(RTA_GATEWAY)) == (eth1.index, None)
    assert default.flags & NLM_F_REPLACE and default.number(RTA_OIF) == eth1.index
    assert default.wire(RTA_GATEWAY) == ipaddress.ip_address("198.19.0.1").packed


async def test_a_replaced_default_route_is_put_back_on_rollback(net, tmp_path):
    eth0 = net.kernel.add(
        "guest", "eth0", up=True, addresses=[FakeAddress(socket.AF_INET, "198.18.1.2", 24)]
    )
    eth1 = net.kernel.add("guest", "eth1", up=True)
    dhcp = FakeRoute(socket.AF_INET, None, 0, eth0.index, gateway="198.18.1.1", proto=16)
    net.kernel.routes["guest"].append(dhcp)
    ctx = address_context(net, eth1.index, "198.18.0.2/24", "198.18.0.1")
    await StaticProvider(EngineConfig(run_dir=str(tmp_path))).configure(ctx)
    assert [x.gateway for x in net.kernel.routes["guest"] if x.dst_len == 0] == ["198.18.0.1"]

    net.kernel.log.clear()
    assert await ctx.journal.rollback() == []
    (restore,) = [r for r in net.kernel.log if r.type == RTM_NEWROUTE]
    assert (restore.type, restore.flags) == (RTM_NEWROUTE, REQ_ACK | NLM_F_CREATE | NLM_F_REPLACE)
    assert rtmsg_of(restore)[:6] == (socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, 16)  # its proto
    assert restore.wire(RTA_GATEWAY) == ipaddress.ip_address("198.18.1.1").packed
    assert restore.number(RTA_OIF) == eth0.index
    assert [x for x in net.kernel.routes["guest"] if x.dst_len == 0] == [dhcp]


async def test_default_route_reads_the_main_tables_unicast_default(net):
    eth0 = net.kernel.add("guest", "eth0", up=True)
    net.kernel.routes["guest"] += [
        FakeRoute(socket.AF_INET, "198.18.0.0", 24, eth0.index, proto=2, scope=RT_SCOPE_LINK),
        FakeRoute(socket.AF_INET, None, 0, eth0.index, gateway="198.18.0.254", table=100),
        FakeRoute(socket.AF_INET, None, 0, eth0.index, type=7),  # unreachable default
        FakeRoute(
            socket.AF_INET, None, 0, eth0.index, gateway="198.18.0.1", priority=100, proto=16
        ),
        FakeRoute(socket.AF_INET6, None, 0, eth0.index, gateway="2001:db8::1", priority=1024),
    ]
    v4 = await net.guest_ns.default_route(4)
    assert v4 == {
        "family": socket.AF_INET, "dst": "0.0.0.0/0", "proto": 16,
        "gateway": "198.18.0.1", "oif": eth0.index, "priority": 100,
    }  # fmt: skip
    assert await net.guest_ns.default_route(6) == {
        "family": socket.AF_INET6, "dst": "::/0", "proto": RTPROT_STATIC,
        "gateway": "2001:db8::1", "oif": eth0.index, "priority": 1024,
    }  # fmt: skip
    net.kernel.log.clear()
    await net.guest_ns.restore_route(v4)
    (restore,) = net.kernel.log
    assert rtmsg_of(restore) == (
        socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, 16, RT_SCOPE_UNIVERSE, RTN_UNICAST,
    )  # fmt: skip
    assert restore.number(RTA_PRIORITY) == 100


async def test_deleting_a_default_route_that_is_not_there(net):
    await net.guest_ns.delete_default_route(6)
    (delete,) = net.kernel.log
    assert delete.error == errno.ESRCH  # tolerated
    assert rtmsg_of(delete)[0] == socket.AF_INET6


@pytest.mark.parametrize(
    ("dst", "via", "metric", "scope"),
    [
        ("198.19.0.0/16", None, None, RT_SCOPE_LINK),
        ("198.19.0.0/16", "198.18.0.1", 5, RT_SCOPE_UNIVERSE),
        ("2001:db8:1::/48", None, 1024, RT_SCOPE_LINK),
        ("2001:db8:1::/48", "2001:db8::1", None, RT_SCOPE_UNIVERSE),
    ],
)
async def test_add_route(net, sysctls, dst, via, metric, scope):
    eth1 = net.kernel.add("guest", "eth1", up=True)
    await net.guest_ns.add_address(eth1.index, ipaddress.ip_interface("198.18.0.2/24"))
    await net.guest_ns.add_address(eth1.index, ipaddress.ip_interface("2001:db8::2/64"))
    net.kernel.log.clear()
    network = ipaddress.ip_network(dst)
    gateway = ipaddress.ip_address(via) if via else None
    await net.guest_ns.add_route(eth1.index, network, gateway, metric)
    (r,) = net.kernel.log
    family = socket.AF_INET if network.version == 4 else socket.AF_INET6
    assert (r.type, r.flags) == (RTM_NEWROUTE, REQ_ACK | CREATE)
    assert rtmsg_of(r) == (
        family, network.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, scope, RTN_UNICAST,
    )  # fmt: skip
    assert r.wire(RTA_DST) == network.network_address.packed
    assert r.msg.get("RTA_DST") == str(network.network_address)  # pyroute2 reads the same
    assert r.number(RTA_OIF) == eth1.index
    assert r.wire(RTA_GATEWAY) == (gateway.packed if gateway else None)
    assert r.number(RTA_PRIORITY) == metric

    with pytest.raises(ConflictError) as err:
        await net.guest_ns.add_route(eth1.index, network, gateway, metric)
    assert err.value.message == f"a route to {dst} already exists in blue"


async def test_a_route_via_an_unreachable_gateway(net):
    eth1 = net.kernel.add("guest", "eth1", up=True)
    with pytest.raises(UsageError) as err:
        await net.guest_ns.add_route(
            eth1.index, ipaddress.ip_network("198.19.0.0/16"), ipaddress.ip_address("198.18.9.1")
        )
    assert err.value.message == (
        "route 198.19.0.0/16 via 198.18.9.1: the gateway is not reachable in blue"
    )
    assert err.value.hint == "the gateway must be on the interface's subnet"


# -- what rtnl.py does not encode: pyroute2 compiles it, the same socket sends it -------


async def test_attributes_rtnl_does_not_know_are_compiled_by_pyroute2(net, allow_pyroute2):
    eth0 = net.kernel.add("host", "eth0", up=True)
    await net.host.create("vx0", "vxlan", vxlan_id=42, vxlan_link=eth0.index)
    (add,) = net.kernel.log
    assert is_create(add) and add.flags & NLM_F_ACK
    assert struct.unpack_from("=I", add.data, 12)[0] == 0  # our header, not pyroute2's
    assert (add.string(IFLA_IFNAME), add.kind) == ("vx0", "vxlan")
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, 1) == 42  # IFLA_VXLAN_ID
    assert add.number(IFLA_LINKINFO, IFLA_INFO_DATA, 3) == eth0.index  # IFLA_VXLAN_LINK
    vx0 = net.kernel.find("host", "vx0")
    assert vx0.kind == "vxlan"

    await net.host.set(vx0.index, txqlen=500)
    (_, txqlen) = net.kernel.log
    assert plain_set(txqlen) and txqlen.index == vx0.index
    assert txqlen.number(13) == 500  # IFLA_TXQLEN

    net.kernel.fail(errno.EOPNOTSUPP)
    with pytest.raises(
        UnsupportedError, match=r"^this kernel has no vxlan support \(module vxlan\)"
    ):
        await net.host.create("vx1", "vxlan", vxlan_id=43)


async def test_a_rollback_with_no_previous_route_leaves_a_concurrent_one_alone(net, tmp_path):
    eth1 = net.kernel.add("guest", "eth1", up=True)
    eth2 = net.kernel.add(
        "guest", "eth2", up=True, addresses=[FakeAddress(socket.AF_INET, "198.18.9.2", 24)]
    )
    ctx = address_context(net, eth1.index, "198.18.0.2/24", "198.18.0.1")
    await StaticProvider(EngineConfig(run_dir=str(tmp_path))).configure(ctx)
    # A concurrent attach replaces the default route before this one rolls back.
    theirs = FakeRoute(socket.AF_INET, None, 0, eth2.index, gateway="198.18.9.1")
    net.kernel.routes["guest"] = [r for r in net.kernel.routes["guest"] if r.dst_len] + [theirs]
    assert await ctx.journal.rollback() == []
    assert [x for x in net.kernel.routes["guest"] if x.dst_len == 0] == [theirs]
    assert not [r for r in net.kernel.log if r.type == RTM_DELROUTE]


async def test_a_cancellation_as_the_default_route_is_replaced_keeps_the_original(net, tmp_path):
    import anyio

    eth0 = net.kernel.add(
        "guest", "eth0", up=True, addresses=[FakeAddress(socket.AF_INET, "198.18.1.2", 24)]
    )
    eth1 = net.kernel.add("guest", "eth1", up=True)
    original = FakeRoute(socket.AF_INET, None, 0, eth0.index, gateway="198.18.1.1")
    net.kernel.routes["guest"].append(original)
    ctx = address_context(net, eth1.index, "198.18.0.2/24", "198.18.0.1")
    replace_route = net.guest_ns.set_default_route

    async def cancelled_on_the_way_back(*args: object) -> None:
        await replace_route(*args)  # the kernel did it...
        raise anyio.get_cancelled_exc_class()()  # ...and the answer never arrived

    net.guest_ns.set_default_route = cancelled_on_the_way_back
    with pytest.raises(anyio.get_cancelled_exc_class()):
        await StaticProvider(EngineConfig(run_dir=str(tmp_path))).configure(ctx)
    assert [x.gateway for x in net.kernel.routes["guest"] if x.dst_len == 0] == ["198.18.0.1"]
    assert await ctx.journal.rollback() == []
    assert [x for x in net.kernel.routes["guest"] if x.dst_len == 0] == [original]
