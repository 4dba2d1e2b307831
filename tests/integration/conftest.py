"""Fixtures for integration tests: real namespaces, a private dockerd, the
busybox image, containers, and the CLI as a subprocess.

All of them need root; when a prerequisite is missing they skip (or fail
when CI=true, see ``infra.require``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType

import pytest
from support import infra
from support.daemon import RunningDaemon, make_daemon
from support.infra import Container, DockerDaemon, MakeContainer, MakeNetNS, NetNS, RunPipework

from pipework.cli.forward import eligible
from pipework.cli.options import read
from pipework.client import NO_DAEMON_ENV


@pytest.fixture(autouse=True)
def _integration_needs_root() -> None:
    infra.require_root()


@pytest.fixture(scope="session", autouse=True)
def _private_run_dir() -> Iterator[str]:
    """pipework's RUN_DIR (its lock files under ``locks/``, DHCP state), in a
    private directory for the whole session, never the machine's /run/pipework:
    ``PIPEWORK_RUN_DIR``, for the engine in this process and for every CLI
    subprocess. ``dhcp_run_dir`` gives a test one of its own."""
    path = tempfile.mkdtemp(prefix=f"{infra.PREFIX}-run-")
    saved = os.environ.get("PIPEWORK_RUN_DIR")
    os.environ["PIPEWORK_RUN_DIR"] = path
    try:
        yield path
    finally:
        if saved is None:
            os.environ.pop("PIPEWORK_RUN_DIR", None)
        else:
            os.environ["PIPEWORK_RUN_DIR"] = saved
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def host_ns() -> Iterator[NetNS]:
    """A test-owned namespace playing the role of the host side.

    Point the tool at it (``Engine(host_netns=host_ns.path)`` or run the CLI
    with ``run_pipework(..., netns=host_ns.name)``) so nothing it creates
    lands in the machine's real host namespace.
    """
    infra.require_binaries("ip")
    ns = NetNS.create(infra.unique_name("h"))
    try:
        yield ns
    finally:
        ns.destroy()


@pytest.fixture
def make_netns() -> Iterator[MakeNetNS]:
    """Factory for guest namespaces ``pwt-PREFIX-xxxxxx`` (lo up)."""
    infra.require_binaries("ip")
    made: list[NetNS] = []

    def make(prefix: str = "g") -> NetNS:
        ns = NetNS.create(infra.unique_name(prefix))
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in reversed(made):
            ns.destroy()


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    # Turns a SIGTERM to pytest into a KeyboardInterrupt, which pytest
    # handles by running the remaining fixture finalizers (so the private
    # dockerd is stopped) instead of dying on the spot.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[DockerDaemon]:
    """A private dockerd (+ containerd) under /tmp/pwt-dockerd-*.

    While active, ``os.environ["DOCKER_HOST"]`` points at it, so both the
    in-process engine (aiodocker) and CLI subprocesses talk to it.
    """
    infra.require_root()
    infra.require_binaries("dockerd", "containerd", "runc", "docker", "ip")
    daemon = DockerDaemon()
    try:
        daemon.start()
    except infra.DaemonStartError as exc:
        daemon.stop()
        infra.unavailable(f"private dockerd failed to start: {exc}")

    saved = {key: os.environ.get(key) for key in ("DOCKER_HOST", "DOCKER_CONFIG")}
    os.environ["DOCKER_HOST"] = daemon.host
    os.environ["DOCKER_CONFIG"] = daemon.env["DOCKER_CONFIG"]
    previous_handler = signal.getsignal(signal.SIGTERM)
    if previous_handler is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield daemon
    finally:
        if previous_handler is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        daemon.stop()


@pytest.fixture(scope="session")
def busybox_image(docker_daemon: DockerDaemon) -> str:
    """``pipework-test/busybox:latest`` (also tagged ``busybox:latest``),
    imported from the host's static busybox, since no registry is reachable."""
    busybox = infra.find_static_busybox()
    infra.require(busybox, "needs a static busybox (Debian package busybox-static)")
    assert busybox is not None
    return infra.import_busybox_image(docker_daemon, busybox)


