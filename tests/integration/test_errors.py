"""Every failure: one line on stderr, its documented exit code, nothing left."""

from __future__ import annotations

import os
import shutil

import pytest
from support import infra, kernel
from support.checks import links, only_loopback

pytestmark = pytest.mark.integration


def one_line(result, code, fragment):
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pipework: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_no_such_container(host_ns, docker_daemon, run_pipework):
    result = run_pipework("brpwte", "pwt-nosuchcontainer", "198.18.40.2/24", netns=host_ns.name)
    one_line(result, 3, "no such container: pwt-nosuchcontainer")
    assert only_loopback(host_ns)


def test_container_not_running(host_ns, make_container, run_pipework):
    stopped = make_container(start=False)
    result = run_pipework("brpwte", stopped.name, "198.18.40.2/24", netns=host_ns.name)
    one_line(result, 4, f"container {stopped.name} is not running")
    assert only_loopback(host_ns)


def test_docker_daemon_unreachable(host_ns, run_pipework, tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/nothing.sock")
    result = run_pipework("brpwte", "web1", "198.18.40.2/24", netns=host_ns.name, env=env)
    one_line(result, 5, "cannot reach the Docker daemon")
    assert only_loopback(host_ns)


def test_no_such_namespace(host_ns, run_pipework):
    result = run_pipework("brpwte", "netns:pwt-nope", "198.18.40.2/24", netns=host_ns.name)
    one_line(result, 3, "no network namespace named pwt-nope")
    assert only_loopback(host_ns)


def test_no_such_process(host_ns, run_pipework):
    result = run_pipework("brpwte", "pid:999999999", "0/0", netns=host_ns.name)
    one_line(result, 3, "no process with PID 999999999")


def test_the_host_itself_is_no_guest(host_ns, run_pipework):
    """Its guest side would be in the host, where gc takes pipework's
    interfaces for host sides whose guest is gone."""
    result = run_pipework("brpwte", f"netns:{host_ns.name}", "0/0", netns=host_ns.name)
    one_line(result, 2, "is in the host's own network namespace")
    assert only_loopback(host_ns)


def test_a_file_that_is_not_a_namespace(host_ns, run_pipework, tmp_path):
    path = tmp_path / "plain"
    path.write_text("")
    result = run_pipework("brpwte", str(path), "0/0", netns=host_ns.name)
    one_line(result, 2, "is not a network namespace")


def test_unknown_host_interface(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    result = run_pipework("pwtwhat0", f"netns:{guest.name}", "0/0", netns=host_ns.name)
    one_line(result, 6, "I do not know how to set up interface pwtwhat0")
    assert "known kinds: bridge" in result.stderr
    assert only_loopback(host_ns) and only_loopback(guest)


def test_host_interface_that_is_not_a_bridge_with_kind_bridge(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    host_ns.exec("ip", "link", "add", "pwtnic0", "type", "veth", "peer", "name", "pwtnic1")
    result = run_pipework(
        "pwtnic0", f"netns:{guest.name}", "0/0", "--kind", "bridge", netns=host_ns.name
    )
    one_line(result, 6, "pwtnic0 exists but is not a Linux bridge")
    assert set(links(host_ns)) == {"lo", "pwtnic0", "pwtnic1"} and only_loopback(guest)


def test_unknown_kind(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    result = run_pipework("br0", f"netns:{guest.name}", "0/0", "--kind", "warp", netns=host_ns.name)
    one_line(result, 8, "no link backend named 'warp'")


def test_unknown_address_provider(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    result = run_pipework("brpwte", f"netns:{guest.name}", "carrierpigeon", netns=host_ns.name)
    one_line(result, 8, "no address provider handles 'carrierpigeon'")
    assert only_loopback(host_ns) and only_loopback(guest)


@pytest.mark.parametrize("tag", ["@0", "@4095", "@8001"])
def test_bad_vlan_ids(host_ns, make_netns, run_pipework, tag):
    guest = make_netns("g")
    result = run_pipework("brpwte", f"netns:{guest.name}", "0/0", tag, netns=host_ns.name)
    one_line(result, 2, "VLAN ID" if tag != "@0" else "neither a VLAN ID")
    assert only_loopback(host_ns) and only_loopback(guest)


def test_bridge_vlan_without_kernel_support_leaves_nothing(host_ns, make_netns, run_pipework):
    if kernel.supports("bridge VLAN filtering"):
        pytest.skip("this kernel has bridge VLAN filtering: test_links covers it for real")
    guest = make_netns("g")
    result = run_pipework("brpwte", f"netns:{guest.name}", "0/0", "@10", netns=host_ns.name)
    one_line(result, 8, "this kernel has no bridge VLAN filtering support")
    assert only_loopback(host_ns) and only_loopback(guest)


def test_host_side_name_taken(host_ns, make_netns, run_pipework):
    a, b = make_netns("a"), make_netns("b")
    assert (
        run_pipework(
            "brpwte", "-l", "pwttaken", f"netns:{a.name}", "0/0", netns=host_ns.name
        ).returncode
        == 0
    )
    result = run_pipework("brpwte", "-l", "pwttaken", f"netns:{b.name}", "0/0", netns=host_ns.name)
    one_line(result, 6, "host-side interface name pwttaken is already taken")
    assert only_loopback(b)


def test_mtu_larger_than_allowed(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    result = run_pipework(
        "brpwte", f"netns:{guest.name}", "0/0", "--mtu", "65535", netns=host_ns.name
    )
    assert result.returncode == 0, result.stderr  # bridges allow 65535
    assert links(guest)["eth1"]["mtu"] == 65535


def test_not_root(host_ns, make_netns, run_pipework):
    setpriv = shutil.which("setpriv")
    infra.require(setpriv, "setpriv (util-linux) is needed to drop privileges")
    guest = make_netns("g")
    result = infra.run(
        [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            os.sys.executable,
            "-m",
            "pipework",
            "brpwte",
            f"netns:{guest.name}",
            "0/0",
        ],
        check=False,
        cwd=infra.REPO_ROOT,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    one_line(result, 77, "pipework needs root")
    assert only_loopback(guest) and only_loopback(host_ns)


def test_refused_input_leaves_an_existing_attachment_alone(host_ns, make_netns, run_pipework):
    guest = make_netns("g")
    assert (
        run_pipework(
            "brpwte", f"netns:{guest.name}", "198.18.41.2/24", netns=host_ns.name
        ).returncode
        == 0
    )
    result = run_pipework(
        "brpwte", f"netns:{guest.name}", "0/0", "--mode", "private", "--force", netns=host_ns.name
    )
    one_line(result, 2, "the bridge backend has no option 'mode'")
    assert "198.18.41.2/24" in guest.exec("ip", "addr", "show", "eth1").stdout


def test_version_anywhere(run_pipework):
    result = run_pipework("br1", "web1", "0/0", "--version")
    assert result.returncode == 0 and result.stdout.startswith("pipework ")
