"""Registration finds the same hooks as pluggy's own lookup, faster."""

from __future__ import annotations

import importlib
import types

import pluggy

from pipework.engine import hookimpl
from pipework.engine.entrypoints import entry_points
from pipework.engine.plugins import ENTRY_POINT_GROUP, PluginManager


def _same_as_pluggy(module: types.ModuleType) -> None:
    ours, theirs = PluginManager(), pluggy.PluginManager("pipework")
    for name in dir(module):
        assert ours.parse_hookimpl_opts(module, name) == theirs.parse_hookimpl_opts(module, name), (
            name
        )


def test_every_installed_plugin_module_yields_the_same_hooks():
    modules = [importlib.import_module(ep.value) for ep in entry_points(ENTRY_POINT_GROUP)]
    assert len(modules) >= 16
    for module in modules:
        _same_as_pluggy(module)


def test_hooks_of_every_kind_pluggy_accepts_in_a_module():
    module = types.ModuleType("pw_fake_plugin")

    @hookimpl
    def pipework_link_backends(config: object) -> list[object]:
        return []

    class Holder:
        @staticmethod
        @hookimpl
        def pipework_address_providers(config: object) -> list[object]:
            return []

        @classmethod
        @hookimpl
        def pipework_guest_resolvers(cls, config: object) -> list[object]:
            return []

        @hookimpl
        def pipework_event_sources(self, config: object) -> list[object]:
            return []

    module.pipework_link_backends = pipework_link_backends  # type: ignore[attr-defined]
    module.pipework_address_providers = Holder.__dict__["pipework_address_providers"]  # type: ignore[attr-defined]
    module.pipework_guest_resolvers = Holder.__dict__["pipework_guest_resolvers"]  # type: ignore[attr-defined]
    module.pipework_event_sources = Holder().pipework_event_sources  # type: ignore[attr-defined]
    module.not_a_hook = 42  # type: ignore[attr-defined]
    module.Holder = Holder  # type: ignore[attr-defined]
    _same_as_pluggy(module)
    found = {n for n in dir(module) if PluginManager().parse_hookimpl_opts(module, n) is not None}
    assert found == {
        "pipework_link_backends",
        "pipework_address_providers",
        "pipework_guest_resolvers",
        "pipework_event_sources",
    }
