"""Guests given as ``pid:N``: the network namespace of any process."""

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


class PidResolver(GuestResolver):
    name = "pid"

    def claim(self, ref: str) -> int:
        return 100 if ref.startswith("pid:") else 0

    async def resolve(self, ref: str) -> Guest:
        text = ref[len("pid:") :]
        if not text.isdigit() or int(text) <= 0:
            raise UsageError(f"{ref!r} does not name a process", "write pid:N with N > 0")
        pid = int(text)
        info = GuestInfo(name=ref, key=ref, runtime="pid", pid=pid)
        try:
            return open_netns(f"/proc/{pid}/ns/net", info)
        except GuestNotFoundError:
            raise GuestNotFoundError(f"no process with PID {pid}") from None


@hookimpl
def pipework_guest_resolvers(config: EngineConfig) -> list[PidResolver]:
    return [PidResolver()]
