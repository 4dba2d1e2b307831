"""pipework-cni against the CNI specification, by direct invocation.

Every call runs the installed plugin the way a runtime does (environment,
configuration on stdin) inside the test-owned ``host_ns``, against real
namespaces; chains use the reference plugins of containernetworking-plugins.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import cni, infra
from support.cni import CniRunner, addresses, links
from support.dhcp import DhcpServer
from support.infra import MakeNetNS, NetNS
from support.ovs import PrivateOvs

from pipework.engine.marker import Marker
from pipework.engine.specs import derive_mac

pytestmark = pytest.mark.integration


@pytest.fixture
def runner(host_ns: NetNS) -> CniRunner:
    directory = cni.reference_dir()
    infra.require(directory, "needs the CNI reference plugins (containernetworking-plugins)")
    assert directory is not None
    return CniRunner(host=host_ns, cni_path=directory)


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-cni-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def net(version: str = "1.0.0", **fields: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": version,
        "name": "pwtnet",
        "type": "pipework",
        "backend": "bridge",
        "bridge": "brpwtc",
    }
    conf.update(fields)
    return {k: v for k, v in conf.items() if v is not None}


def cid() -> str:
    return secrets.token_hex(32)


def host_leftovers(host: NetNS) -> list[str]:
    """Interfaces in the host namespace besides lo and (empty) bridges."""
    return [
        name
        for name, link in links(host).items()
        if name != "lo" and link.get("linkinfo", {}).get("info_kind") != "bridge"
    ]


# -- the basic cycle ----------------------------------------------------------------------


def test_add_check_del_del(runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS) -> None:
    guest, peer = make_netns(), make_netns()
    a, b = cid(), cid()
    conf = net(address="198.18.40.2/24@198.18.40.1", mac="U:pwt-cni-a")
    added = runner.call("ADD", conf, netns=guest.path, container_id=a)
    assert added.code == 0, added.stderr
    result = added.data
    assert result["cniVersion"] == "1.0.0"
    host_side, inside = result["interfaces"]
    assert inside == {"name": "eth0", "mac": derive_mac("pwt-cni-a"), "sandbox": guest.path}
    assert host_side["name"].startswith("pw") and "sandbox" not in host_side
    assert result["ips"] == [
        {"address": "198.18.40.2/24", "gateway": "198.18.40.1", "interface": 1}
    ]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.40.1"}]
    assert addresses(guest, "eth0") == ["198.18.40.2/24"]
    assert "198.18.40.1" in guest.exec("ip", "route", "show", "default").stdout
    assert links(host_ns)[host_side["name"]]["master"] == "brpwtc"

    # A second container on the same network: they reach each other.
    other = runner.call("ADD", net(address="198.18.40.3/24"), netns=peer.path, container_id=b)
    assert other.code == 0, other.stderr
    assert infra.ping(guest, "198.18.40.3") and infra.ping(peer, "198.18.40.2")

    check = runner.call("CHECK", {**conf, "prevResult": result}, netns=guest.path, container_id=a)
    assert (check.code, check.data) == (0, None), check.stderr

    for _ in range(2):  # DEL, then DEL again: both succeed
        gone = runner.call("DEL", conf, netns=guest.path, container_id=a)
        assert (gone.code, gone.data) == (0, None), gone.stderr
        assert "eth0" not in links(guest)
        assert host_side["name"] not in links(host_ns)
    runner.call("DEL", net(address="198.18.40.3/24"), netns=peer.path, container_id=b)
    assert host_leftovers(host_ns) == []


def test_version(runner: CniRunner) -> None:
    reply = runner.call("VERSION", {"cniVersion": "1.1.0"})
    assert reply.code == 0
    assert reply.data["cniVersion"] == "1.1.0"
    assert {"0.3.1", "0.4.0", "1.0.0", "1.1.0"} <= set(reply.data["supportedVersions"])


def test_readd_is_unchanged_and_older_result_formats(
    runner: CniRunner, make_netns: MakeNetNS
) -> None:
    guest, container = make_netns(), cid()
    conf = net("0.4.0", address="2001:db8:40::2/64@2001:db8:40::1")
    first = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert first.code == 0, first.stderr
    assert first.data["ips"][0]["version"] == "6"
    again = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert again.code == 0 and again.data == first.data
    legacy = runner.call(
        "ADD", {**conf, "cniVersion": "0.2.0"}, netns=guest.path, container_id=container
    )
    # 0.2.0 results have ip4/ip6 blocks (and the same configuration otherwise)
    assert legacy.code == 0, legacy.stderr
    assert legacy.data["ip6"] == {
        "ip": "2001:db8:40::2/64",
        "gateway": "2001:db8:40::1",
        "routes": [{"dst": "::/0", "gw": "2001:db8:40::1"}],
    }
    assert runner.call("DEL", conf, netns=guest.path, container_id=container).code == 0


# -- bad input: the spec's code, a message, nothing left behind ----------------------------

BAD_INPUT = [
    pytest.param(b"{not json", {}, 6, "not JSON", id="not-json"),
    pytest.param(net("0.9.9"), {}, 1, "incompatible CNI version", id="unknown-version"),
    pytest.param(net(vlna=10), {}, 2, "'vlna'", id="unknown-field"),
    pytest.param(net(backend=None), {}, 7, "'backend'", id="no-backend"),
    pytest.param(net(bridge=None), {}, 7, "'bridge'", id="no-bridge"),
    pytest.param(net(address="198.18.41.2"), {}, 7, "netmask", id="address-without-prefix"),
    pytest.param(net(vlan=9000), {}, 7, "VLAN", id="vlan-out-of-range"),
    pytest.param(net(backend="nosuch", bridge=None, host="x0"), {}, 108, "nosuch", id="unknown-backend"),
    pytest.param(net(address="198.18.41.2/24", ipam={"type": "static"}), {}, 7, "both", id="two-addressings"),
    pytest.param(net(ipam={"type": "nosuch-ipam"}), {}, 7, "not installed", id="missing-ipam-plugin"),
    pytest.param(net(ipam={"type": "host-local", "ranges": [[{"subnet": "nope"}]]}), {}, 999,
                 "IPAM plugin host-local: invalid CIDR", id="ipam-error-passed-on"),
    pytest.param(net(), {"CNI_IFNAME": "a-very-long-name-0"}, 4, "CNI_IFNAME", id="long-ifname"),
    pytest.param(net(), {"CNI_CONTAINERID": ""}, 4, "CNI_CONTAINERID", id="no-container-id"),
    pytest.param(net(), {"CNI_COMMAND": "FROB"}, 4, "FROB", id="unknown-command"),
    pytest.param(net(), {"CNI_ARGS": "FOO=bar"}, 4, "FOO", id="unknown-cni-args"),
    pytest.param(net(mac="01:00:5e:00:00:01"), {}, 7, "multicast", id="multicast-mac"),
]  # fmt: skip


@pytest.mark.parametrize(("conf", "env", "code", "says"), BAD_INPUT)
def test_bad_input(
    runner: CniRunner,
    host_ns: NetNS,
    make_netns: MakeNetNS,
    conf: dict[str, Any] | bytes,
    env: dict[str, str],
    code: int,
    says: str,
) -> None:
    guest = make_netns()
    before_guest, before_host = set(links(guest)), set(links(host_ns))
    reply = runner.call("ADD", conf, netns=guest.path, container_id=cid(), extra_env=env)
    error = reply.error
    assert error["code"] == code, error
    assert says in error["msg"] + error.get("details", ""), error
    assert reply.stderr.startswith("pipework-cni: ") and reply.stderr.count("\n") == 1
    assert set(links(guest)) == before_guest
    assert set(links(host_ns)) == before_host


def test_missing_netns(runner: CniRunner, host_ns: NetNS) -> None:
    before = set(links(host_ns))
    missing = f"/run/netns/{infra.unique_name('gone')}"
    reply = runner.call("ADD", net(address="198.18.42.2/24"), netns=missing, container_id=cid())
    assert reply.error["code"] == 3, reply.error  # container unknown: no cleanup needed
    assert missing in reply.error["msg"]
    assert set(links(host_ns)) == before
    # DEL of a container whose namespace is gone succeeds (nothing to do).
    gone = runner.call("DEL", net(address="198.18.42.2/24"), netns=missing, container_id=cid())
    assert gone.code == 0, gone.stderr


def test_interface_that_is_not_ours(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS
) -> None:
    guest = make_netns()
    guest.exec("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth9")
    before = set(links(host_ns))
    reply = runner.call("ADD", net(address="198.18.43.2/24"), netns=guest.path, container_id=cid())
    assert reply.error["code"] == 107 and "did not create" in reply.error["msg"]
    assert set(links(host_ns)) == before and {"eth0", "eth9"} <= set(links(guest))
    # DEL does not touch an interface pipework did not make.
    assert (
        runner.call("DEL", net(address="198.18.43.2/24"), netns=guest.path, container_id=cid()).code
        == 0
    )
    assert "eth0" in links(guest)


def test_check_reports_what_is_wrong(runner: CniRunner, make_netns: MakeNetNS) -> None:
    guest, container = make_netns(), cid()
    conf = net(address="198.18.44.2/24")
    result = runner.call("ADD", conf, netns=guest.path, container_id=container).data
    checking = {**conf, "prevResult": result}
    guest.exec("ip", "addr", "del", "198.18.44.2/24", "dev", "eth0")
    reply = runner.call("CHECK", checking, netns=guest.path, container_id=container)
    assert reply.error["code"] == 101 and "lacks the address 198.18.44.2/24" in reply.error["msg"]
    guest.exec("ip", "link", "set", "eth0", "down")
    reply = runner.call("CHECK", checking, netns=guest.path, container_id=container)
    assert reply.error["code"] == 101 and "not whole" in reply.error["msg"]
    reply = runner.call("CHECK", conf, netns=guest.path, container_id=container)
    assert reply.error["code"] == 7 and "prevResult" in reply.error["msg"]
    reply = runner.call(
        "CHECK", {**checking, "cniVersion": "0.3.1"}, netns=guest.path, container_id=container
    )
    assert reply.error["code"] == 1
    assert runner.call("DEL", conf, netns=guest.path, container_id=container).code == 0
    reply = runner.call("CHECK", checking, netns=guest.path, container_id=container)
    assert reply.error["code"] == 101 and "missing" in reply.error["msg"]


# -- the namespace is gone; DHCP clients are released ---------------------------------------


def test_del_after_the_namespace_is_gone_stops_the_kept_dhcp_client(
    runner: CniRunner,
    host_ns: NetNS,
    make_netns: MakeNetNS,
    dhcp_server: Callable[..., DhcpServer],
    dhcp_run_dir: Path,
    host_files_unchanged: None,
) -> None:
    server = dhcp_server()
    guest, container = make_netns(), cid()
    conf = net(bridge=server.bridge, address="udhcpc-f", dhcpTimeout=20)
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    leased = added.data["ips"][0]
    assert leased["gateway"] == server.server_ip
    assert added.data["dns"]["nameservers"]
    host_side = added.data["interfaces"][0]["name"]
    # The runtime removes the namespace first; the kept client keeps it alive,
    # so the host side is still there.
    infra.run(["ip", "netns", "del", guest.name])
    assert host_side in links(host_ns)
    assert list((dhcp_run_dir / "dhcp").iterdir())
    gone = runner.call("DEL", conf, netns="", container_id=container)
    assert gone.code == 0, gone.stderr
    assert host_side not in links(host_ns)
    assert list((dhcp_run_dir / "dhcp").iterdir()) == []
    assert runner.call("DEL", conf, netns="", container_id=container).code == 0


# -- GC ------------------------------------------------------------------------------------


def test_gc_removes_only_attachments_not_listed(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS
) -> None:
    keep, drop = make_netns(), make_netns()
    kept_id, dropped_id = cid(), cid()
    conf = net("1.1.0", address="0/0")
    for ns, container in ((keep, kept_id), (drop, dropped_id)):
        assert runner.call("ADD", conf, netns=ns.path, container_id=container).code == 0
    # Another network's attachment on the same bridge is not GC's business.
    other = make_netns()
    other_conf = {**conf, "name": "pwtother"}
    assert runner.call("ADD", other_conf, netns=other.path, container_id=cid()).code == 0
    valid = [{"containerID": kept_id, "ifname": "eth0"}]
    reply = runner.call("GC", {**conf, "cni.dev/valid-attachments": valid})
    assert (reply.code, reply.data) == (0, None), reply.stderr
    assert "eth0" in links(keep) and "eth0" in links(other)
    assert "eth0" not in links(drop)
    assert runner.call("GC", {**conf, "cni.dev/valid-attachments": []}).code == 0
    assert "eth0" not in links(keep)
    assert runner.call("GC", {**conf, "cniVersion": "1.0.0"}).error["code"] == 1


def test_gc_stops_a_kept_dhcp_client_whose_namespace_the_runtime_removed(
    runner: CniRunner,
    host_ns: NetNS,
    make_netns: MakeNetNS,
    dhcp_server: Callable[..., DhcpServer],
    dhcp_run_dir: Path,
    host_files_unchanged: None,
) -> None:
    server = dhcp_server()
    guest, container = make_netns(), cid()
    conf = net("1.1.0", bridge=server.bridge, address="udhcpc-f", dhcpTimeout=20)
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    host_side = added.data["interfaces"][0]["name"]
    infra.run(["ip", "netns", "del", guest.name])  # the kept client keeps it alive
    assert list((dhcp_run_dir / "dhcp").iterdir())
    reply = runner.call("GC", {**conf, "cni.dev/valid-attachments": []})
    assert (reply.code, reply.data) == (0, None), reply.stderr
    assert host_side not in links(host_ns)
    assert list((dhcp_run_dir / "dhcp").iterdir()) == []


def test_gc_does_not_act_on_what_a_guests_forged_marker_names(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS
) -> None:
    """A guest writes a marker claiming a phys attachment of this network on a
    host interface: GC undoes only what the network's own configuration makes."""
    host_ns.exec("ip", "link", "add", "pwtvictim0", "type", "veth", "peer", "name", "pwtvictim1")
    evil = make_netns("evil")
    evil.exec("ip", "link", "add", "x0", "type", "veth", "peer", "name", "x1")
    forged = Marker(
        guest="cni:pwtnet:forged", ifname="x0", kind="phys", host="pwtvictim0",
        hostif="pwtvictim0", cfg="abc", state="02:00:00:00:00:42,up",
    )  # fmt: skip
    evil.exec("ip", "link", "set", "x0", "alias", forged.format())
    before = links(host_ns)
    reply = runner.call("GC", {**net("1.1.0"), "cni.dev/valid-attachments": []})
    assert (reply.code, reply.data) == (0, None), reply.stderr
    assert links(host_ns) == before
    assert {"x0", "x1"} <= set(links(evil))
    host_ns.exec("ip", "link", "del", "pwtvictim0")


