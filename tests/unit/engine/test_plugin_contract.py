"""The plugin contract is explicit and checked (engine/contract.py, engine/plugins.py):
every optional method has a default, an object that breaks the contract is
a one-line error naming its plugin, and pipework 0.1.0's duck-typed objects
work through an adapter."""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

from pipework.backends.shared import vlans
from pipework.engine import (
    AddressContext,
    AddressProvider,
    AddressResult,
    AddressSpec,
    AttachSpec,
    DetachContext,
    Engine,
    EngineConfig,
    EventSource,
    GcContext,
    Guest,
    GuestInfo,
    GuestLink,
    GuestResolver,
    HostContext,
    HostRequest,
    LinkBackend,
    LinkContext,
    Marker,
    PipeworkError,
    UsageError,
    hookimpl,
)
from pipework.engine.batch import BatchScope
from pipework.engine.contract import PipeworkSpecs
from pipework.engine.plugins import (
    Adapter,
    ContractError,
    PluginError,
    PluginManager,
    collect,
    conform,
    link_backends,
    make_plugin_manager,
)

MARKER = Marker(guest="netns:g", ifname="eth1", kind="k", host="h")
SPEC = AttachSpec(
    host="br1", guest="netns:g", address=AddressSpec.parse("198.18.0.2/24@198.18.0.1")
)


def detach_ctx(spec: AttachSpec | None = None) -> DetachContext:
    return DetachContext(
        marker=MARKER,
        host=None,
        guest_ns=None,
        guest_link=None,
        spec=spec,  # type: ignore[arg-type]
    )


def gc_ctx(dry_run: bool = True, scope: BatchScope | None = None) -> GcContext:
    async def rescan() -> frozenset[Marker]:
        return frozenset()

    return GcContext(
        host=None,  # type: ignore[arg-type]
        dry_run=dry_run,
        live=frozenset(),
        rescan=rescan,
        scope=scope or BatchScope(),
    )


class MinimalBackend(LinkBackend):
    name = "minimal"

    async def claim(self, request: HostRequest) -> int:
        return 0

    async def attach(self, ctx: LinkContext) -> GuestLink:
        raise AssertionError

    async def detach(self, ctx: DetachContext) -> None:
        return None


class MinimalProvider(AddressProvider):
    name = "minimal"

    def handles(self, address: AddressSpec) -> bool:
        return address.method == "minimal"

    async def configure(self, ctx: AddressContext) -> AddressResult:
        raise AssertionError

    async def release(self, ctx: DetachContext) -> None:
        return None


class MinimalResolver(GuestResolver):
    name = "minimal"

    def claim(self, ref: str) -> int:
        return 0

    async def resolve(self, ref: str) -> Guest:
        raise AssertionError


class MinimalSource(EventSource):
    name = "minimal"

    async def running(self) -> list[Any]:
        return []

    async def watch(self, send: Any, since: float) -> None:
        return None


# -- defaults ---------------------------------------------------------------------


def test_every_optional_link_backend_method_has_its_default():
    backend = conform(MinimalBackend(), LinkBackend)
    host = HostContext(
        name="br1",
        host=None,
        settings={},
        force=False,
        dry_run=True,
        lock=None,  # type: ignore[arg-type]
    )

    async def main() -> None:
        assert backend.default_ifname == "eth1"
        assert backend.validate(None) is None  # type: ignore[arg-type,func-returns-value]
        assert await backend.healthy(detach_ctx()) is True
        assert await backend.prepare_host(host) is None  # "keeps no shared host resources"
        assert await backend.release_host(host) is False
        assert await backend.owns_host(host) is False  # "nothing of ours"
        assert await backend.collect_garbage(gc_ctx()) == []
        assert await backend.aclose() is None  # type: ignore[func-returns-value]

    anyio.run(main)


