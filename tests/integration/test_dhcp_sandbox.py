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
    # No CAP_SYS_ADMIN (and its own UTS namespace): the host's name stays.
    assert "hostname=" not in result.stdout
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
        f"echo lease > {missing}/x && ls /run && cat /proc/sys/net/ipv4/ip_forward",
        private=(f"{missing}={state / 'db'}",),
    )
    assert result.returncode == 0, result.stderr
    assert (state / "db" / "x").read_text() == "lease\n"
    assert not missing.parent.exists()  # made inside the sandbox only
    # Nothing else of the host's /run is there (no netns files, no sockets).
    assert result.stdout.split()[0] == "pwt-sandbox-missing" and "netns" in os.listdir("/run")


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
        "state": "bound", "family": "4", "event": fields["event"], "count": "1", "time": fields["time"],
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


DHCLIENT6 = {"reason": "BOUND6", "new_ip6_address": "2001:db8:70::15", "new_ip6_prefixlen": "128",
             "new_dhcp6_name_servers": "2001:db8:70::53", "new_dhcp6_domain_search": "pwt.test. b.test.",
             "new_max_life": "120"}  # fmt: skip
DHCPCD6 = {"reason": "BOUND6", "new_dhcp6_ia_na1_ia_addr1": "2001:db8:70::15",
           "new_dhcp6_ia_na1_ia_addr1_vltime": "120",
           "new_dhcp6_name_servers": "2001:db8:70::53", "new_dhcp6_domain_search": "pwt.test."}  # fmt: skip


def configured6(ns: infra.NetNS) -> list[str]:
    return [
        f"{a['local']}/{a['prefixlen']}"
        for entry in ip_json(ns, "addr", "show", "dev", "eth1")
        for a in entry["addr_info"]
        if a["family"] == "inet6" and a["scope"] == "global"
    ]


@pytest.mark.parametrize(
    ("env", "renew"), [(DHCLIENT6, "RENEW6"), (DHCPCD6, "REBIND6")], ids=["dhclient", "dhcpcd"]
)
def test_hook_configures_dhcpv6_as_one_address_and_no_route(hook_ns, env, renew):
    ns, hook, report = hook_ns
    run_hook(ns, hook, env)
    assert configured6(ns) == ["2001:db8:70::15/128"]
    assert [r for r in ip_json(ns, "-6", "route") if r["dst"] == "default"] == []
    fields = parse_report(report.read_text())
    assert (fields["state"], fields["family"], fields["address"]) == (
        "bound",
        "6",
        "2001:db8:70::15/128",
    )
    assert (fields["dns"], fields["domain"], fields["lease"]) == (
        "2001:db8:70::53",
        "pwt.test.",
        "120",
    )
    moved = {k: v.replace("::15", "::16") for k, v in env.items()}
    run_hook(ns, hook, {**moved, "reason": renew})
    assert configured6(ns) == ["2001:db8:70::16/128"]
    run_hook(ns, hook, {"reason": "EXPIRE6"})
    assert configured6(ns) == [] and parse_report(report.read_text())["state"] == "unbound"


def test_hook_refuses_a_hostile_dhcpv6_answer(hook_ns):
    ns, hook, report = hook_ns
    hostile = {**DHCLIENT6, "new_ip6_address": "2001:db8::1 dev lo; touch /tmp/pwt-pwned"}
    with pytest.raises(infra.CommandError):
        run_hook(ns, hook, hostile)
    assert not Path("/tmp/pwt-pwned").exists() and not report.exists()
    run_hook(ns, hook, {**DHCLIENT6, "new_dhcp6_name_servers": "2001:db8::53 $(reboot)"})
    assert parse_report(report.read_text())["dns"] == ""


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


# -- a compromised client -------------------------------------------------------------

DEFAULT_CAPS = (1 << 10) | (1 << 12) | (1 << 13)  # NET_BIND_SERVICE, NET_ADMIN, NET_RAW

