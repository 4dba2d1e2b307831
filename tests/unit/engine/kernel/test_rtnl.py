"""The raw rtnetlink codec: message layout, byte for byte."""

from __future__ import annotations

import struct

import pytest

from pipework.engine.kernel import rtnl


def test_set_group_request_layout():
    msg = rtnl._link_msg(rtnl.RTM_NEWLINK, 7, 42, 0x1234567, rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, flags, seq, pid) == (len(msg), 16, 5, 7, 0) and length == 16 + 16 + 8
    family, _type, index, ifflags, change = struct.unpack_from("=BxHiII", msg, 16)
    assert (family, index, ifflags, change) == (0, 42, 0, 0)
    assert struct.unpack_from("=HHI", msg, 32) == (8, rtnl.IFLA_GROUP, 0x1234567)


def test_group_delete_names_no_interface():
    msg = rtnl._link_msg(rtnl.RTM_DELLINK, 1, 0, 99, rtnl.NLM_F_REQUEST)
    assert struct.unpack_from("=i", msg, 20)[0] == 0  # ifindex 0: "every interface in the group"
    assert struct.unpack_from("=HHI", msg, 32) == (8, rtnl.IFLA_GROUP, 99)


def test_messages_and_group_attribute_are_parsed():
    attrs = struct.pack("=HH", 8, 3) + b"eth\0" + struct.pack("=HHI", 8, rtnl.IFLA_GROUP, 5)
    body = struct.pack("=BxHiII", 0, 1, 3, 0, 0) + attrs
    one = struct.pack("=IHHII", 16 + len(body), rtnl.RTM_NEWLINK, 0, 9, 0) + body
    done = struct.pack("=IHHII", 20, rtnl.NLMSG_DONE, 0, 9, 0) + b"\0\0\0\0"
    parsed = list(rtnl._messages(one + done))
    assert [(kind, seq) for kind, seq, _ in parsed] == [(rtnl.RTM_NEWLINK, 9), (rtnl.NLMSG_DONE, 9)]
    assert (
        rtnl.u32_attr(rtnl.IFLA_GROUP, 5)[4:] == rtnl.attributes(parsed[0][2][16:])[rtnl.IFLA_GROUP]
    )
    assert rtnl.attributes(b"") == {}


def test_fresh_groups_avoid_used_and_small_numbers():
    used = {1 << 24}
    for _ in range(100):
        group = rtnl._fresh_group(used)
        assert group not in used and (1 << 24) <= group < (1 << 31)


def test_acknowledgement_codes():
    assert rtnl._count(0, 1) == 1
    assert rtnl._count(19, 1) == 0  # ENODEV: already gone with its peer
    try:
        rtnl._count(1, 1)
    except rtnl.RtnlError as exc:
        assert exc.errno == 1
    else:  # pragma: no cover
        raise AssertionError("EPERM must raise")


# -- the link codec: what it encodes, and what it leaves to pyroute2 ----------------


def test_link_attributes_under_pyroute2s_names():
    flags, change, body = rtnl.encode_link(
        {"ifname": "x", "kind": "macvlan", "link": 2, "net_ns_fd": 5, "macvlan_mode": "vepa"}
    )
    assert (flags, change) == (0, 0)
    attrs = rtnl.attributes(body)
    assert attrs[rtnl.IFLA_IFNAME] == b"x\0"
    assert struct.unpack("=I", attrs[rtnl.IFLA_LINK]) == (2,)
    assert struct.unpack("=I", attrs[rtnl.IFLA_NET_NS_FD]) == (5,)
    info = rtnl.attributes(attrs[rtnl.IFLA_LINKINFO])
    assert info[rtnl.IFLA_INFO_KIND] == b"macvlan\0"
    assert rtnl.attributes(info[rtnl.IFLA_INFO_DATA]) == {1: struct.pack("=I", 2)}  # VEPA


@pytest.mark.parametrize(
    ("kind", "attrs", "data"),
    [
        ("ipvlan", {"ipvlan_mode": 1}, {1: struct.pack("=H", 1)}),
        ("ipvlan", {"ipvlan_mode": "l3s"}, {1: struct.pack("=H", 2)}),
        ("ipoib", {"pkey": 0x8001, "mode": "connected"}, {1: b"\x01\x80", 2: b"\x01\x00"}),
        ("vlan", {"vlan_id": 4094}, {1: struct.pack("=H", 4094)}),
        ("macvlan", {"macvlan_mode": "passthru"}, {1: struct.pack("=I", 8)}),
        (
            "vxlan",
            {
                "vxlan_id": 42,
                "vxlan_group": "198.18.9.2",
                "vxlan_link": 7,
                "vxlan_local": "198.18.9.1",
                "vxlan_ttl": 64,
                "vxlan_learning": False,
                "vxlan_port": 4789,
            },
            {
                1: struct.pack("=I", 42),
                2: bytes([198, 18, 9, 2]),
                3: struct.pack("=I", 7),
                4: bytes([198, 18, 9, 1]),
                5: b"\x40",
                7: b"\x00",
                15: b"\x12\xb5",  # 4789, network byte order
            },
        ),
        (
            "vxlan",
            {"vxlan_group6": "ff05::42", "vxlan_local6": "2001:db8::1"},
            {
                16: bytes.fromhex("ff05" + "00" * 12 + "0042"),
                17: bytes.fromhex("20010db8" + "00" * 11 + "01"),
            },
        ),
    ],
)
def test_kind_data(kind, attrs, data):
    _flags, _change, body = rtnl.encode_link({"kind": kind, **attrs})
    info = rtnl.attributes(rtnl.attributes(body)[rtnl.IFLA_LINKINFO])
    assert rtnl.attributes(info[rtnl.IFLA_INFO_DATA]) == data