def test_every_optional_address_provider_method_has_its_default():
    provider = conform(MinimalProvider(), AddressProvider)

    async def main() -> None:
        guest = GuestInfo(name="g", key="g", runtime="netns")
        assert provider.validate(SPEC, guest) is None  # type: ignore[func-returns-value]
        # inspect: the gateway the request set, when the engine has the request.
        assert await provider.inspect(detach_ctx(SPEC)) == AddressResult(gateway="198.18.0.1")
        assert await provider.inspect(detach_ctx()) == AddressResult()
        assert await provider.describe(detach_ctx()) is None
        assert await provider.collect_garbage(gc_ctx()) == []
        assert await provider.aclose() is None  # type: ignore[func-returns-value]

    anyio.run(main)


def test_resolver_and_event_source_defaults():
    resolver = conform(MinimalResolver(), GuestResolver)
    source = conform(MinimalSource(), EventSource)
    assert resolver.guess_order == 100 and resolver.detect() is None
    anyio.run(resolver.aclose)
    anyio.run(source.aclose)


def test_subclasses_are_used_as_they_are():
    backend = MinimalBackend()
    assert conform(backend, LinkBackend) is backend


# -- what breaks the contract -------------------------------------------------------


def problem(obj: object, base: type) -> str:
    with pytest.raises(ContractError) as failure:
        conform(obj, base, "link backend")
    return str(failure.value)


def test_a_misspelt_optional_method_is_an_error():
    class Typo(MinimalBackend):
        async def heathy(self, ctx: DetachContext) -> bool:
            return False

    assert problem(Typo(), LinkBackend) == (
        "link backend 'minimal' (Typo): heathy is not a LinkBackend method; did you mean"
        " healthy? (rename it, or make it private with a leading _)"
    )

    class Typo2(MinimalBackend):
        async def colect_garbage(self, ctx: GcContext) -> list[str]:
            return []

    assert "did you mean collect_garbage?" in problem(Typo2(), LinkBackend)


def test_other_public_methods_are_allowed():
    class Extra(MinimalBackend):
        auto_prefix = "br"

        def mode(self) -> str:
            return "x"

    conform(Extra(), LinkBackend)


def test_a_sync_attach_is_an_error():
    class Sync(MinimalBackend):
        def attach(self, ctx: LinkContext) -> GuestLink:  # type: ignore[override]
            raise AssertionError

    assert problem(Sync(), LinkBackend) == (
        "link backend 'minimal' (Sync): attach must be async def: attach(ctx: LinkContext)"
    )


def test_an_async_validate_is_an_error():
    class Async(MinimalBackend):
        async def validate(self, request: HostRequest) -> None:  # type: ignore[override]
            return None

    assert "validate must be a plain def, not async def" in problem(Async(), LinkBackend)


def test_a_missing_required_method_is_an_error():
    class NoDetach(LinkBackend):
        name = "nodetach"

        async def claim(self, request: HostRequest) -> int:
            return 0

        async def attach(self, ctx: LinkContext) -> GuestLink:
            raise AssertionError

    assert problem(NoDetach(), LinkBackend) == (
        "link backend 'nodetach' (NoDetach): has no detach method"
        " (required: detach(ctx: DetachContext))"
    )


def test_a_missing_or_empty_name_is_an_error():
    class Nameless(MinimalBackend):
        pass

    del_name = Nameless()
    vars(del_name)["name"] = ""
    assert "name must be a non-empty str, not ''" in problem(del_name, LinkBackend)

    class NoName:
        async def claim(self, request: HostRequest) -> int:
            return 0

    assert "has no name attribute (a str, required)" in problem(NoName(), LinkBackend)


def test_wrong_arguments_are_an_error():
    class Wrong(MinimalBackend):
        async def healthy(self) -> bool:  # type: ignore[override]
            return True

    assert "healthy takes the wrong arguments: the contract is healthy(ctx: DetachContext)" in (
        problem(Wrong(), LinkBackend)
    )


def test_a_subclass_using_a_0_1_0_name_is_told_the_new_one():
    class Old(MinimalBackend):
        def check(self, request: HostRequest) -> None:
            return None

    assert problem(Old(), LinkBackend) == (
        "link backend 'minimal' (Old): defines check, pipework 0.1.0's name for validate:"
        " rename it validate"
    )


