"""Operating attachments: ``detach``, ``ls``, ``gc``, ``wait``, and the help of
``route``/``rule``/``tc`` (which run through cli/fastpath.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from pipework.cli.fastpath import parse_seconds, run_passthrough
from pipework.cli.render import emit, error, one_line, run_async
from pipework.engine.errors import PipeworkError, UsageError
from pipework.engine.specs import DEFAULT_IFNAME, validate_ifname

TABLE_COLUMNS = (
    "GUEST",
    "ID",
    "IFNAME",
    "KIND",
    "HOST",
    "HOST-SIDE",
    "MAC",
    "ADDRESSES",
    "VLAN",
    "DHCP",
)


def _settings() -> tuple[bool, bool]:
    from pipework.cli.app import Settings

    return Settings.json, Settings.debug


def _fail(exc: PipeworkError) -> typer.Exit:
    error(str(exc))
    return typer.Exit(exc.exit_code)


# -- detach ----------------------------------------------------------------------------


def check_detach(ifname: str | None, all_: bool) -> None:
    """``detach`` needs exactly one of ``-i IF`` and ``--all``."""
    if ifname is None and not all_:
        raise UsageError("say which interface to detach", "use -i IF, or --all for every one")
    if ifname is not None and all_:
        raise UsageError("-i and --all exclude each other")
    if ifname is not None:
        validate_ifname(ifname, "guest interface name")


def check_wait(ifname: str, timeout: str | None) -> float | None:
    """``wait``'s options -> seconds (None: for ever)."""
    validate_ifname(ifname, "guest interface name")
    return parse_seconds(timeout) if timeout is not None else None


def detach(
    guest: Annotated[str, typer.Argument(help="Container name/ID, netns:NAME, pid:N or a path.")],
    ifname: Annotated[
        str | None, typer.Option("--ifname", "-i", help="The guest interface to detach.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Detach every interface pipework attached to GUEST.")
    ] = False,
    prune_bridges: Annotated[
        bool,
        typer.Option(
            "--prune-bridges", help="Also remove bridges pipework created, once they are empty."
        ),
    ] = False,
) -> None:
    """Remove what pipework attached to GUEST (found by its markers). Idempotent."""
    json_output, debug = _settings()
    try:
        check_detach(ifname, all_)
    except PipeworkError as exc:
        raise _fail(exc) from None

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            removed = await engine.detach(guest, ifname, prune_bridges=prune_bridges)
        rows = [
            {"ifname": m.ifname, "kind": m.kind, "host": m.host, "host_ifname": m.hostif or None}
            for m in removed
        ]
        lines = [
            f"detached: {m.ifname} from {guest} ({m.kind} {m.host}"
            + (f"; host side {m.hostif})" if m.hostif else ")")
            for m in removed
        ]
        what = f"interface {ifname}" if ifname else "interfaces"
        emit(
            {"guest": guest, "removed": rows},
            json_output,
            "\n".join(lines) or f"nothing to detach: {guest} has no pipework {what}",
        )
        return 0

    raise typer.Exit(run_async(run, debug))


# -- ls -------------------------------------------------------------------------------------


def ls(
    guest: Annotated[
        str | None, typer.Argument(help="Only this guest (default: every attachment).")
    ] = None,
) -> None:
    """List every pipework attachment, read from the kernel's markers."""
    json_output, debug = _settings()

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            records = await engine.list_attachments(guest)
        emit(
            {"attachments": [r.to_dict() for r in records]},
            json_output,
            format_table([_row(r.to_dict()) for r in records]),
        )
        return 0

    raise typer.Exit(run_async(run, debug))


