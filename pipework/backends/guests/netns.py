"""Guests given as ``netns:NAME`` (under /run/netns) or as a namespace file path."""

from __future__ import annotations

from pipework.engine import (
    EngineConfig,
    Guest,
    GuestInfo,
    GuestNotFoundError,
    GuestResolver,
    UsageError,
    hookimpl,
    open_netns,
)

NETNS_DIR = "/run/netns"


class NetnsResolver(GuestResolver):
    name = "netns"

    def claim(self, ref: str) -> int:
        return 100 if ref.startswith(("netns:", "/")) else 0

    async def resolve(self, ref: str) -> Guest:
        if ref.startswith("/"):
            return open_netns(ref, GuestInfo(name=ref, key=ref, runtime="path"))
        name = ref[len("netns:") :]
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(f"{ref!r} does not name a network namespace", "write netns:NAME")
        try:
            return open_netns(f"{NETNS_DIR}/{name}", GuestInfo(name=ref, key=ref, runtime="netns"))
        except GuestNotFoundError:
            raise GuestNotFoundError(
                f"no network namespace named {name}",
                f"create it with `ip netns add {name}` or see `ip netns list`",
            ) from None


@hookimpl
def pipework_guest_resolvers(config: EngineConfig) -> list[NetnsResolver]:
    return [NetnsResolver()]
