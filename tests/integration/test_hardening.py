"""Hardening: races between processes, a guest dying mid-attach, names at and
past the kernel's limit, no privileges, hostile names. The figures (how many,
how long) are printed; run with -s to see them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest
from support import infra
from support.checks import links, only_loopback

from pipework import AddressSpec, AttachSpec, Engine, GuestNotRunningError
from pipework.engine import Journal
from pipework.engine.marker import Marker

pytestmark = pytest.mark.integration


@pytest.fixture
def anyio_backend():
    return "asyncio"


GUESTS_PER_PROCESS = 50
ROUNDS = 16


def one_line(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipework: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


# -- two processes, one new bridge ------------------------------------------------------

ATTACH_MANY = textwrap.dedent(
    """
    import sys, anyio
    from pipework import AddressSpec, AttachSpec, Engine

    host, first, *guests = sys.argv[1:]

    async def main():
        specs = [
            AttachSpec(host="brpwtrace", guest=f"netns:{g}",
                       address=AddressSpec.parse(f"198.18.{80 + (int(first) + i) // 250}.{(int(first) + i) % 250 + 2}/16"))
            for i, g in enumerate(guests)
        ]
        async with Engine(host_netns=host) as engine:
            results = await engine.attach_many(specs)
        failed = [repr(r) for r in results if isinstance(r, Exception)]
        print(len(results) - len(failed), "ok;", "; ".join(failed))
        return 1 if failed else 0

    sys.exit(anyio.run(main))
    """
)


def test_two_processes_attach_fifty_guests_each_to_one_new_bridge(host_ns, make_netns):
    guests = [make_netns("r") for _ in range(2 * GUESTS_PER_PROCESS)]
    halves = [guests[:GUESTS_PER_PROCESS], guests[GUESTS_PER_PROCESS:]]
    assert "brpwtrace" not in links(host_ns)
    started = time.perf_counter()
    procs = []
    for i, half in enumerate(halves):
        argv = [sys.executable, "-c", ATTACH_MANY, host_ns.path, str(i * GUESTS_PER_PROCESS)]
        procs.append(
            subprocess.Popen(
                [*argv, *(g.name for g in half)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=infra.REPO_ROOT,
            )
        )
    outputs = [p.communicate(timeout=240) for p in procs]
    elapsed = time.perf_counter() - started
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, (out, err)
        assert out.startswith(f"{GUESTS_PER_PROCESS} ok;"), out
    host = links(host_ns)
    ports = [n for n, link in host.items() if link.get("master") == "brpwtrace"]
    assert len(ports) == 2 * GUESTS_PER_PROCESS
    assert all("eth1" in links(g) for g in guests[:: GUESTS_PER_PROCESS // 5])
    assert infra.ping(guests[0], "198.18.80.52")  # the first guest of the second process
    print(f"\nrace: 2 processes x {GUESTS_PER_PROCESS} guests on one new bridge: "
          f"{len(ports)}/100 attached in {elapsed:.2f} s")  # fmt: skip


# -- attach and detach of one guest at once ---------------------------------------------


def consistent(host_ns: infra.NetNS, guest: infra.NetNS) -> str:
    """'attached' or 'absent'; anything half-made fails the test."""
    glinks = links(guest)
    ports = [(n, link) for n, link in links(host_ns).items() if link.get("master") == "brpwtcad"]
    temp = [n for n in glinks if n.startswith("pwt") and len(n) == 13]
    assert not temp, f"a temporary interface was left: {temp}"
    if "eth1" not in glinks:
        assert not ports, f"host side without a guest side: {ports}"
        return "absent"
    marker = Marker.parse(glinks["eth1"].get("ifalias"))
    assert marker is not None and marker.hostif, glinks["eth1"]
    assert [n for n, _ in ports] == [marker.hostif], (ports, marker)
    assert Marker.parse(ports[0][1].get("ifalias")).same_attachment(marker)
    assert glinks["eth1"]["operstate"] in ("UP", "LOWERLAYERDOWN")
    return "attached"


def spawn(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=infra.REPO_ROOT
    )


def test_concurrent_attach_and_detach_of_one_guest_end_consistent(host_ns, make_netns):
    guest = make_netns("g")
    ref = f"netns:{guest.name}"
    base = ["ip", "netns", "exec", host_ns.name, sys.executable, "-m", "pipework"]
    ends: dict[str, int] = {}
    codes: set[tuple[int, int]] = set()
    started = time.perf_counter()
    for round_ in range(ROUNDS):
        attach = [*base, "brpwtcad", ref, "198.18.90.2/24"]
        detach = [*base, "detach", ref, "--all"]
        if round_ % 2:  # half the rounds start from an attached guest
            subprocess.run(attach, capture_output=True, check=True, cwd=infra.REPO_ROOT)
        # detach loads more (the subcommand parser) than the legacy attach:
        # start it first, then the attach after a varying delay, so that
        # the two overlap at different points of their work.
        procs = [spawn(detach)]
        time.sleep(0.03 * (round_ % 8))
        procs.append(spawn(attach))
        results = [(p, *p.communicate(timeout=60)) for p in procs]
        for proc, _out, err in results:
            # Either command may lose a race, but only with a one-line error.
            assert "Traceback" not in err, err
            assert proc.returncode == 0 or len(err.strip().splitlines()) == 1, err
        codes.add(tuple(p.returncode for p, _, _ in results))  # type: ignore[arg-type]
        state = consistent(host_ns, guest)
        ends[state] = ends.get(state, 0) + 1
    elapsed = time.perf_counter() - started
    print(f"\nrace: attach || detach of one guest, {ROUNDS} rounds in {elapsed:.1f} s: "
          f"end states {ends}, exit codes {sorted(codes)}")  # fmt: skip
    assert sum(ends.values()) == ROUNDS


# -- a guest that dies while its attach is in flight --------------------------------------


def kill_after_first_step(monkeypatch: pytest.MonkeyPatch, kill) -> list[str]:
    """Kill the guest right after the attach's first recorded step."""
    seen: list[str] = []
    original = Journal.record

    def record(self, description, undo):  # type: ignore[no-untyped-def]
        original(self, description, undo)
        seen.append(description)
        if len(seen) == 1:
            kill()

    monkeypatch.setattr(Journal, "record", record)
    return seen


