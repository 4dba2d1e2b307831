"""Default-route records (backends/shared/routes.py): what is read back is
checked strictly; anything else is no record at all."""

from __future__ import annotations

import json
import socket

import pytest

from pipework.backends.shared.routes import read_record, record_path

GOOD = {
    "guest": "netns:blue",
    "ifname": "eth1",
    "version": 4,
    "oif": 7,
    "gateway": "198.18.121.1",
    "previous": {
        "family": int(socket.AF_INET),
        "dst": "0.0.0.0/0",
        "gateway": "198.18.120.1",
        "oif": 3,
        "proto": 4,
    },
    "previous_ifname": "e0",
}


def write(tmp_path, data: object) -> object:
    path = record_path(str(tmp_path), "netns:blue", "eth1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return read_record(path)


def test_a_good_record_is_read_back_rebuilt(tmp_path):
    record = write(tmp_path, GOOD)
    assert record is not None and record["previous"] == GOOD["previous"]


@pytest.mark.parametrize(
    "change",
    [
        {"oif": True},
        {"oif": -1},
        {"version": 5},
        {"gateway": 42},
        {"previous": {**GOOD["previous"], "gateway": "198.18.120.1; rm -rf /"}},
        {"previous": {**GOOD["previous"], "gateway": "2001:db8::1"}},  # the wrong family
        {"previous": {**GOOD["previous"], "dst": "198.18.0.0/15"}},  # not a default route
        {"previous": {**GOOD["previous"], "priority": 1 << 40}},
        {"previous": {**GOOD["previous"], "oif": "3"}},
        {"previous": {**GOOD["previous"], "proto": 300}},
        {"previous_ifname": None},
        {"previous": [1, 2]},
    ],
)
def test_a_bad_record_is_none(tmp_path, change):
    assert write(tmp_path, {**GOOD, **change}) is None


@pytest.mark.parametrize("text", ["", "[]", "{", "null", "x" * 10000])
def test_garbage_is_none(tmp_path, text):
    assert write(tmp_path, text) is None


def test_only_checked_fields_come_back(tmp_path):
    previous = {**GOOD["previous"], "table": 100, "type": 7, "extra": "x"}
    record = write(tmp_path, {**GOOD, "previous": previous})
    assert record is not None and set(record["previous"]) == set(GOOD["previous"])
