"""The typer application: subcommands with long options, and --help."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from pipework.apps.grammar import USAGE, parse_backend_options
from pipework.cli import GLOBAL_FLAGS
from pipework.cli.render import emit, error, setup_logging
from pipework.engine.errors import PipeworkError
from pipework.engine.options import given
from pipework.engine.specs import AddressSpec, AttachSpec, parse_macspec, parse_pkey

HELP = f"""Plumb extra network interfaces into containers and network namespaces.

The original tool's grammar works as a command of its own:

    {USAGE}

GUEST is a container name or ID (Docker, Podman or LXC), docker:NAME,
podman:NAME, lxc:NAME, netns:NAME, pid:N or a netns path.
IPSPEC is ADDR/PREFIX[@GATEWAY], 0/0 (no address) or a DHCP client.
MACSPEC is [MAC][@VID]; U:STRING derives a stable MAC from STRING.
See docs/CLI.md for every option and exit code.
"""

app = typer.Typer(
    help=HELP,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Settings:
    json = False
    debug = False


def _version(value: bool) -> None:
    if value:
        from pipework import __version__

        print(f"pipework {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print results as JSON (any position).")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Log details; show tracebacks (any position).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    podman_host: Annotated[
        str | None,
        typer.Option(
            "--podman-host",
            metavar="URL",
            help="Podman's API socket (sets CONTAINER_HOST; any position).",
        ),
    ] = None,
    lxcpath: Annotated[
        str | None,
        typer.Option(
            "--lxcpath",
            "-P",
            metavar="PATH",
            help="Where LXC containers live (sets PIPEWORK_LXC_PATH; any position).",
        ),
    ] = None,
) -> None:
    """Global options (they are also accepted after the subcommand)."""


@app.command()
def attach(
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
) -> None:
    """Attach an interface to a guest (long-option form of the legacy grammar)."""
    from pipework.cli.legacy import run_attach

    def build() -> AttachSpec:
        mac_value, tag = parse_macspec(mac) if mac is not None else (None, None)
        return AttachSpec(
            host=host,
            guest=guest,
            address=AddressSpec.parse(ip, dns=dns, timeout=dhcp_timeout, image=dhcp_image),
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
        error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(run_attach(spec, json_output=Settings.json, debug=Settings.debug))


@app.command()
def plugins() -> None:
    """List the loaded plugins, what they provide, and their distributions."""
    from pipework.engine.contract import EngineConfig
    from pipework.engine.plugins import describe, detect_runtimes, make_plugin_manager

    try:
        manager = make_plugin_manager()
        infos = describe(manager, EngineConfig())
        runtimes = detect_runtimes(manager, EngineConfig())
    except PipeworkError as exc:
        error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    rows: list[dict[str, Any]] = [asdict(info) for info in infos]
    lines = []
    for info in infos:
        provides = [
            *(f"link:{n}" for n in info.link_backends),
            *(f"address:{n}" for n in info.address_providers),
            *(f"guest:{n}" for n in info.guest_resolvers),
        ]
        dist = f"{info.distribution} {info.version}".strip()
        lines.append(f"{info.name:<12} {' '.join(provides):<40} {info.module} [{dist}]")
    lines.append("\nruntimes (bare names are tried in this order):")
    for runtime in runtimes:
        found = "detected" if runtime.detected else "not found"
        lines.append(f"  {runtime.name:<10} {found:<10} {runtime.detail}")
    data = {"plugins": rows, "runtimes": [asdict(runtime) for runtime in runtimes]}
    emit(data, Settings.json, "\n".join(lines))


@app.command()
def demo(
    docker: Annotated[
        bool, typer.Option("--docker", help="Use two Docker containers instead of namespaces.")
    ] = False,
    image: Annotated[str, typer.Option("--image", help="Image for --docker.")] = "busybox",
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave everything in place afterwards.")
    ] = False,
) -> None:
    """Attach two throwaway guests to a bridge and prove they reach each other."""
    from pipework.cli.demo import run_demo

    raise typer.Exit(run_demo(docker=docker, image=image, keep=keep, debug=Settings.debug))


from pipework.cli.watch import watch as _watch  # noqa: E402  (its own module; registered here)

app.command(name="watch")(_watch)

from pipework.cli.ops import register as _register_ops  # noqa: E402  (detach, ls, gc, wait, route, rule, tc)

_register_ops(app)

from pipework.cli import apply as _apply_cli  # noqa: E402  (own modules)
from pipework.cli import batch as _batch_cli  # noqa: E402

app.command(name="apply")(_apply_cli.apply)
app.command(name="destroy")(_apply_cli.destroy)
app.command(name="batch")(_batch_cli.batch)


def run_app(args: list[str]) -> int:
    Settings.json = "--json" in args
    Settings.debug = "--debug" in args
    setup_logging(Settings.debug)
    from typer._click.exceptions import ClickException
    from typer.exceptions import Abort, Exit
    from typer.main import get_command

    command = get_command(app)
    try:
        result = command.main(
            args=[a for a in args if a not in GLOBAL_FLAGS],
            prog_name="pipework",
            standalone_mode=False,
        )
    except Exit as exc:
        return exc.exit_code
    except ClickException as exc:
        error(exc.format_message().replace("\n", " "))
        return exc.exit_code
    except Abort:
        error("aborted")
        return 1
    return result if isinstance(result, int) else 0