@pytest.mark.parametrize(
    "attrs",
    [
        {"txqlen": 500},
        {"kind": "vxlan", "vxlan_gbp": 1},
        {"kind": "vxlan", "vxlan_group": "2001:db8::1"},  # a v6 address needs vxlan_group6
        {"kind": "vxlan", "vxlan_local6": "not-an-address"},
        {"kind": "macvlan", "macvlan_mode": "source"},
        {"kind": "bridge", "peer": {"ifname": "y"}},
        {"kind": "veth", "peer": {"ifname": "y", "kind": "veth"}},
        {"kind": "veth", "peer": {"ifname": "y", "txqlen": 1}},
        {"state": "dormant"},
        {"mode": "l2"},
    ],
)
def test_what_the_codec_does_not_know_is_refused(attrs):
    with pytest.raises(rtnl.UnknownAttribute):
        rtnl.encode_link(attrs)


def test_kinds_without_data_need_no_info_data():
    _flags, _change, body = rtnl.encode_link({"ifname": "d", "kind": "dummy"})
    info = rtnl.attributes(rtnl.attributes(body)[rtnl.IFLA_LINKINFO])
    assert info == {rtnl.IFLA_INFO_KIND: b"dummy\0"}


def test_route_layout():
    body = rtnl.encode_route(
        2, 16, bytes([198, 19, 0, 0]), gateway=bytes([198, 18, 0, 1]), oif=3, priority=5
    )
    assert struct.unpack_from("=BBBBBBBBI", body) == (2, 16, 0, 0, 254, 4, 0, 1, 0)
    route = rtnl.route_fields(body)
    assert (route["dst"], route["gateway"], route["oif"], route["priority"]) == (
        bytes([198, 19, 0, 0]), bytes([198, 18, 0, 1]), 3, 5,
    )  # fmt: skip
    assert rtnl.attributes(rtnl.encode_route(2, 0, b"\0\0\0\0")[12:]) == {}  # a default: no RTA_DST


# -- per-family settings and a bridge port's state -----------------------------------


def test_per_family_settings_ride_in_one_af_spec():
    flags, change, body = rtnl.encode_link(
        {"state": "up", "addr_gen_mode": "none", "arp_notify": 1}
    )
    assert (flags, change) == (rtnl.IFF_UP, rtnl.IFF_UP)
    families = rtnl.attributes(rtnl.attributes(body)[rtnl.IFLA_AF_SPEC])
    inet = rtnl.attributes(rtnl.attributes(families[2])[rtnl.IFLA_INET_CONF])  # AF_INET
    assert inet == {rtnl.IPV4_DEVCONF_ARP_NOTIFY: struct.pack("=I", 1)}
    inet6 = rtnl.attributes(families[10])  # AF_INET6
    assert inet6 == {rtnl.IFLA_INET6_ADDR_GEN_MODE: b"\x01"}


def test_an_unknown_address_generation_mode_is_refused():
    with pytest.raises(rtnl.UnknownAttribute):
        rtnl.encode_link({"addr_gen_mode": "slaac"})


def _answer(*attrs: bytes) -> bytes:
    return rtnl.ifinfomsg(7) + b"".join(attrs)


def _port(kind: str, state: int) -> bytes:
    data = rtnl.nested(rtnl.IFLA_INFO_SLAVE_DATA, rtnl.attr(rtnl.IFLA_BRPORT_STATE, bytes([state])))
    return rtnl.nested(rtnl.IFLA_LINKINFO, rtnl.str_attr(rtnl.IFLA_INFO_SLAVE_KIND, kind) + data)


@pytest.mark.parametrize(
    ("attrs", "port_state", "ready"),
    [
        ((_port("bridge", 3),), 3, True),
        ((_port("bridge", 0),), 0, False),  # disabled: the bridge drops what comes in
        ((_port("bridge", 2),), 2, False),  # learning
        ((_port("openvswitch", 0),), None, True),  # not a Linux bridge port
        ((), None, True),
    ],
)
def test_a_link_is_ready_when_up_and_forwarding(attrs, port_state, ready):
    from pipework.engine.kernel.netlink import Link

    up = rtnl.attr(rtnl.IFLA_OPERSTATE, bytes([6]))
    fields = rtnl.link_fields(_answer(rtnl.str_attr(rtnl.IFLA_IFNAME, "v"), up, *attrs))
    assert fields["port_state"] == port_state
    assert Link(**fields).ready is ready  # type: ignore[arg-type]
    down = rtnl.link_fields(_answer(rtnl.str_attr(rtnl.IFLA_IFNAME, "v"), *attrs))
    assert Link(**down).ready is False  # type: ignore[arg-type]
