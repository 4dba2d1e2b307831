"""The CNI protocol's fixed parts: versions, commands, error codes, the error object.

Pure and light (standard library only): ``VERSION`` and every malformed
invocation are answered without importing the engine.
"""

from __future__ import annotations

from typing import Any

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "VERSION", "GC")
MINIMUM_VERSION = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}
"""Commands younger than the protocol itself, and the version that brought them."""

# Error codes of the specification ("Error" section). 1-99 are the spec's.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51
PIPEWORK_BASE = 100
"""pipework's own failures: 100 + the exit code the ``pipework`` command uses
for the same error class (docs/CLI.md), e.g. 107 for a conflict."""
INTERNAL = 999


class CniError(Exception):
    """A failure to report as the spec's error object (and a non-zero exit)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, version: str) -> dict[str, Any]:
        data: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            data["details"] = self.details
        return data

    def __str__(self) -> str:
        return f"{self.msg} ({self.details})" if self.details else self.msg


def version_key(version: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> (1, 0, 0); raises CniError for anything else."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CniError(DECODING_FAILURE, f"cniVersion {version!r} is not a version number")
    return int(parts[0]), int(parts[1]), int(parts[2])


def check_version(version: object, command: str) -> str:
    """The configuration's ``cniVersion``, if we speak it and it allows ``command``."""
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "the network configuration has no cniVersion")
    version_key(version)
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"incompatible CNI version {version}",
            f"pipework-cni supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    needed = MINIMUM_VERSION.get(command)
    if needed is not None and version_key(version) < version_key(needed):
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"configuration version {version} does not allow {command}",
            f"{command} needs cniVersion {needed} or later",
        )
    return version


def version_info(requested: object) -> dict[str, Any]:
    """The answer to ``VERSION``: the version asked about (or the latest) and all we speak."""
    version = requested if isinstance(requested, str) and requested else LATEST
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def error_for(exc: BaseException) -> CniError:
    """The CNI error for an engine failure (a ``PipeworkError``) or anything else."""
    from pipework.engine import errors  # the engine is loaded by then

    if isinstance(exc, CniError):
        return exc
    if not isinstance(exc, errors.PipeworkError):
        return CniError(INTERNAL, f"internal error: {exc!r}", "please report it")
    code = PIPEWORK_BASE + exc.exit_code
    if isinstance(exc, errors.UsageError):
        code = INVALID_CONFIG
    elif isinstance(exc, errors.GuestNotFoundError | errors.GuestNotRunningError):
        code = UNKNOWN_CONTAINER
    elif isinstance(exc, errors.RuntimeUnavailableError | errors.TimeoutExpiredError):
        code = TRY_AGAIN  # a daemon that comes back, a DHCP server that answers later
    elif getattr(exc, "code", None) in TRANSIENT_ERRNOS:
        code = TRY_AGAIN  # the kernel was busy
    return CniError(code, exc.message, exc.hint or "")


TRANSIENT_ERRNOS = frozenset({11, 16, 105})
"""EAGAIN, EBUSY and ENOBUFS from the kernel: a retry can succeed."""
