"""The plugin manager: built-ins and third-party plugins load the same way."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass

import pluggy

from pipework.engine import contract
from pipework.engine.entrypoints import entry_points
from pipework.engine.errors import PipeworkError

ENTRY_POINT_GROUP = "pipework"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus which distribution each entry-point plugin came from."""

    def __init__(self) -> None:
        super().__init__("pipework")
        self.distributions: dict[str, tuple[str, str]] = {}

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in entry_points(group):
            if self.get_plugin(ep.name) is not None or self.is_blocked(ep.name):
                continue
            module_name, _, attr = ep.value.partition(":")
            try:
                plugin = importlib.import_module(module_name.strip())
                for part in filter(None, attr.strip().split(".")):
                    plugin = getattr(plugin, part)
            except Exception as exc:
                raise PipeworkError(
                    f"plugin {ep.name} from {ep.distribution} {ep.version} failed to load: {exc}",
                    f"fix or uninstall {ep.distribution}",
                ) from exc
            self.register(plugin, name=ep.name)
            self.distributions[ep.name] = (ep.distribution, ep.version)


def make_plugin_manager(
    extra: Iterable[object] = (), *, entry_points: bool = True
) -> PluginManager:
    """A plugin manager with the hook specs, every ``pipework`` entry point and ``extra``."""
    pm = PluginManager()
    pm.add_hookspecs(contract.PipeworkSpecs)
    if entry_points:
        pm.load_entry_points()
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


def describe(pm: PluginManager, config: contract.EngineConfig) -> list[PluginInfo]:
    infos: list[PluginInfo] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        distribution, version = pm.distributions.get(name, ("(registered in code)", ""))

        def call(hook: str, plugin: object = plugin) -> tuple[str, ...]:
            impl = getattr(plugin, hook, None)
            return tuple(obj.name for obj in impl(config=config)) if impl else ()

        infos.append(
            PluginInfo(
                name=name,
                module=getattr(plugin, "__name__", type(plugin).__name__),
                distribution=distribution,
                version=version,
                link_backends=call("pipework_link_backends"),
                address_providers=call("pipework_address_providers"),
                guest_resolvers=call("pipework_guest_resolvers"),
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


def detect_runtimes(pm: PluginManager, config: contract.EngineConfig) -> list[RuntimeInfo]:
    """Resolvers that can say whether their runtime is here (an optional
    ``detect()``), in the order bare names are tried."""
    from pipework.engine.resolution import guess_order

    resolvers = [r for found in pm.hook.pipework_guest_resolvers(config=config) for r in found]
    found = []
    for resolver in sorted(resolvers, key=guess_order):
        detect = getattr(resolver, "detect", None)
        if detect is not None:
            detected, detail = detect()
            found.append(RuntimeInfo(resolver.name, bool(detected), str(detail)))
    return found
