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

TYPE_CHECKING = False  # not typing's: importing typing costs every command ~5 ms

if TYPE_CHECKING:
    from pipework.apps.grammar import parse_legacy
    from pipework.apps.runner import BatchRunner, Job, Outcome, Report
    from pipework.engine import (
        AddressSpec,
        AmbiguousGuestError,
        Attachment,
        AttachSpec,
        ConflictError,
        Engine,
        GuestInfo,
        GuestNotFoundError,
        GuestNotRunningError,
        HostInterfaceError,
        LinkEnd,
        LinkResult,
        LinkSpec,
        NotPermittedError,
        PipeworkError,
        RouteSpec,
        RuntimeUnavailableError,
        UnsupportedError,
        UsageError,
        hookimpl,
    )

__version__ = "0.1.0"

__all__ = [
    "AddressSpec",
    "AmbiguousGuestError",
    "AttachSpec",
    "Attachment",
    "BatchRunner",
    "ConflictError",
    "Engine",
    "GuestInfo",
    "GuestNotFoundError",
    "GuestNotRunningError",
    "HostInterfaceError",
    "Job",
    "LinkEnd",
    "LinkResult",
    "LinkSpec",
    "NotPermittedError",
    "Outcome",
    "PipeworkError",
    "Report",
    "RouteSpec",
    "RuntimeUnavailableError",
    "UnsupportedError",
    "UsageError",
    "__version__",
    "hookimpl",
    "parse_addresses",
    "parse_legacy",
]

_RUNNER_NAMES = frozenset({"BatchRunner", "Job", "Outcome", "Report"})
_ENGINE_NAMES = frozenset(__all__) - {"__version__", "parse_legacy"} - _RUNNER_NAMES


def __getattr__(name: str) -> object:
    """The API is imported on first use, so that light entry points (the CNI
    plugin's VERSION, ``pipework --version``) do not load the engine."""
    if name == "parse_legacy":
        from pipework.apps.grammar import parse_legacy

        return parse_legacy
    if name in _RUNNER_NAMES:
        from pipework.apps import runner

        return getattr(runner, name)
    if name in _ENGINE_NAMES:
        from pipework import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'pipework' has no attribute {name!r}")
