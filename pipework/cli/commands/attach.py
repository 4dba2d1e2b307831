"""``pipework attach HOST GUEST [--ip IPSPEC] ...``: the original grammar in long options."""

from __future__ import annotations

from typing import Annotated

import typer

from pipework.apps.grammar import parse_backend_options
from pipework.cli.commands.common import fail, options
from pipework.engine.errors import PipeworkError
from pipework.engine.options import given
from pipework.engine.specs import AttachSpec, parse_addresses, parse_macspec, parse_pkey


def command(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Host interface: a bridge, a NIC, or mac:ADDR.")],
    guest: Annotated[
        str,
        typer.Argument(
            help="Container name/ID, docker:/podman:/lxc:NAME, netns:NAME, pid:N or a path."
        ),
    ],
    ip: Annotated[
        str, typer.Option("--ip", help="IPSPEC: ADDR/PREFIX[@GW], 0/0, or a DHCP client.")
    ] = "0/0",
    ifname: Annotated[
        str | None, typer.Option("--ifname", "-i", help="Guest interface name [eth1].")
    ] = None,
    host_ifname: Annotated[
        str | None, typer.Option("--host-ifname", "-l", help="Host-side interface name.")
    ] = None,
    mac: Annotated[
        str | None, typer.Option("--mac", help="MAC address, U:STRING, or MACSPEC MAC@VID.")
    ] = None,
    vlan: Annotated[int | None, typer.Option("--vlan", help="VLAN ID (1-4094).")] = None,
    pkey: Annotated[
        str | None, typer.Option("--pkey", help="IPoIB partition key, in hex (e.g. 8001).")
    ] = None,
    mtu: Annotated[
        int | None, typer.Option("--mtu", help="MTU (default: the host interface's).")
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Link backend to use instead of guessing.")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode", help="macvlan/ipvlan mode (bridge, private, vepa, passthru; l2, l3, l3s)."
        ),
    ] = None,
    opt: Annotated[
        list[str] | None,
        typer.Option(
            "--opt", "-o", help="Backend option KEY=VALUE (repeatable), e.g. datapath_type=netdev."
        ),
    ] = None,
    direct_phys: Annotated[
        bool, typer.Option("--direct-phys", help="Move the NIC itself into the guest.")
    ] = False,
    family: Annotated[
        int | None, typer.Option("--family", "-a", help="Address family check: 4 or 6.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an attachment with another configuration.")
    ] = False,
    allow_forward: Annotated[
        bool,
        typer.Option(
            "--allow-forward",
            help="Linux bridge: accept traffic across it in a firewall whose FORWARD policy drops it.",
        ),
    ] = False,
    dns: Annotated[
        bool,
        typer.Option(
            "--dns", help="DHCP: write the lease's DNS servers into the guest's resolv.conf."
        ),
    ] = False,
    dhcp_timeout: Annotated[
        str | None,
        typer.Option(
            "--dhcp-timeout", metavar="SECONDS", help="DHCP: seconds to wait for a lease [30]."
        ),
    ] = None,
    dhcp_image: Annotated[
        str | None,
        typer.Option("--dhcp-image", metavar="IMAGE", help="Image of the dhcp helper [busybox]."),
    ] = None,
    no_announce: Annotated[
        bool,
        typer.Option("--no-announce", help="Send no gratuitous ARP for a static IPv4 address."),
    ] = False,
    ipv6_link_local: Annotated[
        bool,
        typer.Option(
            "--ipv6-link-local",
            help="Keep IPv6 link-local addressing (off on IPv4-only interfaces pipework creates).",
        ),
    ] = False,
) -> None:
    """Attach an interface to a guest (long-option form of the legacy grammar)."""
    from pipework.cli.legacy import run_attach

    def build() -> AttachSpec:
        mac_value, tag = parse_macspec(mac) if mac is not None else (None, None)
        address, *extra = parse_addresses(ip, dns=dns, timeout=dhcp_timeout, image=dhcp_image)
        return AttachSpec(
            host=host,
            guest=guest,
            address=address,
            extra_addresses=tuple(extra),
            ifname=ifname,
            host_ifname=host_ifname,
            mac=mac_value,
            vlan=vlan,
            tag=tag,
            mtu=mtu,
            kind=kind,
            options=parse_backend_options(opt or [], mode),
            family=family,  # type: ignore[arg-type]  # validated by AttachSpec
            force=force,
            announce=not no_announce,
            ipv6_link_local=ipv6_link_local,
            settings=given(
                {
                    "pkey": parse_pkey(pkey) if pkey is not None else None,
                    "direct_phys": direct_phys,
                    "allow_forward": allow_forward,
                }
            ),
        )

    try:
        spec = build()
    except PipeworkError as exc:
        raise fail(exc) from None
    raise typer.Exit(run_attach(spec, options(ctx)))