@pytest.mark.anyio
async def test_container_killed_mid_attach(host_ns, make_container, docker_daemon, monkeypatch):
    container = make_container()
    pid = container.pid
    before = set(links(host_ns))
    seen = kill_after_first_step(monkeypatch, lambda: docker_daemon.cli("kill", container.id))
    spec = AttachSpec(
        host="brpwtdie", guest=container.name, address=AddressSpec.parse("198.18.91.2/24")
    )
    with pytest.raises(GuestNotRunningError) as caught:
        async with Engine(host_netns=host_ns.path) as engine:
            await engine.attach(spec)
    assert str(caught.value) == (
        f"{container.name} stopped during the attach "
        "(nothing was left behind; start it and attach again)"
    )
    assert seen and seen[0].startswith("bridge brpwtdie")
    assert set(links(host_ns)) == before  # no veth, and the new bridge rolled back
    assert not os.path.exists(f"/proc/{pid}/ns/net")


@pytest.mark.anyio
async def test_namespace_removed_mid_attach(host_ns, make_netns, monkeypatch):
    guest = make_netns("g")
    before = set(links(host_ns))
    kill_after_first_step(monkeypatch, lambda: infra.run(["ip", "netns", "del", guest.name]))
    spec = AttachSpec(
        host="brpwtdie", guest=f"netns:{guest.name}", address=AddressSpec.parse("0/0")
    )
    with pytest.raises(GuestNotRunningError, match="stopped during the attach"):
        async with Engine(host_netns=host_ns.path) as engine:
            await engine.attach(spec)
    for _ in range(100):  # the kernel frees the namespace's veth in the background
        if set(links(host_ns)) == before:
            break
        await anyio.sleep(0.05)
    assert set(links(host_ns)) == before


# -- names ---------------------------------------------------------------------------------


