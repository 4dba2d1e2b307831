"""The DHCP toolbox that the DHCP address providers share.

The host clients (``dhclient``, ``udhcpc``, ``dhcpcd``) and the ``dhcp``
helper container all run the same guest-side hook (``hook_script``). It
configures only the interface the client serves, in the network namespace
the client runs in, and writes what it got as a *lease report*
(``KEY=VALUE`` lines). pipework reads the report, checks the address on
the interface, and reports routers, DNS servers and domain.

What a provider keeps on the host lives in a per-attachment *state
directory* under ``EngineConfig.run_dir``/dhcp, named by a hash of the
guest key and interface name, so that ``detach`` (and a later ``gc``) find
it from the marker alone. ``attachment.json`` in it says whose it is.

``GuestResolvConf`` writes a lease's DNS settings into the *guest's*
resolv.conf (``--dns``), never the host's. Only the DHCP providers import
this module, so the static path does not pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import math
import os
import re
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipework.engine.contract import AddressContext, AddressResult, DetachContext
from pipework.engine.errors import PipeworkError, TimeoutExpiredError, UsageError
from pipework.engine.kept import KeptClient
from pipework.engine.kernel.netlink import netns_identity
from pipework.engine.options import OptionSpec
from pipework.engine.specs import (
    AddressSpec,
    AttachSpec,
    GuestInfo,
    check_image,
    parse_timeout,
    short_hash,
)
from pipework.records import Record

DEFAULT_TIMEOUT = 30.0
"""Seconds a DHCP provider waits for a lease unless ``--dhcp-timeout`` says otherwise."""
DNS, TIMEOUT, IMAGE = "dns", "timeout", "image"
"""The ``AddressSpec.settings`` keys of ``--dns``, ``--dhcp-timeout`` and ``--dhcp-image``."""
HOST_CLIENT_OPTIONS: Mapping[str, OptionSpec] = {
    DNS: OptionSpec(
        "write the lease's DNS servers and domain into the guest's resolv.conf", flag="--dns"
    ),
    TIMEOUT: OptionSpec(
        "seconds to wait for a lease [30]",
        flag="--dhcp-timeout",
        parse=parse_timeout,
        fingerprint=False,
    ),
}
"""What the host clients (dhclient, udhcpc, dhcpcd) accept."""
HELPER_OPTIONS: Mapping[str, OptionSpec] = {
    **HOST_CLIENT_OPTIONS,
    IMAGE: OptionSpec(
        "the image of the dhcp helper container [busybox]",
        flag="--dhcp-image",
        parse=check_image,
        fingerprint=False,
    ),
}
"""What the ``dhcp`` helper container accepts."""


def wants_dns(address: AddressSpec) -> bool:
    """``--dns``: write the lease's DNS servers into the guest."""
    return bool(address.settings.get(DNS))


def lease_timeout(address: AddressSpec) -> float:
    """``--dhcp-timeout``, or the default."""
    value = address.settings.get(TIMEOUT)
    return float(value) if value is not None else DEFAULT_TIMEOUT


REPORT = "lease"
"""The hook's lease report, in the state directory."""
META = "attachment.json"
LOG_PREFIX = "pipework-lease: "
"""Prefix of the report lines a hook prints (the helper container's logs)."""
LOG_END = LOG_PREFIX + "end"

_HOSTNAME_BAD = re.compile(r"[^A-Za-z0-9-]+")

