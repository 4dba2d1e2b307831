"""The Docker FORWARD trap, rebuilt inside a test-owned namespace only.

The namespace playing the host gets what Docker gives a real host: bridged
traffic sent through the FORWARD hook (``net.bridge.bridge-nf-call-iptables``
is per network namespace on this kernel, and 1 by default) and a FORWARD
policy of DROP. The machine's own firewall is compared before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import anyio
import pytest
from support import infra
from support.checks import forward_rules, links

from pipework import AddressSpec, AttachSpec, Engine
from pipework.engine.kernel import nftables

pytestmark = pytest.mark.integration


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stderr)
    return result


def test_iptables_drop_policy_is_detected_and_allow_forward_fixes_it(
    trapped_host, make_netns, run_pipework
):
    host = trapped_host
    host.exec("iptables", "-P", "FORWARD", "DROP")
    a, b, c = make_netns("a"), make_netns("b"), make_netns("c")
    first = ok(run_pipework("brpwtfw", f"netns:{a.name}", "198.18.70.1/24", netns=host.name))
    # Said at attach time, with the fix; the attach itself succeeds.
    assert "traffic across bridge brpwtfw will be dropped" in first.stderr
    assert (
        "--allow-forward" in first.stderr
        and "iptables -I FORWARD -i brpwtfw -o brpwtfw -j ACCEPT" in first.stderr
    )
    assert len(first.stderr.strip().splitlines()) == 1
    ok(run_pipework("brpwtfw", f"netns:{b.name}", "198.18.70.2/24", netns=host.name))
    assert not infra.ping(a, "198.18.70.2", timeout=1)  # the trap is real

    fixed = ok(
        run_pipework(
            "brpwtfw", f"netns:{c.name}", "198.18.70.3/24", "--allow-forward", netns=host.name
        )
    )
    assert "will be dropped" not in fixed.stderr
    assert forward_rules(host) == [
        '-A FORWARD -i brpwtfw -o brpwtfw -m comment --comment "pipework allow-forward brpwtfw" -j ACCEPT'
    ]
    assert infra.ping(a, "198.18.70.2") and infra.ping(c, "198.18.70.1")
    # Once allowed, other attachments are not warned about.
    d = make_netns("d")
    quiet = ok(run_pipework("brpwtfw", f"netns:{d.name}", "198.18.70.4/24", netns=host.name))
    assert quiet.stderr == ""
    # A re-run is unchanged; without the flag it is another configuration.
    again = ok(
        run_pipework(
            "brpwtfw", f"netns:{c.name}", "198.18.70.3/24", "--allow-forward", netns=host.name
        )
    )
    assert again.stdout.startswith("unchanged:")
    assert (
        run_pipework("brpwtfw", f"netns:{c.name}", "198.18.70.3/24", netns=host.name).returncode
        == 7
    )

    # Detaching attachments without the flag leaves the rule; the last one
    # made with it takes the rule away.
    ok(run_pipework("detach", f"netns:{d.name}", "--all", netns=host.name))
    assert forward_rules(host)
    ok(run_pipework("detach", f"netns:{c.name}", "--all", netns=host.name))
    assert forward_rules(host) == []
    assert not infra.ping(a, "198.18.70.2", timeout=1)
    assert "-P FORWARD DROP" in host.exec("iptables", "-S", "FORWARD").stdout  # policy untouched


def test_native_nft_drop_chain_gets_an_nft_rule(trapped_host, make_netns, run_pipework):
    host = trapped_host
    host.exec("nft", "add", "table", "inet", "pwtfw")
    host.exec(
        "nft", "add chain inet pwtfw pwtfwd { type filter hook forward priority 0; policy drop; }"
    )
    a, b = make_netns("a"), make_netns("b")
    warned = ok(run_pipework("brpwtnf", f"netns:{a.name}", "198.18.71.1/24", netns=host.name))
    assert "nft chain inet pwtfw pwtfwd" in warned.stderr
    ok(
        run_pipework(
            "brpwtnf", f"netns:{b.name}", "198.18.71.2/24", "--allow-forward", netns=host.name
        )
    )
    chain = json.loads(host.exec("nft", "-j", "list", "chain", "inet", "pwtfw", "pwtfwd").stdout)
    rules = [i["rule"] for i in chain["nftables"] if "rule" in i]
    assert [r["comment"] for r in rules] == ["pipework allow-forward brpwtnf"]
    assert infra.ping(a, "198.18.71.2")
    ok(run_pipework("detach", f"netns:{b.name}", "-i", "eth1", netns=host.name))
    chain = json.loads(host.exec("nft", "-j", "list", "chain", "inet", "pwtfw", "pwtfwd").stdout)
    assert not [i for i in chain["nftables"] if "rule" in i]
    # iptables' own chains were not touched.
    assert "pipework" not in host.exec("iptables", "-S").stdout


def test_no_trap_no_warning_and_nothing_installed(host_ns, make_netns, run_pipework):
    infra.require_binaries("iptables")
    a = make_netns("a")
    result = ok(
        run_pipework(
            "brpwtok", f"netns:{a.name}", "198.18.72.1/24", "--allow-forward", netns=host_ns.name
        )
    )
    assert result.stderr == ""
    assert "pipework" not in host_ns.exec("iptables", "-S").stdout


def test_gc_removes_the_rule_of_guests_that_died(trapped_host, make_netns):
    """In-process, with the host namespace entered through nsenter."""
    host = trapped_host
    host.exec("iptables", "-P", "FORWARD", "DROP")
    guest = make_netns("g")

    async def main() -> list[str]:
        async with Engine(host_netns=host.path) as engine:
            spec = AttachSpec(
                host="brpwtgf", guest=f"netns:{guest.name}",
                address=AddressSpec.parse("198.18.73.1/24"), allow_forward=True,
            )  # fmt: skip
            await engine.attach(spec)
            assert forward_rules(host)
            guest.destroy()  # the guest dies: no detach
            # The kernel removes a dead namespace's veths in the background.
            for _ in range(100):
                if not [n for n, link in links(host).items() if link.get("master") == "brpwtgf"]:
                    break
                await anyio.sleep(0.05)
            else:
                raise AssertionError("the guest's veth outlived its namespace")
            dry = await engine.gc(dry_run=True)
            assert forward_rules(host)
            done = await engine.gc()
            assert not forward_rules(host)
            return [*dry.items, *done.items]

    items = anyio.run(main)
    assert items == ["forward rule for bridge brpwtgf (no --allow-forward attachment left)"] * 2


def test_allow_forward_refuses_a_bridge_name_it_cannot_write(host_ns, make_netns, run_pipework):
    a = make_netns("a")
    result = run_pipework(
        "attach", 'br"x', f"netns:{a.name}", "--allow-forward", netns=host_ns.name
    )
    assert result.returncode == 2 and "cannot write a rule for bridge" in result.stderr
    assert set(links(host_ns)) == {"lo"} and set(links(a)) == {"lo"}


def test_many_attaches_at_once_add_one_rule_and_the_last_detach_removes_every_copy(
    trapped_host, make_netns
):
    host = trapped_host
    host.exec("iptables", "-P", "FORWARD", "DROP")
    guests = [make_netns("m") for _ in range(5)]

    async def main() -> None:
        async with Engine(host_netns=host.path) as engine:
            specs = [
                AttachSpec(
                    host="brpwtmany",
                    guest=f"netns:{g.name}",
                    address=AddressSpec.parse(f"198.18.74.{i + 1}/24"),
                    allow_forward=True,
                )
                for i, g in enumerate(guests)
            ]
            results = await engine.attach_many(specs)
            assert all(not isinstance(r, Exception) for r in results), results
            assert len(forward_rules(host)) == 1
            # Another process added a copy meanwhile: the last detach takes both.
            host.exec("iptables", "-I", "FORWARD", "-i", "brpwtmany", "-o", "brpwtmany", "-m",
                      "comment", "--comment", "pipework allow-forward brpwtmany", "-j", "ACCEPT")  # fmt: skip
            for g in guests[:-1]:
                await engine.detach(f"netns:{g.name}")
                assert len(forward_rules(host)) == 2
            await engine.detach(f"netns:{guests[-1].name}")
            assert forward_rules(host) == []

    anyio.run(main)


def test_the_cached_verdict_follows_the_ruleset_generation(trapped_host, make_netns, run_pipework):
    """The verdict is kept per nftables generation (RUN_DIR/cache): a drop
    chain added after a quiet attach is seen by the next one, and its removal too."""
    host = trapped_host
    fd = os.open(host.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        before = nftables.generation(fd)
        assert before is not None, "this kernel answers NFT_MSG_GETGEN"
        a, b, c, d = (make_netns(x) for x in "abcd")
        ok(run_pipework("brpwtgen", f"netns:{a.name}", "198.18.75.1/24", netns=host.name))
        quiet = ok(run_pipework("brpwtgen", f"netns:{b.name}", "198.18.75.2/24", netns=host.name))
        assert quiet.stderr == ""  # the second from the cache
        cache = Path(os.environ["PIPEWORK_RUN_DIR"], "cache", "forward-trap.json")
        assert cache.stat().st_mode & 0o777 == 0o600
        host.exec("nft", "add", "table", "inet", "pwtgen")
        host.exec(
            "nft",
            "add chain inet pwtgen pwtgenfw { type filter hook forward priority 0; policy drop; }",
        )
        changed = nftables.generation(fd)
        assert changed is not None and changed[:2] == before[:2] and changed[2] != before[2]
        warned = ok(run_pipework("brpwtgen", f"netns:{c.name}", "198.18.75.3/24", netns=host.name))
        assert "nft chain inet pwtgen pwtgenfw" in warned.stderr
        host.exec("nft", "delete", "table", "inet", "pwtgen")
        quiet = ok(run_pipework("brpwtgen", f"netns:{d.name}", "198.18.75.4/24", netns=host.name))
        assert quiet.stderr == ""
    finally:
        os.close(fd)
