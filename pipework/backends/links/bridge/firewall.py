"""The Docker FORWARD trap: detecting it, and ``--allow-forward``.

With ``br_netfilter``, bridged IPv4/IPv6 frames go through the host's
iptables/nftables FORWARD hook when ``net.bridge.bridge-nf-call-iptables``
(``-ip6tables``) is 1. Docker sets both that and a FORWARD policy of DROP,
so traffic between two guests on a pipework bridge is silently dropped.

This module reads the host's firewall without changing it (``iptables -S``,
``nft -j list chains``), and, when asked, adds one accept rule per dropping
chain for traffic that enters and leaves the same bridge. The rule carries
the comment ``pipework allow-forward BRIDGE``: that comment is the ownership
marker, and only rules carrying it are ever removed.

Chains iptables manages (``ip filter FORWARD`` and ``ip6 filter FORWARD``,
also under iptables-nft) are changed with iptables/ip6tables, so iptables
can still list them; other nftables chains (a native ``inet filter
forward``) are changed with ``nft`` in its JSON syntax, which no bridge name
can escape. No shell is involved; programs run inside the namespace that
plays the host.

Reading the firewall forks a program, so the verdict on the trap (which
chains would drop traffic across a bridge) is kept in a root-only cache
file, ``RUN_DIR/cache/forward-trap.json``, per namespace and nftables
ruleset generation (engine/kernel/nftables.py): the programs run again only
after the ruleset changed. Not with iptables-legacy, whose tables move no
generation: there they run on every check, as they always did.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from pipework.engine import statefile
from pipework.engine.batch import BatchScope
from pipework.engine.contract import DetachContext, LinkContext, Lock
from pipework.engine.errors import ExternalCommandError, TimeoutExpiredError, UsageError
from pipework.engine.kernel import nftables
from pipework.engine.kernel.netlink import Netns, netns_identity, read_sysctl
from pipework.engine.marker import Marker
from pipework.records import Record

log = logging.getLogger("pipework")

COMMENT = "pipework allow-forward"
FORWARD_FLAG = "fwd"
"""In a bridge attachment's marker state: it was made with ``--allow-forward``."""
TOOL_TIMEOUT = 10.0
SYSCTLS = {4: "net/bridge/bridge-nf-call-iptables", 6: "net/bridge/bridge-nf-call-ip6tables"}
IPTABLES = {4: "iptables", 6: "ip6tables"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,15}$")


class Chain(Record):
    """A base chain on the forward hook whose policy is drop."""

    family: str
    """ip, ip6, inet"""
    table: str
    name: str

    @property
    def tool(self) -> str:
        """``iptables``/``ip6tables`` for the chains they manage, else ``nft``."""
        if self.table == "filter" and self.name == "FORWARD" and self.family in ("ip", "ip6"):
            return "iptables" if self.family == "ip" else "ip6tables"
        return "nft"

    def __str__(self) -> str:
        if self.tool != "nft":
            return f"{self.tool} FORWARD"
        return f"nft chain {self.family} {self.table} {self.name}"


def rule_comment(bridge: str) -> str:
    return f"{COMMENT} {bridge}"


def check_bridge_name(bridge: str) -> None:
    """``--allow-forward`` writes the bridge name into firewall rules: plain names only."""
    if not _SAFE_NAME.match(bridge):
        raise UsageError(
            f"--allow-forward cannot write a rule for bridge {bridge!r}",
            "its name may only hold letters, digits and . _ + -",
        )


# -- running the tools ------------------------------------------------------------


async def run_tool(host_fd: int | None, argv: Sequence[str], stdin: str | None = None) -> str:
    """Run a firewall program (argv, no shell) in the host namespace; its stdout.

    ``host_fd`` is the namespace that plays the host (None: our own); the
    program enters it through ``nsenter``, given the open fd.
    """
    command = list(argv)
    pass_fds: tuple[int, ...] = ()
    if host_fd is not None:
        command = ["nsenter", f"--net=/proc/self/fd/{host_fd}", "--", *command]
        pass_fds = (host_fd,)
    try:
        with anyio.fail_after(TOOL_TIMEOUT):
            done = await anyio.run_process(
                command,
                input=stdin.encode() if stdin is not None else None,
                check=False,
                pass_fds=pass_fds,
                env={**os.environ, "LC_ALL": "C"},
            )
    except TimeoutError:
        raise TimeoutExpiredError(
            f"{argv[0]} did not answer within {TOOL_TIMEOUT:g} s", "is the xtables lock held?"
        ) from None
    except OSError as exc:
        raise ExternalCommandError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ExternalCommandError(
            f"{' '.join(argv[:3])} failed (status {done.returncode}): "
            f"{said[-1] if said else 'no message'}"
        )
    return done.stdout.decode(errors="replace")


