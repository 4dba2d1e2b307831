"""The raw rtnetlink messages of the batched teardown, byte for byte."""

from __future__ import annotations

import struct

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
