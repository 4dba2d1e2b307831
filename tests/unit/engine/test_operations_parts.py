"""Pure parts of detach/ls/gc/wait/route and the FORWARD trap: parsers,
firewall listings and commands, inventory helpers, the table."""

from __future__ import annotations

import json

import pytest

from pipework.backends.links.bridge import firewall
from pipework.backends.links.bridge.firewall import Chain
from pipework.cli import run
from pipework.cli.commands.detach import check_detach
from pipework.cli.commands.ls import format_table
from pipework.cli.commands.wait import check_wait
from pipework.cli.fastpath import parse_seconds, parse_wait, passthrough_argv
from pipework.cli.render import one_line
from pipework.engine.errors import UsageError
from pipework.engine.inventory import AttachmentRecord, GcReport, is_guest_side, nsfs_mountpoint
from pipework.engine.kernel.netlink import Link
from pipework.engine.kernel.waiting import describe_state, operationally_up
from pipework.engine.marker import Marker
from pipework.engine.specs import AttachSpec, GuestInfo

# -- route / rule / tc ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "args", "expected"),
    [
        ("route", ["web1", "add", "198.18.20.0/24", "via", "198.18.10.1"],
         ("web1", ["ip", "route", "add", "198.18.20.0/24", "via", "198.18.10.1"])),
        ("rule", ["netns:blue"], ("netns:blue", ["ip", "rule"])),
        ("tc", ["web1", "qdisc", "add", "dev", "eth1", "root", "tbf", "rate", "1mbit"],
         ("web1", ["tc", "qdisc", "add", "dev", "eth1", "root", "tbf", "rate", "1mbit"])),
        # Arguments are passed as they are, shell syntax included.
        ("route", ["web1", "show", "$(reboot)", ";", "--json"],
         ("web1", ["ip", "route", "show", "$(reboot)", ";", "--json"])),
    ],
)  # fmt: skip
def test_passthrough_argv(word: str, args: list[str], expected: tuple[str, list[str]]) -> None:
    assert passthrough_argv(word, args) == expected


def test_passthrough_needs_a_guest() -> None:
    with pytest.raises(UsageError, match="route needs a GUEST"):
        passthrough_argv("route", [])


def test_global_flags_before_a_passthrough_word_are_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str], bool]] = []

    def fake(word: str, args: list[str], *, debug: bool) -> int:
        calls.append((word, list(args), debug))
        return 0

    monkeypatch.setattr("pipework.cli.fastpath.run_passthrough", fake)
    assert run(["--debug", "route", "web1", "--json", "show", "--debug"]) == 0
    assert calls == [("route", ["web1", "--json", "show", "--debug"], True)]


# -- --wait and wait --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--wait"], ("eth1", None)),
        (["--wait", "-i", "eth2"], ("eth2", None)),
        (["-ieth3", "--wait"], ("eth3", None)),
        (["--wait", "--ifname=eth4", "--timeout", "2.5"], ("eth4", 2.5)),
        (["--wait", "--timeout=0"], ("eth1", 0.0)),
    ],
)
def test_parse_wait(args: list[str], expected: tuple[str, float | None]) -> None:
    assert parse_wait(args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wait", "-i"], "option -i needs a value"),
        (["--wait", "web1"], "--wait does not take 'web1'"),
        (["--wait", "--timeout", "-1"], "out of range"),
        (["--wait", "--timeout", "soon"], "not a number"),
        (["--wait", "--timeout", "nan"], "out of range"),
        (["--wait", "-i", "eth1", "-i", "eth2"], "given twice"),
        (["--wait", "-i", "a" * 16], "16 bytes long"),
    ],
)
def test_parse_wait_refuses(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_wait(args)


def test_parse_seconds() -> None:
    assert parse_seconds("0") == 0
    assert parse_seconds("1e3") == 1000
    for bad in ("inf", "-0.1", ""):
        with pytest.raises(UsageError):
            parse_seconds(bad)


def test_wait_and_detach_options() -> None:
    assert check_wait("eth1", None) is None
    assert check_wait("eth1", "3") == 3
    check_detach("eth1", False)
    check_detach(None, True)
    with pytest.raises(UsageError, match="say which interface"):
        check_detach(None, False)
    with pytest.raises(UsageError, match="exclude each other"):
        check_detach("eth1", True)
    with pytest.raises(UsageError, match="not valid"):
        check_detach("a/b", False)


def _link(**changes: object) -> Link:
    base: dict[str, object] = {
        "index": 2, "ifname": "eth1", "kind": "veth", "mtu": 1500, "mac": None, "alias": None,
        "master": None, "up": True, "operstate": "UP", "link_type": 1, "max_mtu": None,
    }  # fmt: skip
    base.update(changes)
    return Link(**base)  # type: ignore[arg-type]


def test_operationally_up() -> None:
    assert operationally_up(_link())
    assert operationally_up(_link(operstate="UNKNOWN"))  # dummy, lo
    assert not operationally_up(_link(operstate="UNKNOWN", up=False))
    assert not operationally_up(_link(operstate="LOWERLAYERDOWN"))
    assert describe_state(None) == "does not exist"
    assert describe_state(_link(up=False)) == "exists but is down"
    assert "no carrier" in describe_state(_link(operstate="LOWERLAYERDOWN"))


# -- errors stay on one line ------------------------------------------------------------------


def test_one_line_escapes_control_characters() -> None:
    assert one_line("plain") == "plain"
    assert one_line("a\nb\tc\x1b[31m") == "a\\nb\\tc\\x1b[31m"


# -- the FORWARD trap -------------------------------------------------------------------------

NFT_CHAINS = json.dumps(
    {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}},
            {"chain": {"family": "inet", "table": "fw", "name": "forward", "hook": "forward", "policy": "drop"}},
            {"chain": {"family": "ip6", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}},
            {"chain": {"family": "inet", "table": "fw", "name": "input", "hook": "input", "policy": "drop"}},
            {"chain": {"family": "bridge", "table": "b", "name": "f", "hook": "forward", "policy": "drop"}},
            {"chain": {"family": "inet", "table": "fw", "name": "open", "hook": "forward", "policy": "accept"}},
        ]
    }
)  # fmt: skip


