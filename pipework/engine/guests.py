"""A guest is a network namespace we hold open, plus who it is for messages."""

from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass

from pipework.engine.errors import (
    GuestNotFoundError,
    GuestNotRunningError,
    NotPermittedError,
    UsageError,
)
from pipework.engine.specs import GuestInfo

NS_GET_NSTYPE = 0xB703  # ioctl: which kind of namespace a nsfs file is
CLONE_NEWNET = 0x40000000


@dataclass
class Guest:
    """An open handle on a guest's network namespace.

    Holding the file descriptor keeps the namespace alive (and its identity
    fixed) from resolution to the end of the attach, even if the process
    that owned it exits meanwhile.
    """

    info: GuestInfo
    fd: int

    @property
    def name(self) -> str:
        return self.info.name

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_netns(path: str, info: GuestInfo, *, vanished: type[Exception] | None = None) -> Guest:
    """Open ``path`` as a network namespace for ``info``.

    ``vanished`` is raised (instead of "not found") when the file disappears,
    for guests whose process may exit between lookup and open.
    """
    if "\0" in path:  # os.stat would raise ValueError: a name no file can have
        raise UsageError(f"{path!r} cannot name a network namespace (a NUL character)")
    try:
        # Only a namespace file is opened: nsfs files are regular files, and
        # opening a FIFO would block, a device node could act.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(
                f"{path} is not a network namespace", "pass /proc/PID/ns/net or netns:NAME"
            )
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        if vanished is not None:
            raise vanished(f"{info.name} stopped while pipework was looking it up") from None
        raise GuestNotFoundError(f"{path} does not exist") from None
    except PermissionError:
        raise NotPermittedError(f"cannot open {path}", "run pipework as root") from None
    except OSError as exc:
        raise GuestNotFoundError(f"cannot open {path}: {exc.strerror}") from None
    try:
        nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        nstype = -1
    if nstype != CLONE_NEWNET:
        os.close(fd)
        raise UsageError(
            f"{path} is not a network namespace", "pass /proc/PID/ns/net or netns:NAME"
        )
    return Guest(info, fd)


def proc_netns(pid: int, info: GuestInfo) -> Guest:
    """The namespace of a running process; a vanished process means not running."""
    return open_netns(f"/proc/{pid}/ns/net", info, vanished=GuestNotRunningError)


def anchor_path(info: GuestInfo) -> str | None:
    """A path whose namespace is the guest's for as long as the guest lives."""
    if info.pid:
        return f"/proc/{info.pid}/ns/net"
    if info.runtime == "netns" and info.name.startswith("netns:"):
        return "/run/netns/" + info.name.partition(":")[2]
    if info.runtime == "path":
        return info.name
    return None


def still_there(guest: Guest) -> bool:
    """Is the namespace we hold still the guest's? False once its process
    exited (a container stopped) or its name was removed, even though our
    open fd keeps the namespace itself alive."""
    path = anchor_path(guest.info)
    if path is None or guest.fd < 0:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    held = os.fstat(guest.fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)
