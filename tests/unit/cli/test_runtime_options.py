"""``--podman-host`` and ``--lxcpath``/``-P`` (any position), and the runtimes
``pipework plugins`` shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipework.cli.options import GlobalOptions, read, split_runtime_options
from pipework.engine import UsageError


def take_runtime_options(args: list[str], env: dict[str, str]) -> list[str]:
    """The words left once the runtime options are out; ``env`` gets the
    variables they set, as ``GlobalOptions.export()`` sets them for a run."""
    rest, values = split_runtime_options(args)
    GlobalOptions(podman_host=values.get("podman_host"), lxcpath=values.get("lxcpath")).export(env)
    return rest


def test_options_anywhere_become_the_environment():
    env: dict[str, str] = {}
    rest = take_runtime_options(
        ["br1", "--podman-host", "unix:///p.sock", "web1", "-P", "/srv/lxc", "0/0"], env
    )
    assert rest == ["br1", "web1", "0/0"]
    assert env == {"CONTAINER_HOST": "unix:///p.sock", "PIPEWORK_LXC_PATH": "/srv/lxc"}


@pytest.mark.parametrize(
    "words",
    [["--lxcpath=/srv/lxc"], ["--lxcpath", "/srv/lxc"], ["-P/srv/lxc"], ["-P", "/srv/lxc"]],
)
def test_lxcpath_spellings(words):
    env: dict[str, str] = {}
    assert take_runtime_options(["attach", *words, "br1", "lxc:web1"], env) == [
        "attach",
        "br1",
        "lxc:web1",
    ]
    assert env == {"PIPEWORK_LXC_PATH": "/srv/lxc"}


def test_the_one_parse_carries_them_to_every_path():
    for line, path in [
        (["-P", "/srv/lxc", "br1", "lxc:web1", "0/0"], "legacy"),
        (["attach", "br1", "lxc:web1", "--lxcpath=/srv/lxc"], "app"),
        (["--json", "tc", "-P/srv/lxc", "lxc:web1", "qdisc", "show"], "passthrough"),
        (["--wait", "-P", "/srv/lxc"], "wait"),
    ]:
        invocation = read(line)
        assert invocation.path == path
        assert invocation.options.lxcpath == "/srv/lxc"
        assert "/srv/lxc" not in invocation.words and "-P" not in invocation.words
        assert invocation.options.environment() == {"PIPEWORK_LXC_PATH": "/srv/lxc"}


def test_passthrough_words_after_the_guest_are_left_alone():
    env: dict[str, str] = {}
    words = ["--json", "tc", "-P", "/srv/lxc", "lxc:web1", "qdisc", "show", "-P", "x"]
    assert take_runtime_options(words, env) == [
        "--json", "tc", "lxc:web1", "qdisc", "show", "-P", "x",
    ]  # fmt: skip
    assert env == {"PIPEWORK_LXC_PATH": "/srv/lxc"}


def test_words_after_a_double_dash_are_left_alone():
    env: dict[str, str] = {}
    words = ["route", "web1", "--", "-P", "x"]
    assert take_runtime_options(words, env) == words and env == {}


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["br1", "web1", "0/0", "--podman-host"], "option --podman-host needs a value"),
        (["--podman-host="], "option --podman-host needs a value"),
        (["-P"], "option -P needs a value (e.g. -P /var/lib/lxc)"),
        (["-P", "/a", "--lxcpath", "/b"], "option --lxcpath is given twice"),
    ],
)
def test_bad_options(words, message):
    with pytest.raises(UsageError) as failure:
        take_runtime_options(words, {})
    assert str(failure.value).startswith(message)


def pipework(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("CONTAINER_HOST", "DOCKER_HOST")}
    return subprocess.run(
        [sys.executable, "-m", "pipework", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **env},
    )


def test_cli_refuses_a_missing_value_in_one_line():
    result = pipework("br1", "web1", "0/0", "--lxcpath")
    assert result.returncode == 2
    assert (
        result.stderr == "pipework: option --lxcpath needs a value (e.g. --lxcpath /var/lib/lxc)\n"
    )


def test_plugins_shows_the_runtimes_in_the_order_bare_names_are_tried(tmp_path):
    sock = tmp_path / "podman.sock"
    sock.touch()
    result = pipework(
        "plugins", "--json", "--podman-host", f"unix://{sock}", DOCKER_HOST=f"unix://{tmp_path}/d"
    )
    assert result.returncode == 0, result.stderr
    runtimes = json.loads(result.stdout)["runtimes"]
    assert [r["name"] for r in runtimes] == ["docker", "podman", "lxc"]
    docker, podman, _ = runtimes
    assert docker == {
        "name": "docker",
        "detected": False,
        "detail": f"no socket at {tmp_path}/d (set DOCKER_HOST to its socket)",
    }
    assert podman == {"name": "podman", "detected": True, "detail": f"unix://{sock}"}
    text = pipework("plugins", "-P", str(tmp_path)).stdout
    assert "runtimes (bare names are tried in this order):" in text
    assert f"containers in {tmp_path}" in text or "lxc        not found" in text
