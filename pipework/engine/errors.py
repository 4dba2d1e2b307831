"""The error hierarchy: every failure a user can meet, with its exit code.

Each class carries a documented process exit code (see docs/CLI.md) and each
instance a one-line message plus an optional hint saying what to do about it.
The CLI prints ``pipework: <message> (<hint>)`` and exits with ``exit_code``.
"""

from __future__ import annotations


class PipeworkError(Exception):
    """Base class. ``exit_code`` 1: an operation failed."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(PipeworkError):
    """Bad input: grammar, names, addresses, options. Exit code 2."""

    exit_code = 2


class AmbiguousGuestError(UsageError):
    """A bare name names guests in several runtimes; a prefix must say which.
    Exit code 2."""


class GuestNotFoundError(PipeworkError):
    """No such container, namespace or process. Exit code 3."""

    exit_code = 3


class GuestNotRunningError(PipeworkError):
    """The container exists but has no running process. Exit code 4."""

    exit_code = 4


class RuntimeUnavailableError(PipeworkError):
    """A daemon pipework needs cannot be reached: a container runtime
    (Docker), Open vSwitch. The request is fine; it works once the daemon
    runs. Exit code 5."""

    exit_code = 5


class HostInterfaceError(PipeworkError):
    """The host interface cannot be used or its kind is unknown. Exit code 6."""

    exit_code = 6


class UnknownHostInterfaceError(HostInterfaceError):
    """No link backend knows what to do with the host interface. Exit code 6."""


class ConflictError(PipeworkError):
    """The guest interface exists with a different configuration. Exit code 7."""

    exit_code = 7


class UnverifiedError(ConflictError):
    """A marker claims an interface is pipework's, but nothing the host owns
    corroborates it: it is left alone. Exit code 7."""


class UnsupportedError(PipeworkError):
    """The kernel or the installed plugins lack what was asked for. Exit code 8."""

    exit_code = 8


class ExternalCommandError(PipeworkError):
    """An external program failed. Exit code 9."""

    exit_code = 9


class TimeoutExpiredError(PipeworkError):
    """Something did not happen in time. Exit code 10."""

    exit_code = 10


class NotPermittedError(PipeworkError):
    """Not root / no CAP_NET_ADMIN. Exit code 77 (sysexits EX_NOPERM)."""

    exit_code = 77


EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT); whatever was in flight is rolled back."""