_HOOK = r"""#!/bin/sh
# pipework's DHCP hook (udhcpc -s, dhclient -sf, dhcpcd -c). It configures
# only "$interface", in the network namespace the client runs in, and records
# the lease in the report below. It writes no other file: not resolv.conf,
# not the hostname, nothing of the host.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
report=@REPORT@
echo_report=@ECHO@

# udhcpc passes the event as $1; dhclient and dhcpcd set $reason.
event=${reason:-$1}
case $event in
bound | renew | BOUND | RENEW | REBIND | REBOOT) action=bind ;;
deconfig | nak | NAK | EXPIRE | FAIL | RELEASE) action=unbind ;;
BOUND6 | RENEW6 | REBIND6 | REBOOT6) action=bind6 ;;
EXPIRE6 | RELEASE6 | STOP6) action=unbind6 ;;
TIMEOUT) exit 1 ;; # dhclient: do not fall back on an old lease
*) exit 0 ;;       # PREINIT, CARRIER, STOP, STOPPED, PREINIT6, DEPREF6...: nothing to do
esac

field() { sed -n "s/^$1=//p" "$report" 2>/dev/null; }
dotted() { case $1 in '' | *[!0-9.\ ]*) return 1 ;; esac; }
hex6() {
	case $1 in *:*) ;; *) return 1 ;; esac
	case $1 in *[!0-9A-Fa-f:\ ]*) return 1 ;; esac
}

old_address=$(field address)
old_routers=$(field routers)
count=$(field count)
count=$((${count:-0} + 1))

family=4
if [ "$action" = bind6 ]; then
	# DHCPv6 (IA_NA): one address, as /128; no router (routes come from RAs).
	family=6
	address=${new_ip6_address:-$new_dhcp6_ia_na1_ia_addr1}
	servers=$new_dhcp6_name_servers
	domain=$(printf '%s' "${new_dhcp6_domain_search%% *}" | tr -cd 'A-Za-z0-9._-')
	lease=${new_max_life:-$new_dhcp6_ia_na1_ia_addr1_vltime}
	if ! hex6 "$address" || [ "${address#* }" != "$address" ]; then
		echo "pipework hook: $interface: unusable lease: address '$address'" >&2
		exit 1
	fi
	for s in $servers; do hex6 "$s" || servers=; done
	case $lease in '' | *[!0-9]*) lease= ;; esac
	if [ -n "$old_address" ] && [ "$old_address" != "$address/128" ]; then
		ip -6 addr del "$old_address" dev "$interface" 2>/dev/null
	fi
	ip -6 addr replace "$address/128" dev "$interface" nodad || exit 1
	mask=128 routers= server=
	state=bound
elif [ "$action" = unbind6 ]; then
	family=6
	if [ -n "$old_address" ]; then
		ip -6 addr del "$old_address" dev "$interface" 2>/dev/null
	fi
	address= mask= routers= servers= domain= lease= server=
	state=unbound
elif [ "$action" = bind ]; then
	address=${ip:-$new_ip_address}
	mask=${subnet:-$new_subnet_mask}
	routers=${router:-$new_routers}
	servers=${dns:-$new_domain_name_servers}
	domain=$(printf '%s' "${domain:-$new_domain_name}" | tr -cd 'A-Za-z0-9._ -')
	lease=${lease:-$new_dhcp_lease_time}
	server=${serverid:-$new_dhcp_server_identifier}
	if ! dotted "$address" || ! dotted "$mask"; then
		echo "pipework hook: $interface: unusable lease: address '$address' mask '$mask'" >&2
		exit 1
	fi
	dotted "$routers" || routers=
	dotted "$servers" || servers=
	dotted "$server" || server=
	case $lease in '' | *[!0-9]*) lease= ;; esac
	if [ -n "$old_address" ] && [ "$old_address" != "$address/$mask" ]; then
		ip -4 addr del "$old_address" dev "$interface" 2>/dev/null
	fi
	ip -4 addr replace "$address/$mask" broadcast + dev "$interface" || exit 1
	set -- $routers
	if [ -n "$1" ]; then
		ip -4 route replace default via "$1" dev "$interface" onlink || exit 1
	fi
	state=bound
else
	set -- $old_routers
	if [ -n "$1" ]; then
		ip -4 route del default via "$1" dev "$interface" 2>/dev/null
	fi
	if [ -n "$old_address" ]; then
		ip -4 addr del "$old_address" dev "$interface" 2>/dev/null
	fi
	address= mask= routers= servers= domain= lease= server=
	state=unbound
fi

{
	echo "state=$state"
	echo "family=$family"
	echo "event=$event"
	echo "count=$count"
	echo "time=$(date +%s)"
	echo "address=${address:+$address/$mask}"
	echo "routers=$routers"
	echo "dns=$servers"
	echo "domain=$domain"
	echo "lease=$lease"
	echo "server=$server"
} >"$report.new" && mv -f "$report.new" "$report"
if [ "$echo_report" = 1 ]; then
	sed "s/^/@PREFIX@/" "$report"
	echo "@END@"
fi
exit 0
"""


def hook_script(report: str, *, echo: bool = False) -> str:
    """The hook's text; it keeps its report at ``report`` and, with ``echo``,
    also prints it on stdout (``LOG_PREFIX`` lines ending with ``LOG_END``)."""
    import shlex  # a DHCP attach only: not loaded by every attach that loads this plugin

    return (
        _HOOK.replace("@REPORT@", shlex.quote(report))
        .replace("@ECHO@", "1" if echo else "0")
        .replace("@PREFIX@", LOG_PREFIX)
        .replace("@END@", LOG_END)
    )


def option_names(text: str) -> frozenset[str]:
    """Option names, written as one string for readability."""
    return frozenset(text.split())


