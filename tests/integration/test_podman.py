"""Podman guests, against a private rootful ``podman system service``.

The CLI finds Podman through ``--podman-host`` (or CONTAINER_HOST); the
``dhcp`` helper of a Podman guest runs under that same Podman.
"""

from __future__ import annotations

import json
import os

import pytest
from support import infra
from support.checks import gc_context, links, one_line_error, pid_links
from support.dhcp import DNS_SERVER
from support.podman_service import PodmanService

from pipework import AddressSpec, AttachSpec, Engine

pytestmark = pytest.mark.integration


def dhcp_helpers(service: PodmanService) -> list[str]:
    return service.container_ids("label=pipework.helper=dhcp")


def test_static_address_and_ping(host_ns, make_netns, make_podman_container, run_pipework):
    web = make_podman_container()
    peer = make_netns()
    url = web.service.url
    result = run_pipework(
        "--podman-host", url, "--json", "brpwp0", f"podman:{web.name}", "198.18.60.2/24",
        netns=host_ns.name,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["guest"] == {
        "name": web.name, "key": web.id, "runtime": "podman", "pid": web.pid, "api": url,
    }  # fmt: skip
    assert data["status"] == "created" and data["addresses"] == ["198.18.60.2/24"]
    joined = run_pipework("brpwp0", f"netns:{peer.name}", "198.18.60.3/24", netns=host_ns.name)
    assert joined.returncode == 0, joined.stderr
    assert infra.ping(peer, "198.18.60.2")
    said = web.service.cli("exec", web.id, "ping", "-c", "1", "-W", "2", "198.18.60.3", check=False)
    assert said.returncode == 0, said.stdout + said.stderr
    # The same request again, through CONTAINER_HOST this time: unchanged.
    env = dict(os.environ, CONTAINER_HOST=url)
    again = run_pipework(
        "brpwp0", f"podman:{web.name}", "198.18.60.2/24", netns=host_ns.name, env=env
    )
    assert again.returncode == 0 and again.stdout.startswith("unchanged: eth1 in " + web.name)


def test_bare_name_found_in_podman_only(
    host_ns, docker_daemon, make_podman_container, run_pipework
):
    web = make_podman_container()
    env = dict(os.environ, CONTAINER_HOST=web.service.url)
    result = run_pipework("--json", "brpwp1", web.name, "0/0", netns=host_ns.name, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["guest"]["runtime"] == "podman"
    assert "eth1" in pid_links(web.pid)


def test_bare_name_nowhere_names_the_runtimes_asked(
    host_ns, docker_daemon, podman_service, run_pipework
):
    env = dict(os.environ, CONTAINER_HOST=podman_service.url)
    plugins = run_pipework("plugins", "--json", env=env)
    detected = {r["name"]: r["detected"] for r in json.loads(plugins.stdout)["runtimes"]}
    assert detected["docker"] and detected["podman"]
    before = set(links(host_ns))
    result = run_pipework("brpwp5", "pwt-nowhere", "0/0", netns=host_ns.name, env=env)
    one_line_error(
        result, 3,
        "no guest named pwt-nowhere in docker or podman (see `docker ps -a`; "
        "for a network namespace write netns:NAME; see `podman ps -a`)",
    )  # fmt: skip
    assert set(links(host_ns)) == before


def test_not_running_missing_and_unreachable(
    host_ns, make_podman_container, run_pipework, tmp_path
):
    stopped = make_podman_container(start=False)
    url = stopped.service.url
    before = set(links(host_ns))
    result = run_pipework(
        "--podman-host", url, "brpwp2", f"podman:{stopped.name}", "0/0", netns=host_ns.name
    )
    one_line_error(
        result, 4, f"container {stopped.name} is not running (start it with `podman start"
    )
    result = run_pipework(
        "--podman-host", url, "brpwp2", "podman:pwt-nope", "0/0", netns=host_ns.name
    )
    one_line_error(result, 3, "no such container: pwt-nope (see `podman ps -a`)")
    nowhere = f"unix://{tmp_path}/nothing.sock"
    result = run_pipework(
        "--podman-host", nowhere, "brpwp2", "podman:web", "0/0", netns=host_ns.name
    )
    one_line_error(result, 5, f"cannot reach Podman at {nowhere}")
    result = run_pipework(
        "--podman-host", "ssh://root@host/run/podman/podman.sock", "brpwp2", "podman:web", "0/0",
        netns=host_ns.name,
    )  # fmt: skip
    one_line_error(
        result, 8, "CONTAINER_HOST=ssh://root@host/run/podman/podman.sock is not supported"
    )
    result = run_pipework("brpwp2", "podman:web", "0/0", "--podman-host", netns=host_ns.name)
    one_line_error(result, 2, "option --podman-host needs a value")
    assert set(links(host_ns)) == before


def test_no_podman_socket_anywhere(host_ns, run_pipework):
    env = {k: v for k, v in os.environ.items() if k != "CONTAINER_HOST"}
    if any(os.path.exists(p) for p in ("/run/podman/podman.sock", "/var/run/podman/podman.sock")):
        pytest.skip("a system Podman socket exists here")
    result = run_pipework("brpwp3", "podman:web", "0/0", netns=host_ns.name, env=env)
    one_line_error(result, 5, "cannot find Podman's API socket (looked at /run/podman/podman.sock")


@pytest.mark.anyio
@pytest.mark.usefixtures("host_files_unchanged")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_dhcp_helper_runs_under_podman(
    host_ns, make_podman_container, dhcp_server, monkeypatch, docker_daemon, dhcp_run_dir
):
    server = dhcp_server()
    web = make_podman_container()
    service = web.service
    monkeypatch.setenv("CONTAINER_HOST", service.url)

    def spec(ipspec: str) -> AttachSpec:
        return AttachSpec(
            host="brpwtd", guest=f"podman:{web.name}", address=AddressSpec.parse(ipspec)
        )

    async with Engine(host_netns=host_ns.path) as engine:
        one_shot = await engine.attach(spec("dhcp"))
        assert server.in_pool(one_shot.addresses[0]) and one_shot.dns == (DNS_SERVER,)
        assert server.leases()[one_shot.mac].hostname == web.name
        assert dhcp_helpers(service) == []  # one-shot: gone
        await engine.detach(f"podman:{web.name}")
        kept = await engine.attach(spec("dhcp:-f"))
        (helper,) = dhcp_helpers(service)
        details = service.inspect(helper)
        assert details["HostConfig"]["NetworkMode"] == f"container:{web.id}"
        assert details["State"]["Running"]
        assert docker_daemon.cli("ps", "-aq", "--filter", "label=pipework.helper").stdout == ""
        again = await engine.attach(spec("dhcp:-f"))
        assert again.status == "unchanged" and again.addresses == kept.addresses
        await engine.detach(f"podman:{web.name}")
        assert dhcp_helpers(service) == [] and pid_links(web.pid) == {"lo"}
        # gc finds a kept helper in Podman (its state names the API) once
        # its guest is gone.
        await engine.attach(spec("dhcp:-f"))
        provider = next(p for p in engine.providers if p.name == "dhcp")
        assert await provider.collect_garbage(gc_context(engine.host, dry_run=True)) == []
        service.cli("kill", web.id)
        listed = await provider.collect_garbage(gc_context(engine.host, dry_run=True))
        assert any(line.endswith(f"of {web.name}") for line in listed), listed
        assert len(dhcp_helpers(service)) == 1  # a dry run removes nothing
        await provider.collect_garbage(gc_context(engine.host))
    assert dhcp_helpers(service) == []
    assert not list((dhcp_run_dir / "dhcp").glob("*"))


def test_same_name_in_docker_and_podman(
    host_ns, make_container, make_podman_container, run_pipework
):
    name = infra.unique_name("amb")
    in_docker = make_container(name)
    in_podman = make_podman_container(name)
    env = dict(os.environ, CONTAINER_HOST=in_podman.service.url)
    before = set(links(host_ns))
    result = run_pipework("brpwp4", name, "198.18.61.2/24", netns=host_ns.name, env=env)
    one_line_error(
        result, 2, f"{name} names a guest in several runtimes: docker:{name}, podman:{name}"
    )
    assert set(links(host_ns)) == before
    assert pid_links(in_docker.pid) == {"lo"} and pid_links(in_podman.pid) == {"lo"}
    for prefix, pid in (("docker", in_docker.pid), ("podman", in_podman.pid)):
        result = run_pipework(
            "--json", "brpwp4", f"{prefix}:{name}", "0/0", netns=host_ns.name, env=env
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["guest"]["runtime"] == prefix
        assert "eth1" in pid_links(pid)
