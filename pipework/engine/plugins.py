"""The plugin manager: built-ins and third-party plugins load the same way.

Every object a factory hook returns is checked here against its contract
(engine/contract.py) when the engine collects it, so that the engine can
call every method directly:

- the required attributes and methods are there (``name``, ``attach``...);
- each contract method is ``async def`` or a plain ``def`` as the contract
  says, and takes the contract's number of arguments;
- no public method has a name close to a contract name (``heathy``,
  ``colect_garbage``): such a typo would otherwise turn a feature off
  without a word.

What is wrong is a one-line ``PipeworkError`` naming the plugin and its
distribution. Objects written for pipework 0.1.0 (duck-typed, not
subclassing the contract's base classes) are checked the same way and
wrapped in an adapter that supplies the defaults and maps the 0.1.0 names
(``check`` -> ``validate``, ``claims`` -> ``handles``, the two old
signatures of ``collect_garbage``).
"""

from __future__ import annotations

import importlib
import inspect
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from types import FunctionType, MethodType, ModuleType
from typing import Any, TypeVar, cast

import pluggy

from pipework.engine import contract
from pipework.engine.contract import (
    AddressProvider,
    EngineConfig,
    EventSource,
    GcContext,
    GuestResolver,
    LinkBackend,
)
from pipework.engine.entrypoints import entry_points
from pipework.engine.errors import PipeworkError
from pipework.records import Record

ENTRY_POINT_GROUP = "pipework"
_HOOKABLE = (FunctionType, staticmethod, classmethod, MethodType)
CLOSE_NAME = 0.85
"""How alike (difflib's ratio) a public method's name and a contract name must
be for the method to count as a misspelling (``heathy``/``healthy`` is 0.92)."""

T = TypeVar("T")


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus which distribution each entry-point plugin came from."""

    def __init__(self) -> None:
        super().__init__("pipework")
        self.distributions: dict[str, tuple[str, str]] = {}

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        # pluggy looks at every name of a plugin module with
        # inspect.getattr_static (~2 ms for the built-ins, most of it on names
        # they import). In a module, getattr_static finds what vars() holds,
        # and only functions, static/class methods and bound methods can be
        # hooks: anything else is skipped here without asking it.
        if isinstance(plugin, ModuleType) and not isinstance(vars(plugin).get(name), _HOOKABLE):
            return None
        return super().parse_hookimpl_opts(plugin, name)

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
            self.distributions[ep.name] = (ep.distribution, ep.version)
            try:
                self.register(plugin, name=ep.name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(self, ep.name, plugin, _first_line(exc)) from None

    def label(self, name: str, plugin: object) -> tuple[str, str | None]:
        """How errors name a plugin, and the hint they give."""
        if name in self.distributions:
            distribution, version = self.distributions[name]
            return (
                f"plugin {name} from {distribution} {version}",
                f"fix or uninstall {distribution}",
            )
        if name.isdigit():  # pluggy names an object registered in code by its id
            name = f"{type(plugin).__module__}.{type(plugin).__qualname__}"
        return f"plugin {name} (registered in code)", None


class PluginError(PipeworkError):
    """A plugin that breaks the contract. Exit code 1."""

    def __init__(self, pm: PluginManager, name: str, plugin: object, problem: str) -> None:
        label, hint = pm.label(name, plugin)
        super().__init__(f"{label}: {problem}", hint)


def _first_line(exc: BaseException) -> str:
    """pluggy's validation message, on one line (its first line only names the plugin)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 2:
        return f"{lines[1]}: {lines[-1]}"
    return "; ".join(lines) or type(exc).__name__


_prepared: list[PluginManager] = []
"""The default plugin manager, built once by ``prepare_plugin_manager``."""


def prepare_plugin_manager() -> None:
    """Build the default plugin manager (every entry point, nothing else)
    once, for this process and the processes it forks: the daemon's zygote
    does, so that a worker's command skips loading and checking the plugins
    (~10 ms). Plugins installed afterwards need a new daemon."""
    _prepared[:] = [make_plugin_manager()]