def _row(data: dict[str, Any]) -> list[str]:
    guest = data["guest"]
    key = guest["key"]
    short = key[:12] if len(key) == 64 else key
    state = data["dhcp"] or ("-" if data["address_method"] == "static" else data["address_method"])
    if data["state"] == "orphan":
        state = f"ORPHAN (guest gone; pipework gc removes it){'' if state == '-' else ' ' + state}"
    return [
        guest["name"],
        short,
        data["ifname"],
        data["kind"],
        data["host"],
        data["host_ifname"] or "-",
        data["mac"] or "-",
        ",".join(data["addresses"]) or "-",
        str(data["vlan"]) if data["vlan"] is not None else "-",
        state,
    ]


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = TABLE_COLUMNS) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded.
    Control characters in a cell (a namespace name may hold a newline) are
    escaped, so each row stays one line."""
    table = [list(header), *[[one_line(cell) for cell in r] for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
        for r in table
    )


# -- gc ---------------------------------------------------------------------------------------


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
) -> None:
    """Remove what guests that are gone left behind."""
    json_output, debug = _settings()

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            report = await engine.gc(dry_run=dry_run)
        for note in report.skipped:
            error(f"WARNING: could not look at {note}")
        verb = "would remove" if dry_run else "removed"
        emit(
            report.to_dict(),
            json_output,
            "\n".join(f"{verb}: {item}" for item in report.items) or "nothing to collect",
        )
        return 0

    raise typer.Exit(run_async(run, debug))


# -- wait -------------------------------------------------------------------------------------


def wait(
    guest: Annotated[str, typer.Argument(help="Container name/ID, netns:NAME, pid:N or a path.")],
    ifname: Annotated[
        str, typer.Option("--ifname", "-i", help=f"The guest interface [{DEFAULT_IFNAME}].")
    ] = DEFAULT_IFNAME,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout", metavar="SECONDS", help="Give up after this long (default: never)."
        ),
    ] = None,
) -> None:
    """Wait until IF exists in GUEST and is operationally up."""
    json_output, debug = _settings()
    try:
        seconds = check_wait(ifname, timeout)
    except PipeworkError as exc:
        raise _fail(exc) from None

    async def run() -> int:
        from pipework.engine import Engine

        async with Engine() as engine:
            link = await engine.wait(guest, ifname, seconds)
        emit(
            {"guest": guest, "ifname": link.ifname, "operstate": link.operstate, "mac": link.mac},
            json_output,
            f"{link.ifname} in {guest} is up",
        )
        return 0

    raise typer.Exit(run_async(run, debug))


# -- route / rule / tc (the work is done in fastpath; these give --help) ---------------------

PASSTHROUGH_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}


GuestArg = Annotated[str, typer.Argument(help="Container name/ID, netns:NAME, pid:N or a path.")]
ArgsArg = Annotated[list[str] | None, typer.Argument(help="Passed to the program as they are.")]


def _run_passthrough(word: str, guest: str, args: list[str] | None) -> typer.Exit:
    return typer.Exit(run_passthrough(word, [guest, *(args or [])], debug=_settings()[1]))


def route(guest: GuestArg, args: ArgsArg = None) -> None:
    """Run `ip route ARGS...` inside GUEST's network namespace (no shell)."""
    raise _run_passthrough("route", guest, args)


def rule(guest: GuestArg, args: ArgsArg = None) -> None:
    """Run `ip rule ARGS...` inside GUEST's network namespace (no shell)."""
    raise _run_passthrough("rule", guest, args)


def tc(guest: GuestArg, args: ArgsArg = None) -> None:
    """Run `tc ARGS...` inside GUEST's network namespace (no shell)."""
    raise _run_passthrough("tc", guest, args)


def register(app: typer.Typer) -> None:
    """Add these commands to the application."""
    app.command()(detach)
    app.command()(ls)
    app.command()(gc)
    app.command()(wait)
    for name, command in (("route", route), ("rule", rule), ("tc", tc)):
        app.command(name=name, context_settings=PASSTHROUGH_SETTINGS)(command)


__all__ = ["check_detach", "check_wait", "detach", "format_table", "gc", "ls", "register", "wait"]
