"""The pieces that keep DHCP off the host: the client sandbox and the hook.

The sandbox is run exactly as the providers run it (``python -I -S
sandbox.py ...``) with small programs in place of a DHCP client; the hook
is run with each client's environment conventions, in a test namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import infra
from support.dhcp import host_file_hashes, ip_json

from pipework.backends.addresses.dhcp import clients as dhcp_clients
from pipework.backends.addresses.dhcp.toolbox import hook_script, parse_report

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("host_files_unchanged")]


def sandboxed(
    netns: infra.NetNS, state: Path, *argv: str, private: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    fd = os.open(netns.path, os.O_RDONLY)
    try:
        command = [sys.executable, "-I", "-S", dhcp_clients.SANDBOX, "--netns-fd", str(fd)]
        command += ["--state", str(state)]
        for item in private:
            command += ["--private", item]
        return subprocess.run(
            [*command, "--", *argv],
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(fd)


@pytest.fixture
def state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("state")


def test_the_client_can_write_its_state_and_nothing_of_the_host(make_netns, state):
    guest = make_netns("s")
    before = host_file_hashes()
    script = (
        "for f in /etc/resolv.conf /etc/hosts /etc/hostname /tmp/pwt-sandbox-probe; do "
        "  if echo clobbered > $f 2>/dev/null; then echo WROTE $f; fi; done; "
        "hostname clobbered.example 2>/dev/null && echo hostname=$(hostname); "
        "echo ok > state-file && cat state-file; "
        "ip -o link | cut -d: -f2"
    )
    result = sandboxed(guest, state, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert "WROTE" not in result.stdout
    assert host_file_hashes() == before and not Path("/tmp/pwt-sandbox-probe").exists()
    # Its own UTS namespace: a hostname change stays inside.
    assert "hostname=clobbered.example" in result.stdout
    assert os.uname().nodename != "clobbered.example"
    # It runs in the guest's namespace, in its state directory, which it may write.
    assert (state / "state-file").read_text() == "ok\n"
    assert [w.strip() for w in result.stdout.splitlines()[-1:]] == ["lo"]
    assert (state / "mntns").read_text().count(" ") == 1


def test_private_directories_appear_only_inside(make_netns, state):
    guest = make_netns("s")
    missing = Path("/run/pwt-sandbox-missing/inner")
    assert not missing.parent.exists()
    (state / "db").mkdir()
    result = sandboxed(
        guest,
        state,
        "sh",
        "-c",
        f"echo lease > {missing}/x && ls /run | grep -c . && cat /proc/sys/net/ipv4/ip_forward",
        private=(f"{missing}={state / 'db'}",),
    )
    assert result.returncode == 0, result.stderr
    assert (state / "db" / "x").read_text() == "lease\n"
    assert not missing.parent.exists()  # grafted inside the sandbox only
    # The rest of /run is still there, and the network sysctls are the guest's.
    assert int(result.stdout.split()[0]) >= len(os.listdir("/run")) and "netns" in os.listdir(
        "/run"
    )


def test_network_sysctls_are_the_guests_and_writable(make_netns, state):
    guest = make_netns("s")
    key = "/proc/sys/net/ipv4/conf/lo/forwarding"
    host_value = Path(key).read_text()
    flipped = "0" if host_value.strip() == "1" else "1"
    result = sandboxed(guest, state, "sh", "-c", f"echo {flipped} > {key} && cat {key}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == flipped
    assert Path(key).read_text() == host_value  # the host's is untouched
    assert guest.exec("cat", key).stdout.strip() == flipped


def test_setup_failures_are_one_line(make_netns, state):
    guest = make_netns("s")
    result = sandboxed(guest, state, "/nonexistent/dhclient")
    assert result.returncode == dhcp_clients.SANDBOX_NOT_FOUND
    assert (
        result.stderr
        == "pipework-sandbox: cannot run /nonexistent/dhclient: No such file or directory\n"
    )
    bad = sandboxed(guest, state / "missing", "true")
    assert bad.returncode == dhcp_clients.SANDBOX_SETUP_FAILED
    assert bad.stderr.startswith("pipework-sandbox: ") and bad.stderr.count("\n") == 1


# -- the hook -------------------------------------------------------------------------

DHCLIENT = {"reason": "BOUND", "new_ip_address": "198.18.70.5",
            "new_subnet_mask": "255.255.255.0", "new_routers": "198.18.70.1 198.18.70.2",
            "new_domain_name_servers": "198.18.70.53 198.18.70.54",
            "new_domain_name": "pwt.test", "new_dhcp_lease_time": "120",
            "new_dhcp_server_identifier": "198.18.70.1"}  # fmt: skip
DHCPCD = {**DHCLIENT, "new_subnet_cidr": "24"}
UDHCPC = {"ip": "198.18.70.5", "subnet": "255.255.255.0", "mask": "24",
          "router": "198.18.70.1 198.18.70.2", "dns": "198.18.70.53 198.18.70.54",
          "domain": "pwt.test", "lease": "120", "serverid": "198.18.70.1"}  # fmt: skip


def run_hook(ns: infra.NetNS, hook: Path, env: dict[str, str], *args: str) -> None:
    environment = {"interface": "eth1", **env}
    argv = ["ip", "netns", "exec", ns.name, "env", "-i"]
    argv += [f"{k}={v}" for k, v in environment.items()]
    infra.run([*argv, "/bin/sh", str(hook), *args])


@pytest.fixture
def hook_ns(make_netns, tmp_path):
    ns = make_netns("h")
    ns.exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "peer1")
    ns.exec("ip", "link", "set", "eth1", "up")
    hook = tmp_path / "hook"
    hook.write_text(hook_script(str(tmp_path / "lease")))
    return ns, hook, tmp_path / "lease"


def configured(ns: infra.NetNS) -> tuple[list[str], list[str]]:
    addresses = [
        f"{a['local']}/{a['prefixlen']}"
        for entry in ip_json(ns, "addr", "show", "dev", "eth1")
        for a in entry["addr_info"]
        if a["family"] == "inet"
    ]
    defaults = [r["gateway"] for r in ip_json(ns, "route") if r["dst"] == "default"]
    return addresses, defaults


@pytest.mark.parametrize(
    ("env", "args", "lost"),
    [
        (DHCLIENT, (), {"reason": "EXPIRE"}),
        (DHCPCD, (), {"reason": "NAK"}),
        (UDHCPC, ("bound",), {}),
    ],
    ids=["dhclient", "dhcpcd", "udhcpc"],
)
def test_hook_configures_reports_renews_and_unbinds(hook_ns, env, args, lost):
    ns, hook, report = hook_ns
    run_hook(ns, hook, env, *args)
    assert configured(ns) == (["198.18.70.5/24"], ["198.18.70.1"])
    fields = parse_report(report.read_text())
    assert fields == {
        "state": "bound", "event": fields["event"], "count": "1", "time": fields["time"],
        "address": "198.18.70.5/255.255.255.0", "routers": "198.18.70.1 198.18.70.2",
        "dns": "198.18.70.53 198.18.70.54", "domain": "pwt.test", "lease": "120",
        "server": "198.18.70.1",
    }  # fmt: skip
    # A renewal with another address replaces the old one.
    moved = {k: v.replace("198.18.70.5", "198.18.70.6") for k, v in env.items()}
    if "reason" in moved:
        moved["reason"] = "RENEW"
    run_hook(ns, hook, moved, *(["renew"] if args else []))
    assert configured(ns) == (["198.18.70.6/24"], ["198.18.70.1"])
    assert parse_report(report.read_text())["count"] == "2"
    # Losing the lease removes the address and the route.
    run_hook(ns, hook, lost, *(["deconfig"] if args else []))
    assert configured(ns) == ([], [])
    assert parse_report(report.read_text())["state"] == "unbound"


def test_hook_refuses_garbage_and_ignores_other_events(hook_ns):
    ns, hook, report = hook_ns
    hostile = {**UDHCPC, "ip": "198.18.70.5; touch /tmp/pwt-pwned", "domain": "x\nstate=bound"}
    with pytest.raises(infra.CommandError):
        run_hook(ns, hook, hostile, "bound")
    assert not Path("/tmp/pwt-pwned").exists() and not report.exists()
    for event in ({"reason": "PREINIT"}, {"reason": "STOPPED"}, {"reason": "CARRIER"}):
        run_hook(ns, hook, event)
    assert configured(ns) == ([], []) and not report.exists()
    run_hook(ns, hook, {**UDHCPC, "domain": "a.test\nstate=unbound", "router": "bogus"}, "bound")
    fields = parse_report(report.read_text())
    assert fields["state"] == "bound" and fields["domain"] == "a.teststateunbound"
    assert fields["routers"] == "" and configured(ns) == (["198.18.70.5/24"], [])


def test_hook_prints_its_report_for_the_helper(hook_ns, tmp_path):
    ns, _, _ = hook_ns
    hook = tmp_path / "echo-hook"
    hook.write_text(hook_script(str(tmp_path / "lease2"), echo=True))
    out = infra.run(
        ["ip", "netns", "exec", ns.name, "env", "-i", "interface=eth1"]
        + [f"{k}={v}" for k, v in UDHCPC.items()]
        + ["/bin/sh", str(hook), "bound"]
    ).stdout
    from pipework.backends.addresses.dhcp.toolbox import LOG_END, last_logged_report

    assert out.splitlines()[-1] == LOG_END
    assert last_logged_report(out) == parse_report((tmp_path / "lease2").read_text())
