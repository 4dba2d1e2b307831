"""What a CNI runtime hands the plugin: the environment and the network configuration.

Both are validated here, once, into plain values (``Invocation``, ``NetConf``);
``NetConf.attach_spec()`` turns them into the engine's ``AttachSpec``. Pure:
no I/O beyond reading the given mapping and bytes, no engine import until a
spec is built.

Identity: CNI names an attachment by (network name, container ID, ifname).
The engine's guest key is ``cni:NETWORK:CONTAINERID`` (``guest_key``), so DEL,
CHECK and GC find an attachment again from a fresh process, through the
kernel markers, even when the namespace is gone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipework.cni.protocol import (
    COMMANDS,
    DECODING_FAILURE,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    UNSUPPORTED_FIELD,
    CniError,
    check_version,
)
from pipework.records import EMPTY, Record

if TYPE_CHECKING:
    from pipework.engine.specs import AttachSpec

KEY_PREFIX = "cni:"
NETWORK_PART_MAX = 16
CONTAINER_PART_MAX = 64
IPAM_METHOD = "cni-ipam"
"""The address method of attachments whose addresses a delegated IPAM plugin chose."""

# Keys the specification (or a runtime) puts into a plugin's configuration.
STANDARD_KEYS = frozenset(
    {"cniVersion", "name", "type", "ipam", "dns", "runtimeConfig", "prevResult", "args"}
    | {"capabilities", "cni.dev/valid-attachments", "disableCheck", "disableGC"}
)
# pipework's own keys.
OWN_KEYS = frozenset(
    {"backend", "host", "bridge", "master", "device", "address", "mac", "vlan", "pkey"}
    | {"mtu", "mode", "options", "routes", "dhcpTimeout", "hostNetns", "runDir"}
    | {"announce", "ipv6LinkLocal"}
)
HOST_KEYS = {
    "bridge": ("bridge", "ovs"),
    "master": ("macvlan", "ipvlan", "ipoib"),
    "device": ("phys",),
}
"""The customary CNI name of the host interface, per built-in backend; ``host`` fits any."""
HOSTLESS = frozenset({"dummy"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ARG_RE = re.compile(r"^[A-Za-z0-9_]+$")


def _shorten(text: str, limit: int) -> str:
    """``text`` if it fits ``limit``, else a prefix + ``~`` + 10 hex digits of its hash."""
    if len(text) <= limit:
        return text
    import hashlib  # here: OpenSSL's loading costs VERSION and bad input 2 ms

    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:10]
    return text[: limit - 11] + "~" + digest


def network_prefix(network: str) -> str:
    """The guest-key prefix every attachment of ``network`` shares."""
    return f"{KEY_PREFIX}{_shorten(network, NETWORK_PART_MAX)}:"


def guest_key(network: str, container_id: str) -> str:
    """``cni:NETWORK:CONTAINERID``, each part shortened (with a hash) if long."""
    return network_prefix(network) + _shorten(container_id, CONTAINER_PART_MAX)


# -- the environment ------------------------------------------------------------------


class Invocation(Record):
    """The ``CNI_*`` environment variables of one call."""

    _hidden = frozenset({"env"})

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = EMPTY
    path: tuple[str, ...] = ()
    env: Mapping[str, str] = EMPTY
    """The whole environment, handed on to delegated plugins (not in the repr)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Invocation:
        command = env.get("CNI_COMMAND", "")
        if command not in COMMANDS:
            what = f"{command!r} is not a CNI command" if command else "CNI_COMMAND is not set"
            raise CniError(INVALID_ENVIRONMENT, what, f"set CNI_COMMAND to {', '.join(COMMANDS)}")
        return cls(
            command=command,
            container_id=env.get("CNI_CONTAINERID", ""),
            netns=env.get("CNI_NETNS", ""),
            ifname=env.get("CNI_IFNAME", ""),
            args=parse_args(env.get("CNI_ARGS", "")),
            path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
            env=dict(env),
        )

    def require(self) -> None:
        """The variables this command needs (the spec's "Parameters" section)."""
        needed = {
            "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
            "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
            "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
        }.get(self.command, ())
        values = {
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns,
            "CNI_IFNAME": self.ifname,
        }
        missing = [name for name in needed if not values[name]]
        if missing:
            raise CniError(
                INVALID_ENVIRONMENT,
                f"{self.command} needs {', '.join(missing)}",
                "the container runtime must set them",
            )
        if self.container_id and not _NAME_RE.match(self.container_id):
            raise CniError(
                INVALID_ENVIRONMENT,
                f"CNI_CONTAINERID {self.container_id!r} is not valid",
                "letters, digits, '_', '.' and '-', starting with a letter or digit",
            )
        if self.netns and not self.netns.startswith("/"):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {self.netns!r} is not a path")
        if self.ifname:
            from pipework.engine.errors import UsageError
            from pipework.engine.specs import validate_ifname

            try:
                validate_ifname(self.ifname, "CNI_IFNAME")
            except UsageError as exc:
                raise CniError(INVALID_ENVIRONMENT, exc.message, exc.hint or "") from None


