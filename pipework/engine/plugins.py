"""The plugin manager: built-ins and third-party plugins load the same way."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pluggy

from . import hookspecs
from .errors import PipeworkError

ENTRY_POINT_GROUP = "pipework"


def make_plugin_manager(
    extra: Iterable[object] = (), *, entry_points: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with the hook specs, every ``pipework`` entry point and ``extra``."""
    pm = pluggy.PluginManager("pipework")
    pm.add_hookspecs(hookspecs.PipeworkSpecs)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:
            raise PipeworkError(
                f"a pipework plugin failed to load: {exc}",
                "fix or uninstall the plugin package that raised it",
            ) from exc
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


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


def describe(pm: pluggy.PluginManager, config: hookspecs.EngineConfig) -> list[PluginInfo]:
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos: list[PluginInfo] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))

        def call(hook: str, plugin: object = plugin) -> tuple[str, ...]:
            impl = getattr(plugin, hook, None)
            return tuple(obj.name for obj in impl(config=config)) if impl else ()

        infos.append(
            PluginInfo(
                name=name,
                module=getattr(plugin, "__name__", type(plugin).__name__),
                distribution=dist.project_name if dist else "(registered in code)",
                version=dist.version if dist else "",
                link_backends=call("pipework_link_backends"),
                address_providers=call("pipework_address_providers"),
                guest_resolvers=call("pipework_guest_resolvers"),
            )
        )
    return infos
