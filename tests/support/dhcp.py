"""dnsmasq as a DHCP server for the tests, and checks that DHCP left the host alone.

The server runs inside a test-owned namespace (the ``host_ns`` fixture), bound
to a bridge made there for it, with DNS disabled (``--port=0``), no system
configuration (``--conf-file=/dev/null``) and every file of its own in a
``/tmp/pwt-dhcp-*`` directory that ``stop()`` removes. It never runs as a
daemon: it is our child, and ``stop()`` ends it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from support import infra

SUBNET = ipaddress.IPv4Network("198.18.100.0/24")
SUBNET6 = ipaddress.IPv6Network("2001:db8:100::/64")
DNS_SERVER = "198.18.100.53"
DNS_SERVER6 = "2001:db8:100::53"
IPV6_MODES = ("slaac", "stateful", "both")
"""``DhcpServer.ipv6``: router advertisements with the autonomous flag only
(SLAAC, no DHCPv6); stateful DHCPv6 (advertisements with the managed flag,
no autonomous one); both (SLAAC and DHCPv6 addresses)."""
DOMAIN = "pwt.test"
HOST_FILES = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")
CLIENT_PROCESSES = ("dhclient", "udhcpc", "dhcpcd")


@dataclass(frozen=True)
class ServerLease:
    """One line of dnsmasq's lease file."""

    expiry: int
    mac: str
    ip: str
    hostname: str
    client_id: str


@dataclass(frozen=True)
class ServerLease6:
    """One IPv6 line of dnsmasq's lease file."""

    expiry: int
    iaid: str
    ip: str
    hostname: str
    duid: str


