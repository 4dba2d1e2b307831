"""Small cache files under RUN_DIR, safe for a root tool.

A cache is a hint, never an instruction: whatever is wrong with its file
(missing, a symlink, not a regular file, not ours, readable or writable by
others, too long, not JSON, not the shape the caller wants) makes ``read``
return None, with one debug line, and the caller works it out again and
``write``\\ s a new one. Files live in ``RUN_DIR/cache`` (mode 0700), are
mode 0600, are opened without following symlinks and replaced atomically;
nothing read from one is executed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger("pipework")

CACHE_DIR = "cache"
"""Under RUN_DIR."""
LIMIT = 64 * 1024
"""Bytes: a longer file is not read (a cache writer keeps it well under)."""


def cache_path(run_dir: str, name: str) -> Path:
    return Path(run_dir, CACHE_DIR, name)


def read(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, if the file is one we could have written."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.debug("cache %s ignored: %s", path, exc.strerror)
        return None
    try:
        info = os.fstat(fd)
        problem = _unsafe(info)
        if problem is None:
            data = os.read(fd, LIMIT + 1)
            problem = "too long" if len(data) > LIMIT else None
    except OSError as exc:
        problem = exc.strerror or "unreadable"
    finally:
        os.close(fd)
    if problem is None:
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        problem = "not a JSON object"
    log.debug("cache %s ignored: %s", path, problem)
    return None


def _unsafe(info: os.stat_result) -> str | None:
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid != os.geteuid():
        return f"owned by uid {info.st_uid}"
    if info.st_mode & 0o077:
        return f"mode {stat.S_IMODE(info.st_mode):04o}"
    return None


def write(path: Path, value: dict[str, Any]) -> None:
    """Replace ``path`` with ``value`` (best effort: a cache that cannot be
    written is not an error)."""
    directory = path.parent
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        directory.parent.mkdir(mode=0o755, parents=True, exist_ok=True)  # RUN_DIR, as locks/
        directory.mkdir(mode=0o700, exist_ok=True)
        info = directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            log.debug("cache directory %s ignored: not a directory of ours", directory)
            return
        text = json.dumps(value, separators=(",", ":")).encode()
        if len(text) > LIMIT:
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
        tmp.replace(path)
    except OSError as exc:
        log.debug("cache %s not written: %s", path, exc.strerror)
        with contextlib.suppress(OSError):
            tmp.unlink()


__all__ = ["CACHE_DIR", "cache_path", "read", "write"]