def test_names_at_the_kernel_limit_work(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    bridge, ifname, hostif = "br" + "x" * 13, "i" * 15, "h" * 15
    result = run_pipework(
        bridge, "-i", ifname, "-l", hostif, f"netns:{guest.name}", "0/0", netns=host_ns.name
    )
    assert result.returncode == 0, result.stderr
    assert ifname in links(guest) and {bridge, hostif} <= set(links(host_ns))
    # Multi-byte names count in bytes: 7 x 2 bytes fit.
    result = run_pipework(bridge, "-i", "é" * 7, f"netns:{guest.name}", "0/0", netns=host_ns.name)
    assert result.returncode == 0, result.stderr
    assert "é" * 7 in links(guest)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["br" + "x" * 14, "GUEST", "0/0"], "host interface 'brxxxxxxxxxxxxxx' is 16 bytes long"),
        (["brpwtn", "-i", "i" * 16, "GUEST", "0/0"], "is 16 bytes long (Linux allows at most 15)"),
        (["brpwtn", "-l", "h" * 16, "GUEST", "0/0"], "host-side interface name"),
        (["brpwtn", "-i", "é" * 8, "GUEST", "0/0"], "is 16 bytes long"),
        (["brpwtn", "-i", "eth/1", "GUEST", "0/0"], "it may not contain '/', ':' or white space"),
        (["brpwtn", "-i", "eth 1", "GUEST", "0/0"], "not valid"),
        (["brpwtn", "-i", "eth:1", "GUEST", "0/0"], "not valid"),
        (["brpwtn", "-i", "..", "GUEST", "0/0"], "not valid"),
        (["brpwtn", "-i", "", "GUEST", "0/0"], "is empty"),
        (["brpwtn", "-i", "eth\n1", "GUEST", "0/0"], "not valid"),
        (["wait", "GUEST", "-i", "w" * 16], "is 16 bytes long"),
        (["detach", "GUEST", "-i", "d/1"], "not valid"),
    ],
)
def test_bad_names_are_refused_before_anything_is_made(
    host_ns, make_netns, run_pipework, args, fragment
):
    guest = make_netns("g")
    argv = [f"netns:{guest.name}" if a == "GUEST" else a for a in args]
    one_line(run_pipework(*argv, netns=host_ns.name), 2, fragment)
    assert only_loopback(guest) and only_loopback(host_ns)


# -- not root --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["ls"],
        ["gc"],
        ["gc", "--dry-run"],
        ["detach", "GUEST", "--all"],
        ["wait", "GUEST"],
        ["route", "GUEST", "add", "198.18.20.0/24", "via", "198.18.10.1"],
        ["tc", "GUEST", "qdisc"],
        ["brpwtnr", "GUEST", "0/0", "--allow-forward"],
    ],
)
def test_not_root_one_message_before_anything_is_touched(host_ns, make_netns, args):
    setpriv = shutil.which("setpriv")
    infra.require(setpriv, "setpriv (util-linux) is needed to drop privileges")
    guest = make_netns("g")
    argv = [f"netns:{guest.name}" if a == "GUEST" else a for a in args]
    result = infra.run(
        ["ip", "netns", "exec", host_ns.name, setpriv, "--reuid=65534", "--regid=65534",
         "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
         sys.executable, "-m", "pipework", *argv],
        check=False, cwd=infra.REPO_ROOT, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )  # fmt: skip
    one_line(result, 77, "pipework needs root to change network interfaces")
    assert only_loopback(guest) and only_loopback(host_ns)


# -- hostile names -----------------------------------------------------------------------------


def test_hostile_container_references_reach_no_shell(
    host_ns, make_container, run_pipework, tmp_path, dhcp_run_dir, host_files_unchanged
):
    """Names and options are argv words and API path segments, never shell text."""
    pwned = Path(tmp_path) / "pwned"
    hostile = [
        f"$(touch {pwned})",
        f"`touch {pwned}`",
        f"x;touch {pwned}",
        f"x && touch {pwned}",
        "../../containers/json?all=1",
        "web1%2F..%2F",
        "-rf",
    ]
    for name in hostile:
        for args in (
            ["brpwth", name, "0/0"],
            ["detach", name, "--all"],
            ["ls", name],
            ["wait", name, "--timeout", "0"],
            ["route", name, "show"],
        ):
            result = run_pipework(*args, netns=host_ns.name)
            assert result.returncode in (2, 3, 8), (args, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    # A real container with the oddest name Docker allows, and hostile DHCP options.
    container = make_container("pwt-x.-_" + "y" * 40)
    result = run_pipework(
        "brpwth", container.name, f"udhcpc:-x hostname:$(touch {pwned})",
        "--dhcp-timeout", "1", netns=host_ns.name,
    )  # fmt: skip
    assert result.returncode in (2, 8, 9, 10), result.stderr
    ok = run_pipework("brpwth", container.name, "198.18.92.2/24", netns=host_ns.name)
    assert ok.returncode == 0, ok.stderr
    listed = run_pipework("ls", container.name, netns=host_ns.name)
    assert container.name in listed.stdout
    assert run_pipework("detach", container.name, "--all", netns=host_ns.name).returncode == 0
    assert not pwned.exists()


def test_wait_inside_the_guest_needs_no_privileges(make_netns):
    setpriv = shutil.which("setpriv")
    infra.require(setpriv, "setpriv (util-linux) is needed to drop privileges")
    guest = make_netns("g")
    unprivileged = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-m", "pipework"]  # fmt: skip
    result = guest.exec(*unprivileged, "--wait", "-i", "lo", "--timeout", "0", check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    missing = guest.exec(*unprivileged, "--wait", "--timeout", "0", check=False)
    one_line(missing, 10, "eth1 in this namespace does not exist after 0 s")
