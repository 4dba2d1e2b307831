"""``pipework link`` without typer: the command's one implementation, and
its options read by hand when they are plain (as cli/batchpath.py does for
``batch``).

The dispatcher (cli/__init__.py) gives ``link``'s words to ``plain_args``
first. A line it understands (two ``GUEST:IFNAME`` words; ``--ip``,
``--peer-ip``, ``--mac``, ``--peer-mac``, ``--mtu`` once each, as ``--opt
VALUE`` or ``--opt=VALUE``; ``--route`` and ``--peer-route`` repeated;
``--force``, ``--no-announce``, ``--ipv6-link-local`` once) runs here
directly, without typer's ~60 ms import and its parse. Anything else
(``--help``, ``--``, an unknown or repeated option, an MTU typer would read
differently) goes to the typer app, so every usage error keeps its wording.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipework.cli.options import GlobalOptions
from pipework.records import Record

if TYPE_CHECKING:
    from pipework.engine.guestlinks import LinkResult
    from pipework.engine.linkspec import LinkSpec
    from pipework.engine.specs import Attachment

_VALUES = {"--ip": "ip", "--peer-ip": "peer_ip", "--mac": "mac", "--peer-mac": "peer_mac"}
_LISTS = {"--route": "route", "--peer-route": "peer_route"}
_FLAGS = {
    "--force": "force",
    "--no-announce": "no_announce",
    "--ipv6-link-local": "ipv6_link_local",
}


class LinkArgs(Record):
    """The arguments of one ``pipework link`` line, as the command takes them."""

    first: str
    second: str
    ip: str = "0/0"
    peer_ip: str = "0/0"
    mac: str | None = None
    peer_mac: str | None = None
    route: tuple[str, ...] = ()
    peer_route: tuple[str, ...] = ()
    mtu: int | None = None
    force: bool = False
    no_announce: bool = False
    ipv6_link_local: bool = False


def plain_args(words: Sequence[str]) -> LinkArgs | None:
    """``link``'s arguments (the words after ``link``), or None when the line
    is anything but plain: the typer app then reads it."""
    strings: dict[str, str] = {}
    lists: dict[str, list[str]] = {key: [] for key in _LISTS.values()}
    flags: set[str] = set()
    mtu: int | None = None
    positional: list[str] = []
    it = iter(words)
    for word in it:
        if not word.startswith("-"):
            positional.append(word)
            continue
        name, eq, inline = word.partition("=")
        if name in _FLAGS and not eq and _FLAGS[name] not in flags:
            flags.add(_FLAGS[name])
            continue
        if name not in _VALUES and name not in _LISTS and name != "--mtu":
            return None
        if _VALUES.get(name) in strings or (name == "--mtu" and mtu is not None):
            return None  # given twice: typer's say
        value = inline if eq else next(it, None)
        if value is None:
            return None
        if name in _LISTS:
            lists[_LISTS[name]].append(value)
        elif name in _VALUES:
            strings[_VALUES[name]] = value
        elif value.isascii() and value.isdigit():
            mtu = int(value)
        else:
            return None  # typer's int parsing and its error
    if len(positional) != 2:
        return None
    return LinkArgs(
        positional[0],
        positional[1],
        ip=strings.get("ip", "0/0"),
        peer_ip=strings.get("peer_ip", "0/0"),
        mac=strings.get("mac"),
        peer_mac=strings.get("peer_mac"),
        route=tuple(lists["route"]),
        peer_route=tuple(lists["peer_route"]),
        mtu=mtu,
        force="force" in flags,
        no_announce="no_announce" in flags,
        ipv6_link_local="ipv6_link_local" in flags,
    )


def build(args: LinkArgs) -> LinkSpec:
    """The request the command line describes (``UsageError`` if it is not one)."""
    from pipework.engine.linkspec import LinkEnd, LinkSpec
    from pipework.engine.specs import RouteSpec, parse_addresses

    ends = [
        LinkEnd.parse(
            text,
            address=parse_addresses(ip),
            mac=mac,
            routes=tuple(RouteSpec.parse(r) for r in routes),
        )
        for text, ip, mac, routes in (
            (args.first, args.ip, args.mac, args.route),
            (args.second, args.peer_ip, args.peer_mac, args.peer_route),
        )
    ]
    return LinkSpec(
        ends[0],
        ends[1],
        mtu=args.mtu,
        force=args.force,
        announce=not args.no_announce,
        ipv6_link_local=args.ipv6_link_local,
    )


def _end(att: Attachment) -> str:
    details = [*att.addresses] or (["no address"] if att.address_method == "static" else [])
    if att.mac:
        details.append(f"mac {att.mac}")
    return f"{att.ifname} in {att.guest.name} ({'; '.join(details)})"


def describe(result: LinkResult) -> str:
    """``created: link eth1 in web1 (...) -- eth1 in db1 (...); mtu 1500``."""
    mtu = f"; mtu {result.a.mtu}" if result.a.mtu else ""
    return f"{result.status}: link {_end(result.a)} -- {_end(result.b)}{mtu}"


def run_link(args: LinkArgs, options: GlobalOptions) -> int:
    """Check and make the link; its exit code."""
    from pipework.cli.render import emit, error, run_async
    from pipework.engine.errors import PipeworkError

    try:
        spec = build(args)
    except PipeworkError as exc:
        error(str(exc))
        return exc.exit_code

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            result = await engine.link(spec)
        emit(result.to_dict(), options.json, describe(result))
        return 0

    return run_async(run, options.debug)


def run_plain(words: Sequence[str], options: GlobalOptions) -> int | None:
    """``pipework link WORDS...`` run here; None: the typer app must read it."""
    args = plain_args(words)
    if args is None:
        return None
    from pipework.cli.render import setup_logging

    setup_logging(options.debug)
    return run_link(args, options)


__all__ = ["LinkArgs", "build", "describe", "plain_args", "run_link", "run_plain"]
