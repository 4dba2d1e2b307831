"""``pipework plugins``: the loaded plugins, what they provide, and the runtimes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer

from pipework.cli.commands.common import fail, options
from pipework.cli.render import emit
from pipework.engine.errors import PipeworkError


def command(ctx: typer.Context) -> None:
    """List the loaded plugins, what they provide, and their distributions."""
    from pipework.engine.catalog import describe, detect_runtimes
    from pipework.engine.contract import EngineConfig
    from pipework.engine.plugins import make_plugin_manager

    try:
        manager = make_plugin_manager()
        infos = describe(manager, EngineConfig())
        runtimes = detect_runtimes(manager, EngineConfig())
    except PipeworkError as exc:
        raise fail(exc) from None
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
    emit(data, options(ctx).json, "\n".join(lines))