PROBE = r"""
import ctypes, errno, json, os, socket, subprocess, sys
host_dir, pipework_pid, state = sys.argv[1], int(sys.argv[2]), os.getcwd()
libc = ctypes.CDLL(None, use_errno=True)
results = {}

def attempt(name, action):
    try:
        out = action()
    except OSError as exc:
        results[name] = errno.errorcode.get(exc.errno, str(exc.errno))
        return
    results[name] = "OK" if out is None or out == 0 else f"failed: {out}"

def write(path):
    with open(path, "w") as fh:
        fh.write("owned\n")

def call(result):
    if result != 0:
        raise OSError(ctypes.get_errno(), "")

def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True).returncode

write(f"{state}/still-writable")
attempt("write host dir", lambda: write(f"{host_dir}/direct"))
attempt("write via /proc/1/root", lambda: write(f"/proc/1/root{host_dir}/init"))
attempt("write via pipework's /proc/PID/root",
        lambda: write(f"/proc/{pipework_pid}/root{host_dir}/pipework"))
for entry in os.listdir("/proc"):
    if entry.isdigit():
        attempt(f"write via /proc/{entry}/root", lambda: write(f"/proc/{entry}/root{host_dir}/any"))
        attempt(f"write via /proc/{entry}/cwd", lambda: write(f"/proc/{entry}/cwd/../../probe"))
attempt("write /etc", lambda: write("/etc/pwt-probe"))
attempt("write /usr", lambda: write("/usr/pwt-probe"))
attempt("write /", lambda: write("/pwt-probe"))
attempt("write /proc/sys/kernel/hostname", lambda: write("/proc/sys/kernel/hostname"))
attempt("write /proc/sysrq-trigger", lambda: write("/proc/sysrq-trigger"))
attempt("remount / rw", lambda: call(libc.mount(None, b"/", None, 0x20, None)))
attempt("remount /usr rw", lambda: call(libc.mount(None, b"/usr", None, 0x20 | 0x1000, None)))
attempt("mount tmpfs", lambda: call(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None)))
attempt("mount proc", lambda: call(libc.mount(b"proc", b"/tmp", b"proc", 0, None)))
attempt("bind state over /usr", lambda: call(libc.mount(state.encode(), b"/usr", None, 0x1000, None)))
attempt("umount /proc", lambda: call(libc.umount2(b"/proc", 2)))
attempt("init_module", lambda: call(libc.syscall(175, b"\0" * 64, 64, b"")))
attempt("finit_module", lambda: call(libc.syscall(313, os.open("/dev/null", os.O_RDONLY), b"", 0)))
attempt("sethostname", lambda: call(libc.sethostname(b"pwned", 5)))
attempt("chroot", lambda: call(libc.chroot(b"/tmp")))
attempt("mknod", lambda: call(libc.mknod(f"{state}/sda".encode(), 0o60600, os.makedev(254, 0))))
attempt("setns to init's netns (again)", lambda: call(libc.setns(os.open("/proc/1/ns/net", os.O_RDONLY), 0)))
attempt("unshare a user namespace and remount rw",
        lambda: run("unshare", "-Urm", "sh", "-c", "mount -o remount,rw /usr && echo x > /usr/p"))
attempt("ptrace init", lambda: call(libc.ptrace(16, 1, None, None)))  # PTRACE_ATTACH
attempt("read init's memory", lambda: open("/proc/1/mem", "rb").read(1))
attempt("read init's environ", lambda: open("/proc/1/environ", "rb").read(1))
attempt("signal pipework", lambda: os.kill(pipework_pid, 0))
attempt("setuid to nobody", lambda: os.setuid(65534))
attempt("connect to a host socket", lambda: socket.socket(socket.AF_UNIX).connect(f"{host_dir}/sock"))
attempt("connect to docker", lambda: socket.socket(socket.AF_UNIX).connect("/run/docker.sock"))
attempt("open a host disk", lambda: open("/dev/vda", "rb"))
attempt("see /run/netns", lambda: os.listdir("/run/netns"))
attempt("read /etc/shadow", lambda: open("/etc/shadow").read(1))

def caps(argv):
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return {l.split(":")[0]: int(l.split()[1], 16) for l in out.splitlines() if l.startswith("Cap")}

status = open("/proc/self/status").read()
print(json.dumps({
    "results": results,
    "self": {l.split(":")[0]: l.split()[1] for l in status.splitlines() if l.startswith(("Cap", "NoNewPrivs"))},
    "exec": caps(["cat", "/proc/self/status"]),
    "setuid copy": caps([f"{state}/cat-suid", "/proc/self/status"]),
    "file caps copy": caps([f"{state}/cat-fcap", "/proc/self/status"]),
    "su": caps(["su", "root", "-s", "/bin/cat", "-c", "/proc/self/status"]),
    "securebits": int(libc.prctl(27, 0, 0, 0, 0)),
}))
"""


def file_capabilities(path: Path) -> None:
    """Give ``path`` every capability, permitted and effective (VFS_CAP_REVISION_2)."""
    import struct

    os.setxattr(path, "security.capability", struct.pack("<5I", 0x02000001, 0xFFFFFFFF, 0, 0xFF, 0))


def test_a_compromised_client_cannot_reach_the_host(make_netns, state, tmp_path_factory):
    import json
    import shutil
    import socket

    guest = make_netns("s")
    host_dir = tmp_path_factory.mktemp("host-owned")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(host_dir / "sock"))
    listener.listen()
    for name, mode in (("cat-suid", 0o4755), ("cat-fcap", 0o755)):
        shutil.copy("/usr/bin/cat", state / name)
        (state / name).chmod(mode)
    file_capabilities(state / "cat-fcap")
    links_before = infra.run(["ip", "-o", "link"]).stdout
    before = host_file_hashes()
    try:
        result = sandboxed(
            guest, state, "/usr/bin/python3", "-I", "-c", PROBE, str(host_dir), str(os.getpid())
        )
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # Every attack failed, each with a permission or absence error.
    broke = {name: how for name, how in report["results"].items() if how == "OK"}
    assert broke == {}
    assert len(report["results"]) >= 30
    assert set(report["results"].values()) <= {
        "EPERM", "EACCES", "EROFS", "ENOENT", "ESRCH", "failed: 1",
        "ENOSYS",  # a kernel without module support (and no CAP_SYS_MODULE anyway)
    }  # fmt: skip
    assert (state / "still-writable").read_text() == "owned\n"
    # Nothing of the host changed; only the state directory was written.
    assert sorted(p.name for p in host_dir.iterdir()) == ["sock"]
    assert host_file_hashes() == before
    assert infra.run(["ip", "-o", "link"]).stdout == links_before
    # Exactly the three capabilities, in every set; for good.
    caps = {k: int(v, 16) for k, v in report["self"].items() if k.startswith("Cap")}
    assert caps == dict.fromkeys(["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"], DEFAULT_CAPS)
    assert report["self"]["NoNewPrivs"] == "1"
    assert report["securebits"] == 0b101011  # NOROOT, locked; fixup locked; keep-caps locked
    assert report["exec"] == caps
    for regain in ("setuid copy", "file caps copy", "su"):
        got = report[regain]
        if got:  # (su may refuse to run at all)
            assert got["CapEff"] | got["CapPrm"] | got["CapBnd"] <= DEFAULT_CAPS, regain