def make_plugin_manager(
    extra: Iterable[object] = (), *, entry_points: bool = True
) -> PluginManager:
    """A plugin manager with the hook specs, every ``pipework`` entry point and ``extra``."""
    extra = tuple(extra)
    if _prepared and entry_points and not extra:
        return _prepared[0]
    pm = PluginManager()
    pm.add_hookspecs(contract.PipeworkSpecs)
    if entry_points:
        pm.load_entry_points()
    for plugin in extra:
        try:
            pm.register(plugin)
        except pluggy.PluginValidationError as exc:
            raise PluginError(pm, str(id(plugin)), plugin, _first_line(exc)) from None
    _check_hook_names(pm)
    return pm


def _check_hook_names(pm: PluginManager) -> None:
    """pluggy's ``check_pending``, said in one line: a ``@hookimpl`` whose name
    is no hook of ours (``pipework_link_backend``)."""
    hooks = sorted(name for name in vars(contract.PipeworkSpecs) if name.startswith("pipework_"))
    for name, caller in vars(pm.hook).items():
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            import difflib

            close = difflib.get_close_matches(name, hooks, n=1, cutoff=0.6)
            problem = f"{name} is not a pipework hook" + (
                f"; did you mean {close[0]}?" if close else f" (the hooks: {', '.join(hooks)})"
            )
            raise PluginError(pm, impl.plugin_name, impl.plugin, problem)


# -- the contracts, read from the base classes --------------------------------------

FACTORIES: dict[str, tuple[type, str]] = {
    "pipework_link_backends": (LinkBackend, "link backend"),
    "pipework_address_providers": (AddressProvider, "address provider"),
    "pipework_guest_resolvers": (GuestResolver, "guest resolver"),
    "pipework_event_sources": (EventSource, "event source"),
}
"""Factory hook -> the base class its objects satisfy, and what people call them."""

LEGACY_NAMES: dict[type, dict[str, str]] = {
    LinkBackend: {"check": "validate"},
    AddressProvider: {"check": "validate", "claims": "handles"},
}
"""pipework 0.1.0's method names -> today's, accepted from duck-typed objects."""

_MISSING: Any = object()
_TYPES: dict[str, type] = {"str": str, "int": int, "Mapping[str, OptionSpec]": Mapping}


class Method(Record):
    """One method of a contract (a ``Record``: built on every start-up,
    where a dataclass would cost more than its use)."""

    name: str
    is_async: bool
    arity: int
    """Positional arguments after ``self``."""
    required: bool
    base: type
    _hidden = frozenset({"required", "base"})

    @property
    def signature(self) -> str:
        """For messages: ``attach(ctx: LinkContext)``."""
        function = vars(self.base)[self.name]
        params = list(inspect.signature(function).parameters.values())[1:]
        shown = ", ".join(
            f"{p.name}: {p.annotation}" if p.annotation is not p.empty else p.name for p in params
        )
        return f"{self.name}({shown})"


class Contract(Record):
    """What a base class of engine/contract.py requires (built once per base)."""

    base: type
    methods: dict[str, Method]
    attributes: dict[str, tuple[type, bool]]
    """name -> (type, required)."""
    names: frozenset[str]
    """Every name the contract defines."""
    letters: tuple[tuple[str, Counter[str]], ...]
    """Each method name with its letters, to rule out misspellings quickly."""
    _hidden = frozenset({"methods", "attributes", "names", "letters"})


@cache
def contract_of(base: type) -> Contract:
    """The contract a base class of engine/contract.py states."""
    methods = {}
    for name, value in vars(base).items():
        if name.startswith("_") or not inspect.isfunction(value):
            continue
        methods[name] = Method(
            name=name,
            is_async=inspect.iscoroutinefunction(value),
            arity=value.__code__.co_argcount - 1,
            required=vars(value).get("__pipework_required__", False),
            base=base,
        )
    attributes = {
        name: (_TYPES[str(kind)], name not in vars(base))
        for name, kind in vars(base).get("__annotations__", {}).items()
    }
    return Contract(
        base=base,
        methods=methods,
        attributes=attributes,
        names=frozenset(methods) | frozenset(attributes),
        letters=tuple((name, Counter(name)) for name in sorted(methods)),
    )


# -- looking at an object without calling into it -------------------------------------


