"""LXC guests: real containers made offline with ``lxc-create -t busybox``
(``lxc.net.0.type = empty``) in a private LXCPATH, started with ``lxc-start``.

Every test uses its own LXCPATH, so ``--lxcpath``/``-P`` and
``lxc:/LXCPATH/NAME`` are exercised throughout. LXC's tools reach a
container's monitor through an abstract unix socket, seen only in the
network namespace where ``lxc-start`` ran: containers that the CLI (run in
the test's host namespace) looks up are started there too.
"""

from __future__ import annotations

import json
import os
import shutil

import anyio
import pytest
from support import infra
from support.checks import links, one_line_error, pid_links

from pipework import AttachSpec, Engine
from pipework.engine import AddressSpec

pytestmark = pytest.mark.integration


def test_attach_and_ping_from_a_namespace(host_ns, make_netns, lxc_path, run_pipework):
    web = lxc_path.create(netns=host_ns)
    peer = make_netns()
    result = run_pipework(
        "--json", "brpwl0", f"lxc:{web.name}", "198.18.62.2/24", "--lxcpath", str(lxc_path.root),
        netns=host_ns.name,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["guest"] == {
        "name": web.name, "key": web.key, "runtime": "lxc", "pid": web.pid, "api": None,
    }  # fmt: skip
    assert data["addresses"] == ["198.18.62.2/24"] and data["status"] == "created"
    joined = run_pipework("brpwl0", f"netns:{peer.name}", "198.18.62.3/24", netns=host_ns.name)
    assert joined.returncode == 0, joined.stderr
    assert infra.ping(peer, "198.18.62.2", count=2)
    # The same container named by its directory (no --lxcpath): the same guest.
    again = run_pipework(
        "brpwl0", f"lxc:{lxc_path.root}/{web.name}", "198.18.62.2/24", netns=host_ns.name
    )
    assert again.returncode == 0 and again.stdout.startswith(f"unchanged: eth1 in {web.name} ")


def test_bare_name_and_detach(host_ns, docker_daemon, lxc_path, monkeypatch):
    """A bare name that only LXC has (Docker is running too) goes to LXC."""
    web = lxc_path.create()
    monkeypatch.setenv("PIPEWORK_LXC_PATH", str(lxc_path.root))
    spec = AttachSpec(host="brpwl1", guest=web.name, address=AddressSpec.parse("198.18.63.2/24"))

    async def attach_then_detach() -> None:
        async with Engine(host_netns=host_ns.path) as engine:
            attached = await engine.attach(spec)
            assert attached.guest.runtime == "lxc" and attached.guest.key == web.key
            assert "eth1" in pid_links(web.pid)
            removed = await engine.detach(f"lxc:{lxc_path.root}/{web.name}")
            assert [marker.ifname for marker in removed] == ["eth1"]

    anyio.run(attach_then_detach)
    assert pid_links(web.pid) == {"lo"}


def test_stopped_and_missing_containers(host_ns, lxc_path, run_pipework):
    stopped = lxc_path.create(start=False, netns=host_ns)
    before = set(links(host_ns))
    root = str(lxc_path.root)
    result = run_pipework("-P", root, "brpwl2", f"lxc:{stopped.name}", "0/0", netns=host_ns.name)
    one_line_error(
        result, 4,
        f"LXC container {stopped.name} is not running (stopped) "
        f"(start it with `lxc-start -n {stopped.name} -P {root}`)",
    )  # fmt: skip
    result = run_pipework("-P", root, "brpwl2", "lxc:pwt-nope", "0/0", netns=host_ns.name)
    one_line_error(result, 3, f"no LXC container named pwt-nope in {root}")
    result = run_pipework("brpwl2", f"lxc:{root}/pwt-nope", "0/0", netns=host_ns.name)
    one_line_error(result, 3, f"no LXC container named pwt-nope in {root}")
    result = run_pipework("brpwl2", "lxc:a/b", "0/0", netns=host_ns.name)
    one_line_error(result, 2, "'lxc:a/b' does not name an LXC container")
    result = run_pipework("brpwl2", "lxc:x", "0/0", "--lxcpath", netns=host_ns.name)
    one_line_error(result, 2, "option --lxcpath needs a value")
    assert set(links(host_ns)) == before
    # lxc-info was never asked about a path that does not exist (it would
    # leave a lock directory for it).
    assert not os.path.exists(f"/run/lxc/lock/{root.lstrip('/')}/pwt-nope")


def test_lxc_not_installed(host_ns, lxc_path, run_pipework, tmp_path):
    web = lxc_path.create(start=False, netns=host_ns)
    (tmp_path / "ip").symlink_to(shutil.which("ip"))
    env = dict(os.environ, PATH=str(tmp_path))  # ip, but no lxc-info
    result = run_pipework(
        "-P", str(lxc_path.root), "brpwl3", f"lxc:{web.name}", "0/0", netns=host_ns.name, env=env
    )
    one_line_error(result, 8, "LXC is not installed (no lxc-info on PATH")


def test_same_name_in_docker_podman_and_lxc(
    host_ns, make_container, podman_service, make_podman_container, lxc_path, run_pipework
):
    """The documented order: docker, podman, lxc; each prefix picks its own."""
    name = infra.unique_name("amb")
    guests = {
        "docker": make_container(name).pid,
        "podman": make_podman_container(name).pid,
        "lxc": lxc_path.create(name, netns=host_ns).pid,
    }
    env = dict(os.environ, CONTAINER_HOST=podman_service.url, PIPEWORK_LXC_PATH=str(lxc_path.root))
    before = set(links(host_ns))
    result = run_pipework("brpwl4", name, "0/0", netns=host_ns.name, env=env)
    one_line_error(
        result, 2,
        f"{name} names a guest in several runtimes: docker:{name}, podman:{name}, lxc:{name} "
        "(write the one you mean, with its prefix)",
    )  # fmt: skip
    assert set(links(host_ns)) == before
    for runtime, pid in guests.items():
        assert pid_links(pid) == {"lo"}
        result = run_pipework(
            "--json", "brpwl4", f"{runtime}:{name}", "0/0", netns=host_ns.name, env=env
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["guest"]["runtime"] == runtime
        assert "eth1" in pid_links(pid)
