"""``pipework link GUEST:IF GUEST:IF [--ip ...] [--peer-ip ...]``: a veth
pair straight between two guests, no bridge. The typer face of
cli/linkpath.py, which also runs plain lines without typer."""

from __future__ import annotations

from typing import Annotated

import typer

from pipework.cli.commands.common import options

Endpoint = Annotated[
    str,
    typer.Argument(
        metavar="GUEST:IFNAME",
        help="A guest (container, netns:NAME, pid:N, path) and the interface to make in it.",
    ),
]


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
    from pipework.cli.linkpath import LinkArgs, run_link

    args = LinkArgs(
        first,
        second,
        ip,
        peer_ip,
        mac,
        peer_mac,
        tuple(route or ()),
        tuple(peer_route or ()),
        mtu,
        force,
        no_announce,
        ipv6_link_local,
    )
    raise typer.Exit(run_link(args, options(ctx)))


__all__ = ["command"]
