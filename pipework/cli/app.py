"""The typer application: the subcommands with long options, and --help.

The commands are those cli/registry.py lists, each the ``command`` function
of its own module in cli/commands/; none of them imports this module. The
global options arrive already parsed (cli/options.py), as the context's
``obj``: a command reads them with ``commands.common.options(ctx)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import typer

from pipework.apps.grammar import USAGE
from pipework.cli.options import GlobalOptions
from pipework.cli.registry import COMMANDS, PASSTHROUGH, module_of
from pipework.cli.render import error, setup_logging

HELP = f"""Plumb extra network interfaces into containers and network namespaces.

The original tool's grammar works as a command of its own:

    {USAGE}

GUEST is a container name or ID (Docker, Podman or LXC), docker:NAME,
podman:NAME, lxc:NAME, netns:NAME, pid:N or a netns path.
IPSPEC is ADDR/PREFIX[@GATEWAY], 0/0 (no address) or a DHCP client.
MACSPEC is [MAC][@VID]; U:STRING derives a stable MAC from STRING.
See docs/CLI.md for every option and exit code.
"""

PASSTHROUGH_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}
"""``route``/``rule``/``tc``: the words after the GUEST are the program's."""

Command = Callable[..., None]


def _version(value: bool) -> None:
    if value:
        from pipework import __version__

        print(f"pipework {__version__}")
        raise typer.Exit()


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
    # Declared for --help and to refuse a misspelling (--json=1). Their values
    # never get here: cli/options.read() took them out of the line and passes
    # them as the context's obj.


def load_commands() -> dict[str, Command]:
    """Every registered command's function, by name, in the registry's order."""
    return {name: importlib.import_module(module_of(name)).command for name in COMMANDS}


def build_app(commands: Mapping[str, Command] | None = None) -> typer.Typer:
    """The application, with ``commands`` (default: every registered one)."""
    app = typer.Typer(
        help=HELP,
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_global)
    for name, function in (load_commands() if commands is None else commands).items():
        settings = PASSTHROUGH_SETTINGS if name in PASSTHROUGH else None
        app.command(name=name, context_settings=settings)(function)
    return app


def run_app(words: Sequence[str], options: GlobalOptions) -> int:
    """Run ``words`` (the line without its global options) through the app."""
    setup_logging(options.debug)
    app = build_app()
    try:
        result: Any = app(
            args=list(words), prog_name="pipework", standalone_mode=False, obj=options
        )
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors, as typer (>= 0.27.2) names them
        error(exc.format_message().replace("\n", " "))
        return exc.exit_code
    except typer.Abort:
        error("aborted")
        return 1
    return result if isinstance(result, int) else 0


__all__ = ["HELP", "build_app", "load_commands", "run_app"]
