"""Fixtures every unit test module may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.fake_netlink import FakeNet


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def net() -> Iterator[FakeNet]:
    """A fake kernel: a host and a guest namespace, served over real sockets."""
    fake = FakeNet()
    yield fake
    fake.close()
