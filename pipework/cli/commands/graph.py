"""``pipework graph [FILE]``: a picture of a topology file, or of what is attached now.

Mermaid and Graphviz dot are text (apps/picture.py); SVG and PNG are dot's,
run as a program (``dot -Tsvg``, the text on its standard input).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from pipework.cli.commands.common import fail, options
from pipework.cli.render import run_async
from pipework.engine.errors import PipeworkError

if TYPE_CHECKING:
    from pipework.apps.picture import NodeKind, Picture

DOT_TIMEOUT = 30.0
"""Seconds ``dot`` may take to draw a picture."""


class Format(StrEnum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


SUFFIXES = {
    ".mmd": Format.mermaid,
    ".mermaid": Format.mermaid,
    ".dot": Format.dot,
    ".gv": Format.dot,
    ".svg": Format.svg,
    ".png": Format.png,
}
"""``-o``'s suffix chooses the format when ``--format`` does not."""


def command(
    ctx: typer.Context,
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE]",
            help="Topology file (YAML or JSON; - for stdin). Default: what is attached now.",
        ),
    ] = None,
    format: Annotated[
        Format | None,
        typer.Option(
            "--format",
            "-f",
            help="mermaid, dot, svg or png (svg and png need Graphviz's dot). "
            "Default: from -o's suffix, else mermaid.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="OUTPUT", help="Write here (default: stdout)."),
    ] = None,
) -> None:
    """Draw a topology file, or every attachment and link there is now."""
    opts = options(ctx)
    chosen = format or _from_suffix(output) or Format.mermaid

    def emit(picture: Picture) -> None:
        if opts.json:
            import json

            _write(json.dumps(picture.to_dict()).encode() + b"\n", output)
        else:
            _write(render(picture, chosen), output)

    if file is None:

        async def live() -> int:
            emit(await _live())
            return 0

        raise typer.Exit(run_async(live, opts.debug))
    try:
        emit(_of_file(file))
    except PipeworkError as exc:
        raise fail(exc) from None


def render(picture: Picture, chosen: Format) -> bytes:
    """The picture in ``chosen``'s format; raises ``PipeworkError``."""
    from pipework.apps.picture import dot, mermaid

    if chosen is Format.mermaid:
        return mermaid(picture).encode()
    text = dot(picture)
    if chosen is Format.dot:
        return text.encode()
    return run_dot(text, chosen.value)


def run_dot(text: str, kind: str, timeout: float = DOT_TIMEOUT) -> bytes:
    """Graphviz's drawing of ``text`` as ``kind`` (svg, png)."""
    import shutil
    import subprocess

    from pipework.engine.errors import ExternalCommandError, TimeoutExpiredError, UnsupportedError

    program = shutil.which("dot")
    if program is None:
        raise UnsupportedError(
            f"Graphviz is not installed (no dot on PATH, needed for --format {kind})",
            "install the Debian package graphviz, or use --format dot or --format mermaid",
        )
    try:
        done = subprocess.run(
            [program, f"-T{kind}"],
            input=text.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutExpiredError(f"dot did not draw the picture within {timeout:g} s") from None
    except OSError as exc:
        raise ExternalCommandError(f"cannot run {program}: {exc.strerror or exc}") from None
    if done.returncode != 0 or not done.stdout:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ExternalCommandError(
            f"dot -T{kind} failed (status {done.returncode})" + (f": {said[0]}" if said else "")
        )
    return done.stdout


def _from_suffix(output: str | None) -> Format | None:
    if output is None or output == "-":
        return None
    from pathlib import PurePath

    return SUFFIXES.get(PurePath(output).suffix.lower())


def _of_file(file: str) -> Picture:
    from pipework.apps.picture import from_topology
    from pipework.cli.batchrun import load_topology

    return from_topology(load_topology(file).topology)


async def _live() -> Picture:
    from pipework.apps.picture import from_records
    from pipework.engine import BRIDGE_MARKER, UPLINK_MARKER, Engine

    async with Engine() as engine:
        records = await engine.list_attachments()
        host = await engine.host.links()
    names = {link.index: link.ifname for link in host}
    bridges: list[tuple[str, NodeKind]] = [
        (link.ifname, "bridge")
        for link in host
        if link.kind == "bridge" and link.alias == BRIDGE_MARKER
    ]
    uplinks = [
        (names[link.master], link.ifname)
        for link in host
        if link.kind == "vxlan" and link.alias == UPLINK_MARKER and link.master in names
    ]
    return from_records(records, bridges, uplinks)


def _write(data: bytes, output: str | None) -> None:
    from pipework.engine.errors import UsageError

    if output is None or output == "-":
        if data[:4] == b"\x89PNG" and sys.stdout.isatty():
            raise UsageError("not writing a PNG to a terminal", "write it to a file with -o FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        with open(output, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


__all__ = ["DOT_TIMEOUT", "Format", "command", "render", "run_dot"]