def parse_args(text: str) -> dict[str, str]:
    """``CNI_ARGS``: ``KEY=VALUE;KEY=VALUE``. Keys we do not use are refused,
    unless ``IgnoreUnknown`` is true (as the reference plugins do)."""
    args: dict[str, str] = {}
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not _ARG_RE.match(key):
            raise CniError(
                INVALID_ENVIRONMENT, f"CNI_ARGS item {item!r} is not KEY=VALUE", "separate with ';'"
            )
        args[key] = value
    known = {"IgnoreUnknown", "MAC"} | {k for k in args if k.startswith("K8S_POD_")}
    unknown = sorted(set(args) - known)
    if unknown and args.get("IgnoreUnknown", "").lower() not in ("1", "true"):
        raise CniError(
            INVALID_ENVIRONMENT,
            f"CNI_ARGS has arguments pipework does not know: {', '.join(unknown)}",
            "add IgnoreUnknown=1 to pass them anyway",
        )
    return args


# -- the network configuration ------------------------------------------------------------


class NetConf(Record):
    """One plugin's network configuration, as the runtime sent it on stdin."""

    version: str
    name: str
    backend: str
    host: str
    address: str | None = None
    ipam: Mapping[str, Any] | None = None
    mac: str | None = None
    vlan: int | None = None
    pkey: str | None = None
    mtu: int | None = None
    announce: bool = True
    ipv6_link_local: bool = False
    mode: str | None = None
    options: Mapping[str, str] = EMPTY
    routes: tuple[str, ...] = ()
    dns: Mapping[str, Any] | None = None
    dhcp_timeout: float | None = None
    host_netns: str | None = None
    run_dir: str | None = None
    """Where DHCP clients keep their state (default: PIPEWORK_RUN_DIR or /run/pipework)."""
    runtime_config: Mapping[str, Any] = EMPTY
    prev_result: Mapping[str, Any] | None = None
    valid_attachments: tuple[tuple[str, str], ...] | None = None
    raw: bytes = b""
    """The configuration exactly as received, for delegated IPAM plugins."""

    def key(self, container_id: str) -> str:
        return guest_key(self.name, container_id)

    def attach_spec(self, invocation: Invocation, container_id: str, ifname: str) -> AttachSpec:
        """The engine's request for this attachment (raises CniError 7 on bad values)."""
        from dataclasses import replace

        from pipework.engine.errors import UsageError
        from pipework.engine.specs import AddressSpec, AttachSpec, RouteSpec, parse_addresses

        try:
            if self.ipam is not None:
                addresses: tuple[AddressSpec, ...] = (AddressSpec(method=IPAM_METHOD),)
            else:
                addresses = parse_addresses(self.address or "0/0")
            if self.dhcp_timeout is not None:
                if all(a.method in ("static", IPAM_METHOD) for a in addresses):
                    raise CniError(
                        INVALID_CONFIG,
                        f"network {self.name}: 'dhcpTimeout' applies to DHCP addressing only",
                        'e.g. "address": "udhcpc-f"',
                    )
                addresses = tuple(
                    a if a.method == "static" else replace(a, timeout=self.dhcp_timeout)
                    for a in addresses
                )
            address, *extra = addresses
            mac = self.runtime_config.get("mac") or invocation.args.get("MAC") or self.mac
            return AttachSpec(
                host=self.host,
                # DEL without a namespace never resolves the guest (the key finds it).
                guest=invocation.netns or self.key(container_id),
                guest_key=self.key(container_id),
                kind=self.backend,
                ifname=ifname,
                address=address,
                extra_addresses=tuple(extra),
                mac=str(mac) if mac else None,
                vlan=self.vlan,
                tag=self.pkey,
                mtu=self.mtu,
                announce=self.announce,
                ipv6_link_local=self.ipv6_link_local,
                settings={"direct_phys": True} if self.backend == "phys" else {},
                options={**self.options, **({"mode": self.mode} if self.mode else {})},
                routes=tuple(RouteSpec.parse(route) for route in self.routes),
            )
        except UsageError as exc:
            raise CniError(
                INVALID_CONFIG, f"network {self.name}: {exc.message}", exc.hint or ""
            ) from None


