"""Where the ``dhcp`` helper container lives: the guest's own runtime."""

from __future__ import annotations

import io
import tarfile

import pytest

from pipework.backends.addresses.dhcp.helper import (
    HELPER_REPORT,
    HOOK,
    Daemon,
    DhcpHelperProvider,
    hook_archive,
)
from pipework.engine import AddressSpec, AttachSpec, EngineConfig, GuestInfo, UsageError

PODMAN = GuestInfo(
    name="web1", key="c" * 64, runtime="podman", pid=42, api="unix:///run/podman/podman.sock"
)


def test_daemon_of_a_guest_or_a_state(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///d.sock")
    assert Daemon.of(PODMAN.api, PODMAN.runtime) == Daemon(
        "unix:///run/podman/podman.sock", "podman"
    )
    assert Daemon.of(None, "docker") == Daemon.of(None, None) == Daemon("unix:///d.sock")
    assert Daemon("x", "podman").label == "Podman"
    assert Daemon("x").label == "the Docker daemon"
    assert "DOCKER_HOST" in Daemon("x").hint and "Podman service" in Daemon("x", "podman").hint


def test_podman_guests_may_have_a_helper_lxc_guests_may_not(tmp_path):
    helper = DhcpHelperProvider(EngineConfig(run_dir=str(tmp_path)))
    spec = AttachSpec(host="br1", guest="podman:web1", address=AddressSpec.parse("dhcp"))
    helper.validate(spec, PODMAN)
    lxc = GuestInfo(name="web2", key="lxc:/var/lib/lxc/web2", runtime="lxc", pid=43)
    with pytest.raises(UsageError, match="needs a Docker or Podman guest; web2 is not one"):
        helper.validate(spec, lxc)


def test_the_hook_comes_in_a_directory_of_its_own():
    with tarfile.open(fileobj=io.BytesIO(hook_archive())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["pipework"].isdir() and members["pipework"].mode == 0o755
    assert members[HOOK.lstrip("/")].mode == 0o755
    assert HELPER_REPORT.startswith("/pipework/")
