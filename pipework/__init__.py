"""pipework: plumb extra network interfaces into containers and namespaces.

The public, async API::

    import anyio, pipework

    async def main():
        async with pipework.Engine() as engine:
            spec = pipework.AttachSpec(
                host="br1", guest="web1",
                address=pipework.AddressSpec.parse("198.18.10.2/24@198.18.10.1"),
            )
            print((await engine.attach(spec)).to_dict())

    anyio.run(main)
"""

from .engine import (
    AddressSpec,
    Attachment,
    AttachSpec,
    ConflictError,
    Engine,
    GuestInfo,
    GuestNotFoundError,
    GuestNotRunningError,
    HostInterfaceError,
    NotPermittedError,
    PipeworkError,
    RuntimeUnavailableError,
    UnsupportedError,
    UsageError,
    hookimpl,
)
from .engine.grammar import parse_legacy

__version__ = "0.1.0"

__all__ = [
    "AddressSpec",
    "AttachSpec",
    "Attachment",
    "ConflictError",
    "Engine",
    "GuestInfo",
    "GuestNotFoundError",
    "GuestNotRunningError",
    "HostInterfaceError",
    "NotPermittedError",
    "PipeworkError",
    "RuntimeUnavailableError",
    "UnsupportedError",
    "UsageError",
    "__version__",
    "hookimpl",
    "parse_legacy",
]
