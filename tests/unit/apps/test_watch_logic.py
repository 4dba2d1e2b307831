"""Pure logic of ``pipework watch``: labels, stable MACs, status, log lines."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace

import pytest

from pipework.apps.watch import read_status, specs_from_labels, with_stable_mac
from pipework.cli.watching import JsonLines
from pipework.engine import AttachSpec
from pipework.engine.events import GuestEvent
from pipework.engine.specs import derive_mac

CID = "3a55e189703c3f8596828a2b1abac08804d9d5744f12f372bb3a94dd268bbb6f"


def event(**labels: str) -> GuestEvent:
    return GuestEvent("start", f"docker:{CID}", CID, "web1", labels)


def test_labels_become_attach_specs():
    specs, errors = specs_from_labels(
        event(**{
            "pipework.eth1": "br1 198.18.30.2/24@198.18.30.1",
            "pipework.eth2": "ovsbr0 'dhcp:-f' U:web1@10 --mtu 1400",
            "com.example.other": "ignored",
        })
    )  # fmt: skip
    assert errors == []
    eth1, eth2 = specs
    assert (eth1.host, eth1.guest, eth1.ifname) == ("br1", f"docker:{CID}", "eth1")
    assert str(eth1.address) == "198.18.30.2/24@198.18.30.1"
    assert (eth2.host, eth2.ifname, eth2.address.method, eth2.vlan, eth2.mtu) == (
        "ovsbr0", "eth2", "dhcp", 10, 1400,
    )  # fmt: skip
    assert eth2.mac == derive_mac("web1")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("pipework.eth1", "", "is empty"),
        ("pipework.eth1", "br1 198.18.30.2", "netmask"),
        ("pipework.eth1", "br1 0/0 -i eth9", "names the interface already"),
        ("pipework.eth1", "br1 0/0 --ifname=eth9", "names the interface already"),
        ("pipework.eth1", "'unterminated", "No closing quotation"),
        ("pipework.waytoolongifname0", "br1 0/0", "at most 15"),
        ("pipework.eth1", "br1 $(reboot) 0/0", "'0/0' is not a MAC address"),
        ("pipework.eth1", "br1; rm -rf / 0/0", "unknown option -rf"),
        ("pipework.eth1", "br1 `reboot`", "is neither ADDR/PREFIX"),
    ],
)
def test_bad_labels_are_errors_not_exceptions(key, value, fragment):
    specs, errors = specs_from_labels(event(**{key: value}))
    assert specs == [] and len(errors) == 1
    assert str(errors[0]).startswith(f"label {key} of web1: ") and fragment in str(errors[0])


def test_a_bad_label_does_not_hide_the_good_ones():
    specs, errors = specs_from_labels(
        event(**{"pipework.eth1": "br1 nonsense!", "pipework.eth2": "br1 0/0"})
    )
    assert [s.ifname for s in specs] == ["eth2"] and len(errors) == 1


def test_stable_mac_from_guest_and_interface():
    spec = AttachSpec(host="br1", guest="docker:x", ifname="eth1")
    stable = with_stable_mac(spec, CID)
    assert stable.mac == derive_mac(f"{CID}/eth1") == with_stable_mac(spec, CID).mac
    assert with_stable_mac(replace(spec, ifname="eth2"), CID).mac != stable.mac
    given = AttachSpec(host="br1", guest="docker:x", mac="02:00:00:00:00:01")
    assert with_stable_mac(given, CID).mac == "02:00:00:00:00:01"
    ipoib = AttachSpec(host="ib0", guest="docker:x", kind="ipoib")
    assert with_stable_mac(ipoib, CID).mac is None  # IPoIB refuses MACs


def test_replace_keeps_a_tagged_spec_valid():
    spec = AttachSpec(host="ovs0", guest="docker:x", tag="10")
    assert replace(spec, mac="02:00:00:00:00:02").vlan == 10
    assert replace(spec, guest_key="k").vlan == 10


def test_status_of_a_live_and_of_a_dead_watcher(tmp_path):
    path = tmp_path / "status.json"
    assert read_status(path) is None
    path.write_text(json.dumps({"pid": os.getpid(), "guests": {}}))
    assert read_status(path) == {"pid": os.getpid(), "guests": {}}
    path.write_text(json.dumps({"pid": 2**22 + 12345, "guests": {}}))  # beyond pid_max
    assert read_status(path) is None
    path.write_text("{not json")
    assert read_status(path) is None


def test_json_log_lines_carry_the_structured_fields():
    record = logging.LogRecord(
        "pipework.watch", logging.INFO, __file__, 1, "created %s", ("eth1",), None
    )
    record.guest, record.ifname, record.event, record.latency_ms = "web1", "eth1", "created", 9.5
    data = json.loads(JsonLines().format(record))
    assert data["message"] == "created eth1" and data["level"] == "info"
    assert (data["guest"], data["ifname"], data["event"], data["latency_ms"]) == (
        "web1", "eth1", "created", 9.5,
    )  # fmt: skip
    assert "source" not in data
