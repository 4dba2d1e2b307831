"""What ``pipework watch`` lets a label do: the label policy. Pure: no I/O.

A label is written by whoever starts the container, or inherited from its
image, which anyone may publish; the watcher runs as root. So by default a
label may only plumb the container into a bridge, in the container's own
namespace:

- only labels set on the container itself count, not those its image
  declares (``own_keys``);
- the kinds ``bridge`` and ``ovs`` only, on a bridge pipework creates (it
  does not exist yet) or created (its auto-created mark), or one the
  watcher names with ``--allow-host``;
- an address (static, or a built-in DHCP method with at most its keep
  flag ``-f``), a MAC address, an MTU, a VLAN, an interface name.

Anything else that reaches the host (a NIC or other parent interface,
``--direct-phys``, ``--allow-forward``, the host-side name, backend options,
DHCP client options, the DHCP helper's image, ``--force``) needs the
watcher's explicit allowance: a ``LabelPolicy``.

``spec_refusal`` judges a parsed label alone; ``host_refusal`` judges what
its host interface is (``HostFacts``, looked up by the watcher). Each
returns None when the label may be acted on, or one line saying why not
and how to allow it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipework.engine.errors import UsageError
from pipework.engine.specs import AttachSpec, validate_ifname

DEFAULT_KINDS = frozenset({"bridge", "ovs"})
"""Link kinds a label may use without an allowance: a bridge port."""
BRIDGE_KINDS = DEFAULT_KINDS
"""Kinds whose host interface is a shared bridge (ownership is checked)."""
HOSTLESS_KINDS = frozenset({"dummy"})
"""Kinds whose HOSTIF names nothing on the host (no ``--allow-host`` needed)."""
DHCP_METHODS = frozenset(
    {"dhcp", "udhcpc", "udhcpc-f", "dhclient", "dhclient-f", "dhcpcd", "dhcpcd-f"}
)
BUILT_IN_METHODS = DHCP_METHODS | {"static", "slaac"}
"""What labels may ask for without ``--allow-option method``: the built-in
methods, which configure nothing but the guest's own interface."""
KEEP_FLAG_METHODS = frozenset({"dhcp", "udhcpc", "dhclient"})
"""Methods whose ``CLIENT:-f`` means "keep the client" (dhcpcd's ``-f`` is its
configuration file, so it is a client option like any other)."""
OPTIONS = {
    "host-ifname": "name the host side (-l)",
    "opt": "pass backend options (-o, --mode)",
    "dhcp-options": "pass options to the DHCP client (CLIENT:OPTS)",
    "dhcp-image": "choose the dhcp helper's image (--dhcp-image)",
    "force": "rebuild on every reconciliation (--force)",
    "method": "use address methods other than static, slaac and the built-in DHCP ones",
}
"""What ``--allow-option NAME`` allows, by NAME."""
LABEL_VALUE_MAX = 512
"""The longest label value the watcher parses (a command line is short)."""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class LabelPolicy:
    """The watcher's allowances (``pipework watch --allow-*``)."""

    image_labels: bool = False
    """Act on labels the container inherits from its image too."""
    kinds: frozenset[str] = frozenset()
    """Link kinds allowed besides ``bridge`` and ``ovs``."""
    hosts: frozenset[str] = frozenset()
    """Host interfaces labels may name: parents of other kinds, and existing
    bridges pipework did not create."""
    direct_phys: bool = False
    forward: bool = False
    options: frozenset[str] = frozenset()
    """Names from ``OPTIONS``."""

    @property
    def allowed_kinds(self) -> frozenset[str]:
        return DEFAULT_KINDS | self.kinds | ({"phys"} if self.direct_phys else set())


@dataclass(frozen=True)
class HostFacts:
    """What the label's host interface is, looked up on the host."""

    kind: str
    """The link backend that would take the attachment."""
    exists: bool
    """The host interface exists now."""
    ours: bool = False
    """It is a bridge pipework created (its own mark, on the host)."""


def own_keys(labels: Mapping[str, str], image_labels: Mapping[str, str] | None) -> set[str]:
    """The keys of ``labels`` the container was given itself: absent from its
    image's labels, or given another value. ``image_labels`` None: the
    runtime has no images to inherit from, so every label is the guest's own."""
    if image_labels is None:
        return set(labels)
    return {key for key, value in labels.items() if image_labels.get(key) != value}


def _allow(option: str) -> str:
    return f"start the watcher with {option}"


def _plain(name: str) -> bool:
    return bool(_PLAIN_NAME.fullmatch(name)) and name.isascii()


