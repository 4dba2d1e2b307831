"""``Record``: an immutable value class that costs nothing to define.

``@dataclass`` writes and compiles each class's methods when its module is
imported, about half a millisecond to a millisecond per frozen class, paid by
every process that imports it: the CLI's options, ``pipework-cni``'s six
value classes (4 to 5 ms), the DHCP plugins' and the firewall check's
classes on every attach. A ``Record`` subclass declares its fields the same
way (annotations, in order; a class attribute is the field's default) and
gets keyword or positional construction, equality, hashing and a repr from
this base, which reads the field names once per class. Defaults are shared,
so they must be immutable (``()``, ``None``, ``EMPTY``). For classes nobody
hands to ``dataclasses.replace()``/``fields()``/``asdict()`` (``replace()``
is a method here). Standard library only, so that every layer may use it.
"""

from __future__ import annotations

from types import MappingProxyType

TYPE_CHECKING = False  # typing is not imported on the client's path (~5 ms)
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self, dataclass_transform
else:

    def dataclass_transform(**kwargs: object) -> object:
        """Only type checkers read ``typing.dataclass_transform``."""
        return lambda cls: cls


EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
"""An empty, read-only mapping: the default of a mapping field."""

_MISSING = object()


@dataclass_transform(eq_default=True, frozen_default=True)
class Record:
    """Fields from the annotations; immutable; equal when of one class with equal fields."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _hidden: ClassVar[frozenset[str]] = frozenset()
    """Fields the repr leaves out (the whole environment, say)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Not inspect.get_annotations(): importing inspect costs VERSION 5 ms.
        own = [
            name
            for name, kind in cls.__dict__.get("__annotations__", {}).items()  # noqa: RUF063
            if not str(kind).startswith("ClassVar")
        ]
        cls._fields = (*cls._fields, *own)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = type(self)._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} fields, not {len(args)}")
        values = dict(zip(fields, args, strict=False))
        for name, value in kwargs.items():
            if name not in fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        for name in fields:
            value = values.get(name, getattr(type(self), name, _MISSING))
            if value is _MISSING:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (like ``dataclasses.replace``)."""
        return type(self)(**{**self._values(), **changes})

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self)._fields}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in type(self)._fields)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in type(self)._fields))

    def __repr__(self) -> str:
        shown = (f"{n}={getattr(self, n)!r}" for n in type(self)._fields if n not in self._hidden)
        return f"{type(self).__name__}({', '.join(shown)})"


__all__ = ["EMPTY", "Record"]
