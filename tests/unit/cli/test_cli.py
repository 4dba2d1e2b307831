"""CLI behaviour that needs neither root nor a kernel: parsing, help, errors."""

import subprocess
import sys

import pytest


def pipework(*args):
    return subprocess.run(
        [sys.executable, "-m", "pipework", *args], capture_output=True, text=True, timeout=60
    )


def test_version():
    result = pipework("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("pipework ")


def test_help_shows_the_legacy_grammar():
    result = pipework("--help")
    assert result.returncode == 0
    assert "HOSTIF" in result.stdout and "attach" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pluginss"], 2, "no such command 'pluginss' (did you mean 'plugins'?)"),
        (["atach", "br1", "web1", "--ip", "0/0"], 2, "did you mean 'attach'?"),
        (["br1", "web1", "198.18.0.2"], 2, "Maybe you meant 198.18.0.2/24 ?"),
        (["br1", "web1"], 2, "missing IPSPEC"),
        (["br1", "web1", "0/0", "@0"], 2, "@0 is neither a VLAN ID"),
        (["br1", "web1", "0/0", "@zz"], 2, "@zz is neither a VLAN ID"),
        (["br1", "web1", "0/0", "-o", "mode"], 2, "is not KEY=VALUE"),
        (["br1", "web1", "0/0", "--pkey", "0"], 2, "partition key"),
        (["br1", "web1", "0/0", "01:00:5e:00:00:01"], 2, "multicast"),
        (["br1", "-l", "thisnameistoolong", "web1", "0/0"], 2, "at most 15"),
        (["attach", "br1", "web1", "--ip", "198.18.0.2"], 2, "netmask"),
        (["attach", "br1", "web1", "--vlan", "0"], 2, "VLAN ID 0"),
        (["attach", "br1"], 2, "Missing argument"),
        (["--jsn", "plugins"], 2, "No such option"),
        (["shim", "eth2"], 2, "say which address the host takes on the shim"),
        (["shim", "eth2", "banana"], 2, "shim address 'banana' is not ADDR/PREFIX"),
        (["shim", "eth2", "198.18.42.254/32", "--route", "x"], 2, "route 'x'"),
        (["shim", "eth2", "198.18.42.254/32", "--remove"], 2, "--remove takes no ADDR/PREFIX"),
        (["shim", "eth2", "--remove", "--force"], 2, "--remove takes no --force"),
        (["shim", "eth2", "198.18.42.254/32", "--mtu", "x"], 2, "Invalid value for '--mtu'"),
    ],
)
def test_bad_input_is_one_line_with_its_exit_code(args, code, message):
    result = pipework(*args)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pipework: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_plugins_lists_builtins_with_their_distribution():
    result = pipework("plugins")
    assert result.returncode == 0
    for name in ("bridge", "static", "docker", "netns", "pid"):
        assert name in result.stdout
    assert "[pipework " in result.stdout


def test_plugins_json():
    import json

    result = pipework("plugins", "--json")
    data = json.loads(result.stdout)
    kinds = {b for p in data["plugins"] for b in p["link_backends"]}
    assert "bridge" in kinds
