"""Start a host DHCP client so that it can change nothing on the host but its
guest interface: ``python -I -S sandbox.py [OPTIONS] -- CLIENT ARGS...``.

A DHCP client parses what any machine on the guest's link sends it, as root;
dhclient and its peers have had remote-code-execution bugs triggered by DHCP
answers. So the client is treated as compromised. It gets:

- a new PID namespace: it sees, signals and traces only its own processes,
  and its /proc is a fresh one, so no ``/proc/PID/root`` leads to the
  host's tree. Its first process is this launcher's ``init`` (which reaps,
  forwards SIGTERM and stays as long as a client process lives, so a
  client that goes to the background keeps its namespace);
- a new mount namespace whose root is an empty tmpfs holding only the
  host's /usr (and the top-level links or directories /bin, /sbin, /lib*),
  the few files of /etc listed in ``ETC``, a /dev with null, zero, full, random and urandom, the fresh
  /proc, the attachment's state directory (``--state``), the client's
  private directories (``--private TARGET=SOURCE``, e.g. dhcpcd's
  /run/dhcpcd over a state subdirectory), and the network sysctls. All of
  it is read-only except the state directory, the private directories and
  /proc/sys/net (which, in the guest's namespace, is the guest's). No host
  socket (Docker's, D-Bus, syslog) is in it; no other namespace file either;
- a new UTS namespace, so no hook can change the host's hostname;
- the guest's network namespace (``--netns-fd N``, an fd inherited from
  pipework);
- only the capabilities named by ``--cap`` (by default CAP_NET_ADMIN,
  CAP_NET_RAW and CAP_NET_BIND_SERVICE; dhcpcd also gets CAP_SETUID,
  CAP_SETGID and CAP_SYS_CHROOT for its privilege separation) in its bounding, permitted,
  effective, inheritable and ambient sets; ``SECBIT_NOROOT`` (locked), so
  uid 0 gains nothing by executing a program; ``PR_SET_NO_NEW_PRIVS``, so
  no set-user-ID program or file capability gives anything back;
- ``PR_SET_PDEATHSIG``: if pipework dies before the client is in the
  background, the whole namespace is killed.

The launcher itself stays in the host's PID namespace and exits with the
client's status once the client's first process ends; the client's
daemon, if it stays, lives on under ``init``.

It is run as a separate program (not a fork of pipework's multithreaded
process), with ``-I -S`` so it imports nothing but the standard library.
Failures print one line and exit with ``EXIT_SETUP`` before the client starts.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
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
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECUREBITS = (
    SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED
)
"""uid 0 gets no capability from exec; setuid(non-root) drops them all; locked."""
CAPABILITY_VERSION_3 = 0x20080522

CAPABILITIES = {
    "chown": 0, "dac_override": 1, "dac_read_search": 2, "fowner": 3, "fsetid": 4,
    "kill": 5, "setgid": 6, "setuid": 7, "setpcap": 8, "linux_immutable": 9,
    "net_bind_service": 10, "net_broadcast": 11, "net_admin": 12, "net_raw": 13,
    "ipc_lock": 14, "ipc_owner": 15, "sys_module": 16, "sys_rawio": 17, "sys_chroot": 18,
    "sys_ptrace": 19, "sys_pacct": 20, "sys_admin": 21, "sys_boot": 22, "sys_nice": 23,
    "sys_resource": 24, "sys_time": 25, "sys_tty_config": 26, "mknod": 27, "lease": 28,
    "audit_write": 29, "audit_control": 30, "setfcap": 31, "mac_override": 32,
    "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36, "audit_read": 37,
    "perfmon": 38, "bpf": 39, "checkpoint_restore": 40,
}  # fmt: skip
"""Capability numbers, by the name ``--cap`` takes (capability.h, without CAP_)."""
DEFAULT_CAPS = ("net_admin", "net_bind_service", "net_raw")

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
ROOT = "root"
"""Directory in the state directory: where the client's root is built (an
empty directory on the host; the tmpfs on it exists only in the sandbox)."""
SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Top-level entries of the host's root the client sees (read-only)."""
ETC = (
    "passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
    "localtime", "iproute2", "services", "protocols", "host.conf", "gai.conf", "alternatives",
)  # fmt: skip
"""What the client sees of /etc (read-only): what the C library, ``ip`` and
dhcpcd's user lookup read; no secret (the client runs as uid 0, the owner of
/etc/shadow and private keys, so they are left out)."""
DEVICES = ("null", "zero", "full", "random", "urandom")
INIT_NAME = "pipework-init"


class SetupError(Exception):
    pass


