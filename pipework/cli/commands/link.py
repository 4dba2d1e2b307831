"""``pipework link GUEST:IF GUEST:IF [--ip ...] [--peer-ip ...]``: a veth
pair straight between two guests, no bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pipework.cli.commands.common import fail, options
from pipework.cli.render import emit, run_async
from pipework.engine.errors import PipeworkError
from pipework.engine.linkspec import LinkEnd, LinkSpec
from pipework.engine.specs import AddressSpec, RouteSpec

if TYPE_CHECKING:
    from pipework.engine.guestlinks import LinkResult

Endpoint = Annotated[
    str,
    typer.Argument(
        metavar="GUEST:IFNAME",
        help="A guest (container, netns:NAME, pid:N, path) and the interface to make in it.",
    ),
]


def build(
    first: str,
    second: str,
    ips: tuple[str, str],
    macs: tuple[str | None, str | None],
    routes: tuple[list[str] | None, list[str] | None],
    mtu: int | None,
    **flags: bool,
) -> LinkSpec:
    """The request the command line describes (``UsageError`` if it is not one)."""
    ends = [
        LinkEnd.parse(
            text,
            address=AddressSpec.parse(ip),
            mac=mac,
            routes=tuple(RouteSpec.parse(r) for r in route or ()),
        )
        for text, ip, mac, route in zip((first, second), ips, macs, routes, strict=True)
    ]
    return LinkSpec(ends[0], ends[1], mtu=mtu, **flags)


def describe(result: LinkResult) -> str:
    def end(att: object) -> str:
        from pipework.engine.specs import Attachment

        assert isinstance(att, Attachment)
        details = [*att.addresses] or (["no address"] if att.address_method == "static" else [])
        if att.mac:
            details.append(f"mac {att.mac}")
        return f"{att.ifname} in {att.guest.name} ({'; '.join(details)})"

    mtu = f"; mtu {result.a.mtu}" if result.a.mtu else ""
    return f"{result.status}: link {end(result.a)} -- {end(result.b)}{mtu}"


def command(
    ctx: typer.Context,
    first: Endpoint,
    second: Endpoint,
    ip: Annotated[
        str,
        typer.Option("--ip", help="IPSPEC of the first end: ADDR/PREFIX, 0/0, or a DHCP client."),
    ] = "0/0",
    peer_ip: Annotated[str, typer.Option("--peer-ip", help="IPSPEC of the second end.")] = "0/0",
    mac: Annotated[
        str | None, typer.Option("--mac", help="MAC address (or U:STRING) of the first end.")
    ] = None,
    peer_mac: Annotated[
        str | None, typer.Option("--peer-mac", help="MAC of the second end.")
    ] = None,
    route: Annotated[
        list[str] | None,
        typer.Option("--route", help="A route in the first guest via this link (repeatable)."),
    ] = None,
    peer_route: Annotated[
        list[str] | None,
        typer.Option("--peer-route", help="A route in the second guest (repeatable)."),
    ] = None,
    mtu: Annotated[int | None, typer.Option("--mtu", help="MTU of both ends [1500].")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace what stands at either end with this link.")
    ] = False,
    no_announce: Annotated[
        bool,
        typer.Option("--no-announce", help="Send no gratuitous ARP for static IPv4 addresses."),
    ] = False,
    ipv6_link_local: Annotated[
        bool,
        typer.Option("--ipv6-link-local", help="Keep IPv6 link-local addressing on both ends."),
    ] = False,
) -> None:
    """Link two guests with a veth pair, no bridge. Idempotent; `detach` of either end removes it."""
    opts = options(ctx)
    try:
        spec = build(
            first,
            second,
            (ip, peer_ip),
            (mac, peer_mac),
            (route, peer_route),
            mtu,
            force=force,
            announce=not no_announce,
            ipv6_link_local=ipv6_link_local,
        )
    except PipeworkError as exc:
        raise fail(exc) from None

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            result = await engine.link(spec)
        emit(result.to_dict(), opts.json, describe(result))
        return 0

    raise typer.Exit(run_async(run, opts.debug))


__all__ = ["build", "command", "describe"]
