"""The original pipework command line -> ``AttachSpec``. Pure: no I/O.

    pipework [--direct-phys] HOSTIF [-i IF] [-l IF] [-a 4|6] GUEST IPSPEC [MACSPEC]

The original only recognised ``-i``, ``-l``, ``-a`` right after HOSTIF and in
that order; we accept every option anywhere, in short or long form, plus the
long-only ``--mtu``, ``--kind``, ``--mac``, ``--vlan`` and ``--force``.
``--`` ends the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import UsageError
from .specs import AddressSpec, AttachSpec, parse_macspec

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
}
_FLAG_OPTIONS = {"--direct-phys": "direct_phys", "--force": "force"}
OPTIONS = sorted([*_VALUE_OPTIONS, *_FLAG_OPTIONS])


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
        elif name in _VALUE_OPTIONS:
            if eq:
                value = inline
            else:
                value = next(it, None)  # type: ignore[assignment]
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
    if "family" in options:
        if options["family"] not in ("4", "6"):
            raise UsageError(f"-a takes 4 or 6, not {options['family']!r}")
        options["family"] = int(options["family"])
    if len(positionals) == 4:
        mac, vlan = parse_macspec(positionals[3])
        if mac is not None:
            if "mac" in options:
                raise UsageError("the MAC address is given twice (MACSPEC and --mac)")
            options["mac"] = mac
        if vlan is not None:
            if "vlan" in options:
                raise UsageError("the VLAN is given twice (MACSPEC and --vlan)")
            options["vlan"] = vlan
    return AttachSpec(host=host, guest=guest, address=AddressSpec.parse(ipspec), **options)
