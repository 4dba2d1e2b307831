"""The host clients' kept(): evidence before trust, malformed state skipped."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from pipework.backends.addresses.dhcp import clients as dhcp_clients
from pipework.backends.addresses.dhcp.clients import HostClientProvider, Udhcpc
from pipework.backends.addresses.dhcp.toolbox import (
    StateDir,
    recorded_request,
    request_record,
)
from pipework.engine import AddressSpec, EngineConfig

pytestmark = pytest.mark.anyio


def ns(kind: str) -> tuple[int, int]:
    st = os.stat(f"/proc/self/ns/{kind}")
    return (st.st_dev, st.st_ino)


class Myself(Udhcpc):
    """A client named like this test process, so that it passes for one."""

    name = (Path("/proc/self/comm").read_text()).strip()


def meta(**over):
    base = {
        "provider": Myself.name,
        "mode": "kept",
        "guest": "netns:blue",
        "guest_name": "netns:blue",
        "runtime": "netns",
        "pid": None,
        "ifname": "eth1",
        "netns": list(ns("net")),
        "anchor": "/run/netns/blue",
        "manager": [os.getpid(), dhcp_clients._starttime(os.getpid())],
        "request": request_record(AddressSpec.parse("udhcpc-f", dns=True, timeout=7)),
    }
    base.update(over)
    return base


def state(run_dir: Path, name: str, data, mntns=True, lease=True) -> StateDir:
    directory = StateDir(run_dir / "dhcp" / name)
    directory.path.mkdir(parents=True)
    text = data if isinstance(data, str) else json.dumps(data)
    (directory.path / "attachment.json").write_text(text)
    if mntns:
        (directory.path / "mntns").write_text("{} {}\n".format(*ns("mnt")))
    if lease:
        (directory.path / "lease").write_text(
            "state=bound\nevent=renew\ncount=2\ntime=1795897416\n"
            "address=198.18.100.37/255.255.255.0\nlease=120\n"
        )
    return directory


def provider(run_dir: Path) -> HostClientProvider:
    return HostClientProvider(Myself(), EngineConfig(run_dir=str(run_dir)))


async def test_a_live_kept_client_with_its_lease(tmp_path):
    state(tmp_path, "aaaaaaaaaa", meta())
    (client,) = await provider(tmp_path).kept()
    assert client.alive and client.pid == os.getpid()
    assert client.identity == (Myself.name, "netns:blue", "eth1")
    assert (client.lease_address, client.lease_seconds, client.renewals) == (
        "198.18.100.37/24",
        120,
        2,
    )
    assert client.address == AddressSpec.parse("udhcpc-f", dns=True, timeout=7)
    assert client.netns == ns("net") and client.anchor == "/run/netns/blue"
    assert client.lease_stamp and client.renewed_at == 1795897416.0


async def test_the_stamp_changes_when_the_hook_rewrites_the_report(tmp_path):
    directory = state(tmp_path, "aaaaaaaaaa", meta())
    (before,) = await provider(tmp_path).kept()
    new = directory.path / "lease.new"
    new.write_text((directory.path / "lease").read_text().replace("count=2", "count=3"))
    new.replace(directory.path / "lease")
    (after,) = await provider(tmp_path).kept()
    assert after.lease_stamp != before.lease_stamp and after.renewals == 3


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"manager": [os.getpid(), 1]}, "another start time: the PID was reused"),
        ({"manager": [2**22 + 5, 1]}, "no such process"),
        ({"netns": [1, 2]}, "not in the guest's namespace"),
        ({"provider": "dhclient"}, "another client's: not listed"),
    ],
)
async def test_a_pid_is_not_evidence_by_itself(tmp_path, change, why):
    state(tmp_path, "aaaaaaaaaa", meta(**change))
    found = await provider(tmp_path).kept()
    assert all(not c.alive for c in found), why


async def test_not_in_the_sandbox_is_not_alive(tmp_path):
    state(tmp_path, "aaaaaaaaaa", meta(), mntns=False)
    (client,) = await provider(tmp_path).kept()
    assert not client.alive


async def test_one_shot_and_unstarted_states(tmp_path):
    state(tmp_path, "aaaaaaaaaa", meta(mode="one-shot"))
    state(tmp_path, "bbbbbbbbbb", meta(manager=None), lease=False)
    (client,) = await provider(tmp_path).kept()
    assert client.pid is None and not client.alive and client.lease_address is None


@pytest.mark.parametrize(
    "data",
    [
        meta(manager="4242"),
        meta(manager=[-1, 5]),
        meta(manager=[True, 5]),
        meta(netns="1 2"),
        meta(netns=[1]),
        meta(guest=7),
        meta(ifname=""),
        meta(anchor="relative/path"),
        meta(pid="12"),
        meta(request=[]),
        meta(request={"method": "static"}),
        meta(request={"method": "udhcpc-f", "options": "-O x"}),
        meta(request={"method": "udhcpc-f", "settings": {"evil": 1}}),
        meta(request={"method": "udhcpc-f", "settings": {"timeout": -3}}),
        meta(request={"method": "udhcpc-f", "settings": {"timeout": [1]}}),
        meta(request={"method": "udhcpc-f", "settings": {"image": 5}}),
        meta(request={"method": "udhcpc-f", "settings": {"dns": "yes"}}),
    ],
)
async def test_malformed_state_is_one_warning_never_a_traceback(tmp_path, caplog, data):
    state(tmp_path, "aaaaaaaaaa", data)
    state(tmp_path, "bbbbbbbbbb", meta(ifname="eth2"))
    with caplog.at_level(logging.WARNING, logger="pipework"):
        found = await provider(tmp_path).kept()
    assert [c.ifname for c in found] == ["eth2"]
    (record,) = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert "aaaaaaaaaa" in record.getMessage() and "\n" not in record.getMessage()


async def test_garbage_files_are_skipped_quietly(tmp_path):
    state(tmp_path, "aaaaaaaaaa", "{not json")
    state(tmp_path, "bbbbbbbbbb", meta(), mntns=False)
    (tmp_path / "dhcp" / "bbbbbbbbbb" / "mntns").write_text("x y\n")
    state(tmp_path, "cccccccccc", meta(ifname="eth3"), lease=False)
    (tmp_path / "dhcp" / "cccccccccc" / "lease").symlink_to("/etc/hostname")
    (tmp_path / "dhcp" / "link").symlink_to(tmp_path / "dhcp" / "cccccccccc")
    found = await provider(tmp_path).kept()
    assert [(c.ifname, c.lease_stamp) for c in found] == [("eth3", "")]


def test_recorded_request_round_trip_and_fallback():
    spec = AddressSpec.parse("udhcpc:-O 42", dns=True)
    assert recorded_request({"request": request_record(spec)}, "udhcpc-f") == spec
    assert recorded_request({}, "dhclient-f") == AddressSpec(method="dhclient-f")
