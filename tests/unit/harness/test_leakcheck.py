"""The session-end leak check's comparison logic (pure, no root needed)."""

from __future__ import annotations

from support.leakcheck import Snapshot, diff_snapshots


def _snap(**overrides: object) -> Snapshot:
    base: dict[str, object] = {
        "interfaces": ["eth0", "lo"],
        "netns": [],
        "ovs_bridges": [],
        "processes": ["dhclient[42]"],
        "mounts": [],
        "tmp_dirs": [],
        "run_files": [],
        "fixture_cleanups": [],
        "files": {"/etc/resolv.conf": "aa", "/etc/hosts": "bb", "/etc/hostname": None},
    }
    base.update(overrides)
    return base  # type: ignore[return-value]


def test_identical_snapshots_are_clean() -> None:
    diff = diff_snapshots(_snap(), _snap())
    assert not diff
    assert diff.report() == "no leaks"


def test_order_does_not_matter() -> None:
    assert not diff_snapshots(_snap(interfaces=["lo", "eth0"]), _snap(interfaces=["eth0", "lo"]))


def test_new_interface_namespace_and_bridge_are_leaks() -> None:
    after = _snap(
        interfaces=["eth0", "lo", "veth1pl123"],
        netns=["pwt-h-abc123"],
        ovs_bridges=["pwt-ovs"],
    )
    diff = diff_snapshots(_snap(), after)
    assert diff
    assert diff.added == {
        "interfaces": ["veth1pl123"],
        "netns": ["pwt-h-abc123"],
        "ovs_bridges": ["pwt-ovs"],
    }
    report = diff.report()
    assert "left behind: host network interfaces: veth1pl123" in report
    assert "left behind: network namespaces: pwt-h-abc123" in report
    assert "left behind: Open vSwitch bridges: pwt-ovs" in report


def test_removed_host_interface_is_reported() -> None:
    diff = diff_snapshots(_snap(), _snap(interfaces=["lo"]))
    assert diff.removed == {"interfaces": ["eth0"]}
    assert "disappeared: host network interfaces: eth0" in diff.report()


def test_process_that_exited_is_not_a_leak_but_a_new_one_is() -> None:
    assert not diff_snapshots(_snap(), _snap(processes=[]))
    diff = diff_snapshots(_snap(), _snap(processes=["dhclient[42]", "udhcpc[99]"]))
    assert diff.added == {"processes": ["udhcpc[99]"]}
    assert not diff.removed


def test_changed_appeared_and_vanished_files() -> None:
    after = _snap(files={"/etc/resolv.conf": "zz", "/etc/hostname": "cc"})
    diff = diff_snapshots(_snap(), after)
    assert diff.changed_files == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    assert "host file changed: /etc/resolv.conf" in diff.report()


def test_fixture_cleanups_mounts_and_tmp_dirs_are_leaks() -> None:
    after = _snap(
        fixture_cleanups=["pid 7 (dhclient eth1) still running in netns pwt-g-1"],
        mounts=["/tmp/pwt-dockerd-x/data"],
        tmp_dirs=["/tmp/pwt-dockerd-x"],
        run_files=["/run/pipework/phys/0123456789"],
    )
    diff = diff_snapshots(_snap(), after)
    assert set(diff.added) == {"fixture_cleanups", "mounts", "tmp_dirs", "run_files"}
    assert "still running in netns pwt-g-1" in diff.report()
    assert "left behind: files in pipework's RUN_DIR: /run/pipework/phys/0123456789" in (
        diff.report()
    )


def test_missing_categories_count_as_empty() -> None:
    before = _snap()
    del before["tmp_dirs"]  # type: ignore[misc]
    assert not diff_snapshots(before, _snap())
