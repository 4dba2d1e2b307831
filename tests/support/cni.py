"""Running CNI plugins the way a container runtime does: exec with the
``CNI_*`` environment and the configuration on stdin, inside the namespace
that plays the host (a test-owned one).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import infra

REFERENCE_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


def plugin_command() -> list[str]:
    """``pipework-cni`` as installed next to this interpreter (nox, a venv),
    else the entry point run by this interpreter (a source checkout)."""
    script = Path(sys.executable).parent / "pipework-cni"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from pipework.cni.main import main; main()"]


def reference_dir() -> str | None:
    """Where the reference plugins are (Debian: containernetworking-plugins)."""
    for directory in REFERENCE_DIRS:
        if (Path(directory) / "bridge").exists():
            return directory
    return None


@dataclass
class Reply:
    code: int
    data: Any
    stderr: str

    @property
    def error(self) -> dict[str, Any]:
        assert self.code != 0, f"expected a failure, got {self.data}"
        assert isinstance(self.data, dict), f"no error object on stdout: {self.stderr}"
        return self.data


@dataclass
class CniRunner:
    """Calls plugins with one container's environment, in ``host`` (a NetNS)."""

    host: infra.NetNS
    cni_path: str
    env: dict[str, str] = field(default_factory=dict)

    def call(
        self,
        command: str,
        conf: dict[str, Any] | bytes,
        *,
        plugin: str = "pipework",
        netns: str = "",
        container_id: str = "",
        ifname: str = "eth0",
        args: str = "",
        extra_env: dict[str, str] | None = None,
    ) -> Reply:
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": self.cni_path,
            **{k: v for k, v in os.environ.items() if k.startswith("PIPEWORK_")},
            **self.env,
            **(extra_env or {}),
        }
        argv = plugin_command() if plugin == "pipework" else [f"{reference_dir()}/{plugin}"]
        proc = infra.run(
            ["ip", "netns", "exec", self.host.name, "env", "-i", *_pairs(env), *argv],
            check=False,
            input=stdin.decode(),
            cwd=infra.REPO_ROOT,
        )
        out = proc.stdout.strip()
        data = json.loads(out) if out else None
        return Reply(proc.returncode, data, proc.stderr)


def _pairs(env: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in env.items()]


def plugin_dir(tmp: Path) -> Path:
    """A CNI plugin directory holding ``pipework`` (a wrapper that execs
    pipework-cni) and the reference plugins, as a runtime's plugin dir would."""
    directory = tmp / "plugins"
    directory.mkdir()
    command = plugin_command()
    if len(command) == 1:  # the console script: installed as docs/CNI.md says
        (directory / "pipework").symlink_to(command[0])
    else:
        wrapper = directory / "pipework"
        wrapper.write_text(f'#!/bin/sh\nexec {" ".join(command[:2])} "{command[2]}"\n')
        wrapper.chmod(0o755)
    reference = reference_dir()
    if reference is not None:
        for plugin in Path(reference).iterdir():
            (directory / plugin.name).symlink_to(plugin)
    return directory


def links(ns: infra.NetNS) -> dict[str, dict[str, Any]]:
    """The namespace's interfaces by name (``ip -j -d link``)."""
    out = ns.exec("ip", "-j", "-d", "link", "show").stdout
    return {link["ifname"]: link for link in json.loads(out or "[]")}


def addresses(ns: infra.NetNS, ifname: str) -> list[str]:
    out = ns.exec("ip", "-j", "addr", "show", "dev", ifname).stdout
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(out or "[]")
        for a in link.get("addr_info", [])
        if a.get("scope") == "global"
    ]


def have_reference_plugins(*names: str) -> bool:
    directory = reference_dir()
    return directory is not None and all((Path(directory) / n).exists() for n in names)