# -- STATUS ---------------------------------------------------------------------------------


def test_status(runner: CniRunner) -> None:
    assert runner.call("STATUS", net("1.1.0")).code == 0
    missing = runner.call("STATUS", net("1.1.0", backend="macvlan", bridge=None, master="pwtnone0"))
    assert missing.error["code"] == 50 and "pwtnone0" in missing.error["msg"]
    unknown = runner.call("STATUS", net("1.1.0", backend="nosuch", bridge=None, host="x"))
    assert unknown.error["code"] == 50
    assert runner.call("STATUS", net("1.0.0")).error["code"] == 1


# -- IPAM delegation -------------------------------------------------------------------------


def test_host_local_ipam(runner: CniRunner, make_netns: MakeNetNS, scratch: Path) -> None:
    infra.require(cni.have_reference_plugins("host-local"), "needs the host-local IPAM plugin")
    guest, container = make_netns(), cid()
    ipam = {
        "type": "host-local",
        "dataDir": str(scratch),
        "ranges": [[{"subnet": "198.18.45.0/24", "gateway": "198.18.45.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.19.0.0/16", "gw": "198.18.45.254"}],
    }
    conf = net(ipam=ipam)
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    ip = added.data["ips"][0]
    assert ip["interface"] == 1 and ip["gateway"] == "198.18.45.1"
    assert addresses(guest, "eth0") == [ip["address"]]
    routes = guest.exec("ip", "route").stdout
    assert "default via 198.18.45.1" in routes and "198.19.0.0/16 via 198.18.45.254" in routes
    allocated = scratch / "pwtnet" / ip["address"].split("/")[0]
    assert allocated.exists()
    check = runner.call(
        "CHECK", {**conf, "prevResult": added.data}, netns=guest.path, container_id=container
    )
    assert check.code == 0, check.stderr
    assert runner.call("DEL", conf, netns=guest.path, container_id=container).code == 0
    assert not allocated.exists()  # the delegate's DEL released it
    assert runner.call("DEL", conf, netns=guest.path, container_id=container).code == 0


def test_static_ipam_failure_rolls_back(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS
) -> None:
    guest = make_netns()
    before = set(links(host_ns))
    # The gateway route cannot be added: the delegate's addresses and the
    # link are all rolled back.
    ipam = {
        "type": "static",
        "addresses": [{"address": "198.18.46.5/24"}],
        "routes": [{"dst": "198.19.0.0/16", "gw": "198.18.99.1"}],
    }
    reply = runner.call("ADD", net(ipam=ipam), netns=guest.path, container_id=cid())
    assert reply.error["code"] == 7 and "not reachable" in reply.error["msg"]
    assert "eth0" not in links(guest)
    assert set(links(host_ns)) == before


# -- chaining -----------------------------------------------------------------------------


def test_chain_with_tuning_bandwidth_and_portmap(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS
) -> None:
    """A conflist: pipework first, then the reference meta plugins, each given
    the previous result, as libcni runs them (DEL in reverse order)."""
    infra.require(
        cni.have_reference_plugins("tuning", "bandwidth", "portmap"), "needs the meta plugins"
    )
    guest, container = make_netns(), cid()
    plugins: list[dict[str, Any]] = [
        net(address="198.18.47.2/24"),
        {"type": "tuning", "mtu": 1400, "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}},
        {"type": "bandwidth", "ingressRate": 8000000, "ingressBurst": 80000,
         "egressRate": 8000000, "egressBurst": 80000},
        {"type": "portmap", "capabilities": {"portMappings": True},
         "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}},
    ]  # fmt: skip
    previous: dict[str, Any] | None = None
    for conf in plugins:
        conf = {"cniVersion": "1.0.0", "name": "pwtnet", **conf}
        if previous is not None:
            conf["prevResult"] = previous
        reply = runner.call(
            "ADD", conf, plugin=conf["type"], netns=guest.path, container_id=container
        )
        assert reply.code == 0, (conf["type"], reply.data, reply.stderr)
        previous = reply.data
    assert previous is not None
    eth0 = links(guest)["eth0"]
    assert eth0["mtu"] == 1400
    assert guest.exec("sysctl", "-n", "net.ipv4.conf.eth0.arp_filter").stdout.strip() == "1"
    host_side = previous["interfaces"][0]["name"]
    assert "tbf" in host_ns.exec("tc", "qdisc", "show", "dev", host_side).stdout
    assert "8080" in host_ns.exec("iptables-save", "-t", "nat").stdout
    # portmap 1.1.1's CHECK looks for an IPv6 chain it did not make when the
    # result has no IPv6 address (a reference plugin's bug): not checked here.
    for conf in plugins[:-1]:
        conf = {"cniVersion": "1.0.0", "name": "pwtnet", **conf, "prevResult": previous}
        check = runner.call(
            "CHECK", conf, plugin=conf["type"], netns=guest.path, container_id=container
        )
        assert check.code == 0, (conf["type"], check.data, check.stderr)
    for conf in reversed(plugins):
        conf = {"cniVersion": "1.0.0", "name": "pwtnet", **conf, "prevResult": previous}
        reply = runner.call(
            "DEL", conf, plugin=conf["type"], netns=guest.path, container_id=container
        )
        assert reply.code == 0, (conf["type"], reply.data, reply.stderr)
    assert "eth0" not in links(guest)
    assert host_leftovers(host_ns) == []
    assert "8080" not in host_ns.exec("iptables-save", "-t", "nat").stdout


# -- Open vSwitch with a VLAN: DEL after the namespace is gone ----------------------------


def test_ovs_vlan_port_is_removed_by_del_after_the_namespace_is_gone(
    runner: CniRunner, ovs: PrivateOvs, make_netns: MakeNetNS
) -> None:
    """The veth dies with the namespace, its OVS port does not: DEL (without
    CNI_NETNS, from a fresh process) finds it by the attachment's identity."""
    ovs.add_bridge("pwtovsc")
    guest, container = make_netns(), cid()
    conf = net(backend="ovs", bridge="pwtovsc", vlan=100, address="198.18.48.2/24")
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    port = added.data["interfaces"][0]["name"]
    assert ovs.ports("pwtovsc") == [port]
    assert ovs.get("Port", port, "tag") == 100
    assert ovs.external_ids("Port", port)["pipework-guest"] == f"cni:pwtnet:{container}"
    check = runner.call(
        "CHECK", {**conf, "prevResult": added.data}, netns=guest.path, container_id=container
    )
    assert check.code == 0, check.stderr
    infra.run(["ip", "netns", "del", guest.name])
    assert ovs.ports("pwtovsc") == [port]  # orphaned
    gone = runner.call("DEL", conf, netns="", container_id=container)
    assert gone.code == 0, gone.stderr
    assert ovs.ports("pwtovsc") == []
    assert runner.call("DEL", conf, netns="", container_id=container).code == 0


# -- DEL succeeds whatever is gone or no longer valid ------------------------------------


@pytest.mark.parametrize("what", ["file", "directory", "fifo"])
def test_del_when_cni_netns_is_no_longer_a_namespace(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS, scratch: Path, what: str
) -> None:
    """The runtime's CNI_NETNS path now holds something else: DEL does not
    open it, and removes what is left by the attachment's identity."""
    import os

    guest, container = make_netns(), cid()
    conf = net(address="198.18.45.2/24")
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    host_side = added.data["interfaces"][0]["name"]
    stale = scratch / "netns"
    {"file": stale.touch, "directory": stale.mkdir, "fifo": lambda: os.mkfifo(stale)}[what]()
    for _ in range(2):
        gone = runner.call("DEL", conf, netns=str(stale), container_id=container)
        assert (gone.code, gone.data) == (0, None), gone.stderr
        assert host_side not in links(host_ns) and "eth0" not in links(guest)
    assert host_leftovers(host_ns) == []


@pytest.mark.parametrize("backend", ["macvlan", "phys"])
def test_del_when_the_mac_selected_host_nic_has_left(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS, backend: str
) -> None:
    """``host: mac:...``: DEL succeeds once that NIC is gone from the host
    (unplugged, or, for phys, in the guest, where ADD put it)."""
    host_ns.exec("ip", "link", "add", "pwtnic0", "type", "veth", "peer", "name", "pwtnic1")
    host_ns.exec("ip", "link", "set", "pwtnic0", "up")
    mac = links(host_ns)["pwtnic0"]["address"]
    guest, container = make_netns(), cid()
    conf = net(backend=backend, bridge=None, host=f"mac:{mac}", address="198.18.46.2/24")
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    if backend == "macvlan":
        host_ns.exec("ip", "link", "del", "pwtnic0")  # the NIC leaves; its macvlan too
    for _ in range(2):
        gone = runner.call("DEL", conf, netns=guest.path, container_id=container)
        assert (gone.code, gone.data) == (0, None), gone.stderr
        assert "eth0" not in links(guest)
    if backend == "phys":  # given back to the host, under its own name
        assert "pwtnic0" in links(host_ns)
    host_ns.exec("ip", "link", "del", "pwtnic1", check=False)


def test_del_when_the_host_bridge_is_gone(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS
) -> None:
    guest, container = make_netns(), cid()
    conf = net(address="198.18.47.2/24", bridge="brpwtgone")
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    host_side = added.data["interfaces"][0]["name"]
    host_ns.exec("ip", "link", "del", "brpwtgone")
    gone = runner.call("DEL", conf, netns=guest.path, container_id=container)
    assert (gone.code, gone.data) == (0, None), gone.stderr
    assert host_side not in links(host_ns) and "eth0" not in links(guest)


def test_del_ignores_a_prev_result_it_cannot_read(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS
) -> None:
    guest, container = make_netns(), cid()
    conf = net(address="198.18.49.2/24")
    added = runner.call("ADD", conf, netns=guest.path, container_id=container)
    assert added.code == 0, added.stderr
    for garbage in ("not a result", [1, 2], {"interfaces": "x", "ips": 7}):
        gone = runner.call(
            "DEL", {**conf, "prevResult": garbage}, netns=guest.path, container_id=container
        )
        assert (gone.code, gone.data) == (0, None), gone.stderr
    assert "eth0" not in links(guest) and host_leftovers(host_ns) == []


@pytest.mark.parametrize("plugin", ["/bin/sh", "../../bin/sh", "..", "sub/host-local"])
@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_an_ipam_type_that_is_a_path_is_refused(
    runner: CniRunner, host_ns: NetNS, make_netns: MakeNetNS, plugin: str, command: str
) -> None:
    guest = make_netns()
    before = set(links(host_ns))
    conf = net(ipam={"type": plugin})
    reply = runner.call(command, conf, netns=guest.path, container_id=cid())
    assert reply.code == 1 and reply.error["code"] == 7, reply.error
    assert "is not a plugin name" in reply.error["msg"]
    assert set(links(host_ns)) == before and set(links(guest)) == {"lo"}