def spec_refusal(spec: AttachSpec, *, own: bool, policy: LabelPolicy) -> str | None:
    """Why the watcher will not act on ``spec``, parsed from a label, judged
    by itself; None when it may (``host_refusal`` still looks at the host)."""
    if not own and not policy.image_labels:
        return (
            "it comes from the container's image, not the container; set it on the "
            f"container (docker run --label), or {_allow('--allow-image-labels')}"
        )
    if spec.host.startswith("mac:"):
        return "a label names its host interface by name, not by a mac: selector"
    for what, name in (("host interface", spec.host), ("interface name", spec.ifname or "")):
        if name and not _plain(name):
            return f"its {what} {name!r} is not plain (letters, digits and . _ + - only)"
    if spec.settings.get("direct_phys") and not policy.direct_phys:
        return (
            f"--direct-phys moves the host's {spec.host} into the container; "
            f"{_allow(f'--allow-direct-phys --allow-host {spec.host}')}"
        )
    if spec.settings.get("allow_forward") and not policy.forward:
        return (
            f"--allow-forward adds a firewall rule for {spec.host} on the host; "
            f"{_allow('--allow-forward')}"
        )
    if spec.kind is not None and spec.kind not in policy.allowed_kinds:
        return _kind_refusal(spec.kind, spec.host)
    wanted = {
        "host-ifname": spec.host_ifname is not None,
        "opt": bool(spec.options),
        "dhcp-image": any("image" in a.settings for a in spec.addresses),
        "force": spec.force,
        "method": any(a.method not in BUILT_IN_METHODS for a in spec.addresses),
        "dhcp-options": any(_client_options(a.method, a.options) for a in spec.addresses),
    }
    for name, used in wanted.items():
        if used and name not in policy.options:
            return f"labels may not {OPTIONS[name]}; {_allow(f'--allow-option {name}')}"
    return None


def _client_options(method: str, options: Iterable[str]) -> list[str]:
    keep = ("-f",) if method in KEEP_FLAG_METHODS else ()
    return [o for o in options if o not in keep]


def _kind_refusal(kind: str, host: str) -> str:
    return (
        f"the {kind} kind uses the host's {host}; "
        f"{_allow(f'--allow-kinds {kind} --allow-host {host}')}"
    )


def host_refusal(spec: AttachSpec, facts: HostFacts, policy: LabelPolicy) -> str | None:
    """Why the watcher will not act on ``spec`` given what its host interface
    is; None when it may."""
    if facts.kind not in policy.allowed_kinds:
        return _kind_refusal(facts.kind, spec.host)
    if spec.host in policy.hosts or facts.kind in HOSTLESS_KINDS:
        return None
    if facts.kind in BRIDGE_KINDS:
        if not facts.exists or facts.ours:
            return None
        return (
            f"{spec.host} is a bridge pipework did not create; "
            f"{_allow(f'--allow-host {spec.host}')} to let labels join it"
        )
    return f"it uses the host's {spec.host}; {_allow(f'--allow-host {spec.host}')}"


def policy_from(
    *,
    image_labels: bool = False,
    kinds: Iterable[str] = (),
    hosts: Iterable[str] = (),
    direct_phys: bool = False,
    forward: bool = False,
    options: Iterable[str] = (),
) -> LabelPolicy:
    """A policy from ``pipework watch``'s ``--allow-*`` options (``kinds`` and
    ``options`` comma-separated too); ``UsageError`` for a value that cannot be."""
    kind_set = _split(kinds)
    for kind in kind_set:
        if not _plain(kind):
            raise UsageError(f"--allow-kinds: {kind!r} is not a kind name", "e.g. macvlan")
    host_set = frozenset(hosts)
    for host in host_set:
        validate_ifname(host, "--allow-host: interface name")
    option_set = _split(options)
    unknown = sorted(option_set - set(OPTIONS))
    if unknown:
        raise UsageError(
            f"--allow-option: no option named {', '.join(unknown)}",
            f"known: {', '.join(OPTIONS)}",
        )
    return LabelPolicy(image_labels, kind_set, host_set, direct_phys, forward, option_set)


def _split(values: Iterable[str]) -> frozenset[str]:
    return frozenset(k.strip() for v in values for k in v.split(",") if k.strip())


__all__ = [
    "DEFAULT_KINDS",
    "LABEL_VALUE_MAX",
    "OPTIONS",
    "HostFacts",
    "LabelPolicy",
    "host_refusal",
    "own_keys",
    "policy_from",
    "spec_refusal",
]