@dataclass
class Request:
    netns_fd: int = -1
    state: str = ""
    private: list[tuple[str, str]] = field(default_factory=list)
    caps: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_libc.syscall.restype = ctypes.c_long
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "armv7l": 218, "riscv64": 41}.get(
    os.uname().machine
)
SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "armv7l": 185, "riscv64": 91}.get(os.uname().machine)


def _call(what: str, result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _prctl(what: str, option: int, arg: int = 0, arg3: int = 0) -> None:
    _call(what, _libc.prctl(option, arg, arg3, 0, 0))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _call(
        f"mount {target}",
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
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


def cap_mask(names: Sequence[str]) -> int:
    """The capability bit mask of ``--cap`` names."""
    mask = 0
    for name in names:
        number = CAPABILITIES.get(name.lower().removeprefix("cap_"))
        if number is None:
            raise SetupError(f"--cap {name}: unknown capability")
        mask |= 1 << number
    return mask


def remount_readonly(keep: Sequence[str]) -> None:
    """Remount every mount point read-only, except those under ``keep``.

    Any failure stops the client from starting: a file system left
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


def _bind(source: str, root: str, target: str, flags: int = MS_BIND | MS_REC) -> None:
    """Bind ``source`` at ``target`` inside ``root`` (made if missing)."""
    where = Path(root + target)
    if Path(source).is_dir():
        where.mkdir(parents=True, exist_ok=True)
    else:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.touch(0o600)
    _mount(source, str(where), None, flags)


def build_root(request: Request) -> None:
    """Make the client's root (see the module's docstring) and move into it."""
    state = request.state
    root = str(Path(state) / ROOT)
    Path(root).mkdir(mode=0o700, exist_ok=True)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for name in SYSTEM:
        host = Path("/", name)
        if host.is_symlink():
            Path(root, name).symlink_to(host.readlink())
        elif host.is_dir():
            _bind(str(host), root, str(host))
    for name in ETC:
        host = Path("/etc", name)
        if host.is_symlink():
            Path(root, "etc").mkdir(exist_ok=True)
            Path(root, "etc", name).symlink_to(host.readlink())
        elif host.exists():
            _bind(str(host), root, str(host))
    program = request.command[0]
    real = Path(program).resolve()
    if "/" in program and real.is_file() and not under(str(real), ["/" + n for n in SYSTEM]):
        _bind(str(real), root, str(Path(program).absolute()), MS_BIND)
    Path(root, "dev").mkdir()
    _mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=4k")
    for device in DEVICES:
        _bind(f"/dev/{device}", root, f"/dev/{device}", MS_BIND)
    for name in ("run", "tmp", "var"):
        Path(root, name).mkdir(exist_ok=True)
    # The state directory alone (not the tmpfs on its ROOT), at its own path.
    _bind(state, root, state, MS_BIND)
    for target, source in request.private:
        _bind(source, root, target, MS_BIND)
    # A /proc of the new PID namespace (this process is its init).
    Path(root, "proc").mkdir()
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Network sysctls stay writable (dhcpcd sets some on its interface):
    # /proc/sys/net shows the namespace of whoever opens it, the guest's.
    _mount(root + NET_SYSCTLS, root + NET_SYSCTLS, None, MS_BIND)
    os.chdir(root)
    if SYS_PIVOT_ROOT is None:
        raise SetupError(f"pivot_root: unknown system call number on {os.uname().machine}")
    _call("pivot_root", _libc.syscall(SYS_PIVOT_ROOT, b".", b"."))
    _call("umount old root", _libc.umount2(b".", MNT_DETACH))
    os.chdir("/")
    writable = [state, *(target for target, _ in request.private)]
    for point in writable:  # no set-user-ID program, file capability or device there
        _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    remount_readonly([*writable, NET_SYSCTLS])


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities(keep: int) -> None:
    """Keep only the capabilities in the mask ``keep``, in every set, for good."""
    _prctl("prctl(PR_SET_SECUREBITS)", PR_SET_SECUREBITS, SECUREBITS)
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        if not keep & (1 << cap):
            _prctl(f"prctl(PR_CAPBSET_DROP, {cap})", PR_CAPBSET_DROP, cap)
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (keep >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = word
    if SYS_CAPSET is None:
        raise SetupError(f"capset: unknown system call number on {os.uname().machine}")
    _call("capset", _libc.syscall(SYS_CAPSET, ctypes.byref(header), data))
    for cap in range(last + 1):
        if keep & (1 << cap):
            _prctl(f"prctl(PR_CAP_AMBIENT_RAISE, {cap})", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
    _prctl("prctl(PR_SET_NO_NEW_PRIVS)", PR_SET_NO_NEW_PRIVS, 1)


def enter(request: Request) -> None:
    """In the new PID namespace: the mounts, the guest's network, the capabilities."""
    _call("unshare(mount, uts)", _libc.unshare(CLONE_NEWNS | CLONE_NEWUTS))
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # pipework finds the client's processes by this namespace (see MNTNS).
    ns = os.stat("/proc/self/ns/mnt")
    (Path(request.state) / MNTNS).write_text(f"{ns.st_dev} {ns.st_ino}\n")
    build_root(request)
    _call("setns(net)", _libc.setns(request.netns_fd, CLONE_NEWNET))
    os.close(request.netns_fd)
    os.chdir(request.state)
    drop_capabilities(cap_mask(request.caps or DEFAULT_CAPS))
    # Nothing in the namespace may trace init (its memory is this launcher's).
    _prctl("prctl(PR_SET_DUMPABLE)", PR_SET_DUMPABLE, 0)


def parse(argv: Sequence[str]) -> Request:
    request = Request()
    args = list(argv)
    while args:
        word = args.pop(0)
        if word == "--":
            break
        if not args:
            raise SetupError(f"option {word} needs a value")
        value = args.pop(0)
        if word == "--netns-fd":
            request.netns_fd = int(value)
        elif word == "--state":
            request.state = value
        elif word == "--private":
            target, eq, source = value.partition("=")
            if not eq:
                raise SetupError(f"--private {value}: expected TARGET=SOURCE")
            request.private.append((target, source))
        elif word == "--cap":
            cap_mask([value])
            request.caps.append(value)
        else:
            raise SetupError(f"unknown option {word}")
    request.command = args
    if request.netns_fd < 0 or not request.state or not args:
        raise SetupError(
            "usage: sandbox.py --netns-fd N --state DIR [--private T=S]... [--cap NAME]... -- ARGV"
        )
    if not Path(request.state).is_absolute():
        raise SetupError(f"--state {request.state}: expected an absolute path")
    return request


def _fail(message: str, status: int = EXIT_SETUP) -> None:
    os.write(2, f"{PREFIX}{message}\n".encode(errors="replace"))
    os._exit(status)


def _run_client(command: list[str]) -> None:
    """The client's first process (never returns)."""
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        not_found = exc.errno in (errno.ENOENT, errno.EACCES)
        _fail(
            f"cannot run {command[0]}: {exc.strerror}", EXIT_NOT_FOUND if not_found else EXIT_SETUP
        )


def init(request: Request, lifeline: int, report: int) -> None:
    """PID 1 of the client's namespace (never returns).

    It sets the sandbox up, starts the client, tells the launcher how the
    client's first process ended (``report``), and reaps until no process
    is left; SIGTERM is passed on to every process in the namespace.
    """
    try:
        _prctl("prctl(PR_SET_PDEATHSIG)", PR_SET_PDEATHSIG, signal.SIGKILL)
        os.set_blocking(lifeline, False)
        try:
            if os.read(lifeline, 1) == b"":
                os._exit(EXIT_SETUP)  # the launcher died before PDEATHSIG was set
        except BlockingIOError:
            pass  # the launcher holds the other end: it lives
        os.close(lifeline)
        Path("/proc/self/comm").write_text(INIT_NAME)
        enter(request)
    except (SetupError, OSError, ValueError) as exc:
        _fail(str(exc))

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(-1, signum)  # every process of the namespace but init
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    client = os.fork()
    if client == 0:
        _run_client(request.command)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == client:
            # The client is in the background (or done): init outlives the launcher.
            _prctl("prctl(PR_SET_PDEATHSIG)", PR_SET_PDEATHSIG, 0)
            try:
                os.write(report, b"%d\n" % status)
                os.close(report)
            except OSError:
                pass


def launch(request: Request) -> int:
    """Make the namespaces, start init in them, return the client's exit status."""
    _prctl("prctl(PR_SET_PDEATHSIG)", PR_SET_PDEATHSIG, signal.SIGTERM)
    _call("unshare(pid)", _libc.unshare(CLONE_NEWPID))
    read_end, write_end = os.pipe()
    alive, lifeline = os.pipe()  # init sees EOF on it once the launcher is gone
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.close(lifeline)
        init(request, alive, write_end)
    os.close(write_end)
    os.close(alive)
    with os.fdopen(read_end, "rb") as fh:
        said = fh.read().strip()
    if said:
        status = int(said)
    else:  # init ended before the client did: setup failed
        _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum
    return os.waitstatus_to_exitcode(status)


def main(argv: Sequence[str]) -> int:
    try:
        request = parse(argv)
        return launch(request)
    except (SetupError, OSError, ValueError) as exc:
        print(f"{PREFIX}{exc}", file=sys.stderr, flush=True)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
