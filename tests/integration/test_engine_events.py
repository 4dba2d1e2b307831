"""The engine's telemetry against the real kernel: every attach, detach, gc
and link reports its outcome and duration to a sink (engine/telemetry.py),
errors with their exit codes; without a sink the same work reports nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support import infra
from support.events import collected

from pipework import AddressSpec, AttachSpec, ConflictError, Engine, GuestNotFoundError
from pipework.engine import telemetry
from pipework.engine.linkspec import LinkEnd, LinkSpec

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    with collected() as events:
        yield events


def spec(host: str, guest: infra.NetNS, ip: str, **kw: Any) -> AttachSpec:
    return AttachSpec(host=host, guest=f"netns:{guest.name}", address=AddressSpec.parse(ip), **kw)


def timed(event: dict[str, Any]) -> bool:
    return isinstance(event["duration_ms"], float) and 0 < event["duration_ms"] < 30_000


async def test_attach_and_detach_report_outcomes_durations_and_errors(host_ns, make_netns, events):
    a = make_netns("a")
    guest = f"netns:{a.name}"
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwev1", a, "198.18.20.2/24"))
        await engine.attach(spec("brpwev1", a, "198.18.20.2/24"))
        with pytest.raises(ConflictError):
            await engine.attach(spec("brpwev1", a, "198.18.20.9/24"))
        await engine.attach(spec("brpwev1", a, "198.18.20.9/24", force=True))
        with pytest.raises(GuestNotFoundError):
            await engine.attach(
                AttachSpec(host="brpwev1", guest="netns:pwt-none", address=AddressSpec.parse("0/0"))
            )
        await engine.attach(spec("brpwev1", a, "0/0", ifname="eth2"))
        assert sorted(m.ifname for m in await engine.detach(guest)) == ["eth1", "eth2"]
        await engine.detach(guest, "eth1")
    attach = [e for e in events if e["type"] == "attach"]
    assert [(e["outcome"], e.get("exit_code")) for e in attach] == [
        ("created", None),
        ("unchanged", None),
        ("error", 7),
        ("replaced", None),
        ("error", 3),
        ("created", None),
    ]
    assert all(timed(e) for e in events)
    assert json.loads(json.dumps(events)) == events  # flat and JSON-able, as a pipe carries them
    first = attach[0]
    assert (first["guest"], first["key"], first["ifname"], first["backend"]) == (
        guest, guest, "eth1", "bridge",
    )  # fmt: skip
    assert "another configuration" in attach[2]["error"]
    # Known before the guest was looked up: the backend and the interface.
    missing = attach[4]
    assert (missing["guest"], missing["backend"], missing["ifname"]) == (
        "netns:pwt-none", "bridge", "eth1",
    )  # fmt: skip
    assert "no network namespace named pwt-none" in missing["error"]
    assert attach[5]["ifname"] == "eth2"
    detach = [e for e in events if e["type"] == "detach"]
    assert sorted((e["ifname"], e["backend"], e["outcome"]) for e in detach[:2]) == [
        ("eth1", "bridge", "removed"),
        ("eth2", "bridge", "removed"),
    ]
    assert (detach[2]["outcome"], detach[2]["ifname"], detach[2]["key"]) == (
        "absent", "eth1", guest,
    )  # fmt: skip
    assert len(detach) == 3


async def test_remove_gc_link_and_unlink(host_ns, make_netns, events):
    a, r1, r2 = make_netns("a"), make_netns("r"), make_netns("r")
    async with Engine(host_netns=host_ns.path) as engine:
        made = await engine.attach(spec("brpwev2", a, "198.18.21.2/24"))
        removed = await engine.remove(spec("brpwev2", a, "198.18.21.2/24"))
        assert [m.ifname for m in removed] == ["eth1"]
        await engine.remove(spec("brpwev2", a, "198.18.21.2/24"))
        await engine.gc(dry_run=True)
        ends = LinkSpec(
            LinkEnd(f"netns:{r1.name}", "eth1", address=AddressSpec.parse("198.18.22.1/30")),
            LinkEnd(f"netns:{r2.name}", "eth3"),
        )
        link = await engine.link(ends)
        await engine.link(ends)
        await engine.detach(f"netns:{r2.name}", "eth3")
    assert made.status == link.status == "created"
    kinds = [(e["type"], e["outcome"]) for e in events]
    assert kinds == [
        ("attach", "created"),
        ("detach", "removed"),
        ("detach", "absent"),
        ("gc", "dry-run"),
        ("link", "created"),
        ("link", "unchanged"),
        ("unlink", "removed"),
    ]
    assert all(timed(e) for e in events)
    _, remove, _, gc, made_link, _, unlink = events
    assert (remove["backend"], remove["ifname"], remove["guest"]) == (
        "bridge", "eth1", f"netns:{a.name}",
    )  # fmt: skip
    assert isinstance(gc["count"], int) and gc["dry_run"] is True
    assert (made_link["guest"], made_link["ifname"], made_link["peer"], made_link["peer_ifname"]) == (
        f"netns:{r1.name}", "eth1", f"netns:{r2.name}", "eth3",
    )  # fmt: skip
    assert (unlink["guest"], unlink["ifname"], unlink["peer_key"], unlink["peer_ifname"]) == (
        f"netns:{r2.name}", "eth3", f"netns:{r1.name}", "eth1",
    )  # fmt: skip


async def test_without_a_sink_nothing_is_reported(host_ns, make_netns, monkeypatch):
    said: list[object] = []
    monkeypatch.setattr(telemetry, "Span", lambda *a: said.append(a))  # would be built
    a = make_netns("a")
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec("brpwev3", a, "198.18.23.2/24"))
        await engine.detach(f"netns:{a.name}")
    assert said == [] and not telemetry.active()
