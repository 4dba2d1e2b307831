"""What ``pipework plugins`` shows: the loaded plugins and the runtimes found.

Apart from engine/plugins.py so that an attach, which loads the plugins but
shows nothing of them, does not build these classes.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, cast

from pipework.engine.contract import EngineConfig
from pipework.engine.plugins import PluginManager, collect, guest_resolvers


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin module, for ``pipework plugins``."""

    name: str
    module: str
    distribution: str
    version: str
    link_backends: tuple[str, ...]
    address_providers: tuple[str, ...]
    guest_resolvers: tuple[str, ...]


def describe(pm: PluginManager, config: EngineConfig) -> list[PluginInfo]:
    provided = {
        hook: collect(pm, hook, config)
        for hook in (
            "pipework_link_backends",
            "pipework_address_providers",
            "pipework_guest_resolvers",
        )
    }

    def names(hook: str, plugin_name: str) -> tuple[str, ...]:
        return tuple(obj.name for name, obj in provided[hook] if name == plugin_name)

    infos: list[PluginInfo] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        distribution, version = pm.distributions.get(name, ("(registered in code)", ""))
        named = inspect.ismodule(plugin) or isinstance(plugin, type)
        infos.append(
            PluginInfo(
                name=name,
                module=cast(Any, plugin).__name__ if named else type(plugin).__name__,
                distribution=distribution,
                version=version,
                link_backends=names("pipework_link_backends", name),
                address_providers=names("pipework_address_providers", name),
                guest_resolvers=names("pipework_guest_resolvers", name),
            )
        )
    return infos


@dataclass(frozen=True)
class RuntimeInfo:
    """A guest resolver's runtime as found here, for ``pipework plugins``."""

    name: str
    detected: bool
    detail: str
    """How it was found (its socket, its program), or what is missing."""


def detect_runtimes(pm: PluginManager, config: EngineConfig) -> list[RuntimeInfo]:
    """Resolvers that can say whether their runtime is here (``detect()`` not
    None), in the order bare names are tried."""
    resolvers = guest_resolvers(pm, config)
    found = []
    for resolver in sorted(resolvers, key=lambda r: r.guess_order):
        said = resolver.detect()
        if said is not None:
            detected, detail = said
            found.append(RuntimeInfo(resolver.name, bool(detected), str(detail)))
    return found


__all__ = ["PluginInfo", "RuntimeInfo", "describe", "detect_runtimes"]