class ClientOptions(Record):
    """A DHCP client's command-line syntax, to vet the ``OPTS`` of ``CLIENT:OPTS``.

    ``value_options``: options that take a value (``-x``, ``--script``...);
    ``reserved``: options pipework sets itself -> what they are; ``getopt``:
    getopt syntax (bundled short options, ``--opt=value``), or whole words.
    """

    client: str
    value_options: frozenset[str]
    reserved: Mapping[str, str]
    getopt: bool = True

    def check(self, options: Sequence[str]) -> None:
        """Refuse options pipework sets itself, and any extra interface names."""
        words = iter(options)
        for word in words:
            if word.startswith("--") and self.getopt:
                name = word.partition("=")[0]
                self._allow(name)
                if name in self.value_options and "=" not in word:
                    next(words, None)
            elif word.startswith("-") and len(word) > 1:
                if not self.getopt:
                    self._allow(word)
                    if word in self.value_options:
                        next(words, None)
                    continue
                for i, letter in enumerate(word[1:], start=1):
                    self._allow("-" + letter)
                    if "-" + letter in self.value_options:
                        if i == len(word) - 1:
                            next(words, None)
                        break
            else:
                raise UsageError(
                    f"{self.client} option {word!r} is not an option",
                    f"pipework runs {self.client} on the attached interface only",
                )

    def _allow(self, option: str) -> None:
        if option in self.reserved:
            raise UsageError(
                f"{self.client} option {option} is set by pipework ({self.reserved[option]})",
                "see docs/ADDRESSES.md for what pipework passes",
            )


UDHCPC_OPTIONS = ClientOptions(
    "udhcpc",
    option_names(
        "-V -H -h -F -i -p -r -s -T -t -A -O -x --vendorclass --hostname --fqdn "
        "--interface --pidfile --request --script --timeout --tryagain --retries "
        "--request-option --option"
    ),
    {
        **dict.fromkeys(["-i", "--interface"], "the interface"),
        **dict.fromkeys(["-s", "--script"], "the hook script"),
        **dict.fromkeys(["-p", "--pidfile"], "the pidfile"),
        **dict.fromkeys(["-q", "--quit", "-n", "--now"], "one-shot mode"),
        **dict.fromkeys(["-b", "--background"], "backgrounding"),
        **dict.fromkeys(["-f", "--foreground"], "kept mode: write udhcpc-f or udhcpc:-f alone"),
    },
)
"""busybox udhcpc, on the host or in the ``dhcp`` helper container."""


def client_patience(timeout: float) -> int:
    """How long a client itself tries: longer than pipework waits, which rules."""
    return math.ceil(timeout) + 10


def udhcpc_args(
    ifname: str,
    hook: str,
    hostname: str | None,
    timeout: float,
    *,
    oneshot: bool,
    foreground: bool,
) -> list[str]:
    """busybox udhcpc's arguments (after the program name).

    One-shot: quit with the lease (``-q``), give up without one (``-n``).
    Kept: renew; if the lease is lost, keep trying. ``foreground`` keeps a
    kept client in the foreground (as a container's main process).
    """
    tries = max(3, math.ceil(client_patience(timeout) / 2))
    args = ["-i", ifname, "-s", hook, "-T", "2", "-t", str(tries), "-A", "2"]
    if hostname:
        args += ["-x", f"hostname:{hostname}"]
    if oneshot or foreground:
        args.append("-f")
    if oneshot:
        args += ["-q", "-n"]
    return args