def _raw(obj: object, name: str) -> tuple[Any, type | None]:
    """What ``name`` is on ``obj`` before binding, and the class that defines it
    (None: the instance's own attribute). Unlike ``getattr``, never runs a
    plugin's ``__getattr__``."""
    try:
        own = vars(obj)
    except TypeError:
        own = {}
    if name in own:
        return own[name], None
    for klass in type(obj).__mro__:
        if name in vars(klass):
            return vars(klass)[name], klass
    return _MISSING, None


def _bind(obj: object, raw: Any, owner: type | None) -> Any:
    """``raw`` as ``obj.NAME`` gives it: bound through its descriptor if a class holds it."""
    if owner is None:
        return raw
    for klass in type(raw).__mro__:
        get = vars(klass).get("__get__")
        if get is not None:
            return get(raw, obj, type(obj))
    return raw


def _value(obj: object, name: str) -> Any:
    raw, owner = _raw(obj, name)
    return _MISSING if raw is _MISSING else _bind(obj, raw, owner)


def _public_methods(obj: object, stop: type | None) -> list[str]:
    """Public callables ``obj`` defines itself (its own attributes and its
    classes', below ``stop`` and ``object``)."""
    names: dict[str, None] = {}
    try:
        own = vars(obj)
    except TypeError:
        own = {}
    for name, value in own.items():
        if not name.startswith("_") and callable(value):
            names[name] = None
    for klass in type(obj).__mro__:
        if klass is object or (stop is not None and issubclass(stop, klass)):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and _is_method(value):
                names[name] = None
    return list(names)


def _is_method(value: object) -> bool:
    return inspect.isfunction(value) or isinstance(value, staticmethod | classmethod)


def _parameters(fn: Any) -> tuple[list[str], int, bool] | None:
    """(positional parameter names, how many are required, takes ``*args``) of a
    callable as it would be called; None when Python cannot tell."""
    func, skip = fn, 0
    if inspect.ismethod(fn):
        func, skip = fn.__func__, 1
    if inspect.isfunction(func) and not func.__code__.co_kwonlyargcount:
        code = func.__code__
        names = list(code.co_varnames[skip : code.co_argcount])
        needed = len(names) - min(len(func.__defaults__ or ()), len(names))
        return names, needed, bool(code.co_flags & inspect.CO_VARARGS)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params):
        return [], 1 << 30, False  # cannot be called with positional arguments only
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    needed = sum(1 for p in positional if p.default is p.empty)
    return [p.name for p in positional], needed, any(p.kind is p.VAR_POSITIONAL for p in params)


def _accepts(shape: tuple[list[str], int, bool] | None, count: int) -> bool:
    if shape is None:
        return True
    names, needed, varargs = shape
    return needed <= count and (count <= len(names) or varargs)


def _close_name(name: str, spec: Contract) -> str | None:
    """The contract method ``name`` looks like a misspelling of, if any
    (difflib's ratio at least ``CLOSE_NAME``)."""
    # difflib's own upper bounds first (lengths, shared letters), so that
    # difflib is imported only for a likely typo, not on every attach.
    letters: Counter[str] | None = None
    likely = []
    for other, its_letters in spec.letters:
        total = len(name) + len(other)
        if 2 * min(len(name), len(other)) < CLOSE_NAME * total:
            continue
        letters = letters or Counter(name)
        if 2 * sum((letters & its_letters).values()) >= CLOSE_NAME * total:
            likely.append(other)
    if not likely:
        return None
    import difflib

    close = difflib.get_close_matches(name, likely, n=1, cutoff=CLOSE_NAME)
    return close[0] if close else None


def _is_async(fn: Any) -> bool:
    if type(fn) is MethodType and type(fn.__func__) is FunctionType:
        return bool(fn.__func__.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


# -- checking and adapting ----------------------------------------------------------------


class Adapter:
    """A 0.1.0-style plugin object behind a full-contract one: its methods are
    the inner object's (bound, so calls cost nothing extra), the rest are the
    base class's defaults."""

    def __init__(self, inner: object, members: dict[str, Any]) -> None:
        self.inner = inner
        vars(self).update(members)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.inner!r}>"


class LinkBackendAdapter(Adapter, LinkBackend):
    pass


class AddressProviderAdapter(Adapter, AddressProvider):
    pass


class GuestResolverAdapter(Adapter, GuestResolver):
    pass