# -- pipework 0.1.0 objects ------------------------------------------------------------


class OldBackend:
    """Written against 0.1.0: duck-typed, ``check``, ``collect_garbage(host, dry_run)``."""

    name = "old"
    default_ifname = "eth7"

    def __init__(self) -> None:
        self.checked: list[object] = []

    async def claim(self, request: HostRequest) -> int:
        return 5

    def check(self, request: HostRequest) -> None:
        self.checked.append(request)
        raise UsageError("old refuses")

    async def attach(self, ctx: LinkContext) -> GuestLink:
        raise AssertionError

    async def detach(self, ctx: DetachContext) -> None:
        return None

    async def collect_garbage(self, host: Any, dry_run: bool = False) -> list[str]:
        return [f"old gc host={host} dry_run={dry_run}"]


class OldProvider:
    """Written against 0.1.0: ``claims``, ``check``, ``collect_garbage(dry_run)``."""

    name = "oldaddr"

    def claims(self, address: AddressSpec) -> bool:
        return address.method == "oldaddr"

    def check(self, spec: AttachSpec, guest: GuestInfo) -> None:
        raise UsageError(f"oldaddr refuses {guest.name}")

    async def configure(self, ctx: AddressContext) -> AddressResult:
        raise AssertionError

    async def release(self, ctx: DetachContext) -> None:
        return None

    async def collect_garbage(self, dry_run: bool = False) -> list[str]:
        return [f"oldaddr gc dry_run={dry_run}"]


def test_a_0_1_0_backend_works_through_the_adapter():
    old = OldBackend()
    backend = conform(old, LinkBackend)
    assert isinstance(backend, LinkBackend) and isinstance(backend, Adapter)
    assert (backend.name, backend.default_ifname) == ("old", "eth7")
    with pytest.raises(UsageError, match="old refuses"):
        backend.validate("request")  # type: ignore[arg-type]
    assert old.checked == ["request"]

    async def main() -> None:
        assert await backend.claim(None) == 5  # type: ignore[arg-type]
        assert await backend.healthy(detach_ctx()) is True  # a default
        assert await backend.prepare_host(None) is None  # type: ignore[arg-type]
        ctx = gc_ctx(dry_run=False)
        assert await backend.collect_garbage(ctx) == ["old gc host=None dry_run=False"]

    anyio.run(main)


def test_a_0_1_0_provider_works_through_the_adapter():
    provider = conform(OldProvider(), AddressProvider)
    assert provider.handles(AddressSpec.parse("oldaddr"))
    assert not provider.handles(AddressSpec.parse("dhcp"))
    with pytest.raises(UsageError, match="oldaddr refuses g"):
        provider.validate(SPEC, GuestInfo(name="g", key="g", runtime="netns"))

    async def main() -> None:
        assert await provider.collect_garbage(gc_ctx()) == ["oldaddr gc dry_run=True"]
        assert await provider.describe(detach_ctx()) is None
        assert await provider.inspect(detach_ctx(SPEC)) == AddressResult(gateway="198.18.0.1")

    anyio.run(main)


def test_a_0_1_0_object_is_checked_too():
    class Bad(OldBackend):
        def attach(self, ctx: LinkContext) -> GuestLink:  # type: ignore[override]
            raise AssertionError

    assert "attach must be async def" in problem(Bad(), LinkBackend)

    class Sync(OldProvider):
        async def claims(self, address: AddressSpec) -> bool:  # type: ignore[override]
            return True

    with pytest.raises(ContractError, match=r"claims \(handles\) must be a plain def"):
        conform(Sync(), AddressProvider)


# -- at registration: the error names the plugin ----------------------------------------


class Plugin:
    def __init__(self, *backends: object) -> None:
        self.backends = list(backends)

    @hookimpl
    def pipework_link_backends(self, config: EngineConfig) -> list[object]:
        return self.backends