def test_dropping_nft_chains_by_family() -> None:
    assert firewall.dropping_nft(NFT_CHAINS, [4]) == [
        Chain("ip", "filter", "FORWARD"),
        Chain("inet", "fw", "forward"),
    ]
    assert Chain("ip6", "filter", "FORWARD") in firewall.dropping_nft(NFT_CHAINS, [4, 6])
    assert firewall.dropping_nft("not json", [4]) == []


def test_chain_tools() -> None:
    assert Chain("ip", "filter", "FORWARD").tool == "iptables"
    assert Chain("ip6", "filter", "FORWARD").tool == "ip6tables"
    assert Chain("inet", "filter", "FORWARD").tool == "nft"
    assert str(Chain("inet", "fw", "forward")) == "nft chain inet fw forward"


def test_dropping_iptables() -> None:
    assert firewall.dropping_iptables("-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n", 4) == [
        Chain("ip", "filter", "FORWARD")
    ]
    assert firewall.dropping_iptables("-P FORWARD ACCEPT\n", 4) == []


def test_iptables_allows() -> None:
    ours = '-A FORWARD -i br1 -o br1 -m comment --comment "pipework allow-forward br1" -j ACCEPT'
    assert firewall.iptables_allows(ours, "br1")
    assert not firewall.iptables_allows(ours, "br2")
    assert firewall.iptables_allows("-A DOCKER-USER -i br1 -j ACCEPT", "br1")
    assert firewall.iptables_allows("-A FORWARD -i br1 -o br1 -j ACCEPT", "br1")
    # Narrower rules do not count: they do not accept all of the bridge's traffic.
    assert not firewall.iptables_allows("-A FORWARD -i br1 -p tcp -j ACCEPT", "br1")
    assert not firewall.iptables_allows("-A FORWARD -i br1 -j DROP", "br1")
    assert firewall._iptables_owner(ours) == "br1"
    assert firewall._iptables_owner('-A FORWARD -m comment --comment "other" -j ACCEPT') is None
    # Another bridge's rule is not this bridge's, whatever the names share.
    br10 = ours.replace("br1", "br10")
    assert not firewall.iptables_allows(br10, "br1")
    assert firewall.iptables_allows(br10, "br10")
    assert firewall._iptables_owner(br10) == "br10"
    unquoted = "-A FORWARD -i br10 -o br10 -m comment --comment pipework-x -j ACCEPT"
    assert not firewall.iptables_allows(unquoted, "br1")


def test_nft_rule_json_keeps_a_hostile_name_a_string() -> None:
    hostile = 'br"; flush ruleset; "'
    command = json.loads(firewall.nft_insert(Chain("inet", "fw", "forward"), hostile))
    rule = command["nftables"][0]["insert"]["rule"]
    assert rule["comment"] == f"pipework allow-forward {hostile}"
    assert rule["expr"][0]["match"]["right"] == hostile
    assert rule["expr"][-1] == {"accept": None}
    listing = json.dumps({"nftables": [{"rule": {**rule, "handle": 7}}]})
    assert firewall.nft_rule_handles(listing, hostile) == [
        (Chain("inet", "fw", "forward"), 7, hostile)
    ]
    assert firewall.nft_rule_handles(listing, "br1") == []
    delete = json.loads(firewall.nft_delete(Chain("inet", "fw", "forward"), 7))
    assert delete["nftables"][0]["delete"]["rule"]["handle"] == 7


