"""Small checks shared by the integration tests."""

from __future__ import annotations

import json
import subprocess

from support import infra


def links(ns: infra.NetNS | infra.Container) -> dict[str, dict]:
    """Interfaces in a namespace or container, by name, from ``ip -j -d link``."""
    if isinstance(ns, infra.Container):
        out = infra.run(["nsenter", "-t", str(ns.pid), "-n", "ip", "-j", "-d", "link"]).stdout
    else:
        out = ns.exec("ip", "-j", "-d", "link").stdout
    return {entry["ifname"]: entry for entry in json.loads(out)}


def addresses(ns: infra.NetNS, ifname: str) -> list[str]:
    data = json.loads(ns.exec("ip", "-j", "addr", "show", "dev", ifname).stdout)
    return [
        f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"] if a["scope"] == "global"
    ]


def routes(ns: infra.NetNS, *family: str) -> list[dict]:
    return json.loads(ns.exec("ip", "-j", *family, "route").stdout)


def forward_rules(ns: infra.NetNS) -> list[str]:
    """pipework's rules in the FORWARD chain of ``ns`` (``iptables -S``)."""
    return [
        line
        for line in ns.exec("iptables", "-S", "FORWARD").stdout.splitlines()
        if "pipework" in line
    ]


def only_loopback(ns: infra.NetNS | infra.Container) -> bool:
    return set(links(ns)) == {"lo"}


def pid_links(pid: int) -> set[str]:
    """Interface names in the network namespace of process ``pid``."""
    out = infra.run(["nsenter", "-t", str(pid), "-n", "ip", "-j", "link"]).stdout
    return {entry["ifname"] for entry in json.loads(out)}


def one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    """The CLI failed with ``code`` and one line on stderr holding ``fragment``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pipework: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def gc_context(host: object, dry_run: bool = False) -> object:
    """What ``Engine.gc()`` hands a plugin's ``collect_garbage``, for calling
    one collector directly (no guest side is live: the collectors these
    tests call decide from their own state)."""
    from pipework.engine import GcContext, Marker

    async def rescan() -> frozenset[Marker]:
        return frozenset()

    return GcContext(host=host, dry_run=dry_run, live=frozenset(), rescan=rescan)  # type: ignore[arg-type]
