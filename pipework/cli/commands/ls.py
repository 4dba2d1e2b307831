"""``pipework ls [GUEST]``: every attachment, read from the kernel's markers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer

from pipework.cli.commands.common import options
from pipework.cli.render import emit, one_line, run_async

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

        async with Engine() as engine:
            records = await engine.list_attachments(guest)
        emit(
            {"attachments": [r.to_dict() for r in records]},
            opts.json,
            format_table([_row(r.to_dict()) for r in records]),
        )
        return 0

    raise typer.Exit(run_async(run, opts.debug))


def _row(data: dict[str, Any]) -> list[str]:
    guest = data["guest"]
    key = guest["key"]
    short = key[:12] if len(key) == 64 else key
    state = data["dhcp"] or ("-" if data["address_method"] == "static" else data["address_method"])
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


__all__ = ["TABLE_COLUMNS", "command", "format_table"]
