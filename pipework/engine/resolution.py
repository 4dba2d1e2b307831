"""Choosing among guest resolvers that tie on a guess. Pure: no I/O.

A bare name (``web1``) could be a Docker container, a Podman container or
an LXC container. Each resolver whose runtime is present here bids the same
score for it, so the engine asks all of them (concurrently) and hands what
each said to ``choose_guest``:

- exactly one has the guest: that one (running or not: a stopped container
  gives its own "not running" error);
- several have it: ``AmbiguousGuestError``, listing ``docker:web1``,
  ``podman:web1``... in the resolvers' ``guess_order``; never a silent pick;
- none has it: one "not found" naming every runtime asked, unless one of
  them could not answer, whose error then wins (the guest may be there).

The same guest seen through two resolvers (Podman serving Docker's socket)
has the same key and counts once.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipework.engine.contract import DEFAULT_GUESS_ORDER, GuestResolver
from pipework.engine.errors import (
    AmbiguousGuestError,
    GuestNotFoundError,
    GuestNotRunningError,
    PipeworkError,
)
from pipework.engine.guests import Guest

Outcome = tuple[str, Guest | PipeworkError]
"""(resolver name, the guest it opened or the error it raised)."""


def guess_order(resolver: GuestResolver) -> int:
    """Where a resolver stands among others that tie: lower is listed first
    (``DEFAULT_GUESS_ORDER`` unless it sets one; docker 10, podman 20, lxc 30)."""
    return resolver.guess_order


def _names(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def choose_guest(ref: str, outcomes: Sequence[Outcome]) -> Guest:
    """The one guest ``ref`` names, from what each tied resolver said (in
    guess order). Does not close the guests it does not return."""
    found: list[Outcome] = []
    keys: set[str] = set()
    for name, outcome in outcomes:
        if isinstance(outcome, Guest):
            if outcome.info.key in keys:
                continue
            keys.add(outcome.info.key)
        elif not isinstance(outcome, GuestNotRunningError):
            continue
        found.append((name, outcome))
    if len(found) > 1:
        candidates = ", ".join(f"{name}:{ref}" for name, _ in found)
        raise AmbiguousGuestError(
            f"{ref} names a guest in several runtimes: {candidates}",
            "write the one you mean, with its prefix",
        )
    if found:
        chosen = found[0][1]
        if isinstance(chosen, PipeworkError):
            raise chosen
        return chosen
    errors = [outcome for _, outcome in outcomes if isinstance(outcome, PipeworkError)]
    for error in errors:
        if not isinstance(error, GuestNotFoundError):
            raise error
    hints = [error.hint for error in errors if error.hint]
    raise GuestNotFoundError(
        f"no guest named {ref} in {_names([name for name, _ in outcomes])}",
        "; ".join(dict.fromkeys(hints)) or None,
    )


__all__ = ["DEFAULT_GUESS_ORDER", "Outcome", "choose_guest", "guess_order"]
