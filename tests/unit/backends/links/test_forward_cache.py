"""The bridge backend's FORWARD-trap verdict, kept per nftables ruleset generation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from pipework.backends.links.bridge import firewall
from pipework.backends.links.bridge.firewall import Chain
from pipework.engine import statefile

DROP = [Chain("inet", "filter", "forward")]


class Host:
    """A fake firewall: its generation, its verdict, how often it was read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.generation: int | None = 1
        self.verdict: list[Chain] = []
        self.reads = 0
        self.tools: str | None = "/usr/sbin/nft"
        self.bump_while_reading = False
        monkeypatch.setattr(firewall, "families_checked", lambda fd: [4, 6])
        monkeypatch.setattr(firewall, "_tools", lambda families: self.tools)
        monkeypatch.setattr(firewall.nftables, "generation", self._generation)
        monkeypatch.setattr(firewall, "_forward_trap", self._read)

    def _generation(self, fd: int | None) -> tuple[str, int, int] | None:
        return None if self.generation is None else ("boot", 77, self.generation)

    async def _read(
        self, fd: int | None, bridge: str, families: Sequence[int] | None = None
    ) -> list[Chain]:
        self.reads += 1
        if self.bump_while_reading and self.generation is not None:
            self.generation += 1
        return list(self.verdict)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Host:
    return Host(monkeypatch)


async def trap(run_dir: Path | None, bridge: str = "br1") -> list[Chain]:
    return await firewall.forward_trap(
        None, bridge, None, None if run_dir is None else str(run_dir)
    )


@pytest.mark.anyio
async def test_read_once_per_generation(host: Host, tmp_path: Path):
    assert await trap(tmp_path) == [] and await trap(tmp_path) == []
    assert host.reads == 1
    host.generation, host.verdict = 2, DROP  # a drop chain added: the ruleset changed
    assert await trap(tmp_path) == DROP and await trap(tmp_path) == DROP
    assert host.reads == 2
    assert await trap(tmp_path, "br2") == DROP and host.reads == 3  # per bridge


@pytest.mark.anyio
async def test_no_cache_without_a_generation_legacy_tools_or_run_dir(host: Host, tmp_path: Path):
    host.generation = None
    await trap(tmp_path)
    await trap(tmp_path)
    host.generation, host.tools = 1, None  # iptables-legacy
    await trap(tmp_path)
    await trap(tmp_path)
    host.tools = "/usr/sbin/nft"
    await trap(None)
    await trap(None)
    assert host.reads == 6
    assert not (tmp_path / "cache").exists()


@pytest.mark.anyio
async def test_a_verdict_read_while_the_ruleset_changed_is_not_kept(host: Host, tmp_path: Path):
    host.bump_while_reading = True
    await trap(tmp_path)
    host.bump_while_reading = False
    await trap(tmp_path)
    await trap(tmp_path)
    assert host.reads == 2


@pytest.mark.anyio
async def test_the_cache_holds_a_bounded_number_of_verdicts(host: Host, tmp_path: Path):
    for generation in range(firewall.TRAP_CACHE_ENTRIES + 10):
        host.generation = generation
        await trap(tmp_path)
    path = statefile.cache_path(str(tmp_path), firewall.TRAP_CACHE)
    assert len(firewall.read_verdicts(path)) == firewall.TRAP_CACHE_ENTRIES


@pytest.mark.anyio
@pytest.mark.parametrize(
    "planted",
    [
        {"version": 2, "verdicts": {}},
        {"version": 1, "verdicts": []},
        {"version": 1, "verdicts": {"k": "drop"}},
        {"version": 1, "verdicts": {"k": [["inet", "filter"]]}},
        {"version": 1, "verdicts": {"k": [["inet", "filter", 3]]}},
        {"version": 1, "verdicts": {"k": [{"family": "inet"}]}},
    ],
)
async def test_a_hostile_cache_is_ignored(host: Host, tmp_path: Path, planted: object):
    path = statefile.cache_path(str(tmp_path), firewall.TRAP_CACHE)
    statefile.write(path, {"version": 1, "verdicts": {}})
    path.write_text(json.dumps(planted))
    assert firewall.read_verdicts(path) == {}
    assert await trap(tmp_path) == [] and host.reads == 1


@pytest.mark.anyio
async def test_a_forged_entry_for_this_generation_is_not_trusted_from_others(
    host: Host, tmp_path: Path
):
    """Only a file of ours, mode 0600, is read: another user's verdict is not."""
    key = firewall.trap_key(("boot", 77, 1), [4, 6], "/usr/sbin/nft", "br1")
    path = statefile.cache_path(str(tmp_path), firewall.TRAP_CACHE)
    statefile.write(path, {"version": 1, "verdicts": {key: [["inet", "filter", "forward"]]}})
    assert await trap(tmp_path) == DROP and host.reads == 0  # our own file: used
    path.chmod(0o666)
    assert await trap(tmp_path) == [] and host.reads == 1


def test_which_finds_what_shutil_finds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import shutil

    plain = tmp_path / "plain"
    plain.write_text("")  # not executable
    (tmp_path / "adir").mkdir(mode=0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    for program in ("sh", "plain", "adir", "no-such-program-here"):
        assert firewall.which(program) == shutil.which(program)


def test_without_any_firewall_program_there_is_nothing_to_cache(monkeypatch, tmp_path: Path):
    # (And no generation is asked for: that would make the kernel load nf_tables.)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert firewall._tools([4, 6]) is None
    nft = tmp_path / "nft"
    nft.write_text("#!/bin/sh\n")
    nft.chmod(0o755)
    assert firewall._tools([4]) == f"{nft} None"
