"""A pipework process of its own, driven line by line: for race tests.

``python engine_worker.py HOST_NETNS_PATH`` starts one ``Engine`` (its
plugins loaded, its sockets open) and then reads one JSON request per line
on stdin, answering each with one JSON line on stdout:

* ``{"op": "attach", "host": ..., "guest": ..., "address": ..., "vlan": N,
  "allow_forward": true}`` -> ``{"ok": true, "result": "created ..."}``
* ``{"op": "detach", "guest": ..., "prune": true}``
* ``{"op": "release_host", "kind": ..., "name": ...}``

An error is ``{"ok": false, "error": "..."}`` (a ``PipeworkError`` as the
CLI would print it, anything else with its type). Two workers given a
request each at the same moment race as two pipework processes would,
without the start-up of the CLI spreading them apart.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import anyio.to_thread

from pipework import AddressSpec, AttachSpec, Engine
from pipework.engine import PipeworkError


async def serve(host_netns: str) -> None:
    async with Engine(host_netns=host_netns) as engine:
        print(json.dumps({"ok": True, "result": "ready"}), flush=True)
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            request = json.loads(line)
            try:
                answer: dict[str, Any] = {"ok": True, "result": await run(engine, request)}
            except PipeworkError as exc:
                answer = {"ok": False, "error": str(exc)}
            except Exception as exc:  # the test shows it
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)


async def run(engine: Engine, request: dict[str, Any]) -> str:
    op = request["op"]
    if op == "attach":
        spec = AttachSpec(
            host=request["host"],
            guest=request["guest"],
            address=AddressSpec.parse(request.get("address", "0/0")),
            vlan=request.get("vlan"),
            settings={"allow_forward": True} if request.get("allow_forward") else {},
        )
        return (await engine.attach(spec)).status
    if op == "detach":
        removed = await engine.detach(request["guest"], prune_bridges=bool(request.get("prune")))
        return f"detached {len(removed)}"
    if op == "release_host":
        return str(await engine.release_host(request["kind"], request["name"]))
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    anyio.run(serve, sys.argv[1])