class EventSourceAdapter(Adapter, EventSource):
    pass


ADAPTERS: dict[type, type[Adapter]] = {
    LinkBackend: LinkBackendAdapter,
    AddressProvider: AddressProviderAdapter,
    GuestResolver: GuestResolverAdapter,
    EventSource: EventSourceAdapter,
}


class ContractError(Exception):
    """What is wrong with one object (the caller says which plugin it came from)."""


def conform(obj: object, base: type[T], what: str = "plugin object") -> T:
    """``obj`` as a full ``base``: itself if it subclasses ``base``, else an
    adapter. Raises ``ContractError`` saying what breaks the contract."""
    spec = contract_of(cast(type, base))
    subclass = isinstance(obj, base)
    legacy = LEGACY_NAMES.get(base, {})
    shown = type(obj).__name__
    name = _value(obj, "name")
    if isinstance(name, str) and name:
        shown = f"{name!r} ({shown})"
    prefix = f"{what} {shown}"

    def fail(problem: str) -> ContractError:
        return ContractError(f"{prefix}: {problem}")

    members: dict[str, Any] = {}
    for attribute, (kind, needed) in spec.attributes.items():
        value = _value(obj, attribute)
        if value is _MISSING:
            if needed:
                raise fail(f"has no {attribute} attribute (a {kind.__name__}, required)")
            continue
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            raise fail(f"{attribute} must be a non-empty {kind.__name__}, not {value!r}")
        members[attribute] = value
    if subclass:
        _check_subclass(obj, spec, fail)
        return obj  # type: ignore[return-value]
    for method in spec.methods.values():
        found, from_name = _MISSING, method.name
        raw, owner = _raw(obj, method.name)
        if raw is not _MISSING and not (owner is not None and issubclass(base, owner)):
            found = _bind(obj, raw, owner)
        else:
            for old, new in legacy.items():
                if new == method.name:
                    raw, owner = _raw(obj, old)
                    if raw is not _MISSING:
                        found, from_name = _bind(obj, raw, owner), old
        if found is _MISSING:
            if method.required:
                raise fail(f"has no {method.name} method (required: {method.signature})")
            continue
        label = method.name if from_name == method.name else f"{from_name} ({method.name})"
        shape = _check_method(found, method, label, fail)
        old_gc = _legacy_gc(base, found, shape) if method.name == "collect_garbage" else None
        if old_gc is not None:
            found = old_gc
        elif not _accepts(shape, method.arity):
            raise fail(f"{label} takes the wrong arguments: the contract is {method.signature}")
        members[method.name] = found
    for extra in _public_methods(obj, None):
        if extra not in spec.names and extra not in legacy:
            _check_extra(extra, spec, fail)
    return ADAPTERS[base](obj, members)  # type: ignore[return-value]


def _check_subclass(obj: object, spec: Contract, fail: Callable[[str], ContractError]) -> None:
    """The methods a subclass of the base defines: one pass over its own
    classes (those before the base in its MRO: what Python takes over the
    base's defaults) and its instance attributes."""
    mro = type(obj).__mro__
    defined: dict[str, tuple[Any, bool]] = {}
    try:
        for name, value in vars(obj).items():
            if callable(value) and not name.startswith("_"):
                defined[name] = (value, False)
    except TypeError:
        pass
    for klass in mro[: mro.index(spec.base)]:
        for name, raw in vars(klass).items():
            if name not in defined and not name.startswith("_") and _is_method(raw):
                defined[name] = (raw, True)
    legacy = LEGACY_NAMES.get(spec.base, {})
    for name, (raw, in_class) in defined.items():
        method = spec.methods.get(name)
        if method is not None:
            found = _bind(obj, raw, type(obj) if in_class else None)
            if not _accepts(_check_method(found, method, name, fail), method.arity):
                raise fail(f"{name} takes the wrong arguments: the contract is {method.signature}")
        elif name in legacy:
            new = legacy[name]
            raise fail(f"defines {name}, pipework 0.1.0's name for {new}: rename it {new}")
        elif name not in spec.names:
            _check_extra(name, spec, fail)
    for method in spec.methods.values():
        if method.required and method.name not in defined:
            raise fail(f"has no {method.name} method (required: {method.signature})")


