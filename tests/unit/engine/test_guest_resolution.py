"""Choosing a guest resolver: explicit prefixes, ties on a bare name,
ambiguity, and what "not found" says (engine/resolution.py, Engine.resolve)."""

from __future__ import annotations

import os

import anyio
import pytest

from pipework.engine import (
    Engine,
    EngineConfig,
    Guest,
    GuestInfo,
    GuestNotFoundError,
    GuestNotRunningError,
    GuestResolver,
    RuntimeUnavailableError,
    UnsupportedError,
    hookimpl,
)
from pipework.engine.errors import AmbiguousGuestError
from pipework.engine.plugins import conform
from pipework.engine.resolution import DEFAULT_GUESS_ORDER, choose_guest, guess_order


def guest(key: str) -> Guest:
    return Guest(GuestInfo(name="web1", key=key, runtime="fake"), os.open("/dev/null", os.O_RDONLY))


def test_one_hit_among_several_wins():
    found = guest("k1")
    chosen = choose_guest(
        "web1",
        [
            ("docker", GuestNotFoundError("no such container: web1", "see `docker ps -a`")),
            ("podman", found),
            ("lxc", GuestNotFoundError("no LXC container named web1")),
        ],
    )
    assert chosen is found
    found.close()


def test_several_hits_are_ambiguous_in_the_given_order():
    a, b = guest("k1"), guest("k2")
    with pytest.raises(AmbiguousGuestError) as failure:
        choose_guest(
            "web1", [("docker", a), ("podman", GuestNotRunningError("stopped")), ("lxc", b)]
        )
    assert str(failure.value) == (
        "web1 names a guest in several runtimes: docker:web1, podman:web1, lxc:web1 "
        "(write the one you mean, with its prefix)"
    )
    assert failure.value.exit_code == 2
    a.close()
    b.close()


def test_the_same_guest_seen_twice_counts_once():
    a, b = guest("same-id"), guest("same-id")
    assert choose_guest("web1", [("docker", a), ("podman", b)]) is a
    a.close()
    b.close()


def test_a_stopped_guest_in_one_runtime_is_that_runtimes_error():
    stopped = GuestNotRunningError("container web1 is not running", "start it")
    with pytest.raises(GuestNotRunningError) as failure:
        choose_guest("web1", [("docker", GuestNotFoundError("no")), ("podman", stopped)])
    assert failure.value is stopped


def test_nowhere_names_every_runtime_asked_and_their_hints():
    with pytest.raises(GuestNotFoundError) as failure:
        choose_guest(
            "web1",
            [
                ("docker", GuestNotFoundError("x", "see `docker ps -a`")),
                ("podman", GuestNotFoundError("y", "see `podman ps -a`")),
                ("lxc", GuestNotFoundError("z", "see `docker ps -a`")),
            ],
        )
    assert str(failure.value) == (
        "no guest named web1 in docker, podman or lxc (see `docker ps -a`; see `podman ps -a`)"
    )


def test_a_runtime_that_cannot_answer_wins_over_not_found():
    down = RuntimeUnavailableError("cannot reach Podman at unix:///x")
    with pytest.raises(RuntimeUnavailableError) as failure:
        choose_guest("web1", [("docker", GuestNotFoundError("no")), ("podman", down)])
    assert failure.value is down


def test_guess_order_defaults():
    class Plain(GuestResolver):
        name = "plain"

    class Duck:  # pipework 0.1.0 style: no base class, no guess_order
        name = "duck"

        def claim(self, ref: str) -> int:
            return 0

        async def resolve(self, ref: str) -> Guest:
            raise AssertionError

    adapted = conform(Duck(), GuestResolver)
    assert guess_order(Plain()) == DEFAULT_GUESS_ORDER == guess_order(adapted) == 100


# -- Engine.resolve with resolvers registered in code --------------------------------


class FakeResolver:
    """Claims ``NAME:`` (100) and bare names (``bid``); has ``names``."""

    def __init__(self, name: str, bid: int, names: dict[str, str], order: int) -> None:
        self.name, self.bid, self.names, self.guess_order = name, bid, names, order
        self.asked: list[str] = []
        self.opened: list[Guest] = []

    def claim(self, ref: str) -> int:
        if ref.startswith(f"{self.name}:"):
            return 100
        return self.bid if ":" not in ref else 0

    async def resolve(self, ref: str) -> Guest:
        self.asked.append(ref)
        name = ref.removeprefix(f"{self.name}:")
        if name not in self.names:
            raise GuestNotFoundError(f"{self.name} has no {name}", f"see `{self.name} ps`")
        opened = Guest(
            GuestInfo(name=name, key=self.names[name], runtime=self.name),
            os.open("/dev/null", os.O_RDONLY),
        )
        self.opened.append(opened)
        return opened


class Plugin:
    def __init__(self, *resolvers: FakeResolver) -> None:
        self.resolvers = list(resolvers)

    @hookimpl
    def pipework_guest_resolvers(self, config: EngineConfig) -> list[FakeResolver]:
        return self.resolvers


def resolve(ref: str, *resolvers: FakeResolver) -> Guest:
    async def main() -> Guest:
        async with Engine(plugins=[Plugin(*resolvers)], entry_points=False) as engine:
            return await engine.resolve(ref)

    return anyio.run(main)


def runtimes(docker: dict[str, str], podman: dict[str, str], lxc: dict[str, str], bid=2):
    # Registered out of order: the guess order, not registration, sorts them.
    return (
        FakeResolver("lxc", bid, lxc, 30),
        FakeResolver("docker", bid, docker, 10),
        FakeResolver("podman", bid, podman, 20),
    )


def test_engine_asks_every_tied_resolver_and_closes_the_losers():
    lxc, docker, podman = runtimes({"web1": "d1"}, {}, {"web1": "l1"})
    with pytest.raises(AmbiguousGuestError, match="docker:web1, lxc:web1"):
        resolve("web1", lxc, docker, podman)
    assert docker.asked == podman.asked == lxc.asked == ["web1"]
    assert all(g.fd == -1 for g in docker.opened + lxc.opened)


def test_engine_returns_the_only_hit_open():
    lxc, docker, podman = runtimes({}, {"web1": "p1"}, {})
    found = resolve("web1", lxc, docker, podman)
    assert found.info.runtime == "podman" and found.fd >= 0
    found.close()


def test_an_explicit_prefix_asks_only_its_resolver():
    lxc, docker, podman = runtimes({"web1": "d1"}, {"web1": "p1"}, {"web1": "l1"})
    found = resolve("lxc:web1", lxc, docker, podman)
    assert found.info.key == "l1" and docker.asked == podman.asked == []
    found.close()


def test_a_single_highest_bid_is_not_a_tie():
    lxc, docker, podman = runtimes({"web1": "d1"}, {"web1": "p1"}, {}, bid=0)
    docker.bid = 1  # the fallback only: Docker alone
    found = resolve("web1", lxc, docker, podman)
    assert found.info.key == "d1" and podman.asked == lxc.asked == []
    found.close()


def test_nobody_claims():
    with pytest.raises(UnsupportedError, match="no guest resolver handles 'web1'"):
        resolve("web1", *runtimes({}, {}, {}, bid=0))


def test_a_resolver_bug_is_not_taken_for_an_answer():
    lxc, docker, podman = runtimes({"web1": "d1"}, {}, {})

    async def broken(ref: str) -> Guest:
        raise KeyError("bug")

    podman.resolve = broken  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        resolve("web1", lxc, docker, podman)
    assert all(g.fd == -1 for g in docker.opened)
