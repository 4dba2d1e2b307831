"""pipework.records: construction, defaults and hidden fields (the CNI plugin's value classes use them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from pipework.cni.config import Invocation
from pipework.records import EMPTY, Record


class Point(Record):
    x: int
    y: int = 0
    tags: Mapping[str, str] = EMPTY


class Pair(Record):
    a: int
    b: int


def test_fields_positional_keyword_and_default() -> None:
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2)
    assert Point(3).y == 0 and Point(3).tags == {}
    assert Point._fields == ("x", "y", "tags")


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, EMPTY, 4), {}), ((1,), {"x": 2}), ((1,), {"z": 2})],
)
def test_bad_construction_is_a_type_error(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        Point(*args, **kwargs)


def test_immutable_equal_hashable() -> None:
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y
    assert p != Point(1, 3) and p != (1, 2, EMPTY)
    with pytest.raises(TypeError):  # a mapping field: unhashable, as with dataclasses
        hash(p)
    assert hash(Pair(1, 2)) == hash(Pair(1, 2))
    assert p.replace(y=7) == Point(1, 7) and p == Point(1, 2)


def test_repr_leaves_out_hidden_fields() -> None:
    inv = Invocation(command="ADD", env={"SECRET": "x"})
    assert repr(Point(1)) == "Point(x=1, y=0, tags=mappingproxy({}))"
    assert "SECRET" not in repr(inv) and "command='ADD'" in repr(inv)