@pytest.fixture
def make_container(docker_daemon: DockerDaemon, busybox_image: str) -> Iterator[MakeContainer]:
    """Factory for busybox containers (default: ``--network none``, sleeping).

    ``extra_args`` go to ``docker create`` before the image (e.g.
    ``("--hostname", "web")``).  Teardown removes them all and kills any host
    process left in their network namespace (e.g. a DHCP client).
    """
    made: list[Container] = []

    def make(
        name: str | None = None,
        *,
        network: str = "none",
        command: Sequence[str] = ("sleep", "3600"),
        start: bool = True,
        image: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> Container:
        name = name or infra.unique_name("c")
        cid = docker_daemon.cli(
            "create",
            "--name",
            name,
            "--network",
            network,
            *extra_args,
            image or busybox_image,
            *command,
        ).stdout.strip()
        container = Container(daemon=docker_daemon, name=name, id=cid)
        made.append(container)
        if start:
            docker_daemon.cli("start", cid)
        return container

    try:
        yield make
    finally:
        for container in reversed(made):
            container.remove()


DUAL_MODULES = frozenset(
    {"test_operations", "test_apply", "test_cli_docker", "test_addresses", "test_slaac"}
)
"""Their tests run twice: the CLI in-process, then served by a running
``pipework daemon`` (the same assertions: the same output and exit codes)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rpartition(".")[2]
    if "run_pipework" in metafunc.fixturenames and module in DUAL_MODULES:
        metafunc.parametrize("cli_mode", ["in-process", "daemon"], indirect=True)


@pytest.fixture(scope="session")
def pipework_daemon(_private_run_dir: str) -> Iterator[RunningDaemon]:
    """One ``pipework daemon`` for the session, in a namespace of its own:
    the commands it serves run in their clients' namespaces."""
    daemon = make_daemon()
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def cli_mode(request: pytest.FixtureRequest) -> Iterator[RunningDaemon | None]:
    """The daemon serving this test's commands (None: they run in-process).
    A daemon-mode test fails if the daemon served none of them."""
    if getattr(request, "param", "in-process") != "daemon":
        yield None
        return
    daemon: RunningDaemon = request.getfixturevalue("pipework_daemon")
    before = daemon.served()
    daemon.expected = 0
    yield daemon
    if daemon.expected:
        assert daemon.served() > before, "no command of this test was served by the daemon"


@pytest.fixture
def run_pipework(cli_mode: RunningDaemon | None) -> RunPipework:
    """Run the CLI as a subprocess; never raises on a non-zero exit.

    ``run_pipework("br1", "web1", "198.18.0.2/24", netns=host_ns.name)``.
    ``env`` defaults to os.environ, which holds DOCKER_HOST while the
    ``docker_daemon`` fixture is active.
    """

    def run_it(
        *args: str,
        netns: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pipework", *args]
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        if cli_mode is None:
            environ = {**(env if env is not None else os.environ), NO_DAEMON_ENV: "1"}
        else:
            environ = cli_mode.client_env(env)
            cli_mode.expected += eligible(read(args))
        return infra.run(
            argv,
            check=False,
            timeout=timeout,
            input=input,
            env=environ,
            # From the repo root, `-m pipework` finds the source tree even
            # when the package is not installed in this interpreter.
            cwd=infra.REPO_ROOT,
        )

    return run_it


# -- the Docker FORWARD trap --------------------------------------------------------

SYSCTL = "/proc/sys/net/bridge/bridge-nf-call-iptables"


def host_firewall() -> str:
    """The machine's own rules (read only), to prove they never change."""
    parts = []
    for argv in (["iptables", "-S"], ["ip6tables", "-S"], ["nft", "list", "ruleset"]):
        if shutil.which(argv[0]):
            parts.append(infra.run(argv, check=False).stdout)
    return "\n".join(parts)


@pytest.fixture
def trapped_host(host_ns: NetNS) -> Iterator[NetNS]:
    """``host_ns`` with bridged traffic filtered by FORWARD (br_netfilter), as
    Docker leaves a host; the test sets the policy. The machine's own
    firewall is compared before and after."""
    infra.require_binaries("iptables", "nft", "nsenter")
    have = host_ns.exec("test", "-e", SYSCTL, check=False).returncode == 0
    infra.require(
        have, f"this kernel has no br_netfilter: {SYSCTL} does not exist in a new namespace"
    )
    host_ns.exec("sh", "-c", f"echo 1 > {SYSCTL}")
    before = host_firewall()
    yield host_ns
    assert host_firewall() == before, "the machine's own firewall changed"


# -- Open vSwitch -------------------------------------------------------------------

from support.ovs import BINARIES, SCHEMA, OvsStartError, PrivateOvs  # noqa: E402


@pytest.fixture
def ovs(host_ns: NetNS, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateOvs]:
    """A private Open vSwitch (ovsdb-server + ovs-vswitchd) inside ``host_ns``.

    Its bridges use the userspace datapath (this kernel has no openvswitch
    module). While active, ``PIPEWORK_OVSDB`` points at its socket and
    ``PIPEWORK_OVS_DATAPATH`` is ``netdev``, for the in-process engine and
    for CLI subprocesses alike. Everything is stopped and its
    ``/tmp/pwt-ovs-*`` directory removed afterwards.
    """
    infra.require_binaries(*BINARIES)
    infra.require(SCHEMA.exists(), f"no OVSDB schema at {SCHEMA} (Debian: openvswitch-common)")
    switch = PrivateOvs(host_ns)
    try:
        switch.start()
    except (OvsStartError, subprocess.SubprocessError) as exc:
        switch.stop()
        infra.unavailable(f"private Open vSwitch failed to start: {exc}")
    monkeypatch.setenv("PIPEWORK_OVSDB", f"unix:{switch.sock}")
    monkeypatch.setenv("PIPEWORK_OVS_DATAPATH", "netdev")
    try:
        yield switch
    finally:
        switch.stop()


# -- DHCP ---------------------------------------------------------------------------

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from support.dhcp import DhcpServer, host_file_hashes  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: takes a minute or more of wall time (runs by default; deselect with -m 'not slow')",
    )


@pytest.fixture
def dhcp_server(host_ns: NetNS) -> Iterator[Callable[..., DhcpServer]]:
    """Factory: dnsmasq on a new bridge (default ``brpwtd``, 198.18.100.0/24) in
    ``host_ns``. ``dhcp_server(lease_time="2m", router=True)``. Stopped, and its
    ``/tmp/pwt-dhcp-*`` directory removed, afterwards."""
    made: list[DhcpServer] = []

    def make(**kwargs: object) -> DhcpServer:
        server = DhcpServer(host_ns, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        try:
            return server.start()
        except RuntimeError as exc:
            infra.unavailable(str(exc))

    try:
        yield make
    finally:
        for server in made:
            server.stop()


@pytest.fixture
def dhcp_run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private RUN_DIR for DHCP state (``PIPEWORK_RUN_DIR``, also for CLI
    subprocesses). pipework must leave its ``dhcp/`` empty: anything still
    in it at the end fails the test (and is removed). Its ``locks/`` may
    stay: the directory is made on demand and kept (docs/ARCHITECTURE.md)."""
    path = Path(tempfile.mkdtemp(prefix=f"{infra.PREFIX}-run-"))
    monkeypatch.setenv("PIPEWORK_RUN_DIR", str(path))
    try:
        yield path
    finally:
        left = sorted(str(p) for p in (path / "dhcp").glob("*"))
        shutil.rmtree(path, ignore_errors=True)
        if left:
            infra.FIXTURE_CLEANUPS.append(f"DHCP state left behind: {', '.join(left)}")
            pytest.fail(f"pipework left DHCP state behind: {left}", pytrace=False)


@pytest.fixture
def host_files_unchanged() -> Iterator[None]:
    """Fail the test if the host's resolv.conf, hostname or hosts changed."""
    before = host_file_hashes()
    yield
    changed = [path for path, digest in host_file_hashes().items() if before[path] != digest]
    if changed:
        pytest.fail(f"host files changed: {changed}", pytrace=False)


@pytest.fixture
def no_dhcp_helpers(docker_daemon: DockerDaemon) -> Iterator[None]:
    """Fail the test if a dhcp helper container is left behind (and remove it)."""
    yield
    left = docker_daemon.cli("ps", "-aq", "--filter", "label=pipework.helper").stdout.split()
    if left:
        docker_daemon.cli("rm", "-f", *left, check=False)
        infra.FIXTURE_CLEANUPS.append(f"dhcp helper containers left behind: {left}")
        pytest.fail(f"dhcp helper containers left behind: {left}", pytrace=False)


# -- Podman and LXC -----------------------------------------------------------------

from support.lxc import lxc_path  # noqa: E402, F401  (fixtures)
from support.podman_service import make_podman_container, podman_service  # noqa: E402, F401