def parse_report(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines -> a dict (other lines are ignored)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.isidentifier():
            fields[key] = value.strip()
    return fields


def last_logged_report(logs: str) -> dict[str, str] | None:
    """The last complete report a hook printed (``echo``), or None."""
    block: list[str] = []
    last: dict[str, str] | None = None
    for line in logs.splitlines():
        if line == LOG_END:
            last, block = parse_report("\n".join(block)), []
        elif line.startswith(LOG_PREFIX):
            block.append(line[len(LOG_PREFIX) :])
    return last


class Lease(Record):
    """A bound lease, as a hook reported it (and validated here)."""

    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    routers: tuple[ipaddress.IPv4Address, ...] = ()
    dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    domain: str | None = None
    lease_time: int | None = None
    server: ipaddress.IPv4Address | None = None
    event: str = ""
    count: int = 0
    time: int = 0

    @classmethod
    def from_report(cls, fields: Mapping[str, str]) -> Lease | None:
        """The lease in a report; None unless it says ``state=bound``.

        Raises ``ValueError`` for a bound report with a malformed value.
        """
        if fields.get("state") != "bound":
            return None

        def addresses(key: str) -> tuple[ipaddress.IPv4Address, ...]:
            return tuple(ipaddress.IPv4Address(w) for w in fields.get(key, "").split())

        server = fields.get("server")
        routers: tuple[ipaddress.IPv4Address, ...]
        if fields.get("family") == "6":  # DHCPv6: one address, no router
            address: ipaddress.IPv4Interface | ipaddress.IPv6Interface = ipaddress.IPv6Interface(
                fields["address"]
            )
            dns: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = tuple(
                ipaddress.IPv6Address(w) for w in fields.get("dns", "").split()
            )
            routers, server = (), None
        else:
            address, dns, routers = (
                ipaddress.IPv4Interface(fields["address"]),
                addresses("dns"),
                addresses("routers"),
            )
        return cls(
            address=address,
            routers=routers,
            dns=dns,
            domain=fields.get("domain") or None,
            lease_time=int(fields["lease"]) if fields.get("lease") else None,
            server=ipaddress.IPv4Address(server) if server else None,
            event=fields.get("event", ""),
            count=int(fields.get("count") or 0),
            time=int(fields.get("time") or 0),
        )

    @property
    def gateway(self) -> ipaddress.IPv4Address | None:
        return self.routers[0] if self.routers else None

    def result(self) -> AddressResult:
        return AddressResult(
            addresses=(str(self.address),),
            gateway=str(self.gateway) if self.gateway else None,
            dns=tuple(str(d) for d in self.dns),
            domain=self.domain,
        )


def dhcp_hostname(info: GuestInfo) -> str | None:
    """The host name a client sends: the guest's name, made a valid label.

    ``web1`` -> ``web1``; ``netns:blue`` -> ``blue``; ``/run/netns/blue``
    -> ``blue``; ``pid:42`` -> ``pid-42``.
    """
    name = info.name
    if info.runtime == "path":
        name = Path(name).name
    elif name.startswith(("netns:", "docker:")):
        name = name.partition(":")[2]
    label = _HOSTNAME_BAD.sub("-", name).strip("-")[:63].strip("-")
    return label or None


def anchor(info: GuestInfo) -> str | None:
    """A path whose namespace is the guest's while the guest lives."""
    if info.pid:
        return f"/proc/{info.pid}/ns/net"
    if info.runtime == "netns":
        return "/run/netns/" + info.key.partition(":")[2]
    if info.runtime == "path":
        # The path as given, also when AttachSpec.guest_key renamed the guest.
        return info.name
    if info.key.startswith("/"):
        return info.key
    return None


def same_netns(path: str | None, identity: tuple[int, int] | list[int] | None) -> bool:
    """Is the namespace at ``path`` the one recorded as ``identity``?"""
    if path is None or identity is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == tuple(identity)


def attachment_id(guest_key: str, ifname: str) -> str:
    """10 hex digits naming one attachment's DHCP state (and helper container);
    the same hash as its host-side interface name ``pw...``."""
    return short_hash(guest_key, ifname)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


class StateDir:
    """One attachment's directory, ``RUN_DIR/dhcp/HASH``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, run_dir: str, guest_key: str, ifname: str, family: int | None = 4) -> StateDir:
        """The directory of the attachment ``ifname`` of the guest ``guest_key``
        (its DHCPv6 client's, for ``family`` 6: one of its own)."""
        name = attachment_id(guest_key, ifname)
        if family == 6:
            name = short_hash(guest_key, ifname, "v6")
        return cls(Path(run_dir) / "dhcp" / name)

    @classmethod
    def all(cls, run_dir: str) -> list[StateDir]:
        root = Path(run_dir) / "dhcp"
        try:
            paths = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
        except FileNotFoundError:
            return []
        return [cls(p) for p in paths]

    def __str__(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self, meta: Mapping[str, Any]) -> None:
        """Create it empty (the caller has cleared an old one) and write ``meta``."""
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            self.path.mkdir(mode=0o700)
        except OSError as exc:
            raise PipeworkError(
                f"cannot create {self.path}: {exc.strerror}",
                "check EngineConfig.run_dir / PIPEWORK_RUN_DIR",
            ) from None
        self.write_meta(meta)

    def file(self, name: str) -> Path:
        return self.path / name

    def write(self, name: str, text: str, mode: int = 0o600) -> Path:
        path = self.file(name)
        tmp = path.with_name(name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        tmp.chmod(mode)
        tmp.replace(path)
        return path

    def meta(self) -> dict[str, Any]:
        text = read_text(self.file(META))
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        self.write(META, json.dumps(dict(meta), indent=1, sort_keys=True) + "\n")

    def update_meta(self, **changes: Any) -> None:
        self.write_meta({**self.meta(), **changes})

    def report(self) -> dict[str, str]:
        return parse_report(read_text(self.file(REPORT)) or "")

    def remove(self) -> None:
        import shutil  # lazy, like every DHCP-only import: not on a static attach's path

        shutil.rmtree(self.path, ignore_errors=True)


def base_meta(ctx: AddressContext, provider: str, mode: str) -> dict[str, Any]:
    """What every DHCP state directory records about its attachment."""
    info = ctx.guest.info
    return {
        "provider": provider,
        "mode": mode,
        "guest": info.key,
        "guest_name": info.name,
        "runtime": info.runtime,
        "pid": info.pid,
        "ifname": ctx.ifname,
        "netns": list(netns_identity(ctx.guest.fd)),
        "anchor": anchor(info),
        "created": int(time.time()),
        "request": request_record(ctx.address),
    }


def request_record(address: AddressSpec) -> dict[str, Any]:
    """The IPSPEC an attachment was made with, to start its kept client again."""
    return {
        "method": address.method,
        "options": list(address.options),
        "settings": {k: v for k, v in address.settings.items() if k in (DNS, TIMEOUT, IMAGE)},
        **({"family": address.family} if address.family else {}),
    }


def recorded_request(meta: Mapping[str, Any], fallback: str) -> AddressSpec:
    """The request ``request_record`` kept in ``meta`` (``fallback``, the kept
    method alone, for a directory written before it was recorded).
    ``ValueError`` when it is malformed."""
    record = meta.get("request")
    if record is None:
        return AddressSpec(method=fallback)
    if not isinstance(record, dict):
        raise ValueError("its request is not an object")
    method, options = record.get("method"), record.get("options", [])
    settings = record.get("settings", {})
    if not isinstance(method, str) or not method or method == "static":
        raise ValueError(f"its request names no DHCP method: {method!r}")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise ValueError("its request's options are not a list of strings")
    if not isinstance(settings, dict) or not settings.keys() <= {DNS, TIMEOUT, IMAGE}:
        raise ValueError("its request's settings are not dns, timeout, image")
    if not isinstance(settings.get(DNS, False), bool):
        raise ValueError("its request's dns is not true or false")
    try:
        if TIMEOUT in settings:
            settings = {**settings, TIMEOUT: parse_timeout(settings[TIMEOUT])}
        if IMAGE in settings:
            check_image(settings[IMAGE])
        family = record.get("family")
        if family not in (None, 4, 6):
            raise ValueError(f"its request's family {family!r} is not 4 or 6")
        return AddressSpec(
            method=method, options=tuple(options), settings=dict(settings), family=family
        )
    except PipeworkError as exc:
        raise ValueError(f"its request is not valid: {exc}") from None


def kept_client(
    state: StateDir,
    meta: Mapping[str, Any],
    fallback: str,
    *,
    alive: bool,
    pid: int | None,
    starttime: int | None,
) -> KeptClient:
    """A kept attachment's record for ``AddressProvider.kept()``, from its
    state directory's ``meta`` and lease report. ``ValueError`` when the
    metadata is malformed (a directory anyone could have written)."""
    strings = {k: meta.get(k) for k in ("provider", "guest", "ifname")}
    bad = [k for k, v in strings.items() if not isinstance(v, str) or not v]
    if bad:
        raise ValueError(f"no {', '.join(bad)}")
    netns = meta.get("netns")
    if not (isinstance(netns, list) and len(netns) == 2 and all(type(n) is int for n in netns)):
        raise ValueError("no namespace identity")
    anchor_at, guest_pid = meta.get("anchor"), meta.get("pid")
    if anchor_at is not None and not (isinstance(anchor_at, str) and anchor_at.startswith("/")):
        raise ValueError("its anchor is not an absolute path")
    if guest_pid is not None and type(guest_pid) is not int:
        raise ValueError("its guest PID is not a number")
    name, runtime = meta.get("guest_name"), meta.get("runtime")
    report, stamp = lease_report(state)
    try:
        lease = Lease.from_report(report)
    except (KeyError, ValueError):
        lease = None
    return KeptClient(
        provider=str(strings["provider"]),
        guest=str(strings["guest"]),
        guest_name=name if isinstance(name, str) else "",
        ifname=str(strings["ifname"]),
        address=recorded_request(meta, fallback),
        alive=alive,
        pid=pid,
        starttime=starttime,
        runtime=runtime if isinstance(runtime, str) else "",
        guest_pid=guest_pid,
        anchor=anchor_at,
        netns=(netns[0], netns[1]),
        state=str(state),
        lease_address=str(lease.address) if lease is not None else None,
        lease_seconds=lease.lease_time if lease is not None else None,
        renewals=lease.count if lease is not None else 0,
        lease_stamp=stamp,
        renewed_at=float(lease.time) if lease is not None and lease.time else None,
    )


def lease_report(state: StateDir) -> tuple[dict[str, str], str]:
    """The lease report and a stamp that changes whenever the hook rewrites it
    (it replaces the file: a new inode, a new mtime)."""
    path = state.file(REPORT)
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return {}, ""
    if not stat.S_ISREG(st.st_mode):
        return {}, ""
    return state.report(), f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def guest_alive(meta: Mapping[str, Any]) -> bool:
    """Does the guest a state directory belongs to still exist?"""
    return same_netns(meta.get("anchor"), meta.get("netns"))


def check_request(spec: AttachSpec, guest: GuestInfo, *, ipv6: bool = False) -> None:
    """What every DHCP provider refuses before anything is made; ``ipv6``:
    the provider also speaks DHCPv6."""
    if wanted_family(spec) == 6 and not ipv6:
        raise UsageError(
            f"{spec.address.method} gets IPv4 leases only (Debian's busybox has no udhcpc6)",
            "for DHCPv6 use dhclient/6 or dhcpcd/6",
        )
    if wants_dns(spec.address):
        GuestResolvConf.locate(guest).check()


def wanted_family(spec: AttachSpec) -> int:
    """The family a DHCP request asks for: ``METHOD/6`` or ``-a 6`` is DHCPv6."""
    if spec.address.family is not None:
        return spec.address.family
    return 6 if spec.family == 6 else 4


def family_of(ctx: DetachContext) -> int:
    """The family of the address a detach releases: its own, or the one the
    marker names for an attachment of one address (``dhclient/6``)."""
    if ctx.address is not None:
        return ctx.address.family or 4
    from pipework.engine.addressing import parse_methods

    methods = parse_methods(ctx.marker.addr)
    return (methods[0].family or 4) if len(methods) == 1 else 4


def last_words(text: str | None, limit: int = 120) -> str:
    """The last non-empty line of a client's output, shortened."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    said = lines[-1] if lines else "no output"
    return said if len(said) <= limit else said[: limit - 3] + "..."


def no_lease(client: str, ctx: AddressContext, seconds: float, said: str) -> TimeoutExpiredError:
    return TimeoutExpiredError(
        f"{client} got no DHCP lease for {ctx.ifname} in {ctx.guest.name} within {seconds:g} s "
        f"(it said: {said})",
        f"is a DHCP server answering on {ctx.spec.host}? --dhcp-timeout sets how long to wait",
    )


async def intact_result(ctx: DetachContext, report: Mapping[str, str]) -> AddressResult | None:
    """For ``inspect``: the lease in ``report`` if the interface still has
    its address; None (not intact: a re-run replaces it) otherwise."""
    try:
        lease = Lease.from_report(report)
    except (KeyError, ValueError):
        return None
    if lease is None or ctx.guest_ns is None or ctx.guest_link is None:
        return None
    if lease.address not in await ctx.guest_ns.addresses(ctx.guest_link.index):
        return None
    return lease.result()


async def keep_default_route(ctx: AddressContext, run_dir: str) -> None:
    """Record how to put the guest's IPv4 default route back.

    Call it before a client starts: its hook replaces the default route
    when the lease names a router, and a failure at any later point, or the
    detach, must restore the route that was there (and only remove a route
    through this interface: backends/shared/routes.py).
    """
    from pipework.backends.shared.routes import keep_default_route as keep

    await keep(ctx, run_dir, 4)


async def give_back_default_route(ctx: DetachContext, run_dir: str) -> None:
    """On release: the guest's default route as it was before the lease's router."""
    from pipework.backends.shared.routes import give_back_default_route as give_back

    await give_back(ctx, run_dir)


async def link_local_ready(ctx: AddressContext, seconds: float) -> None:
    """Enable IPv6 on the interface (only it) and wait, up to ``seconds``,
    for its link-local address to pass duplicate address detection: a
    DHCPv6 client sends from it."""
    from pipework.backends.shared.ipv6 import wait_link_local

    ctx.guest_ns.enable_ipv6(ctx.device or ctx.ifname, link_local=True)
    if await wait_link_local(ctx.guest_ns, ctx.index, seconds):
        return
    raise TimeoutExpiredError(
        f"{ctx.ifname} in {ctx.guest.name} got no usable IPv6 link-local address "
        f"within {seconds:g} s",
        "is another interface on the link using the same MAC address?",
    )


async def check_lease(ctx: AddressContext, lease: Lease, client: str) -> None:
    """The address a client reported must be on the interface."""
    found = await ctx.guest_ns.addresses(ctx.index)
    if lease.address not in found:
        raise PipeworkError(
            f"{client} reported {lease.address} for {ctx.ifname} in {ctx.guest.name}, "
            "but the interface does not have it",
            "run with --debug and look at the client's log",
        )


# -- the guest's resolv.conf (--dns) ---------------------------------------------------

HOST_RESOLV_CONF = "/etc/resolv.conf"
RESOLV_STATE = "resolv.json"
RESOLV_ORIGINAL = "resolv.conf.orig"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class GuestResolvConf:
    """The resolv.conf the guest itself reads, and only that.

    - Docker and ``pid:`` guests: the process's own ``/etc/resolv.conf``,
      reached through ``/proc/PID/root`` without following any symbolic
      link (an absolute link would lead into the host's tree);
    - ``netns:NAME`` (or ``/run/netns/NAME``): ``/etc/netns/NAME/resolv.conf``,
      which ``ip netns exec NAME`` shows as /etc/resolv.conf.

    It refuses a file that is the host's own /etc/resolv.conf (a process
    sharing the host's root, a bind mount of the host's file).
    """

    def __init__(self, where: dict[str, Any]) -> None:
        self.where = where

    @classmethod
    def locate(cls, info: GuestInfo, netns: tuple[int, int] | None = None) -> GuestResolvConf:
        """The guest's file; ``netns`` (its namespace's identity) pins a
        process guest to the namespace being attached."""
        if info.pid:
            return cls({"kind": "proc", "pid": info.pid, "netns": netns and list(netns)})
        name = None
        if info.runtime == "netns":
            name = info.key.partition(":")[2]
        elif info.key.startswith("/run/netns/"):
            name = info.key[len("/run/netns/") :]
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(
                f"--dns: pipework does not know which resolv.conf {info.name} reads",
                "use it with Docker, pid:N or netns:NAME guests",
            )
        return cls({"kind": "netns", "name": name, "netns": netns and list(netns)})

    @property
    def display(self) -> str:
        if self.where["kind"] == "proc":
            return f"/proc/{self.where['pid']}/root/etc/resolv.conf"
        return f"/etc/netns/{self.where['name']}/resolv.conf"

    def _etc(self, create: bool) -> tuple[int, list[str]]:
        """An O_PATH fd on the guest's /etc (and directories it created)."""
        flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
        if self.where["kind"] == "proc":
            pid = self.where["pid"]
            netns = self.where["netns"]
            if netns is not None and not same_netns(f"/proc/{pid}/ns/net", netns):
                raise UsageError(f"--dns: process {pid} is not in the guest's namespace any more")
            root = os.open(f"/proc/{pid}/root", flags)
            try:
                theirs, ours = os.fstat(root), os.stat("/")
                if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
                    raise UsageError(
                        f"--dns: process {pid} shares the host's root directory",
                        "pipework will not write the host's /etc/resolv.conf",
                    )
                return os.open("etc", flags | os.O_NOFOLLOW, dir_fd=root), []
            finally:
                os.close(root)
        created: list[str] = []
        path = Path("/etc/netns", self.where["name"])
        for directory in (path.parent, path):
            if create and not directory.is_dir():
                directory.mkdir(0o755)
                created.append(str(directory))
        return os.open(path, flags | os.O_NOFOLLOW), created

    def check(self) -> None:
        """Fail now (before anything is made) if the file cannot be written."""
        try:
            etc, _ = self._etc(create=False)
        except FileNotFoundError:
            if self.where["kind"] == "proc":
                raise UsageError(f"--dns: {self.display} has no /etc directory") from None
            return  # /etc/netns/NAME is created when written
        except OSError as exc:
            raise UsageError(f"--dns: cannot open {self.display}: {exc.strerror}") from None
        try:
            self._open(etc, os.O_RDONLY).close()
        except FileNotFoundError:
            pass
        finally:
            os.close(etc)

    def _open(self, etc: int, flags: int) -> Any:
        try:
            fd = os.open("resolv.conf", flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=etc)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symbolic link
                raise UsageError(
                    f"--dns: {self.display} is a symbolic link",
                    "pipework does not follow links out of the guest",
                ) from None
            raise
        st = os.fstat(fd)
        host = os.stat(HOST_RESOLV_CONF) if Path(HOST_RESOLV_CONF).exists() else None
        if not stat.S_ISREG(st.st_mode) or (
            host is not None and (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino)
        ):
            os.close(fd)
            raise UsageError(
                f"--dns: {self.display} is the host's resolv.conf or not a regular file",
                "pipework writes only the guest's own file",
            )
        return os.fdopen(fd, "rb+" if flags & os.O_RDWR else "rb")

    def write(self, text: str, state: StateDir) -> None:
        """Replace the guest's file with ``text``; keep what was there in ``state``."""
        data = text.encode()
        try:
            etc, created = self._etc(create=True)
        except OSError as exc:
            raise PipeworkError(f"--dns: cannot open {self.display}: {exc.strerror}") from None
        try:
            try:
                fh = self._open(etc, os.O_RDWR)
                original: bytes | None = fh.read()
            except FileNotFoundError:
                fh = self._open(etc, os.O_RDWR | os.O_CREAT | os.O_EXCL)
                original = None
            with fh:
                if original is not None:
                    state.write(RESOLV_ORIGINAL, original.decode(errors="surrogateescape"))
                record = {**self.where, "written": _sha(data), "created": original is None}
                record["created_dirs"] = created
                state.write(RESOLV_STATE, json.dumps(record) + "\n")
                fh.seek(0)
                fh.truncate()
                fh.write(data)
        except OSError as exc:
            raise PipeworkError(f"--dns: cannot write {self.display}: {exc.strerror}") from None
        finally:
            os.close(etc)

    @classmethod
    def restore(cls, state: StateDir) -> None:
        """Put back what ``write`` replaced, if the file still holds what we wrote."""
        text = read_text(state.file(RESOLV_STATE))
        if not text:
            return
        record = json.loads(text)
        target = cls(record)
        try:
            etc, _ = target._etc(create=False)
        except (OSError, PipeworkError):
            return  # the guest (or its /etc) is gone: nothing to restore
        try:
            with target._open(etc, os.O_RDWR) as fh:
                if _sha(fh.read()) != record["written"]:
                    return  # changed since: not ours any more
                if record.get("created"):
                    os.unlink("resolv.conf", dir_fd=etc)
                else:
                    original = read_text(state.file(RESOLV_ORIGINAL)) or ""
                    fh.seek(0)
                    fh.truncate()
                    fh.write(original.encode(errors="surrogateescape"))
        except (OSError, PipeworkError):
            return
        finally:
            os.close(etc)
        for directory in reversed(record.get("created_dirs", [])):
            with contextlib.suppress(OSError):
                Path(directory).rmdir()


def resolv_conf_text(lease: Lease, ifname: str) -> str:
    lines = [f"# written by pipework from the DHCP lease of {ifname} ({lease.address.ip})"]
    if lease.domain:
        lines.append(f"search {lease.domain}")
    lines += [f"nameserver {server}" for server in lease.dns]
    return "\n".join(lines) + "\n"


async def write_guest_dns(
    ctx: AddressContext, lease: Lease, target: GuestResolvConf, state: StateDir
) -> None:
    """``--dns``: the lease's servers and domain into the guest's resolv.conf."""
    if not lease.dns and not lease.domain:
        return
    target.write(resolv_conf_text(lease, ctx.ifname), state)

    async def undo() -> None:
        GuestResolvConf.restore(state)

    ctx.journal.record(f"DNS settings in {target.display}", undo)


__all__ = [
    "DEFAULT_TIMEOUT",
    "DNS",
    "HELPER_OPTIONS",
    "HOST_CLIENT_OPTIONS",
    "IMAGE",
    "LOG_END",
    "LOG_PREFIX",
    "REPORT",
    "TIMEOUT",
    "UDHCPC_OPTIONS",
    "ClientOptions",
    "GuestResolvConf",
    "Lease",
    "StateDir",
    "anchor",
    "attachment_id",
    "base_meta",
    "check_lease",
    "check_request",
    "client_patience",
    "dhcp_hostname",
    "give_back_default_route",
    "guest_alive",
    "hook_script",
    "intact_result",
    "keep_default_route",
    "kept_client",
    "last_logged_report",
    "last_words",
    "lease_report",
    "lease_timeout",
    "no_lease",
    "option_names",
    "parse_report",
    "read_text",
    "recorded_request",
    "request_record",
    "same_netns",
    "udhcpc_args",
    "wants_dns",
    "write_guest_dns",
]
