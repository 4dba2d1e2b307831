"""The async Python API, end to end: attach, attach many, read back, detach.

Run it as root: ``python examples/api_example.py``. It makes three throwaway
network namespaces (``pwex-…``), one playing the host with the bridge, and
removes them at the end, whatever happens. Only 198.18.0.0/15 addresses are
used, on interfaces it creates.
"""

from __future__ import annotations

import json
import secrets
import subprocess

import anyio

import pipework


async def main(host: str, guests: list[str]) -> None:
    # Engine(host_netns=...) makes another namespace play "the host": the
    # bridge and the host ends of the veths go there. Leave it out to use
    # the machine's own.
    async with pipework.Engine(host_netns=host) as engine:
        # One attachment: all or nothing.
        web = pipework.AttachSpec(
            host="brexample",  # a br* name that does not exist: the bridge is created
            guest=f"netns:{guests[0]}",  # or a container name, pid:N, a netns path
            address=pipework.AddressSpec.parse("198.18.60.2/24@198.18.60.1"),
            mac="U:web",  # the original's stable MAC mapping
            routes=(pipework.RouteSpec.parse("198.18.61.0/24 via 198.18.60.254"),),
        )
        first = await engine.attach(web)
        print(f"{first.status}: {first.ifname} in {first.guest.name}, {first.addresses}")

        # Many at once: each is atomic; failures come back as exceptions.
        results = await engine.attach_many(
            [
                pipework.AttachSpec(
                    host="brexample",
                    guest=f"netns:{guests[1]}",
                    address=pipework.AddressSpec.parse("198.18.60.3/24"),
                ),
                pipework.AttachSpec(
                    host="brexample",
                    guest="netns:pwex-does-not-exist",
                    address=pipework.AddressSpec.parse("198.18.60.4/24"),
                ),
            ]
        )
        for result in results:
            if isinstance(result, pipework.PipeworkError):
                print(f"failed (exit code {result.exit_code}): {result}")
            else:
                print(f"{result.status}: {result.ifname} in {result.guest.name}")

        # Re-running converges: nothing changes, the status says so.
        assert (await engine.attach(web)).status == "unchanged"

        # Reading back: check() verifies an attachment and returns it as found.
        found = await engine.check(web)
        print(json.dumps(found.to_dict()))  # typed results convert to JSON

        # What pipework made in a guest, from the markers in the kernel.
        guest, markers = await engine.owned(f"netns:{guests[1]}")
        print(f"{guest.name}: {[m.ifname for m in markers]}")

        # Detach: the interfaces go (both veth ends), the gateway route with them.
        for name in guests:
            removed = await engine.detach(f"netns:{name}")
            print(f"removed from {name}: {[m.ifname for m in removed]}")


def run() -> None:
    tag = secrets.token_hex(3)
    host, guests = f"pwex-h-{tag}", [f"pwex-a-{tag}", f"pwex-b-{tag}"]
    names = [host, *guests]
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
        anyio.run(main, f"/run/netns/{host}", guests)
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


if __name__ == "__main__":
    run()
