"""A third-party backend package, installed for real, used end to end."""

from __future__ import annotations

import os
import sys

import pytest
from support import infra
from support.checks import links, only_loopback

pytestmark = pytest.mark.integration

PACKAGE = infra.REPO_ROOT / "tests" / "plugins" / "pipework-p2p"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """Install the example package into a private target directory."""
    target = tmp_path_factory.mktemp("plugin-site")
    result = infra.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PACKAGE),
        ],
        check=False,
        timeout=300,
    )
    infra.require(result.returncode == 0, f"cannot install the example plugin: {result.stderr}")
    path = os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return dict(os.environ, PYTHONPATH=path)


def test_plugins_lists_it_with_its_distribution(run_pipework, plugin_env):
    result = run_pipework("plugins", env=plugin_env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("p2p"))
    assert "link:p2p" in line and "[pipework-p2p 1.0.0]" in line


def test_attach_and_detach_through_the_plugin(host_ns, make_netns, run_pipework, plugin_env):
    guest = make_netns("g")
    result = run_pipework(
        "p2pweb",
        f"netns:{guest.name}",
        "198.18.60.2/24",
        "-l",
        "pwtp2p0",
        netns=host_ns.name,
        env=plugin_env,
    )
    assert result.returncode == 0, result.stderr
    assert "on p2p p2pweb" in result.stdout
    host_side = links(host_ns)["pwtp2p0"]
    assert host_side["ifalias"].startswith("pipework ") and "kind=p2p" in host_side["ifalias"]
    # The host end is a plain routed interface: give it the other address.
    host_ns.exec("ip", "addr", "add", "198.18.60.1/24", "dev", "pwtp2p0")
    assert infra.ping(guest, "198.18.60.1")
    # Without the plugin installed the same request is not understood.
    plain = run_pipework("p2pother", f"netns:{guest.name}", "0/0", "-i", "eth9", netns=host_ns.name)
    assert (
        plain.returncode == 6 and "I do not know how to set up interface p2pother" in plain.stderr
    )
    # Detach goes through the plugin's detach as well.
    code = (
        "import anyio, pipework\n"
        "async def main():\n"
        f"    async with pipework.Engine(host_netns={host_ns.path!r}) as e:\n"
        f"        print(len(await e.detach('netns:{guest.name}')))\n"
        "anyio.run(main)\n"
    )
    detached = infra.run([sys.executable, "-c", code], env=plugin_env, cwd=infra.REPO_ROOT)
    assert detached.stdout.strip() == "1"
    assert only_loopback(guest) and "pwtp2p0" not in links(host_ns)


def test_a_broken_plugin_is_named_in_one_line(run_pipework, plugin_env, tmp_path):
    """A plugin that raises on import stops every command with its name and distribution."""
    broken = tmp_path / "site"
    dist = broken / "pipework_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pipework-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pipework]\nbroken = pipework_broken\n")
    (broken / "pipework_broken.py").write_text("raise RuntimeError('boom')\n")
    env = dict(plugin_env, PYTHONPATH=f"{broken}{os.pathsep}{plugin_env['PYTHONPATH']}")
    result = run_pipework("plugins", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "pipework: plugin broken from pipework-broken 0.1 failed to load: boom "
        "(fix or uninstall pipework-broken)"
    )