@dataclass
class DhcpServer:
    """dnsmasq on ``bridge`` (made here) in the namespace ``ns``."""

    ns: infra.NetNS
    bridge: str = "brpwtd"
    subnet: ipaddress.IPv4Network = SUBNET
    lease_time: str = "2m"
    router: bool = True
    options: tuple[str, ...] = ()
    """More dnsmasq arguments (``--dhcp-option-force=...``), after ours."""
    ipv6: str | None = None
    """One of ``IPV6_MODES``: also serve IPv6 on ``subnet6`` (router
    advertisements every few seconds, the bridge's address the router)."""
    subnet6: ipaddress.IPv6Network = SUBNET6
    dir: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(init=False, default=None)

    @property
    def server_ip(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def server_ip6(self) -> str:
        return str(self.subnet6.network_address + 1)

    @property
    def pool6(self) -> tuple[ipaddress.IPv6Address, ipaddress.IPv6Address]:
        base = self.subnet6.network_address
        return base + 0x10, base + 0x99

    @property
    def pool(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        base = self.subnet.network_address
        return base + 10, base + 99

    @property
    def log_path(self) -> Path:
        return self.dir / "dnsmasq.log"

    def start(self) -> DhcpServer:
        infra.require_binaries("dnsmasq")
        self.dir = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-dhcp-"))
        self.ns.exec("ip", "link", "add", self.bridge, "type", "bridge")
        self.ns.exec(
            "ip", "addr", "add", f"{self.server_ip}/{self.subnet.prefixlen}", "dev", self.bridge
        )
        if self.ipv6 is not None:
            assert self.ipv6 in IPV6_MODES, self.ipv6
            self.ns.exec(
                "ip", "addr", "add", f"{self.server_ip6}/{self.subnet6.prefixlen}",
                "dev", self.bridge, "nodad",
            )  # fmt: skip
        self.ns.exec("ip", "link", "set", self.bridge, "up")
        low, high = self.pool
        argv = [
            "ip", "netns", "exec", self.ns.name,
            "dnsmasq",
            "--keep-in-foreground",
            "--log-facility=-",
            "--conf-file=/dev/null",
            "--port=0",
            "--no-hosts",
            "--no-resolv",
            f"--interface={self.bridge}",
            "--bind-interfaces",
            f"--dhcp-range={low},{high},{self.subnet.netmask},{self.lease_time}",
            f"--dhcp-option=option:dns-server,{DNS_SERVER}",
            f"--domain={DOMAIN}",
            f"--dhcp-leasefile={self.dir / 'leases'}",
            f"--pid-file={self.dir / 'dnsmasq.pid'}",
            "--user=root",
            "--dhcp-authoritative",
            "--no-ping",
            "--log-dhcp",
        ]  # fmt: skip
        if self.router:
            argv.append(f"--dhcp-option=option:router,{self.server_ip}")
        else:
            argv.append("--dhcp-option=option:router")  # no router option at all
        argv += self._ipv6_arguments()
        argv += self.options
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while "sockets bound exclusively" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dnsmasq did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def _ipv6_arguments(self) -> list[str]:
        if self.ipv6 is None:
            return []
        low, high = self.pool6
        prefix = self.subnet6.prefixlen
        ranges = {
            "slaac": f"{self.subnet6.network_address},ra-only,{prefix},{self.lease_time}",
            "stateful": f"{low},{high},{prefix},{self.lease_time}",
            "both": f"{low},{high},slaac,{prefix},{self.lease_time}",
        }
        return [
            "--enable-ra",
            f"--ra-param={self.bridge},4,600",  # an advertisement every 4 s, router for 600 s
            f"--dhcp-range={ranges[self.ipv6]}",
            f"--dhcp-option=option6:dns-server,[{DNS_SERVER6}]",
        ]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def leases(self) -> dict[str, ServerLease]:
        """The server's current leases, by MAC address."""
        try:
            text = (self.dir / "leases").read_text()
        except FileNotFoundError:
            return {}
        found = {}
        for line in text.splitlines():
            words = line.split()
            if len(words) < 5 or ":" in words[2]:  # the server's DUID, IPv6 leases
                continue
            expiry, mac, ip, hostname, client_id = words[:5]
            found[mac] = ServerLease(int(expiry), mac, ip, hostname, client_id)
        return found

    def leases6(self) -> list[ServerLease6]:
        """The server's current IPv6 leases (dnsmasq lists them after the
        ``duid`` line of its own DUID)."""
        try:
            text = (self.dir / "leases").read_text()
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 5 and ":" in words[2]:
                expiry, iaid, ip, hostname, duid = words[:5]
                found.append(ServerLease6(int(expiry), iaid, ip, hostname, duid))
        return found

    def acks(self, mac: str) -> int:
        """How many DHCPACKs the server sent to ``mac``."""
        return sum(
            1 for line in self.log().splitlines() if "DHCPACK(" in line and mac in line.split()
        )

    def in_pool(self, address: str) -> bool:
        low, high = self.pool
        return low <= ipaddress.IPv4Interface(address).ip <= high


def host_file_hashes() -> dict[str, str | None]:
    """sha256 of the host files DHCP clients are known to clobber."""
    found: dict[str, str | None] = {}
    for path in HOST_FILES:
        try:
            found[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except FileNotFoundError:
            found[path] = None
    return found


def client_pids_in(key: tuple[int, int] | None) -> list[str]:
    """Live DHCP client processes in a network namespace, as ``comm[pid]``."""
    if key is None:
        return []
    return [
        infra.describe_pid(pid)
        for pid in infra.pids_in_netns(key)
        if infra._read_proc(pid, "comm") in CLIENT_PROCESSES
    ]


def ip_json(ns: infra.NetNS, *args: str) -> list[dict]:
    return json.loads(ns.exec("ip", "-j", *args).stdout or "[]")


def address_lifetime(ns: infra.NetNS, ifname: str, address: str) -> int:
    """valid_life_time of ``address`` (4294967295 means forever)."""
    for entry in ip_json(ns, "addr", "show", "dev", ifname):
        for info in entry["addr_info"]:
            if f"{info['local']}/{info['prefixlen']}" == address:
                return int(info["valid_life_time"])
    raise AssertionError(f"{address} is not on {ifname}")


def give_default_route(ns: infra.NetNS) -> None:
    """A default route via 198.18.50.1 on a veth of its own, for DHCP to replace."""
    for argv in (
        ("link", "add", "pwtup", "type", "veth", "peer", "name", "pwtup2"),
        ("addr", "add", "198.18.50.2/24", "dev", "pwtup"),
        ("link", "set", "pwtup", "up"),
        ("link", "set", "pwtup2", "up"),
        ("route", "add", "default", "via", "198.18.50.1"),
    ):
        ns.exec("ip", *argv)
