"""``pipework ls [GUEST]``: every attachment, read from the kernel's markers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipework.cli.commands.common import options
from pipework.cli.render import emit, one_line, run_async
from pipework.engine.marker import LINK_KIND
from pipework.engine.specs import with_methods

if TYPE_CHECKING:
    from pipework.engine.engine import Engine

LINK_COLUMNS = ("LINK", "ADDRESSES", "PEER", "PEER ADDRESSES", "MTU", "STATE")
SHIM_COLUMNS = ("SHIM", "PARENT", "MAC", "ADDRESSES", "ROUTES", "MTU", "STATE")

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


def command(
    ctx: typer.Context,
    guest: Annotated[
        str | None, typer.Argument(help="Only this guest (default: every attachment).")
    ] = None,
) -> None:
    """List every pipework attachment, read from the kernel's markers."""
    opts = options(ctx)

    async def run() -> int:
        from pipework.engine import Engine
        from pipework.engine.inventory import link_pairs

        async with Engine() as engine:
            records = await engine.list_attachments(guest)
            shims = await _shims(engine) if guest is None else []
        rows = [r.to_dict() for r in records]
        links = [
            {"ends": [end.to_dict() for end in pair if end is not None], "mtu": pair[0].mtu}
            for pair in link_pairs(records)
        ]
        tables = []
        attached = [_row(r) for r in rows if r["kind"] != LINK_KIND]
        if attached or not links:
            tables.append(format_table(attached))
        if links:
            tables.append(format_table([_link_row(link) for link in links], LINK_COLUMNS))
        if shims:
            tables.append(format_table([_shim_row(s) for s in shims], SHIM_COLUMNS))
        human = "\n\n".join(tables)
        emit({"attachments": rows, "links": links, "shims": shims}, opts.json, human)
        return 0

    raise typer.Exit(run_async(run, opts.debug))


async def _shims(engine: Engine) -> list[dict[str, Any]]:
    """The host's macvlan shims (``pipework shim``), as JSON objects."""
    from pipework.apps.shim import list_shims

    return [s.to_dict() for s in await list_shims(engine)]


def _shim_row(data: dict[str, Any]) -> list[str]:
    state = "ok" if data["status"] == "ok" else "UNVERIFIED (not a macvlan on a parent here)"
    return [
        data["name"],
        data["parent"],
        data["mac"] or "-",
        ",".join(data["addresses"]) or "-",
        ",".join(data["routes"]) or "-",
        str(data["mtu"]),
        state,
    ]


def _link_row(link: dict[str, Any]) -> list[str]:
    first = link["ends"][0]
    second = link["ends"][1] if len(link["ends"]) > 1 else None
    states = {e["state"] for e in link["ends"]}
    state = "unverified" if "unverified" in states else "attached"
    return [
        f"{first['guest']['name']}:{first['ifname']}",
        ",".join(first["addresses"]) or "-",
        f"{first['host']}:{first['host_ifname']}",
        ",".join(second["addresses"]) or "-" if second is not None else "(not listed)",
        str(link["mtu"] or "-"),
        state.upper() if state != "attached" else state,
    ]


def _row(data: dict[str, Any]) -> list[str]:
    guest = data["guest"]
    key = guest["key"]
    short = key[:12] if len(key) == 64 else key
    static = set(data["address_method"].split(",")) == {"static"}
    state = data["dhcp"] or ("-" if static else data["address_method"])
    if data["state"] == "orphan":
        state = f"ORPHAN (guest gone; pipework gc removes it){'' if state == '-' else ' ' + state}"
    elif data["state"] == "unverified":
        state = "UNVERIFIED (its marker is the guest's word alone; pipework leaves it alone)"
    return [
        guest["name"],
        short,
        data["ifname"],
        data["kind"],
        data["host"],
        data["host_ifname"] or "-",
        data["mac"] or "-",
        ",".join(with_methods(data["addresses"], data["address_method"], data["address_sources"]))
        or "-",
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


__all__ = ["LINK_COLUMNS", "SHIM_COLUMNS", "TABLE_COLUMNS", "command", "format_table"]
