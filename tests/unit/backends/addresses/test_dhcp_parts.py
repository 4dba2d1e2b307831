"""DHCP without root: request parsing, the clients' command lines, option
vetting, lease reports, the hook's text, state directories, the sandbox's
pure helpers."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipework import AddressSpec, AttachSpec
from pipework.apps.grammar import parse_legacy
from pipework.backends.addresses.dhcp import clients as dhcp_clients
from pipework.backends.addresses.dhcp import helper as dhcp_container
from pipework.backends.addresses.dhcp import sandbox
from pipework.backends.addresses.dhcp.clients import Dhclient, Dhcpcd, HostClientProvider, Run
from pipework.backends.addresses.dhcp.toolbox import (
    LOG_END,
    LOG_PREFIX,
    UDHCPC_OPTIONS,
    GuestResolvConf,
    Lease,
    StateDir,
    dhcp_hostname,
    hook_script,
    last_logged_report,
    last_words,
    parse_report,
    resolv_conf_text,
    udhcpc_args,
)
from pipework.cli.render import describe
from pipework.engine import EngineConfig, GuestInfo, UnsupportedError, UsageError
from pipework.engine.specs import Attachment

NETNS = GuestInfo(name="netns:blue", key="netns:blue", runtime="netns")
DOCKER = GuestInfo(name="web_1", key="3a55" * 16, runtime="docker", pid=4242)

# -- the request -------------------------------------------------------------------------


def test_dhcp_options_on_the_address():
    spec = AddressSpec.parse("dhclient-f", dns=True, timeout="2.5", image=None)
    assert (spec.method, spec.dns, spec.timeout, spec.image) == ("dhclient-f", True, 2.5, None)
    assert AddressSpec.parse("dhcp:-f", image="pwt/busybox:1").image == "pwt/busybox:1"
    assert AddressSpec.parse("udhcpc:-O 121 -V 'a b'").options == ("-O", "121", "-V", "a b")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dns": True}, "apply to DHCP addressing only"),
        ({"timeout": 5}, "apply to DHCP addressing only"),
        ({"image": "busybox"}, "apply to DHCP addressing only"),
    ],
)
def test_dhcp_options_refused_for_static(kwargs, message):
    with pytest.raises(UsageError, match=message):
        AddressSpec.parse("198.18.1.2/24", **kwargs)
    with pytest.raises(UsageError, match=message):
        AddressSpec.parse("0/0", **kwargs)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", "86401"])
def test_bad_timeouts(value):
    with pytest.raises(UsageError, match="timeout"):
        AddressSpec.parse("udhcpc", timeout=value)


def test_bad_image():
    with pytest.raises(UsageError, match="is not an image name"):
        AddressSpec.parse("dhcp", image="busy box")


def test_legacy_grammar_takes_the_dhcp_options_anywhere():
    spec = parse_legacy(
        ["--dns", "br1", "web1", "--dhcp-timeout=7", "dhcp:-f", "--dhcp-image", "img", "U:web1"]
    )
    address = spec.address
    assert (address.method, address.options, address.dns) == ("dhcp", ("-f",), True)
    assert (address.timeout, address.image, spec.mac) == (7.0, "img", "02:" + spec.mac[3:])
    with pytest.raises(UsageError, match="--dhcp-timeout is given twice"):
        parse_legacy(["br1", "web1", "dhcp", "--dhcp-timeout", "1", "--dhcp-timeout", "2"])
    with pytest.raises(UsageError, match="needs a value"):
        parse_legacy(["br1", "web1", "dhcp", "--dhcp-image"])


def test_fingerprint_counts_dns_but_not_timeout_or_image():
    def cfg(**kwargs):
        spec = AttachSpec(host="br1", guest="web1", address=AddressSpec.parse("dhcp", **kwargs))
        return spec.fingerprint("bridge", "br1")

    assert cfg() == cfg(timeout=3) == cfg(image="other")
    assert cfg(dns=True) != cfg()
    # Without --dns, the fingerprint is what it was before the DHCP options
    # existed, so attachments made by older versions stay "unchanged".
    before = hashlib.sha1("\0".join(["bridge", "br1", "dhcp", *[""] * 7]).encode()).hexdigest()
    assert cfg() == before[:12]


def test_results_carry_dns_and_domain():
    att = Attachment(
        guest=NETNS, ifname="eth1", kind="bridge", host="br1", host_ifname="pw0123456789",
        mac="02:aa:bb:cc:dd:ee", mtu=1500, vlan=None, address_method="dhclient",
        addresses=("198.18.100.20/24",), gateway="198.18.100.1", status="created",
        dns=("198.18.100.53", "198.18.100.54"), domain="pwt.test",
    )  # fmt: skip
    assert att.to_dict()["dns"] == ["198.18.100.53", "198.18.100.54"]
    assert att.to_dict()["domain"] == "pwt.test"
    assert describe(att) == (
        "created: eth1 in netns:blue on bridge br1 (host side pw0123456789; 198.18.100.20/24; "
        "via 198.18.100.1; dns 198.18.100.53, 198.18.100.54; domain pwt.test; mac 02:aa:bb:cc:dd:ee)"
    )


# -- names, options, command lines ---------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "hostname"),
    [
        (DOCKER, "web-1"),
        (NETNS, "blue"),
        (GuestInfo(name="/run/netns/red", key="/run/netns/red", runtime="path"), "red"),
        (GuestInfo(name="pid:42", key="pid:42", runtime="pid", pid=42), "pid-42"),
        (GuestInfo(name="docker:x.y", key="k", runtime="docker", pid=1), "x-y"),
        (GuestInfo(name="netns:___", key="netns:___", runtime="netns"), None),
    ],
)
def test_dhcp_hostname_is_a_valid_label(info, hostname):
    assert dhcp_hostname(info) == hostname


@pytest.mark.parametrize(
    "options",
    [(), ("-O", "121"), ("-V", "-s"), ("-x", "hostname:other"), ("--vendorclass=x",), ("-RS",)],
)
def test_udhcpc_options_accepted(options):
    UDHCPC_OPTIONS.check(options)


@pytest.mark.parametrize(
    ("options", "refused"),
    [
        (("-s", "/bin/true"), "-s"),
        (("-s/bin/true",), "-s"),
        (("--script=/x",), "--script"),
        (("-Rq",), "-q"),
        (("-O", "121", "-p", "/x"), "-p"),
        (("-if",), "-i"),
    ],
)
def test_udhcpc_options_refused(options, refused):
    with pytest.raises(UsageError, match=f"udhcpc option {refused} is set by pipework"):
        UDHCPC_OPTIONS.check(options)


def test_extra_interfaces_are_refused():
    with pytest.raises(UsageError, match="option 'eth0' is not an option"):
        Dhcpcd.syntax.check(("eth0",))
    with pytest.raises(UsageError, match="option 'eth0' is not an option"):
        Dhclient.syntax.check(("-v", "eth0"))
    Dhclient.syntax.check(("-e", "FOO=bar", "-v"))
    with pytest.raises(UsageError, match="dhclient option -sf is set by pipework"):
        Dhclient.syntax.check(("-e", "X=1", "-sf", "/bin/true"))


def test_udhcpc_arguments():
    oneshot = udhcpc_args("eth1", "/h", "web1", 30, oneshot=True, foreground=False)
    assert oneshot[:4] == ["-i", "eth1", "-s", "/h"]
    assert oneshot[oneshot.index("-x") : oneshot.index("-x") + 2] == ["-x", "hostname:web1"]
    assert oneshot[-3:] == ["-f", "-q", "-n"]
    # udhcpc tries (2 s apart) for longer than pipework waits.
    assert int(oneshot[oneshot.index("-t") + 1]) * 2 > 30
    kept = udhcpc_args("eth1", "/h", None, 30, oneshot=False, foreground=False)
    assert not {"-f", "-q", "-n", "-x"} & set(kept)
    helper = udhcpc_args("eth1", "/h", None, 30, oneshot=False, foreground=True)
    assert helper[-1] == "-f" and "-q" not in helper


def make_run(tmp_path: Path, client: str, keep: bool, options=()) -> Run:
    state = StateDir.of(str(tmp_path), "netns:blue", "eth1")
    state.create({"provider": client})
    return Run(
        binary=f"/usr/sbin/{client}", ifname="eth1", hostname="blue", state=state,
        hook=str(state.file("hook")), keep=keep, timeout=30, options=tuple(options),
    )  # fmt: skip


@pytest.mark.parametrize("keep", [False, True])
def test_client_command_lines(tmp_path, keep):
    clients = {c.name: c for c in dhcp_clients.CLIENTS}
    for name, client in clients.items():
        run = make_run(tmp_path / name, name, keep, ["-v"] if name != "udhcpc" else ["-R"])
        client.prepare(run)
        argv = client.argv(run)
        assert argv[0] == run.binary and run.hook in argv
        assert all(
            str(run.state) in arg for arg in argv if arg.startswith("/") and arg != run.binary
        )
        assert argv[-1] in ("eth1", "-v", "-R")
    dhclient = clients["dhclient"].argv(make_run(tmp_path / "d2", "dhclient", keep))
    assert ("-d" in dhclient) is not keep and dhclient[-1] == "eth1"
    dhcpcd = clients["dhcpcd"].argv(make_run(tmp_path / "d3", "dhcpcd", keep))
    assert ("-b" in dhcpcd) is keep and ("-1" in dhcpcd) is not keep
    udhcpc = clients["udhcpc"].argv(make_run(tmp_path / "d4", "udhcpc", keep))
    assert ("-q" in udhcpc) is not keep


def test_client_configuration_files(tmp_path):
    run = make_run(tmp_path / "a", "dhclient", keep=False)
    Dhclient().prepare(run)
    conf = run.state.file("dhclient.conf").read_text()
    assert 'send host-name "blue";' in conf and "timeout 40;" in conf
    assert run.state.file("dhclient.leases").read_text() == ""
    run = make_run(tmp_path / "b", "dhcpcd", keep=True)
    Dhcpcd().prepare(run)
    conf = run.state.file("dhcpcd.conf").read_text().splitlines()
    assert {"noconfigure", "persistent", "clientid", "ipv4only"} <= set(conf)
    assert run.state.file("dhcpcd-run").is_dir() and run.state.file("dhcpcd-db").is_dir()


def provider(name: str, tmp_path: Path) -> HostClientProvider:
    client = next(c for c in dhcp_clients.CLIENTS if c.name == name)
    return HostClientProvider(client, EngineConfig(run_dir=str(tmp_path)))


def test_host_provider_modes(tmp_path):
    udhcpc = provider("udhcpc", tmp_path)
    assert udhcpc.handles(AddressSpec.parse("udhcpc-f")) and not udhcpc.handles(
        AddressSpec.parse("dhcp")
    )
    assert udhcpc.mode(AddressSpec.parse("udhcpc")) == (False, ())
    assert udhcpc.mode(AddressSpec.parse("udhcpc-f")) == (True, ())
    assert udhcpc.mode(AddressSpec.parse("udhcpc:-f -R")) == (True, ("-R",))
    dhcpcd = provider("dhcpcd", tmp_path)
    # dhcpcd's -f is its configuration file, not "keep": pipework writes that.
    with pytest.raises(UsageError, match="dhcpcd option -f is set by pipework"):
        dhcpcd.mode(AddressSpec.parse("dhcpcd:-f /etc/dhcpcd.conf"))
    assert dhcpcd.mode(AddressSpec.parse("dhcpcd-f:-o ntp_servers")) == (
        True,
        ("-o", "ntp_servers"),
    )


def test_missing_client_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, path=None: None)
    for name, package in (
        ("dhclient", "isc-dhcp-client"),
        ("udhcpc", "udhcpc"),
        ("dhcpcd", "dhcpcd5"),
    ):
        with pytest.raises(UnsupportedError) as failure:
            provider(name, tmp_path).binary()
        assert (
            str(failure.value) == f"{name} is not installed (install the Debian package {package})"
        )
        assert failure.value.exit_code == 8


def test_providers_check_before_anything_is_made(tmp_path):
    spec = AttachSpec(host="br1", guest="web1", address=AddressSpec.parse("udhcpc", image="x"))
    with pytest.raises(UsageError, match="--dhcp-image is for the dhcp helper container"):
        provider("udhcpc", tmp_path).validate(spec, DOCKER)
    helper = dhcp_container.DhcpHelperProvider(EngineConfig(run_dir=str(tmp_path)))
    spec = AttachSpec(host="br1", guest="netns:blue", address=AddressSpec.parse("dhcp"))
    with pytest.raises(UsageError, match="needs a Docker or Podman guest; netns:blue is not one"):
        helper.validate(spec, NETNS)
    spec = AttachSpec(host="br1", guest="netns:blue", address=AddressSpec.parse("dhcp:-f -q"))
    with pytest.raises(UsageError, match="udhcpc option -q is set by pipework"):
        helper.validate(spec, DOCKER)
    assert helper.mode(AddressSpec.parse("dhcp:-f -O 121")) == (True, ("-O", "121"))
    assert dhcp_container.helper_name(DOCKER.key, "eth1").startswith("pipework-dhcp-")


# -- lease reports and the hook ---------------------------------------------------------------

REPORT = """state=bound
event=BOUND
count=1
time=1795897416
address=198.18.100.20/255.255.255.0
routers=198.18.100.1 198.18.100.2
dns=198.18.100.53
domain=pwt.test
lease=120
server=198.18.100.1
"""


def test_lease_from_report():
    lease = Lease.from_report(parse_report(REPORT))
    assert lease is not None
    assert lease.address == ipaddress.IPv4Interface("198.18.100.20/24")
    assert lease.gateway == ipaddress.IPv4Address("198.18.100.1")
    assert (lease.lease_time, lease.count, lease.event) == (120, 1, "BOUND")
    result = lease.result()
    assert result.addresses == ("198.18.100.20/24",) and result.dns == ("198.18.100.53",)
    assert (result.gateway, result.domain) == ("198.18.100.1", "pwt.test")
    assert Lease.from_report(parse_report(REPORT.replace("state=bound", "state=unbound"))) is None
    assert Lease.from_report({}) is None
    with pytest.raises(ValueError):
        Lease.from_report(parse_report(REPORT.replace("198.18.100.53", "not-an-ip")))
    with pytest.raises(KeyError):
        Lease.from_report({"state": "bound"})


def test_last_logged_report_takes_the_last_complete_one():
    first = "".join(f"{LOG_PREFIX}{line}\n" for line in REPORT.splitlines()) + LOG_END + "\n"
    second = first.replace("count=1", "count=2")
    unfinished = f"{LOG_PREFIX}state=unbound\n"
    noise = "udhcpc: sending renew to server 198.18.100.1\n"
    assert last_logged_report(noise) is None
    assert last_logged_report(noise + first + noise + second + unfinished)["count"] == "2"


def test_hook_quotes_its_report_path_and_writes_only_there(tmp_path):
    weird = tmp_path / "it's a $dir"
    weird.mkdir()
    report = weird / "lease"
    hook = tmp_path / "hook"
    hook.write_text(hook_script(str(report)))
    # A lost lease with nothing recorded touches no interface, only the report.
    env = {"PATH": os.environ["PATH"], "reason": "FAIL", "interface": "eth9"}
    subprocess.run(["/bin/sh", str(hook)], env=env, check=True, timeout=10)
    assert parse_report(report.read_text())["state"] == "unbound"
    assert sorted(p.name for p in weird.iterdir()) == ["lease"]
    subprocess.run(["/bin/sh", "-n", str(hook)], check=True, timeout=10)


def test_last_words():
    assert last_words(None) == "no output"
    assert last_words("a\n\nthe end  \n\n") == "the end"
    assert last_words("x" * 300).endswith("...") and len(last_words("x" * 300)) == 120


# -- state directories and resolv.conf ---------------------------------------------------------


def test_state_directory(tmp_path):
    state = StateDir.of(str(tmp_path), "netns:blue", "eth1")
    assert state.path.parent == tmp_path / "dhcp" and len(state.path.name) == 10
    assert not state.exists() and state.meta() == {} and state.report() == {}
    state.create({"provider": "udhcpc", "mode": "kept"})
    assert oct(state.path.stat().st_mode & 0o777) == "0o700"
    state.update_meta(manager=[42, 4242])
    assert state.meta() == {"provider": "udhcpc", "mode": "kept", "manager": [42, 4242]}
    state.write("lease", REPORT)
    assert state.report()["address"] == "198.18.100.20/255.255.255.0"
    assert [s.path for s in StateDir.all(str(tmp_path))] == [state.path]
    assert StateDir.of(str(tmp_path), "netns:blue", "eth2").path != state.path
    state.remove()
    assert StateDir.all(str(tmp_path)) == []


def test_resolv_conf_text_and_targets():
    lease = Lease.from_report(parse_report(REPORT))
    assert resolv_conf_text(lease, "eth1").splitlines()[1:] == [
        "search pwt.test",
        "nameserver 198.18.100.53",
    ]
    assert GuestResolvConf.locate(NETNS).display == "/etc/netns/blue/resolv.conf"
    path = GuestInfo(name="/run/netns/red", key="/run/netns/red", runtime="path")
    assert GuestResolvConf.locate(path).display == "/etc/netns/red/resolv.conf"
    assert GuestResolvConf.locate(DOCKER).display == "/proc/4242/root/etc/resolv.conf"
    other = GuestInfo(name="/proc/1/ns/net", key="/proc/1/ns/net", runtime="path")
    with pytest.raises(UsageError, match=r"does not know which resolv\.conf"):
        GuestResolvConf.locate(other)


def test_resolv_conf_of_a_process_sharing_the_hosts_root_is_refused():
    me = GuestInfo(name="pid:self", key="pid:self", runtime="pid", pid=os.getpid())
    with pytest.raises(UsageError, match="shares the host's root directory"):
        GuestResolvConf.locate(me).check()


# -- the sandbox's pure parts ---------------------------------------------------------------


def test_mountinfo_parsing():
    text = (
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "30 22 0:25 / /run/with\\040space rw - tmpfs tmpfs rw\n"
        "31 22 0:26 / /a\\134b rw - tmpfs tmpfs rw\n"
    )
    assert sandbox.mount_points(text) == ["/", "/run/with space", "/a\\b"]
    assert sandbox.under("/run/pipework/dhcp/x", ["/run/pipework"])
    assert not sandbox.under("/run/pipeworks", ["/run/pipework"])


def test_sandbox_arguments():
    request = sandbox.parse(
        [
            *("--netns-fd", "3", "--state", "/s", "--private", "/run/x=/s/x"),
            *("--cap", "net_raw", "--cap", "CAP_SETUID", "--", "dhcpcd", "-v"),
        ]
    )
    assert request == sandbox.Request(
        3, "/s", [("/run/x", "/s/x")], ["net_raw", "CAP_SETUID"], ["dhcpcd", "-v"]
    )
    assert sandbox.cap_mask(request.caps) == (1 << 13) | (1 << 7)
    assert sandbox.cap_mask(sandbox.DEFAULT_CAPS) == 0x3400
    for bad in (
        ["--state", "/s", "--", "x"],
        ["--netns-fd", "3", "--state"],
        ["--bogus", "1"],
        ["--netns-fd", "3", "--state", "relative", "--", "x"],
        ["--netns-fd", "3", "--state", "/s", "--cap", "all", "--", "x"],
    ):
        with pytest.raises(sandbox.SetupError):
            sandbox.parse(bad)
    assert sandbox.main(["--private", "nonsense", "--", "x"]) == sandbox.EXIT_SETUP
