"""The original pipework command line -> ``AttachSpec``. Pure: no I/O.

    pipework [--direct-phys] HOSTIF [-i IF] [-l IF] [-a 4|6] GUEST IPSPEC [MACSPEC]

The original only recognised ``-i``, ``-l``, ``-a`` right after HOSTIF and in
that order; we accept every option anywhere, in short or long form, plus the
long-only ``--mtu``, ``--kind``, ``--mac``, ``--vlan``, ``--mode``, ``--force``,
``--allow-forward``, the DHCP options ``--dns``, ``--dhcp-timeout``, ``--dhcp-image`` and the
repeatable backend option ``-o KEY=VALUE``.
``--`` ends the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipework.engine.errors import UsageError
from pipework.engine.options import given
from pipework.engine.specs import AttachSpec, parse_addresses, parse_macspec, parse_pkey

USAGE = "pipework [--direct-phys] HOSTIF [-i IF] [-l IF] [-a 4|6] GUEST IPSPEC [MACSPEC]"

_VALUE_OPTIONS = {
    "-i": "ifname",
    "--ifname": "ifname",
    "-l": "host_ifname",
    "--host-ifname": "host_ifname",
    "-a": "family",
    "--family": "family",
    "--mtu": "mtu",
    "--kind": "kind",
    "--mac": "mac",
    "--vlan": "vlan",
    "--mode": "mode",
    "--pkey": "pkey",
    "--dhcp-timeout": "dhcp_timeout",
    "--dhcp-image": "dhcp_image",
}
_REPEATED_OPTIONS = {"-o": "options", "--opt": "options"}
_FLAG_OPTIONS = {
    "--direct-phys": "direct_phys",
    "--force": "force",
    "--dns": "dns",
    "--allow-forward": "allow_forward",
    "--no-announce": "no_announce",
    "--ipv6-link-local": "ipv6_link_local",
}
OPTIONS = sorted([*_VALUE_OPTIONS, *_FLAG_OPTIONS, *_REPEATED_OPTIONS])
_BACKEND_SETTINGS = ("pkey", "direct_phys", "allow_forward")
"""The options above that are settings of a link backend (``AttachSpec.settings``)."""


def parse_backend_options(items: Sequence[str], mode: str | None = None) -> dict[str, str]:
    """``-o KEY=VALUE`` words (and ``--mode M``, short for ``-o mode=M``) -> a dict."""
    options: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"-o {item!r} is not KEY=VALUE", "e.g. -o mode=private")
        if key in options:
            raise UsageError(f"option {key} is given twice")
        options[key] = value
    if mode is not None:
        if "mode" in options:
            raise UsageError("the mode is given twice (--mode and -o mode=)")
        options["mode"] = mode
    return options


def split_options(args: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """Separate positionals from options, wherever the options stand."""
    positionals: list[str] = []
    options: dict[str, Any] = {}
    it = iter(args)
    for arg in it:
        if arg == "--":
            positionals.extend(it)
            break
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAG_OPTIONS and not eq:
            options[_FLAG_OPTIONS[name]] = True
        elif name in _REPEATED_OPTIONS or (arg.startswith("-o") and len(arg) > 2):
            if name in _REPEATED_OPTIONS:
                value = inline if eq else next(it, None)
                if value is None:
                    raise UsageError(f"option {name} needs a value", "e.g. -o mode=private")
            else:
                value = arg[2:]  # -omode=private, as getopt allows
            options.setdefault("options", []).append(value)
        elif name in _VALUE_OPTIONS:
            if eq:
                value = inline
            else:
                value = next(it, None)
                if value is None:
                    raise UsageError(f"option {name} needs a value", f"usage: {USAGE}")
            key = _VALUE_OPTIONS[name]
            if key in options:
                raise UsageError(f"option {name} is given twice")
            options[key] = value
        elif len(arg) > 2 and arg[:2] in ("-i", "-l", "-a") and arg[1] != "-":
            options[_VALUE_OPTIONS[arg[:2]]] = arg[2:]  # -ieth2, as getopt allows
        elif arg.startswith("-") and len(arg) > 1 and not _looks_negative(arg):
            raise UsageError(f"unknown option {arg}", f"usage: {USAGE}")
        else:
            positionals.append(arg)
    return positionals, options


def _looks_negative(arg: str) -> bool:
    return arg[1:2].isdigit()


def parse_legacy(args: Sequence[str]) -> AttachSpec:
    """Parse an original-style attach command line (without the program name)."""
    positionals, options = split_options(args)
    if len(positionals) < 3:
        missing = ["HOSTIF", "GUEST", "IPSPEC"][len(positionals)]
        raise UsageError(f"missing {missing}", f"usage: {USAGE}")
    if len(positionals) > 4:
        raise UsageError(f"too many arguments: {' '.join(positionals[4:])}", f"usage: {USAGE}")
    host, guest, ipspec = positionals[:3]
    if "pkey" in options:
        options["pkey"] = parse_pkey(options["pkey"])
    if "family" in options:
        if options["family"] not in ("4", "6"):
            raise UsageError(f"-a takes 4 or 6, not {options['family']!r}")
        options["family"] = int(options["family"])
    options["options"] = parse_backend_options(
        options.pop("options", []), options.pop("mode", None)
    )
    if len(positionals) == 4:
        mac, tag = parse_macspec(positionals[3])
        if mac is not None:
            if "mac" in options:
                raise UsageError("the MAC address is given twice (MACSPEC and --mac)")
            options["mac"] = mac
        options["tag"] = tag
    address, *extra = parse_addresses(
        ipspec,
        dns=options.pop("dns", False),
        timeout=options.pop("dhcp_timeout", None),
        image=options.pop("dhcp_image", None),
    )
    if options.pop("no_announce", False):
        options["announce"] = False
    # Flags of the backends' own (engine/options.py): ipoib, phys, bridge.
    settings = given({key: options.pop(key, None) for key in _BACKEND_SETTINGS})
    return AttachSpec(
        host=host,
        guest=guest,
        address=address,
        extra_addresses=tuple(extra),
        settings=settings,
        **options,
    )