def _check_method(
    found: Any, method: Method, label: str, fail: Callable[[str], ContractError]
) -> tuple[list[str], int, bool] | None:
    """Check a contract method's kind; its parameters, for the caller to check."""
    if not callable(found):
        raise fail(f"{label} must be a method, not {found!r}")
    if _is_async(found) != method.is_async:
        want = "async def" if method.is_async else "a plain def, not async def"
        raise fail(f"{label} must be {want}: {method.signature}")
    return _parameters(found)


def _check_extra(name: str, spec: Contract, fail: Callable[[str], ContractError]) -> None:
    close = _close_name(name, spec)
    if close is not None:
        raise fail(
            f"{name} is not a {spec.base.__name__} method; did you mean {close}?"
            " (rename it, or make it private with a leading _)"
        )


def _legacy_gc(base: type, found: Any, shape: tuple[list[str], int, bool] | None) -> Any:
    """``collect_garbage`` as a 0.1.0 object defines it (a provider's
    ``(dry_run=False)``, a backend's ``(host, dry_run=False)``), wrapped in
    today's signature; None if it is not one of those."""
    if shape is None:
        return None
    names = shape[0]
    if base is AddressProvider and (not names or names[0] == "dry_run"):

        async def provider_gc(ctx: GcContext) -> list[str]:
            lines: list[str] = await found(ctx.dry_run) if names else await found()
            return lines

        return provider_gc
    if base is LinkBackend and (len(names) >= 2 or names[:1] == ["host"]):

        async def backend_gc(ctx: GcContext) -> list[str]:
            lines: list[str] = await found(ctx.host, ctx.dry_run)
            return lines

        return backend_gc
    return None


# -- collecting what the factories return ---------------------------------------------------


def collect(pm: PluginManager, hook: str, config: EngineConfig) -> list[tuple[str, Any]]:
    """(plugin name, checked object) for every object the factory ``hook``
    returns, in pluggy's call order (the last registered first)."""
    base, what = FACTORIES[hook]
    kwargs = {"config": config}
    found: list[tuple[str, Any]] = []
    for impl in reversed(_caller(pm, hook).get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            objects = impl.function(*[kwargs[name] for name in impl.argnames])
        except PipeworkError:
            raise
        except Exception as exc:
            raise PluginError(pm, impl.plugin_name, impl.plugin, f"{hook} failed: {exc}") from exc
        if objects is None:
            continue
        if not isinstance(objects, list | tuple):
            problem = f"{hook} must return a list of {what}s, not {type(objects).__name__}"
            raise PluginError(pm, impl.plugin_name, impl.plugin, problem)
        for obj in objects:
            try:
                found.append((impl.plugin_name, conform(obj, base, what)))
            except ContractError as exc:
                raise PluginError(pm, impl.plugin_name, impl.plugin, str(exc)) from None
    return found


def _caller(pm: PluginManager, hook: str) -> pluggy.HookCaller:
    caller: pluggy.HookCaller = vars(pm.hook)[hook]
    return caller


def link_backends(pm: PluginManager, config: EngineConfig) -> list[LinkBackend]:
    return [obj for _, obj in collect(pm, "pipework_link_backends", config)]


def address_providers(pm: PluginManager, config: EngineConfig) -> list[AddressProvider]:
    return [obj for _, obj in collect(pm, "pipework_address_providers", config)]


def guest_resolvers(pm: PluginManager, config: EngineConfig) -> list[GuestResolver]:
    return [obj for _, obj in collect(pm, "pipework_guest_resolvers", config)]


def event_sources(pm: PluginManager, config: EngineConfig) -> list[EventSource]:
    """The event sources for ``pipework watch`` (the caller closes them)."""
    return [obj for _, obj in collect(pm, "pipework_event_sources", config)]


def __getattr__(name: str) -> object:
    """What ``pipework plugins`` shows lives in engine/catalog.py (not built
    on an attach); its names are still found here."""
    if name in ("PluginInfo", "RuntimeInfo", "describe", "detect_runtimes"):
        from pipework.engine import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ENTRY_POINT_GROUP",
    "ContractError",
    "PluginError",
    "PluginManager",
    "address_providers",
    "collect",
    "conform",
    "event_sources",
    "guest_resolvers",
    "link_backends",
    "make_plugin_manager",
]