def load(data: bytes, command: str) -> NetConf:
    """Parse and validate the configuration on stdin; CniError with the spec's code if bad."""
    try:
        conf = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(DECODING_FAILURE, f"the network configuration is not JSON: {exc}") from None
    if not isinstance(conf, dict):
        raise CniError(DECODING_FAILURE, "the network configuration is not a JSON object")
    version = check_version(conf.get("cniVersion"), command)
    reader = _Reader(conf)
    name = reader.string("name", required=True)
    assert name is not None
    if not _NAME_RE.match(name):
        raise CniError(
            INVALID_CONFIG,
            f"network name {name!r} is not valid",
            "letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    for key, value in conf.items():
        # Keys with a domain ("example.com/setting") are other tools' extensions.
        if key not in STANDARD_KEYS and key not in OWN_KEYS and "/" not in key:
            raise CniError(
                UNSUPPORTED_FIELD,
                f"unsupported field {key!r} (value {json.dumps(value)})",
                f"pipework's fields: {', '.join(sorted(OWN_KEYS))}",
            )
    if command == "GC":
        # GC sends the network's configuration, but only the identity matters.
        backend = reader.string("backend") or ""
    else:
        backend = reader.string("backend", required=True) or ""
    host = _host(reader, backend, needed=command not in ("GC", "STATUS", "VERSION"))
    address = reader.string("address")
    ipam = reader.mapping("ipam")
    if address is not None and ipam is not None:
        raise CniError(
            INVALID_CONFIG,
            "the configuration has both 'address' and 'ipam'",
            "use pipework's addressing ('address') or a CNI IPAM plugin ('ipam'), not both",
        )
    if ipam is not None and not isinstance(ipam.get("type"), str):
        raise CniError(
            INVALID_CONFIG, "'ipam' has no 'type'", "name the IPAM plugin, e.g. host-local"
        )
    options = reader.mapping("options") or {}
    for key, value in options.items():
        if not isinstance(value, str):
            raise CniError(
                INVALID_CONFIG, f"option {key!r} must be a string, not {json.dumps(value)}"
            )
    return NetConf(
        version=version,
        name=name,
        backend=backend,
        host=host,
        address=address,
        ipam=ipam,
        mac=reader.string("mac"),
        vlan=reader.integer("vlan"),
        pkey=reader.string("pkey"),
        mtu=reader.integer("mtu"),
        announce=reader.flag("announce", True),
        ipv6_link_local=reader.flag("ipv6LinkLocal", False),
        mode=reader.string("mode"),
        options=dict(options),
        routes=_routes(reader),
        dns=reader.mapping("dns"),
        dhcp_timeout=reader.number("dhcpTimeout"),
        host_netns=reader.string("hostNetns"),
        run_dir=_absolute(reader, "runDir"),
        runtime_config=reader.mapping("runtimeConfig") or {},
        # DEL does not use it: one that does not parse cannot stop a DEL.
        prev_result=reader.mapping("prevResult") if command != "DEL" else None,
        valid_attachments=_valid_attachments(conf) if command == "GC" else None,
        raw=data,
    )


def _host(reader: _Reader, backend: str, *, needed: bool) -> str:
    given = {key: reader.string(key) for key in ("host", *HOST_KEYS)}
    present = [key for key, value in given.items() if value is not None]
    for key in present:
        owners = HOST_KEYS.get(key)
        if owners is not None and backend not in owners:
            raise CniError(
                UNSUPPORTED_FIELD,
                f"unsupported field {key!r} (value {json.dumps(given[key])}) for backend {backend!r}",
                f"{key!r} is for {', '.join(owners)}; 'host' fits any backend",
            )
    if len(present) > 1:
        raise CniError(
            INVALID_CONFIG, f"the host interface is given twice ({' and '.join(present)})"
        )
    if present:
        return given[present[0]] or ""
    if backend in HOSTLESS or not needed:
        return backend or "none"
    key = next((k for k, owners in HOST_KEYS.items() if backend in owners), "host")
    raise CniError(
        INVALID_CONFIG,
        f"the {backend} backend needs the host interface: set {key!r}",
        'e.g. "bridge": "br0" or "master": "eth1"',
    )


def _absolute(reader: _Reader, key: str) -> str | None:
    path = reader.string(key)
    if path is not None and not path.startswith("/"):
        raise CniError(INVALID_CONFIG, f"{key!r} must be an absolute path, not {path!r}")
    return path


def _routes(reader: _Reader) -> tuple[str, ...]:
    """``routes``: ``"DEST [via GW] [metric N]"`` strings, or CNI's ``{"dst", "gw", "priority"}``."""
    items = reader.get("routes", (list,), "a list", False) or []
    routes = []
    for item in items:
        if isinstance(item, str):
            routes.append(item)
        elif (
            isinstance(item, dict)
            and isinstance(item.get("dst"), str)
            and item.keys()
            <= {
                "dst",
                "gw",
                "priority",
            }
        ):
            text = item["dst"]
            if item.get("gw") is not None:
                text += f" via {item['gw']}"
            if item.get("priority") is not None:
                text += f" metric {item['priority']}"
            routes.append(text)
        else:
            raise CniError(
                INVALID_CONFIG,
                f"route {json.dumps(item)} is not valid",
                'write "198.18.2.0/24 via 198.18.1.1" or {"dst": ..., "gw": ...}',
            )
    return tuple(routes)


def _valid_attachments(conf: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    items = conf.get("cni.dev/valid-attachments", [])
    if not isinstance(items, list):
        raise CniError(INVALID_CONFIG, "'cni.dev/valid-attachments' must be a list")
    valid = []
    for item in items:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("containerID"), str)
            and isinstance(item.get("ifname"), str)
        ):
            raise CniError(
                INVALID_CONFIG,
                f"'cni.dev/valid-attachments' item {json.dumps(item)} is not valid",
                'each item is {"containerID": ..., "ifname": ...}',
            )
        valid.append((item["containerID"], item["ifname"]))
    return tuple(valid)


class _Reader:
    """Typed access to configuration fields, with the spec's error for a wrong type."""

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self.conf = conf

    def get(self, key: str, types: tuple[type, ...], what: str, required: bool) -> Any:
        value = self.conf.get(key)
        if value is None:
            if required:
                raise CniError(INVALID_CONFIG, f"the network configuration has no {key!r}")
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise CniError(INVALID_CONFIG, f"{key!r} must be {what}, not {json.dumps(value)}")
        return value

    def string(self, key: str, *, required: bool = False) -> str | None:
        value: str | None = self.get(key, (str,), "a string", required)
        if value == "":
            raise CniError(INVALID_CONFIG, f"{key!r} is empty")
        return value

    def integer(self, key: str) -> int | None:
        value: int | None = self.get(key, (int,), "a whole number", False)
        return value

    def flag(self, key: str, default: bool) -> bool:
        value: bool | None = self.get(key, (bool,), "true or false", False)
        return default if value is None else value

    def number(self, key: str) -> float | None:
        value = self.get(key, (int, float), "a number", False)
        return None if value is None else float(value)

    def mapping(self, key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.get(key, (dict,), "an object", False)
        return value
