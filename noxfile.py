"""Development sessions: ``nox`` runs everything that applies on this machine.

- lint, typecheck, unit: anywhere;
- integration, demo: need root (real namespaces, a private dockerd, OVS,
  dnsmasq).  As non-root they are skipped with a message, except when
  CI=true, where a skip would hide lost coverage, so they fail instead.
- bench: on request only (``nox -s bench``), root; bench/README.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

# Use the interpreter running nox; no version pin that might be missing.
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "unit", "integration", "demo"]

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

# Debian packages the integration tests (and the demo) drive for real.  The
# daemons among them are started privately by the pytest fixtures, never as
# system services.
SYSTEM_PACKAGES = (
    "docker.io",
    "openvswitch-switch",
    "dnsmasq",
    "isc-dhcp-client",
    "udhcpc",
    "dhcpcd5",
    "busybox-static",
    "iputils-arping",
    "iputils-ping",
    "util-linux",
    "containernetworking-plugins",
    "podman",  # Podman guests (a private API service); a real CNI client for pipework-cni
    "lxc",  # LXC guests (its lxc-net service is never started: policy-rc.d below)
    "lxc-templates",  # lxc-create -t busybox, offline
    "iproute2",
    "iptables",
    "nftables",
    "procps",
    "graphviz",  # dot: `pipework graph --format svg|png`
)

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")

_apt_updated = False


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _require_root(session: nox.Session) -> None:
    if os.geteuid() == 0:
        return
    message = f"session {session.name!r} needs root (network namespaces, private dockerd)"
    if _in_ci():
        session.error(f"{message}; CI=true, so this is an error rather than a skip")
    session.skip(message)


def _missing_packages() -> list[str]:
    missing = []
    for package in SYSTEM_PACKAGES:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if status.strip() != "install ok installed":
            missing.append(package)
    return missing


def _ensure_system_packages(session: nox.Session) -> None:
    """Install the missing Debian packages (root, Debian only)."""
    global _apt_updated
    if not (shutil.which("apt-get") and shutil.which("dpkg-query")):
        session.warn("not a Debian system: not installing system packages")
        return
    missing = _missing_packages()
    if not missing:
        return
    session.log(f"installing missing system packages: {' '.join(missing)}")
    # Debian's maintainer scripts would start docker/ovs/dnsmasq as services
    # (and may fail without an init system).  A policy-rc.d answering 101
    # ("action forbidden") stops that; the tests start private daemons.
    own_policy = not POLICY_RC_D.exists()
    if own_policy:
        POLICY_RC_D.write_text("#!/bin/sh\n# temporary, written by noxfile.py\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        if not _apt_updated:
            session.run("apt-get", "update", "-q", external=True, env=env)
            _apt_updated = True
        session.run(
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *missing,
            external=True,
            env=env,
        )
    finally:
        if own_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def _install(session: nox.Session, *groups: str, package: bool = True) -> None:
    requirements: list[str] = []
    for group in groups:
        requirements += nox.project.dependency_groups(PYPROJECT, group)
    if requirements:
        session.install(*requirements)
    if package:
        session.install(".")


@nox.session
def lint(session: nox.Session) -> None:
    # No install of pipework itself: lint-imports reads the source, never
    # imports it, and finds the package in the working directory (nox runs
    # from this file's directory, the checkout), not in site-packages.
    _install(session, "lint", package=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")  # the contracts in pyproject.toml, [tool.importlinter]


@nox.session
def typecheck(session: nox.Session) -> None:
    _install(session, "typecheck")
    session.run("mypy")  # configuration (strict, package pipework) in pyproject.toml


@nox.session
def unit(session: nox.Session) -> None:
    _install(session, "test")
    session.run("pytest", "tests/unit", "-q", *session.posargs)


@nox.session
def integration(session: nox.Session) -> None:
    _require_root(session)
    _ensure_system_packages(session)
    _install(session, "test")
    # The fixtures start and stop their own dockerd/containerd, OVS and
    # dnsmasq; nothing here needs a running system service.
    session.run("pytest", "tests/integration", "-q", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    _require_root(session)
    _ensure_system_packages(session)
    _install(session)
    session.run("pipework", "demo", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Every benchmark: attach_many and docker_many at the issue's sizes (1000
    namespaces, 200 containers), guest_links with 50 and 200 links, the others
    short (bench/README.md)."""
    _require_root(session)
    _ensure_system_packages(session)
    _install(session)
    session.run(
        "python",
        "bench/single_attach.py",
        "--iterations",
        "5",
        "--phase-runs",
        "3",
        "--importtime-runs",
        "2",
    )
    session.run("python", "bench/attach_many.py", "--count", "1000", "--rounds", "3")
    session.run("python", "bench/docker_many.py", "--count", "200", "--rounds", "3")
    session.run("python", "bench/ovs_transport.py", "--ports", "5", "--rounds", "1")
    session.run("python", "bench/cni_add.py", "--iterations", "5", "--warmup", "1")
    session.run("python", "bench/watch_latency.py", "--containers", "5")
    session.run("python", "bench/daemon.py", "--iterations", "5", "--warmup", "1")
    session.run(
        "python",
        "bench/guest_links.py",
        "--iterations",
        "5",
        "--phase-runs",
        "2",
        "--importtime-runs",
        "2",
        "--count",
        "50",
        "--count",
        "200",
    )