def test_the_engine_refuses_to_start_and_names_the_plugin():
    class Typo(MinimalBackend):
        name = "typo"

        async def heathy(self, ctx: DetachContext) -> bool:
            return True

    async def main() -> None:
        async with Engine(plugins=[Plugin(Typo())], entry_points=False):
            raise AssertionError("started")

    with pytest.raises(PipeworkError) as failure:
        anyio.run(main)
    message = str(failure.value)
    assert message.startswith(f"plugin {__name__}.Plugin (registered in code): link backend")
    assert "'typo' (Typo): heathy is not a LinkBackend method" in message
    assert "\n" not in message and failure.value.exit_code == 1


def test_an_entry_point_plugin_is_named_with_its_distribution():
    pm = make_plugin_manager(entry_points=False)
    pm.distributions["p2x"] = ("pipework-p2x", "1.2")
    pm.register(Plugin(OldBackend(), MinimalResolver()), name="p2x")
    with pytest.raises(PluginError) as failure:
        collect(pm, "pipework_link_backends", EngineConfig())
    assert str(failure.value) == (
        "plugin p2x from pipework-p2x 1.2: link backend 'minimal' (MinimalResolver):"
        " claim must be async def: claim(request: HostRequest) (fix or uninstall pipework-p2x)"
    )


def test_a_factory_must_return_a_list():
    class Single:
        @hookimpl
        def pipework_link_backends(self, config: EngineConfig) -> object:
            return MinimalBackend()

    pm = make_plugin_manager([Single()], entry_points=False)
    with pytest.raises(PluginError, match="pipework_link_backends must return a list of link"):
        link_backends(pm, EngineConfig())


def test_a_misspelt_hook_is_named_in_one_line():
    class Misspelt:
        @hookimpl
        def pipework_link_backend(self, config: EngineConfig) -> list[object]:
            return []

    with pytest.raises(PluginError) as failure:
        make_plugin_manager([Misspelt()], entry_points=False)
    assert str(failure.value).endswith(
        ".Misspelt (registered in code): pipework_link_backend is not a pipework hook;"
        " did you mean pipework_link_backends?"
    )


def test_a_hook_with_wrong_arguments_is_named_in_one_line():
    class WrongArgs:
        @hookimpl
        def pipework_link_backends(self, cfg: EngineConfig) -> list[object]:
            return []

    with pytest.raises(PluginError) as failure:
        make_plugin_manager([WrongArgs()], entry_points=False)
    message = str(failure.value)
    assert (
        ".WrongArgs (registered in code): hookimpl definition: pipework_link_backends(" in message
    )
    assert message.endswith(
        "Argument(s) {'cfg'} are declared in the hookimpl but can not be found in the hookspec"
    )
    assert "\n" not in message


def test_every_built_in_plugin_subclasses_its_base():
    pm = PluginManager()
    pm.add_hookspecs(PipeworkSpecs)
    pm.load_entry_points()
    builtin = {name for name, (dist, _) in pm.distributions.items() if dist == "pipework"}
    for hook in (
        "pipework_link_backends",
        "pipework_address_providers",
        "pipework_guest_resolvers",
        "pipework_event_sources",
    ):
        for name, obj in collect(pm, hook, EngineConfig(run_dir=os.devnull)):
            if name in builtin:
                assert not isinstance(obj, Adapter), (hook, name)


# -- one piece of work shared by two plugins, once per gc -------------------------------


def test_vlan_references_are_collected_once_per_gc(monkeypatch):
    calls = []

    async def stale(ctx: GcContext) -> list[str]:
        calls.append(ctx)
        return ["VLAN interface eth0.30: 1 user(s) gone"]

    monkeypatch.setattr(vlans, "_stale_users", stale)
    from pipework.backends.links.ipvlan import IpvlanBackend
    from pipework.backends.links.macvlan import MacvlanBackend

    async def main() -> list[list[str]]:
        ctx = gc_ctx()
        return [
            await MacvlanBackend().collect_garbage(ctx),
            await IpvlanBackend().collect_garbage(ctx),
        ]

    assert anyio.run(main) == [["VLAN interface eth0.30: 1 user(s) gone"], []]
    assert len(calls) == 1
    assert anyio.run(main)[0] and len(calls) == 2  # a new gc, a new scope
