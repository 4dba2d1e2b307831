"""The LXC resolver's logic: references, LXC paths, lxc-info's answers.

lxc-info is replaced by a small script on PATH that records its arguments
and answers as told; tests/integration/test_lxc.py drives the real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from pipework.backends.guests.lxc import (
    LxcResolver,
    configured_lxcpath,
    container_dir,
    parse_info,
    split_ref,
)
from pipework.engine import (
    ExternalCommandError,
    GuestNotFoundError,
    GuestNotRunningError,
    RuntimeUnavailableError,
    UnsupportedError,
    UsageError,
)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("lxc:web1", (None, "web1")),
        ("web1", (None, "web1")),
        ("lxc:/srv/lxc/web1", ("/srv/lxc", "web1")),
        ("lxc:/srv/lxc/web1/", ("/srv/lxc", "web1")),
        ("lxc:/web1", ("/", "web1")),
    ],
)
def test_split_ref(ref, expected):
    assert split_ref(ref) == expected


@pytest.mark.parametrize("ref", ["lxc:", "lxc:a/b", "lxc:..", "lxc:/srv/lxc/.."])
def test_split_ref_refuses(ref):
    with pytest.raises(UsageError, match="does not name an LXC container"):
        split_ref(ref)


def test_parse_info():
    assert parse_info("State:          RUNNING\nPID:            23239\n") == ("RUNNING", 23239)
    assert parse_info("State:          STOPPED\n") == ("STOPPED", None)
    assert parse_info("") == ("UNKNOWN", None)


def test_lxcpath_from_the_environment_then_lxc_conf_then_the_default(tmp_path, monkeypatch):
    conf = tmp_path / "lxc.conf"
    monkeypatch.delenv("PIPEWORK_LXC_PATH", raising=False)
    assert configured_lxcpath(str(conf)) == "/var/lib/lxc"  # no lxc.conf
    conf.write_text("# a comment\nlxc.default_config = /x\nlxc.lxcpath = /srv/lxc\n")
    assert configured_lxcpath(str(conf)) == "/srv/lxc"
    monkeypatch.setenv("PIPEWORK_LXC_PATH", str(tmp_path / "mine"))
    assert configured_lxcpath(str(conf)) == str(tmp_path / "mine")


def make_container(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "config").write_text("lxc.net.0.type = empty\n")
    return root / name


def test_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPEWORK_LXC_PATH", str(tmp_path))
    make_container(tmp_path, "web1")
    (tmp_path / "empty").mkdir()
    resolver = LxcResolver(timeout=5)
    assert resolver.claim("lxc:anything") == 100
    assert resolver.claim("web1") == 2  # a container here: a guess
    assert resolver.claim("empty") == 0  # a directory without config is not one
    assert resolver.claim("nope") == 0
    assert resolver.claim("docker:web1") == resolver.claim("/run/netns/x") == 0
    assert container_dir(str(tmp_path), "web1") == (tmp_path / "web1").resolve()


FAKE = """#!/bin/sh
printf '%s\\n' "$@" > "{log}"
{body}
"""


@pytest.fixture
def fake_lxc_info(tmp_path, monkeypatch):
    """``fake_lxc_info(body)`` puts an lxc-info running ``body`` first on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "argv"

    def install(body: str) -> Path:
        program = bindir / "lxc-info"
        program.write_text(FAKE.format(log=log, body=body))
        program.chmod(0o755)
        return log

    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return install


def resolve(ref: str, timeout: float = 5):
    return anyio.run(LxcResolver(timeout=timeout).resolve, ref)


def test_a_running_container(tmp_path, fake_lxc_info):
    root = tmp_path / "lxc"
    directory = make_container(root, "web1")
    log = fake_lxc_info(f"echo 'State:          RUNNING'; echo 'PID:            {os.getpid()}'")
    found = resolve(f"lxc:{root}/web1")
    try:
        assert found.info.name == "web1" and found.info.runtime == "lxc"
        assert found.info.key == f"lxc:{directory.resolve()}"
        assert found.info.pid == os.getpid() and found.info.api is None
    finally:
        found.close()
    assert log.read_text().split() == ["-P", str(root), "-n", "web1", "-s", "-p"]


def test_a_stopped_container(tmp_path, fake_lxc_info):
    root = tmp_path / "lxc"
    make_container(root, "web1")
    fake_lxc_info("echo 'State:          STOPPED'")
    with pytest.raises(GuestNotRunningError) as failure:
        resolve(f"lxc:{root}/web1")
    assert str(failure.value) == (
        f"LXC container web1 is not running (stopped) (start it with `lxc-start -n web1 -P {root}`)"
    )


def test_no_config_means_not_found_without_asking_lxc_info(tmp_path, fake_lxc_info):
    log = fake_lxc_info("exit 0")
    with pytest.raises(GuestNotFoundError, match=f"no LXC container named web1 in {tmp_path}"):
        resolve(f"lxc:{tmp_path}/web1")
    assert not log.exists()


def test_lxc_info_says_it_does_not_exist(tmp_path, fake_lxc_info):
    root = tmp_path / "lxc"
    make_container(root, "web1")
    fake_lxc_info('echo "web1 doesn\'t exist" >&2; exit 1')
    with pytest.raises(GuestNotFoundError, match="see `lxc-ls -f -P"):
        resolve(f"lxc:{root}/web1")


def test_lxc_info_fails(tmp_path, fake_lxc_info):
    root = tmp_path / "lxc"
    make_container(root, "web1")
    fake_lxc_info("echo 'first'; echo 'Failed to load config for web1' >&2; exit 1")
    with pytest.raises(ExternalCommandError) as failure:
        resolve(f"lxc:{root}/web1")
    assert (
        str(failure.value)
        == "lxc-info failed for LXC container web1: Failed to load config for web1"
    )
    assert failure.value.exit_code == 9


def test_lxc_info_that_hangs(tmp_path, fake_lxc_info):
    root = tmp_path / "lxc"
    make_container(root, "web1")
    fake_lxc_info("exec sleep 30")
    with pytest.raises(RuntimeUnavailableError, match=r"did not answer about web1 within 0\.3 s"):
        resolve(f"lxc:{root}/web1", timeout=0.3)


def test_lxc_not_installed(tmp_path, monkeypatch):
    make_container(tmp_path, "web1")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(UnsupportedError) as failure:
        resolve(f"lxc:{tmp_path}/web1")
    assert "install the Debian package lxc" in str(failure.value)
    assert failure.value.exit_code == 8
    assert LxcResolver(timeout=1).detect()[0] is False


def test_detect(tmp_path, fake_lxc_info, monkeypatch):
    fake_lxc_info("exit 0")
    monkeypatch.setenv("PIPEWORK_LXC_PATH", str(tmp_path))
    detected, detail = LxcResolver(timeout=1).detect()
    assert detected and detail.endswith(f"lxc-info; containers in {tmp_path}")