def which(program: str) -> str | None:
    """``program``'s path on PATH, as ``shutil.which`` finds it (whose import,
    with its compression modules, costs ~2.5 ms on an attach that only asks this)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = Path(directory or ".") / program
        if os.access(path, os.X_OK) and path.is_file():
            return str(path)
    return None


def _have(program: str) -> bool:
    return which(program) is not None


# -- reading --------------------------------------------------------------------------


def families_checked(host_fd: int | None) -> list[int]:
    """4 and/or 6: the families whose bridged traffic goes through the FORWARD hook."""
    return [family for family, key in SYSCTLS.items() if read_sysctl(host_fd, key) == "1"]


def dropping_iptables(listing: str, family: int) -> list[Chain]:
    """``iptables -S FORWARD`` output -> the FORWARD chain if its policy is DROP."""
    if any(line.split() == ["-P", "FORWARD", "DROP"] for line in listing.splitlines()):
        return [Chain("ip" if family == 4 else "ip6", "filter", "FORWARD")]
    return []


def dropping_nft(listing: str, families: Sequence[int]) -> list[Chain]:
    """``nft -j list chains`` output -> base chains on the forward hook with policy drop."""
    wanted = {"inet"} | {"ip" for f in families if f == 4} | {"ip6" for f in families if f == 6}
    chains = []
    for item in _nft_items(listing):
        chain = item.get("chain")
        if not isinstance(chain, dict):
            continue
        hook, policy = chain.get("hook"), chain.get("policy")
        if hook == "forward" and policy == "drop" and chain.get("family") in wanted:
            chains.append(Chain(str(chain["family"]), str(chain["table"]), str(chain["name"])))
    return chains


def _nft_items(listing: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(listing or "{}")
    except ValueError:
        return []
    items = data.get("nftables", []) if isinstance(data, dict) else []
    return [i for i in items if isinstance(i, dict)]


def iptables_allows(listing: str, bridge: str) -> bool:
    """Does ``iptables -S`` accept traffic from ``bridge`` before the policy?

    Our rule, or a plain rule of the user's in FORWARD or DOCKER-USER that
    accepts everything coming in on the bridge.
    """
    for line in listing.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "-A" or words[1] not in ("FORWARD", "DOCKER-USER"):
            continue
        if _iptables_owner(line, words[1]) == bridge:
            return True
        rest = words[2:]
        if rest[-2:] != ["-j", "ACCEPT"]:
            continue
        matches = rest[:-2]
        if matches in (["-i", bridge], ["-i", bridge, "-o", bridge]):
            return True
    return False


def nft_rule_handles(listing: str, bridge: str | None = None) -> list[tuple[Chain, int, str]]:
    """Our rules in ``nft -a -j list ...`` output: (chain, handle, bridge)."""
    found = []
    for item in _nft_items(listing):
        rule = item.get("rule")
        if not isinstance(rule, dict):
            continue
        comment = str(rule.get("comment") or "")
        if not comment.startswith(COMMENT + " "):
            continue
        owner = comment[len(COMMENT) + 1 :]
        if bridge is not None and owner != bridge:
            continue
        chain = Chain(str(rule["family"]), str(rule["table"]), str(rule["chain"]))
        found.append((chain, int(rule["handle"]), owner))
    return found


async def dropping_chains(
    host_fd: int | None, families: Sequence[int] | None = None
) -> list[Chain]:
    """Forward chains that drop by default, for the families br_netfilter
    sends there (``families``: as ``families_checked`` says, already read)."""
    families = families_checked(host_fd) if families is None else families
    if not families:
        return []
    chains: list[Chain] = []
    if _have("nft"):
        chains += dropping_nft(await run_tool(host_fd, ["nft", "-j", "list", "chains"]), families)
    legacy = {4: "iptables-legacy", 6: "ip6tables-legacy"}
    for family in families:
        tool = IPTABLES[family]
        # Without nft, or with iptables-legacy, nft cannot see iptables' chains.
        if _have(tool) and (not _have("nft") or _is_legacy(tool, legacy[family])):
            listing = await run_tool(host_fd, [tool, "-w", "5", "-S", "FORWARD"])
            chains += dropping_iptables(listing, family)
    return list(dict.fromkeys(chains))


def _is_legacy(tool: str, legacy: str) -> bool:
    path = which(tool)
    return bool(path) and Path(path or "").resolve().name in (legacy, "xtables-legacy-multi")


async def _allowed(host_fd: int | None, chain: Chain, bridge: str) -> bool:
    if chain.tool != "nft":
        listing = await run_tool(host_fd, [chain.tool, "-w", "5", "-S"])
        return iptables_allows(listing, bridge)
    listing = await run_tool(
        host_fd, ["nft", "-a", "-j", "list", "chain", chain.family, chain.table, chain.name]
    )
    return bool(nft_rule_handles(listing, bridge))


async def forward_trap(
    host_fd: int | None,
    bridge: str,
    scope: BatchScope | None = None,
    run_dir: str | None = None,
) -> list[Chain]:
    """The chains that would drop traffic across ``bridge`` (empty: no trap).

    Within a batch (``scope``) the firewall is read once per bridge: every
    read runs the firewall tools, a fork and exec each, which would cost a
    batch of a thousand attaches more than their netlink work. With a
    ``run_dir``, a verdict is also kept across processes until the nftables
    ruleset changes (see the module's docstring).
    """
    if scope is None:
        return await _cached_trap(host_fd, bridge, run_dir)
    key = (FORWARD_KEY, netns_identity(host_fd), bridge)
    return list(await scope.once(key, lambda: _cached_trap(host_fd, bridge, run_dir)))


async def _forward_trap(
    host_fd: int | None, bridge: str, families: Sequence[int] | None = None
) -> list[Chain]:
    chains = await dropping_chains(host_fd, families)
    return [c for c in chains if not await _allowed(host_fd, c, bridge)]


TRAP_CACHE = "forward-trap.json"
"""The cache file of verdicts, in RUN_DIR/cache (engine/statefile.py)."""
TRAP_CACHE_ENTRIES = 64
"""Verdicts kept (namespaces x bridges x generations); the oldest go first."""


def trap_key(
    generation: nftables.Generation, families: Sequence[int], tools: str, bridge: str
) -> str:
    """What a verdict depends on: the namespace and its ruleset's generation,
    the families checked, the firewall programs found, the bridge."""
    boot, cookie, number = generation
    return json.dumps([boot, cookie, number, list(families), tools, bridge])


def _tools(families: Sequence[int]) -> str | None:
    """The programs a check would run, as a key (None: iptables-legacy is
    one of them, whose tables move no nftables generation; or there is none
    at all, and nothing to cache: then asking for the generation would only
    make the kernel load nf_tables)."""
    found = [which("nft")]
    for family in families:
        tool = IPTABLES[family]
        if _is_legacy(tool, f"{tool}-legacy"):
            return None
        found.append(which(tool))
    return " ".join(map(str, found)) if any(found) else None


def read_verdicts(path: Path) -> dict[str, list[Chain]]:
    """The cached verdicts (an entry that is not one is left out)."""
    data = statefile.read(path)
    entries = data.get("verdicts") if data is not None and data.get("version") == 1 else None
    if not isinstance(entries, dict):
        return {}
    verdicts: dict[str, list[Chain]] = {}
    for key, chains in entries.items():
        if isinstance(chains, list) and all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(p, str) for p in c)
            for c in chains
        ):
            verdicts[key] = [Chain(*c) for c in chains]
    return verdicts


def write_verdicts(path: Path, verdicts: dict[str, list[Chain]]) -> None:
    kept = list(verdicts.items())[-TRAP_CACHE_ENTRIES:]
    entries = {key: [[c.family, c.table, c.name] for c in chains] for key, chains in kept}
    statefile.write(path, {"version": 1, "verdicts": entries})


async def _cached_trap(host_fd: int | None, bridge: str, run_dir: str | None) -> list[Chain]:
    families = families_checked(host_fd)
    if not families:
        return []
    tools = _tools(families) if run_dir is not None else None
    generation = nftables.generation(host_fd) if tools is not None else None
    if run_dir is None or tools is None or generation is None:
        return await _forward_trap(host_fd, bridge, families)
    path = statefile.cache_path(run_dir, TRAP_CACHE)
    key = trap_key(generation, families, tools, bridge)
    verdicts = read_verdicts(path)
    if key in verdicts:
        return verdicts[key]
    chains = await _forward_trap(host_fd, bridge, families)
    # Kept only if the ruleset did not change while it was read.
    if nftables.generation(host_fd) == generation:
        verdicts.pop(key, None)
        verdicts[key] = chains
        write_verdicts(path, verdicts)
    return chains


FORWARD_KEY = "bridge-forward-trap"
"""This module's key prefix in a batch scope."""


def trap_message(bridge: str, chains: Sequence[Chain]) -> str:
    where = ", ".join(str(c) for c in chains)
    return (
        f"traffic across bridge {bridge} will be dropped: bridge-nf-call-iptables is 1 and"
        f" the FORWARD policy is DROP ({where}), as Docker sets them"
        f" (add --allow-forward, or run: iptables -I FORWARD -i {bridge} -o {bridge} -j ACCEPT)"
    )


# -- changing ---------------------------------------------------------------------------


def nft_insert(chain: Chain, bridge: str) -> str:
    """The nft JSON command that inserts our accept rule at the top of ``chain``."""

    def match(key: str) -> dict[str, Any]:
        return {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": bridge}}

    rule = {
        "family": chain.family,
        "table": chain.table,
        "chain": chain.name,
        "comment": rule_comment(bridge),
        "expr": [match("iifname"), match("oifname"), {"accept": None}],
    }
    return json.dumps({"nftables": [{"insert": {"rule": rule}}]})


def nft_delete(chain: Chain, handle: int) -> str:
    rule = {"family": chain.family, "table": chain.table, "chain": chain.name, "handle": handle}
    return json.dumps({"nftables": [{"delete": {"rule": rule}}]})


def iptables_rule(bridge: str) -> list[str]:
    return [
        "FORWARD", "-i", bridge, "-o", bridge,
        "-m", "comment", "--comment", rule_comment(bridge), "-j", "ACCEPT",
    ]  # fmt: skip


async def allow_forward(
    host_fd: int | None, bridge: str, scope: BatchScope | None = None
) -> list[Chain]:
    """Accept traffic across ``bridge`` in every chain that would drop it;
    return the chains changed (empty when nothing drops it)."""
    check_bridge_name(bridge)
    changed = await _forward_trap(host_fd, bridge)  # as it is now, not as a batch saw it
    for chain in changed:
        if chain.tool == "nft":
            await run_tool(host_fd, ["nft", "-j", "-f", "-"], stdin=nft_insert(chain, bridge))
        else:
            await run_tool(host_fd, [chain.tool, "-w", "5", "-I", *iptables_rule(bridge)])
        log.info("added a rule accepting traffic across %s to %s", bridge, chain)
    if changed and scope is not None:
        scope.forget((FORWARD_KEY, netns_identity(host_fd), bridge))
    return changed


async def our_rules(host_fd: int | None, bridge: str | None = None) -> list[tuple[Chain, str]]:
    """pipework's forward rules (of one bridge, or all): (chain, bridge)."""
    found: list[tuple[Chain, str]] = []
    for family, tool in IPTABLES.items():
        if not _have(tool):
            continue
        try:
            listing = await run_tool(host_fd, [tool, "-w", "5", "-S", "FORWARD"])
        except ExternalCommandError:
            continue  # no such table in this namespace
        for line in listing.splitlines():
            owner = _iptables_owner(line)
            if owner is not None and (bridge is None or owner == bridge):
                found.append((Chain("ip" if family == 4 else "ip6", "filter", "FORWARD"), owner))
    if _have("nft"):
        listing = await run_tool(host_fd, ["nft", "-a", "-j", "list", "ruleset"])
        for chain, _handle, owner in nft_rule_handles(listing, bridge):
            if chain.tool == "nft":
                found.append((chain, owner))
    return list(dict.fromkeys(found))


def _iptables_owner(line: str, chain: str = "FORWARD") -> str | None:
    """The bridge whose rule of ours ``line`` (of ``iptables -S``) is: the
    comment's whole word, never a part of it (br1 is not br10)."""
    match = re.search(r'--comment "?' + re.escape(COMMENT) + r' ([^" ]+)"?(?:\s|$)', line)
    return match.group(1) if match and line.startswith(f"-A {chain} ") else None


async def remove_forward(host_fd: int | None, bridge: str) -> list[Chain]:
    """Remove pipework's rules for ``bridge`` (and only those); the chains changed."""
    removed = []
    for chain, _owner in await our_rules(host_fd, bridge):
        if chain.tool != "nft":
            # Two processes may each have added one: remove every copy.
            listing = await run_tool(host_fd, [chain.tool, "-w", "5", "-S", "FORWARD"])
            copies = sum(1 for line in listing.splitlines() if _iptables_owner(line) == bridge)
            for _ in range(copies):
                await run_tool(host_fd, [chain.tool, "-w", "5", "-D", *iptables_rule(bridge)])
        else:
            listing = await run_tool(
                host_fd, ["nft", "-a", "-j", "list", "chain", chain.family, chain.table, chain.name]
            )
            for found, handle, _ in nft_rule_handles(listing, bridge):
                await run_tool(host_fd, ["nft", "-j", "-f", "-"], stdin=nft_delete(found, handle))
        removed.append(chain)
        log.info("removed the rule accepting traffic across %s from %s", bridge, chain)
    return removed


# -- the bridge backend's side: rules that live as long as their attachments ---------


def has_flag(marker: Marker | None) -> bool:
    return marker is not None and FORWARD_FLAG in marker.state.split(",")


async def forward_users(host: Netns, bridge: str) -> list[str]:
    """The ports of ``bridge`` made with ``--allow-forward``."""
    link = await host.link(bridge)
    if link is None:
        return []
    return [
        port.ifname for port in await host.ports(link.index) if has_flag(Marker.parse(port.alias))
    ]


async def settle_forward(ctx: LinkContext, bridge: str, run_dir: str | None = None) -> None:
    """At attach time: with ``--allow-forward`` make sure traffic across
    ``bridge`` is accepted (undone with the last such attachment); without
    it, warn when the host's firewall would drop that traffic (``run_dir``:
    where the verdict may be cached)."""
    host, lock, marker = ctx.host, ctx.lock, ctx.marker
    if ctx.spec.settings.get("allow_forward"):  # the bridge backend's ALLOW_FORWARD
        # One rule, however many attach at once, in one process or several.
        async with lock(forward_lock(bridge)):
            if await allow_forward(host.fd, bridge, ctx.scope):
                ctx.journal.record(
                    f"forward rule for {bridge}",
                    lambda: release_forward(host, bridge, lock, leaving=marker),
                )
        return
    chains = await forward_trap(host.fd, bridge, ctx.scope, run_dir)
    if chains:
        log.warning("%s", trap_message(bridge, chains))


def forward_lock(bridge: str) -> str:
    """The lock around every check-then-act on the rules of ``bridge``."""
    return f"forward:{bridge}"


async def release_forward(
    host: Netns, bridge: str, lock: Lock, leaving: Marker | None = None
) -> None:
    """Remove the rules for ``bridge`` unless another ``--allow-forward``
    attachment still uses it.

    The port of ``leaving`` (the attachment that goes) leaves the bridge
    first, under the lock: two attachments detached at once would otherwise
    each see the other's port still there, and both keep the rule. Only a
    port whose own marker says it is that attachment's.
    """
    async with lock(forward_lock(bridge)):
        if leaving is not None and leaving.hostif:
            port, link = await host.link(leaving.hostif), await host.link(bridge)
            if (
                port is not None
                and link is not None
                and port.master == link.index
                and leaving.same_attachment(Marker.parse(port.alias))
            ):
                await host.set(port.index, master=0)
        if not await forward_users(host, bridge):
            await remove_forward(host.fd, bridge)


async def forward_intact(ctx: DetachContext, run_dir: str | None = None) -> bool:
    """For a re-run: does an ``--allow-forward`` attachment still get through?"""
    return not has_flag(ctx.marker) or not await forward_trap(
        ctx.host.fd, ctx.marker.host, ctx.scope, run_dir
    )


__all__ = [
    "COMMENT",
    "FORWARD_FLAG",
    "Chain",
    "allow_forward",
    "check_bridge_name",
    "dropping_chains",
    "forward_intact",
    "forward_lock",
    "forward_trap",
    "forward_users",
    "our_rules",
    "release_forward",
    "remove_forward",
    "settle_forward",
    "trap_message",
]