def test_allow_forward_refuses_names_it_would_write_into_rules() -> None:
    firewall.check_bridge_name("br-lan.10")
    with pytest.raises(UsageError, match="cannot write a rule"):
        firewall.check_bridge_name('br"x')


def test_iptables_rule_is_an_argv() -> None:
    assert firewall.iptables_rule("br1") == [
        "FORWARD", "-i", "br1", "-o", "br1", "-m", "comment",
        "--comment", "pipework allow-forward br1", "-j", "ACCEPT",
    ]  # fmt: skip


def test_trap_message_names_the_fix() -> None:
    message = firewall.trap_message("br1", [Chain("ip", "filter", "FORWARD")])
    assert "--allow-forward" in message and "iptables -I FORWARD -i br1 -o br1 -j ACCEPT" in message


def test_allow_forward_is_part_of_the_fingerprint_only_when_set() -> None:
    plain = AttachSpec(host="br1", guest="web1")
    assert plain.fingerprint("bridge", "br1") == AttachSpec(
        host="br1", guest="web1", allow_forward=False
    ).fingerprint("bridge", "br1")
    assert plain.fingerprint("bridge", "br1") != AttachSpec(
        host="br1", guest="web1", allow_forward=True
    ).fingerprint("bridge", "br1")


# -- inventory ------------------------------------------------------------------------------


def test_nsfs_mountpoint() -> None:
    line = "612 29 0:4 net:[4026532890] /run/netns/blue rw shared:270 - nsfs nsfs rw\n"
    assert nsfs_mountpoint(line) == "/run/netns/blue"
    spaced = "612 29 0:4 net:[4026532890] /run/netns/a\\040b rw - nsfs nsfs rw\n"
    assert nsfs_mountpoint(spaced) == "/run/netns/a b"
    assert nsfs_mountpoint("1 2 0:4 mnt:[4026531840] /x rw - nsfs nsfs rw") is None
    assert nsfs_mountpoint("24 1 8:1 / / rw - ext4 /dev/sda1 rw") is None
    assert nsfs_mountpoint("") is None


def test_guest_side_or_host_side() -> None:
    marker = Marker(guest="web1", ifname="eth1", kind="bridge", host="br1", hostif="pwabc")
    assert is_guest_side(marker, _link(ifname="eth1"))
    assert not is_guest_side(marker, _link(ifname="pwabc"))  # a host side elsewhere
    same = Marker(guest="web1", ifname="eth1", kind="bridge", host="br1", hostif="eth1")
    assert is_guest_side(same, _link(ifname="eth1"))


def test_marker_vlan_is_written_only_when_set() -> None:
    plain = Marker(guest="g", ifname="eth1", kind="bridge", host="br1")
    assert "vlan=" not in plain.format()
    tagged = Marker(guest="g", ifname="eth1", kind="ovs", host="ovs0", vlan="10")
    assert Marker.parse(tagged.format()) == tagged


def test_records_and_reports_as_dicts() -> None:
    record = AttachmentRecord(
        guest=GuestInfo(name="web1", key="a" * 64, runtime="docker", pid=42),
        ifname="eth1", kind="bridge", host="br1", host_ifname="pwabc", mac="02:aa:bb:cc:dd:ee",
        mtu=1500, vlan=None, address_method="static", addresses=("198.18.0.2/24",), dhcp=None,
    )  # fmt: skip
    data = record.to_dict()
    assert data["addresses"] == ["198.18.0.2/24"] and data["state"] == "attached"
    assert data["guest"]["name"] == "web1"
    report = GcReport(items=("x",), skipped=(), dry_run=True)
    assert report.to_dict() == {"dry_run": True, "items": ["x"], "skipped": []}


def test_table() -> None:
    text = format_table([["web1", "b"], ["c", "dd"]], header=("GUEST", "X"))
    assert text.splitlines() == ["GUEST  X", "web1   b", "c      dd"]
    odd = format_table([["netns:a\nb", "x"]], header=("GUEST", "X"))
    assert odd.splitlines()[1] == "netns:a\\nb  x"


@pytest.mark.parametrize(("text", "value"), [("10", 10), ("", None), ("²", None), ("١٢", None)])
def test_a_markers_vlan_is_read_as_ascii_digits_only(text, value):
    from pipework.engine.inventory import _int

    assert _int(text) == value
