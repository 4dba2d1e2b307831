"""A hostile DHCP server: what a lease says changes nothing outside the guest.

dnsmasq (in the test's "host" namespace) answers with crafted options: host
names and domains with shell metacharacters, ``$(...)``, backquotes,
newlines and path separators, values near the 255-byte limit, many options,
odd DNS servers (dnsmasq checks option 6 itself), a router off the subnet, classless static routes
(options 121 and 249) for 0.0.0.0/0, 198.18.0.0/15 and the host's own
subnet, and masks of 0.0.0.0 and 255.255.255.255. Each host client gets each
answer; afterwards the host (the test's host namespace, the machine's own
namespace and files) is as it was, no file appeared outside the state
directory, no process is left, and the guest holds only what the hook
accepts.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import pytest
from support import infra
from support.dhcp import client_pids_in

from pipework import AddressSpec, AttachSpec, Engine
from pipework.engine import PipeworkError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.usefixtures("host_files_unchanged", "dhcp_run_dir"),
]

PWN = "/tmp/pwt-pwn"
"""Every payload that a shell would run touches a file under this prefix."""


def hexed(text: str) -> str:
    """A dnsmasq option value as hex octets (any byte, newlines included)."""
    return ":".join(f"{b:02x}" for b in text.encode())


NAMES = [
    f"$(touch {PWN}-1)",
    f"`touch {PWN}-2`",
    f"x;touch {PWN}-3;y",
    f"a|touch {PWN}-4&",
    f"ok\nnameserver 198.18.0.66\nsearch evil\n$(touch {PWN}-5)",
    "../../../../etc/passwd",
    "/etc/resolv.conf",
    "a" * 250,
]
FORCE = "--dhcp-option-force="
ANSWERS = {
    "names": [
        f"{FORCE}12,{hexed(NAMES[0])}",
        f"{FORCE}15,{hexed(NAMES[4])}",
        f"{FORCE}119,{'a' * 60}.test,{'b' * 60}.test",  # dnsmasq checks 119 itself
        *(f"{FORCE}{224 + i},{hexed(name)}" for i, name in enumerate(NAMES)),
    ],
    "long": [f"{FORCE}15,{'d' * 63}.{'e' * 63}.{'f' * 63}.{'g' * 50}"]
    + [f"{FORCE}{n},{hexed('x' * 250)}" for n in range(224, 254)],
    "path-domain": [f"{FORCE}15,{hexed(NAMES[5])}", f"{FORCE}12,{hexed(NAMES[6])}"],
    "dns-odd": [f"{FORCE}6,0.0.0.0,255.255.255.255,127.0.0.1,198.18.100.53"],
    "router-off-subnet": [f"{FORCE}3,198.19.255.1,10.0.0.1"],
    "classless-routes": [
        f"{FORCE}121,0.0.0.0/0,198.18.100.1,198.18.0.0/15,198.18.100.1,198.18.100.0/24,198.18.100.7",
        f"{FORCE}249,0.0.0.0/0,198.18.100.1,198.18.0.0/15,198.18.100.1",
    ],
    "mask-zero": [f"{FORCE}1,0.0.0.0"],
    "mask-all": [f"{FORCE}1,255.255.255.255"],
    "lease-zero": [f"{FORCE}51,00:00:00:00"],
    "lease-huge": [f"{FORCE}51,ff:ff:ff:fe"],
}
CLIENTS = ["dhclient", "udhcpc", "dhcpcd"]
RESOLV_LINE = re.compile(r"(# written by pipework .*|search [A-Za-z0-9._ -]*|nameserver [0-9.]+)")


@pytest.fixture
def anyio_backend():
    return "asyncio"


def snapshot(ns: infra.NetNS | None) -> dict[str, object]:
    """Interfaces, addresses, routes (all tables) and rules of a namespace."""
    prefix = ["ip", "netns", "exec", ns.name] if ns else []
    found: dict[str, object] = {}
    for what in (["link"], ["addr"], ["route", "show", "table", "all"], ["rule"]):
        out = infra.run([*prefix, "ip", "-j", *what]).stdout or "[]"
        found[" ".join(what)] = [_stable(entry) for entry in json.loads(out) or []]
    return found


def _stable(entry: dict) -> dict:
    """What a lease could change; not what a port joining a bridge changes
    (carrier, the bridge's MAC, the IPv6 link-local address it then gets)."""
    if "addr_info" in entry:
        entry["addr_info"] = [a for a in entry["addr_info"] if a.get("scope") != "link"]
    for volatile in ("stats", "stats64", "flags", "operstate", "address", "linkmode"):
        entry.pop(volatile, None)
    return entry if "fe80" not in json.dumps(entry) else {}


def listing() -> dict[str, set[str]]:
    return {d: set(Path(d).iterdir()) for d in ("/etc", "/run", "/var/lib")}  # type: ignore[misc]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("answer", sorted(ANSWERS))
async def test_a_hostile_answer_changes_nothing_outside_the_guest(
    answer, client, host_ns, make_netns, dhcp_server, tmp_path
):
    server = dhcp_server(options=tuple(ANSWERS[answer]))
    guest = make_netns("x")
    etc = Path("/etc/netns", guest.name)
    host_before, machine_before, files_before = snapshot(host_ns), snapshot(None), listing()
    outcome = "lease"
    async with Engine(host_netns=host_ns.path) as engine:
        try:
            att = await engine.attach(
                AttachSpec(
                    host=server.bridge,
                    guest=f"netns:{guest.name}",
                    address=AddressSpec.parse(client, dns=True, timeout=10),
                )
            )
        except PipeworkError as exc:  # refusing a lease is fine; a traceback is not
            outcome = f"refused: {exc.message}"
        else:
            # The guest holds what the hook accepts: its address, at most a
            # default route via the first router, nothing of options 121/249.
            routes = json.loads(guest.exec("ip", "-j", "route", "show", "table", "all").stdout)
            for route in routes:
                if route.get("table") == "local" or route["dst"].startswith(("fe80", "ff00")):
                    continue
                assert route["dst"] == "default" or "gateway" not in route, route
            resolv = etc / "resolv.conf"
            if resolv.exists():
                lines = resolv.read_text().splitlines()
                assert all(RESOLV_LINE.fullmatch(line) for line in lines), lines
            assert att.domain is None or re.fullmatch(r"[A-Za-z0-9._ -]*", att.domain)
        await engine.detach(f"netns:{guest.name}")
    print(f"{answer} / {client}: {outcome}")
    assert glob.glob(PWN + "*") == []
    assert snapshot(host_ns) == host_before
    assert snapshot(None) == machine_before
    assert listing() == files_before
    assert client_pids_in(infra.netns_key(guest.path)) == []
    assert not etc.exists()
