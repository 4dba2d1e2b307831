"""Start a host DHCP client so that it can change nothing on the host but its
guest interface: ``python -I -S sandbox.py [OPTIONS] -- CLIENT ARGS...``.

A DHCP client run from the host "inside" a guest (``ip netns exec``,
``nsenter --net``) only changes network namespace. Its hook scripts still
run in the host's mount namespace, and Debian's rewrite the host's
/etc/resolv.conf (hostname and NTP settings too). This launcher gives the
client:

- its own mount namespace (propagation private), in which every file system
  is remounted read-only except the attachment's state directory, the
  network sysctls (which, once in the guest's namespace, are the guest's),
  and the client's private state directories (``--private TARGET=SOURCE``, bound
  over the directories where the client keeps its files, e.g. dhcpcd's
  /run/dhcpcd and /var/lib/dhcpcd). A directory that does not exist on the
  host is made to appear only in here (see ``graft``);
- its own UTS namespace, so no hook can change the host's hostname;
- the guest's network namespace (``--netns-fd N``, an fd inherited from
  pipework);
- ``PR_SET_PDEATHSIG``: if pipework dies before the client daemonizes, the
  client gets SIGTERM instead of living on unsupervised.

It is run as a separate program (not a fork of pipework's multithreaded
process), with ``-I -S`` so it imports nothing but the standard library.
Failures print one line and exit with ``EXIT_SETUP`` before the client starts.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
PR_SET_PDEATHSIG = 1

# statvfs f_flag bits -> the mount flags a bind remount must keep.
_KEEP_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}

EXIT_SETUP = 125
"""Exit status when the sandbox could not be set up (the client never ran)."""
EXIT_NOT_FOUND = 127
"""Exit status when the client program could not be executed."""
PREFIX = "pipework-sandbox: "
NET_SYSCTLS = "/proc/sys/net"
MNTNS = "mntns"
"""File in the state directory: ``DEV INO`` of the client's mount namespace."""


class SetupError(Exception):
    pass


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]


def _call(what: str, result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _call(
        f"mount {target}",
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            None,
        ),
    )


def unescape_mountinfo(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as ``\ooo``."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str) -> list[str]:
    """Mount points listed in /proc/self/mountinfo text, in order."""
    return [unescape_mountinfo(line.split()[4]) for line in mountinfo.splitlines() if line]


def under(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def graft(target: str) -> None:
    """Make the missing directory ``target`` exist in this mount namespace only.

    A tmpfs goes over its parent, every entry of the parent is bound back
    onto a placeholder of the same name (symbolic links are recreated), and
    ``target`` is created in the tmpfs. The host's directory is not touched.
    """
    parent = Path(target).parent
    if not parent.is_dir():
        graft(str(parent))
    if parent == Path("/"):
        raise SetupError(f"will not graft {target} onto /")
    fd = os.open(parent, os.O_PATH | os.O_DIRECTORY)
    try:
        hidden = Path(f"/proc/self/fd/{fd}")  # the parent as it was, once covered
        entries = sorted(entry.name for entry in hidden.iterdir())
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        _mount("tmpfs", str(parent), "tmpfs", MS_NOSUID | MS_NODEV)
        parent.chmod(mode)
        for name in entries:
            original, placeholder = hidden / name, parent / name
            if original.is_symlink():
                placeholder.symlink_to(original.readlink())
                continue
            if original.is_dir():
                placeholder.mkdir()
            else:
                placeholder.touch(0o600)
            _mount(str(original), str(placeholder), None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    Path(target).mkdir(0o755)


def remount_readonly(keep: Sequence[str]) -> None:
    """Remount every mount point read-only, except those under ``keep``.

    Any failure stops the client from starting: a host file system left
    writable is not an option. (A mount point hidden under a later mount
    resolves to the top one, which is read-only either way.)
    """
    with open("/proc/self/mountinfo") as fh:
        points = mount_points(fh.read())
    for point in points:
        if under(point, keep):
            continue
        try:
            flags = os.statvfs(point).f_flag
        except OSError:
            continue  # gone, or not even root may look into it
        if flags & os.ST_RDONLY:
            continue
        kept = sum(bit for st_bit, bit in _KEEP_FLAGS.items() if flags & st_bit)
        _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def enter(netns_fd: int, state: str, private: Sequence[tuple[str, str]]) -> None:
    _call("prctl(PR_SET_PDEATHSIG)", _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0))
    _call("unshare(mount, uts)", _libc.unshare(CLONE_NEWNS | CLONE_NEWUTS))
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # The state directory becomes a mount of its own, so it stays writable.
    _mount(state, state, None, MS_BIND)
    # pipework finds the client's processes by this namespace (see MNTNS).
    ns = os.stat("/proc/self/ns/mnt")
    (Path(state) / MNTNS).write_text(f"{ns.st_dev} {ns.st_ino}\n")
    for target, source in private:
        if not Path(target).is_dir():
            graft(target)
        _mount(source, target, None, MS_BIND)
    # Network sysctls stay writable (dhcpcd sets some on its interface):
    # /proc/sys/net shows the namespace of whoever opens it, the guest's.
    _mount(NET_SYSCTLS, NET_SYSCTLS, None, MS_BIND)
    remount_readonly([state, NET_SYSCTLS, *(target for target, _ in private)])
    _call("setns(net)", _libc.setns(netns_fd, CLONE_NEWNET))
    os.close(netns_fd)
    os.chdir(state)


def parse(argv: Sequence[str]) -> tuple[int, str, list[tuple[str, str]], list[str]]:
    netns_fd, state, private = -1, "", []
    args = list(argv)
    while args:
        word = args.pop(0)
        if word == "--":
            break
        if not args:
            raise SetupError(f"option {word} needs a value")
        value = args.pop(0)
        if word == "--netns-fd":
            netns_fd = int(value)
        elif word == "--state":
            state = value
        elif word == "--private":
            target, eq, source = value.partition("=")
            if not eq:
                raise SetupError(f"--private {value}: expected TARGET=SOURCE")
            private.append((target, source))
        else:
            raise SetupError(f"unknown option {word}")
    if netns_fd < 0 or not state or not args:
        raise SetupError("usage: sandbox.py --netns-fd N --state DIR [--private T=S]... -- ARGV")
    return netns_fd, state, private, args


def main(argv: Sequence[str]) -> int:
    try:
        netns_fd, state, private, command = parse(argv)
        enter(netns_fd, state, private)
    except (SetupError, OSError, ValueError) as exc:
        print(f"{PREFIX}{exc}", file=sys.stderr, flush=True)
        return EXIT_SETUP
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"{PREFIX}cannot run {command[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        return EXIT_NOT_FOUND if exc.errno in (errno.ENOENT, errno.EACCES) else EXIT_SETUP
    return EXIT_SETUP  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
