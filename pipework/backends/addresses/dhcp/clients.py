"""Host DHCP clients: IPSPEC ``dhclient``, ``udhcpc``, ``dhcpcd``.

The client runs from the host in the guest's network namespace, with the
guest's name as DHCP host name, inside ``sandbox.py``: its own mount
namespace with every file system read-only except the attachment's state
directory, and its own UTS namespace. Its hook is pipework's
(``pipework.backends.addresses.dhcp.toolbox.hook_script``), which configures only the guest
interface. So neither the client nor any script can write a host file.

- **One-shot** (``dhclient``, ``udhcpc``, ``dhcpcd``): the client runs until
  it has a lease; pipework checks the address, stops the client, and no
  process remains. The address stays, also after the lease expires.
- **Kept** (``dhclient-f``, ``udhcpc-f``, ``dhcpcd-f``; also ``udhcpc:-f`` and
  ``dhclient:-f``): the client stays to renew the lease. Its processes are
  found again by the mount namespace the sandbox gave it (recorded in the
  state directory with the manager's PID and start time), so ``detach``,
  a ``--force`` re-run, a rollback and ``gc`` stop exactly those.

DHCPv6 (``dhclient/6``, ``dhcpcd/6``, or ``-a 6``): the same, for one
address (IA_NA, configured as /128 by the hook), with a DUID-LL made from
the interface's MAC; its state directory is its own (``StateDir.of(...,
family=6)``). udhcpc is IPv4 only (Debian's busybox has no udhcpc6).

``CLIENT:OPTS`` adds options (split as a shell would, passed as argv). The
options pipework sets itself (hook, pidfile, interface...) are refused.
Files live in ``RUN_DIR/dhcp/HASH/`` (see ``pipework.backends.addresses.dhcp.toolbox.StateDir``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.abc

from pipework.backends.addresses.dhcp.toolbox import (
    HOST_CLIENT_OPTIONS,
    IMAGE,
    REPORT,
    UDHCPC_OPTIONS,
    ClientOptions,
    GuestResolvConf,
    Lease,
    StateDir,
    base_meta,
    check_lease,
    check_request,
    client_patience,
    dhcp_hostname,
    family_of,
    give_back_default_route,
    guest_alive,
    hook_script,
    intact_result,
    keep_default_route,
    kept_client,
    last_words,
    lease_timeout,
    link_local_ready,
    no_lease,
    option_names,
    read_text,
    udhcpc_args,
    wanted_family,
    wants_dns,
    write_guest_dns,
)
from pipework.engine import (
    AddressContext,
    AddressProvider,
    AddressResult,
    AddressSpec,
    AttachSpec,
    DetachContext,
    EngineConfig,
    ExternalCommandError,
    GcContext,
    GuestInfo,
    KeptClient,
    PipeworkError,
    UnsupportedError,
    UsageError,
    hookimpl,
)
from pipework.engine.options import check_options
from pipework.records import Record

log = logging.getLogger("pipework")

SANDBOX = str(Path(__file__).with_name("sandbox.py"))
SANDBOX_SETUP_FAILED = 125
SANDBOX_NOT_FOUND = 127
MNTNS = "mntns"  # written by sandbox.py
CLIENT_LOG = "client.log"
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POLL = 0.05
STOP_GRACE = 3.0
"""Seconds a client gets to exit after SIGTERM before SIGKILL."""
DAEMON_WAIT = 5.0
"""Seconds a kept client gets to show up in the background after its lease."""


# -- the three clients ------------------------------------------------------------------


class Run(Record):
    """One start of a client."""

    binary: str
    ifname: str
    hostname: str | None
    state: StateDir
    hook: str
    keep: bool
    timeout: float
    options: tuple[str, ...]
    family: int = 4
    """6: DHCPv6 (one address, IA_NA)."""

    @property
    def patience(self) -> int:
        """The client's own give-up time: longer than pipework's, which rules."""
        return client_patience(self.timeout)


class HostClient:
    """What differs between dhclient, udhcpc and dhcpcd."""

    name: str
    package: str
    syntax: ClientOptions
    """Its command line, to vet ``CLIENT:OPTS``."""
    keep_flag = False
    """``-f`` in OPTS means "kept" (as ``udhcpc:-f`` did in the original)."""
    ipv6 = False
    """It speaks DHCPv6 too (``CLIENT/6``)."""
    private: ClassVar[tuple[tuple[str, str], ...]] = ()
    """(host directory, state subdirectory) pairs the sandbox makes private."""
    capabilities: ClassVar[tuple[str, ...]] = ("net_admin", "net_raw", "net_bind_service")
    """All the sandbox leaves it (raw sockets, port 68, the guest's addresses and routes)."""

    def argv(self, run: Run) -> list[str]:
        raise NotImplementedError

    def prepare(self, run: Run) -> None:
        """Write configuration files into the state directory."""


class Udhcpc(HostClient):
    name = "udhcpc"
    package = "udhcpc"
    syntax = UDHCPC_OPTIONS
    keep_flag = True

    def argv(self, run: Run) -> list[str]:
        # One-shot: in the foreground, quit with the lease. Kept: to the
        # background once bound (pipework's timeout covers the first lease).
        args = udhcpc_args(
            run.ifname, run.hook, run.hostname, run.timeout, oneshot=not run.keep, foreground=False
        )
        return [run.binary, *args, "-p", str(run.state.file("udhcpc.pid")), *run.options]


class Dhclient(HostClient):
    name = "dhclient"
    package = "isc-dhcp-client"
    keep_flag = True
    ipv6 = True
    syntax = ClientOptions(
        "dhclient",
        option_names(
            "-p -s -cf -df -lf -pf -sf -e -D -g --dad-wait-time --prefix-len-hint "
            "--decline-wait-time --address-prefix-len"
        ),
        {
            "-sf": "the hook script",
            "-pf": "the pidfile",
            "-lf": "the lease file",
            "-cf": "the configuration file",
            "-d": "the foreground mode",
            "-nw": "the foreground mode",
            "--no-pid": "the pidfile",
            "-x": "stopping",
            "-r": "releasing",
            **dict.fromkeys(["-4", "-6"], "the family: write dhclient/6 for DHCPv6"),
            **dict.fromkeys(["-S", "-N", "-T", "-P"], "the DHCPv6 mode: one address, IA_NA"),
            "-D": "the DUID: DUID-LL, from the MAC address",
        },
        getopt=False,
    )

    def prepare(self, run: Run) -> None:
        if run.family == 6:
            lines = [
                f"# written by pipework for {run.ifname} (DHCPv6)",
                "request dhcp6.name-servers, dhcp6.domain-search;",
                f"timeout {run.patience};",
                "initial-interval 1;",
                "backoff-cutoff 2;",
            ]
            run.state.write("dhclient.conf", "\n".join(lines) + "\n")
            run.state.write("dhclient.leases", "")
            return
        lines = [
            f"# written by pipework for {run.ifname}",
            "request subnet-mask, broadcast-address, routers, domain-name,",
            "        domain-name-servers, domain-search;",
            f"timeout {run.patience};",
            "initial-interval 1;",
            "backoff-cutoff 2;",
        ]
        if run.hostname:
            lines.insert(1, f'send host-name "{run.hostname}";')
        run.state.write("dhclient.conf", "\n".join(lines) + "\n")
        run.state.write("dhclient.leases", "")

    def argv(self, run: Run) -> list[str]:
        state = run.state
        # DHCPv6: one address (IA_NA), the DUID made from the MAC address
        # (DUID-LL): the same U:STRING gets the same lease.
        family = ["-6", "-N", "-D", "LL"] if run.family == 6 else ["-4"]
        argv = [run.binary, *family, "-1", "-cf", str(state.file("dhclient.conf"))]
        argv += ["-lf", str(state.file("dhclient.leases")), "-pf", str(state.file("dhclient.pid"))]
        argv += ["-sf", run.hook]
        # One-shot: in the foreground, stopped by pipework once bound. Kept:
        # dhclient goes to the background by itself once bound.
        argv += [] if run.keep else ["-d"]
        return [*argv, *run.options, run.ifname]


class Dhcpcd(HostClient):
    name = "dhcpcd"
    package = "dhcpcd5"
    ipv6 = True
    syntax = ClientOptions(
        "dhcpcd",
        option_names(
            "-C -c -e -F -f -h -I -i -j -l -m -O -o -Q -r -S -s -t -u -v -W -X -y -Z -z "
            "--nohook --script --env --fqdn --config --hostname --clientid --vendorclassid "
            "--logfile --leasetime --metric --nooption --option --require --request "
            "--static --inform --timeout --userclass --vendor --whitelist --blacklist "
            "--reboot --denyinterfaces --allowinterfaces"
        ),
        {
            **dict.fromkeys(["-c", "--script"], "the hook script"),
            **dict.fromkeys(["-f", "--config"], "the configuration file"),
            **dict.fromkeys(["-j", "--logfile"], "the log file"),
            **dict.fromkeys(["-1", "--oneshot"], "one-shot mode (write dhcpcd-f to keep it)"),
            **dict.fromkeys(["-B", "--nobackground", "-b", "--background"], "backgrounding"),
            **dict.fromkeys(["-x", "--exit", "-k", "--release"], "stopping"),
            **dict.fromkeys(["-n", "--rebind", "-U", "--dumplease"], "control commands"),
            **dict.fromkeys(["-M", "--master", "--manager"], "the manager mode"),
            **dict.fromkeys(
                ["-4", "--ipv4only", "-6", "--ipv6only"], "the family: write dhcpcd/6 for DHCPv6"
            ),
            **dict.fromkeys(["-T", "--test"], "the test mode"),
        },
    )
    # dhcpcd keeps its pidfile, control sockets, leases and DUID in fixed
    # directories; each attachment gets its own (two guests' eth1 would
    # otherwise share them).
    private = (("/run/dhcpcd", "dhcpcd-run"), ("/var/lib/dhcpcd", "dhcpcd-db"))
    # Its privilege separation: the processes that read the network switch to
    # the user dhcpcd, with no capabilities, chrooted in /usr/lib/dhcpcd;
    # only its privileged proxy keeps these (without them, it runs all as root).
    capabilities = (*HostClient.capabilities, "setuid", "setgid", "sys_chroot")

    def prepare(self, run: Run) -> None:
        for _, sub in self.private:
            run.state.file(sub).mkdir(mode=0o755, exist_ok=True)
        run.state.write(
            "dhcpcd.conf",
            "\n".join(
                [
                    f"# written by pipework for {run.ifname}",
                    "# The hook configures the interface, as for dhclient and udhcpc.",
                    "noconfigure",
                    "persistent",
                    "nodelay",
                    "nodev",
                    *(
                        [
                            "ipv6only",
                            "# DHCPv6 at once, for one address; router advertisements",
                            "# are the kernel's business.",
                            "noipv6rs",
                            "ia_na",
                            "# The DUID from the MAC address: the same MAC gets the same lease.",
                            "duid ll",
                            "option dhcp6_name_servers, dhcp6_domain_search",
                        ]
                        if run.family == 6
                        else [
                            "ipv4only",
                            "noipv4ll",
                            "noarp",
                            "# Identify by the MAC address: the same MAC gets the same lease.",
                            "clientid",
                            "option domain_name_servers, domain_name, domain_search",
                        ]
                    ),
                ]
            )
            + "\n",
        )

    def argv(self, run: Run) -> list[str]:
        state = run.state
        argv = [run.binary, "-f", str(state.file("dhcpcd.conf")), "-c", run.hook]
        argv += ["-j", str(state.file("dhcpcd.log"))]
        if run.hostname:
            argv += ["-h", run.hostname]
        # One-shot: in the foreground, exit once bound. Kept: to the
        # background at once (with noconfigure dhcpcd would otherwise wait
        # for an address it did not add itself); pipework waits for the lease.
        argv += ["-t", str(run.patience), "-1", "-B"] if not run.keep else ["-t", "0", "-b"]
        return [*argv, *run.options, run.ifname]


CLIENTS: tuple[HostClient, ...] = (Dhclient(), Udhcpc(), Dhcpcd())


# -- processes ------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0])."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _starttime(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _ns(pid: int, kind: str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _comm(pid: int) -> str:
    return (read_text(Path(f"/proc/{pid}/comm")) or "").strip()


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _by_mount_namespace() -> dict[tuple[int, int], list[int]]:
    """Every live process by its mount namespace (one scan of /proc)."""
    found: dict[tuple[int, int], list[int]] = {}
    for pid in _pids():
        mnt = _ns(pid, "mnt")
        if mnt is not None and _alive(pid):
            found.setdefault(mnt, []).append(pid)
    return found


def sandbox_ns(state: StateDir) -> tuple[int, int] | None:
    words = (read_text(state.file(MNTNS)) or "").split()
    return (int(words[0]), int(words[1])) if len(words) == 2 else None


def same_process(pid: int, starttime: int | None) -> bool:
    return _alive(pid) and starttime is not None and _starttime(pid) == starttime


def client_pids(state: StateDir, name: str, trusted: Iterable[int] = ()) -> list[int]:
    """The live processes of the client whose state this is.

    They are the processes in the mount namespace the sandbox made for it.
    While a process known to be the client (``trusted``, or the manager
    recorded with its start time) lives, that namespace cannot be recycled,
    so every process in it is the client's. Without one, only processes of
    the client's name in the guest's network namespace count.
    """
    mntns = sandbox_ns(state)
    if mntns is None:
        return []
    meta = state.meta()
    manager = meta.get("manager") or [0, None]
    anchors = [*trusted]
    if manager[0] and same_process(manager[0], manager[1]):
        anchors.append(manager[0])
    sure = any(_ns(pid, "mnt") == mntns for pid in anchors if _alive(pid))
    netns = tuple(meta.get("netns") or ())
    found = []
    for pid in _pids():
        if pid == os.getpid() or _ns(pid, "mnt") != mntns or not _alive(pid):
            continue
        if sure or (_comm(pid) == name and _ns(pid, "net") == netns):
            found.append(pid)
    return found


async def stop_pids(pids: Sequence[int], grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL what is still there after ``grace`` seconds."""
    import signal  # lazy: every CLI run loads this plugin, few use DHCP

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    with anyio.move_on_after(grace):
        # Polling /proc: a process that is not our child sends no event.
        while any(_alive(pid) for pid in pids):  # noqa: ASYNC110
            await anyio.sleep(POLL)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- the provider ---------------------------------------------------------------------


class HostClientProvider(AddressProvider):
    """An address provider running one host DHCP client."""

    options = HOST_CLIENT_OPTIONS

    def __init__(self, client: HostClient, config: EngineConfig) -> None:
        self.client = client
        self.name = client.name
        self.config = config

    def handles(self, address: AddressSpec) -> bool:
        return address.method in (self.name, self.name + "-f")

    def mode(self, address: AddressSpec) -> tuple[bool, tuple[str, ...]]:
        """(kept?, the options to pass on) for an IPSPEC this provider claims."""
        options = address.options
        keep = address.method.endswith("-f")
        if self.client.keep_flag and "-f" in options:
            keep = True
            options = tuple(o for o in options if o != "-f")
        self.client.syntax.check(options)
        return keep, options

    def binary(self) -> str:
        import shutil  # lazy: every CLI run loads this plugin, few use DHCP

        path = os.environ.get("PATH", "") + ":" + SEARCH_PATH
        found = shutil.which(self.client.name, path=path)
        if found is None:
            raise UnsupportedError(
                f"{self.name} is not installed",
                f"install the Debian package {self.client.package}",
            )
        return found

    def validate(self, spec: AttachSpec, guest: GuestInfo) -> None:
        """Refuse what cannot work before anything is created."""
        if IMAGE in spec.address.settings:
            raise UsageError(
                f"--dhcp-image is for the dhcp helper container; {self.name} runs on the host"
            )
        check_options(self.name, self.options, {}, spec.address.settings)
        check_request(spec, guest, ipv6=self.client.ipv6)
        self.mode(spec.address)
        self.binary()

    # A replacement gets its lease under its temporary name, beside the old
    # attachment (whose client and state stay untouched), with a one-shot
    # client; ``adopt`` moves the state to the final name, and restarts a
    # kept client there (same interface, same MAC: the same lease).
    make_before_break = True

    async def configure(self, ctx: AddressContext) -> AddressResult:
        address = ctx.address
        keep, options = self.mode(address)
        keep = keep and ctx.device is None
        binary = self.binary()
        dns = None
        if wants_dns(address):
            dns = GuestResolvConf.locate(ctx.guest.info, ctx.guest_ns.key)
        device = ctx.device or ctx.ifname
        family = wanted_family(ctx.spec)
        state = StateDir.of(self.config.run_dir, ctx.guest.info.key, device, family)
        await self._discard(state)
        timeout = lease_timeout(address)
        if family == 6:
            # The wait for the link-local address counts against the timeout.
            started = anyio.current_time()
            await link_local_ready(ctx, timeout)
            timeout = max(timeout - (anyio.current_time() - started), 0.5)
        else:
            # Undone last: the route the hook may replace; then the client.
            await keep_default_route(ctx, self.config.run_dir)
        state.create(base_meta(ctx, self.name, "kept" if keep else "one-shot"))

        async def discard() -> None:
            await self._discard(state)

        ctx.journal.record(f"{self.name} for {ctx.ifname} ({state})", discard)
        hook = state.write("hook", hook_script(str(state.file(REPORT))), 0o700)
        run = Run(
            binary=binary,
            ifname=device,
            hostname=dhcp_hostname(ctx.guest.info),
            state=state,
            hook=str(hook),
            keep=keep,
            timeout=timeout,
            options=options,
            family=family,
        )
        self.client.prepare(run)
        lease = await self._run(ctx, run)
        await check_lease(ctx, lease, self.name)
        if dns is not None:
            await write_guest_dns(ctx, lease, dns, state)
        return lease.result()

    async def adopt(self, ctx: AddressContext) -> None:
        """The replacement has its final name: its state follows; a kept
        client is started under that name."""
        assert ctx.device is not None
        key, family = ctx.guest.info.key, wanted_family(ctx.spec)
        built = StateDir.of(self.config.run_dir, key, ctx.device, family)
        final = StateDir.of(self.config.run_dir, key, ctx.ifname, family)
        await self._discard(final)  # the old one's, if its release left it
        keep, _ = self.mode(ctx.address)
        if keep:
            await self._discard(built)  # a one-shot lease; the kept client makes its own
            try:
                await self.configure(ctx if ctx.device is None else _final(ctx))
            except BaseException:
                await self._discard(final)
                raise
            return
        if built.exists():
            built.path.rename(final.path)
            final.update_meta(ifname=ctx.ifname)

    async def _run(self, ctx: AddressContext, run: Run) -> Lease:
        """Start the client in its sandbox and wait for the lease."""
        import subprocess  # lazy: every CLI run loads this plugin, few use DHCP

        state = run.state
        argv = [sys.executable, "-I", "-S", SANDBOX, "--netns-fd", str(ctx.guest.fd)]
        argv += ["--state", str(state)]
        for target, sub in self.client.private:
            argv += ["--private", f"{target}={state.file(sub)}"]
        for capability in self.client.capabilities:
            argv += ["--cap", capability]
        argv += ["--", *self.client.argv(run)]
        log = os.open(state.file(CLIENT_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(ctx.guest.fd,),
                env={"PATH": SEARCH_PATH, "LANG": "C"},
                start_new_session=True,
            )
        finally:
            os.close(log)
        kept = False
        try:
            with anyio.move_on_after(run.timeout):
                lease = await self._wait(ctx, run, process)
                if run.keep:
                    await self._find_daemon(ctx, run, process)
                    kept = True
                return lease
            said = last_words(read_text(state.file(CLIENT_LOG)))
            raise no_lease(self.name, ctx, lease_timeout(ctx.address), said)
        finally:
            with anyio.CancelScope(shield=True):
                # Unless a kept client is in place, no client process may
                # remain. (Until we reap it, our child's PID is nobody else's.)
                if not kept:
                    mine = [process.pid] if process.returncode is None else []
                    await stop_pids(sorted({*client_pids(state, self.name, mine), *mine}))
                await process.aclose()

    async def _wait(self, ctx: AddressContext, run: Run, process: anyio.abc.Process) -> Lease:
        while True:
            returncode = process.returncode
            lease = self._lease(ctx, run)
            if lease is not None:
                return lease
            if returncode is not None and (returncode != 0 or not run.keep):
                raise self._failure(ctx, run, returncode)
            if returncode == 0 and not client_pids(run.state, self.name):
                raise self._failure(ctx, run, returncode)
            await anyio.sleep(POLL)

    def _lease(self, ctx: AddressContext, run: Run) -> Lease | None:
        try:
            return Lease.from_report(run.state.report())
        except (KeyError, ValueError) as exc:
            raise PipeworkError(
                f"{self.name} reported an unusable lease for {ctx.ifname} in {ctx.guest.name}: {exc}"
            ) from None

    def _failure(self, ctx: AddressContext, run: Run, returncode: int) -> PipeworkError:
        said = last_words(read_text(run.state.file(CLIENT_LOG)))
        if returncode in (SANDBOX_SETUP_FAILED, SANDBOX_NOT_FOUND):
            return PipeworkError(
                f"cannot start {self.name} for {ctx.ifname} in {ctx.guest.name}: {said}"
            )
        return ExternalCommandError(
            f"{self.name} exited (status {returncode}) without a lease for {ctx.ifname} "
            f"in {ctx.guest.name}: {said}",
            f"its log is {run.state.file(CLIENT_LOG)} until the rollback removes it; "
            "check the options and the DHCP server",
        )

    async def _find_daemon(self, ctx: AddressContext, run: Run, process: anyio.abc.Process) -> None:
        """Wait for the kept client to be alone in the background; record it."""
        with anyio.move_on_after(DAEMON_WAIT):
            while True:
                if process.returncode is not None:
                    pids = client_pids(run.state, self.name)
                    managers = [pid for pid in pids if self._parent(pid) not in pids]
                    if len(managers) == 1:
                        pid = managers[0]
                        run.state.update_meta(manager=[pid, _starttime(pid)])
                        return
                await anyio.sleep(POLL)
        raise PipeworkError(
            f"{self.name} did not stay in the background to renew the lease of "
            f"{ctx.ifname} in {ctx.guest.name}",
            f"see {run.state.file(CLIENT_LOG)}",
        )

    @staticmethod
    def _parent(pid: int) -> int:
        fields = _stat(pid)
        return int(fields[1]) if fields else 0

    async def _discard(self, state: StateDir) -> None:
        """Stop the client a state directory belongs to; remove the directory."""
        if not state.exists():
            return
        await stop_pids(client_pids(state, str(state.meta().get("provider", self.name))))
        GuestResolvConf.restore(state)
        state.remove()

    def _state(self, ctx: DetachContext) -> StateDir:
        return StateDir.of(self.config.run_dir, ctx.marker.guest, ctx.marker.ifname, family_of(ctx))

    async def release(self, ctx: DetachContext) -> None:
        # The route first: a client stopping may take its router's route away.
        if family_of(ctx) == 4:
            await give_back_default_route(ctx, self.config.run_dir)
        await self._discard(self._state(ctx))

    async def inspect(self, ctx: DetachContext) -> AddressResult | None:
        state = self._state(ctx)
        meta = state.meta()
        if meta.get("provider") != self.name:
            return None
        if meta.get("mode") == "kept":
            manager = meta.get("manager") or [0, None]
            if not same_process(manager[0], manager[1]):
                return None
        return await intact_result(ctx, state.report())

    async def describe(self, ctx: DetachContext) -> str:
        """The client's state, for ``pipework ls``."""
        meta = self._state(ctx).meta()
        if meta.get("provider") != self.name:
            return "no state (lease not renewed)"
        if meta.get("mode") != "kept":
            return "one-shot (lease configured, client stopped)"
        manager = meta.get("manager") or [0, None]
        if same_process(manager[0], manager[1]):
            return f"kept, running (PID {manager[0]})"
        return "kept, not running (a re-run restarts it)"

    async def kept(self) -> list[KeptClient]:
        """This client's kept attachments, from their state directories: one
        scan of /proc for all of them. Alive means the recorded manager (the
        sandbox's init, same PID, same start time) is in the sandbox's mount
        namespace with a process of this client's name in the guest's network
        namespace; a malformed directory is one warning, and skipped."""
        found = []
        processes: dict[tuple[int, int], list[int]] | None = None
        for state in StateDir.all(self.config.run_dir):
            meta: dict[str, Any] = state.meta()
            if meta.get("provider") != self.name or meta.get("mode") != "kept":
                continue
            if processes is None:
                processes = _by_mount_namespace()
            try:
                found.append(self._kept(state, meta, processes))
            except (ValueError, TypeError) as exc:
                log.warning(
                    "%s: skipping the malformed state directory %s: %s", self.name, state, exc
                )
        return found

    def _kept(
        self, state: StateDir, meta: dict[str, Any], processes: dict[tuple[int, int], list[int]]
    ) -> KeptClient:
        manager = meta.get("manager")
        pid = starttime = None
        if manager is not None:
            if not (
                isinstance(manager, list)
                and len(manager) == 2
                and type(manager[0]) is int
                and manager[0] > 0
                and (manager[1] is None or type(manager[1]) is int)
            ):
                raise ValueError("its manager is not [PID, start time]")
            pid, starttime = manager
        alive = False
        mntns = sandbox_ns(state)
        if pid is not None and mntns is not None and same_process(pid, starttime):
            netns = tuple(meta.get("netns") or ())
            alive = _ns(pid, "mnt") == mntns and any(
                _comm(p) == self.name and _ns(p, "net") == netns for p in processes.get(mntns, [])
            )
        return kept_client(state, meta, self.name + "-f", alive=alive, pid=pid, starttime=starttime)

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """State directories (and kept clients) of guests that are gone."""
        found = []
        for state in StateDir.all(self.config.run_dir):
            meta: dict[str, Any] = state.meta()
            if meta.get("provider") != self.name or guest_alive(meta):
                continue
            pids = client_pids(state, self.name)
            what = f"{self.name} state {state} of {meta.get('guest_name')} {meta.get('ifname')}"
            found.append(what + (f" (stopping PIDs {pids})" if pids else ""))
            if not ctx.dry_run:
                await self._discard(state)
        return found


def _final(ctx: AddressContext) -> AddressContext:
    """``ctx`` for the interface under its final name (a journal of its own)."""
    from dataclasses import replace

    from pipework.engine import Journal

    return replace(ctx, device=None, replacing=None, journal=Journal())


@hookimpl
def pipework_address_providers(config: EngineConfig) -> list[HostClientProvider]:
    return [HostClientProvider(client, config) for client in CLIENTS]


__all__ = ["CLIENTS", "HostClientProvider"]
