"""``Record``: an immutable value class that costs nothing to define.

A frozen dataclass is built at import time by generating and compiling its
methods (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``,
``__setattr__``, ``__delattr__``): ~0.3-0.6 ms a class, measured, paid by
every process that imports it. For small classes on the start-up path that
nobody passes to ``dataclasses.replace()``/``fields()``/``asdict()``, a
``Record`` does the same with methods shared by all of them: ~0.02 ms.

A subclass lists its fields in ``__slots__`` (any order) and, when their order
matters for ``repr`` (declaration order, as a dataclass shows them), in
``_fields``; its own ``__init__`` (typed, with its defaults) calls
``self._set(name=value, ...)`` once. Instances compare and hash by their
fields, in that order, only with instances of the same class; setting or
deleting an attribute raises ``AttributeError``, as a frozen dataclass does.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Record:
    __slots__: ClassVar[tuple[str, ...]] = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    """The fields in declaration order (default: ``__slots__``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_fields" not in vars(cls):
            cls._fields = tuple(cls.__slots__)
        if set(cls._fields) != set(cls.__slots__):
            raise TypeError(f"{cls.__name__}: _fields and __slots__ name different fields")

    def _set(self, **values: object) -> None:
        for name in self._fields:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"


__all__ = ["Record"]
