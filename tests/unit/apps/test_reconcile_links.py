"""Links in a topology's plan, prune and destroy, and link jobs in the runner,
against a fake engine."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import SimpleNamespace

import pytest

from pipework import GuestInfo
from pipework.apps.runner import BatchRunner
from pipework.apps.topology.loader import parse
from pipework.apps.topology.reconcile import (
    destroy_jobs,
    link_jobs,
    link_specs,
    missing_nodes,
    plan,
    prune_jobs,
)
from pipework.engine.batch import BatchScope
from pipework.engine.errors import ConflictError, GuestNotFoundError
from pipework.engine.marker import LINK_KIND, Marker

pytestmark = pytest.mark.anyio

FILE = textwrap.dedent(
    """\
    links:
      - endpoints: ["netns:r1:eth1", "netns:r2:eth1"]
      - endpoints: ["netns:r2:eth2", "netns:r3:eth1"]
    """
)


def link_marker(guest: str, ifname: str, peer: str, peer_if: str) -> Marker:
    return Marker(guest=guest, ifname=ifname, kind=LINK_KIND, host=peer, peer=peer_if)


class FakeEngine:
    def __init__(self, markers: dict[str, list[Marker]] | None = None) -> None:
        self.markers = markers or {}
        self.linked: list[str] = []
        self.detached: list[tuple[str, str | None]] = []
        self.backends: dict[str, object] = {}

    @contextmanager
    def batch(self) -> Iterator[BatchScope]:
        yield BatchScope()

    @asynccontextmanager
    async def deferred_removal(self) -> AsyncIterator[None]:
        yield

    async def owned(self, guest: str):
        return GuestInfo(guest, guest, "netns"), self.markers.get(guest, [])

    async def resolve(self, guest: str):
        if guest.startswith("gone"):
            raise GuestNotFoundError(f"no container named {guest}")
        return SimpleNamespace(close=lambda: None)

    async def examine_link(self, spec):
        action = "update" if spec.b.guest == "netns:r3" else "unchanged"
        end = SimpleNamespace(
            action=action,
            marker=SimpleNamespace(ifname=spec.b.ifname),
            guest=SimpleNamespace(name=spec.b.guest),
        )
        other = SimpleNamespace(
            action="unchanged",
            marker=SimpleNamespace(ifname=spec.a.ifname),
            guest=SimpleNamespace(name=spec.a.guest),
        )
        return SimpleNamespace(action=action, a=other, b=end)

    async def link(self, spec):
        if spec.b.guest == "netns:r3":
            raise ConflictError("eth1 in r3 is linked with another configuration")
        self.linked.append(str(spec))
        end = SimpleNamespace(ifname=spec.a.ifname)
        return SimpleNamespace(
            status="created", a=end, b=end, to_dict=lambda: {"status": "created"}
        )

    async def detach(self, guest: str, ifname: str | None = None) -> list[Marker]:
        self.detached.append((guest, ifname))
        return []


async def test_plan_has_a_line_per_link_and_an_update_needs_force():
    loaded = parse(FILE, "t.yaml")
    result = await plan(FakeEngine(), loaded, force=False, prune=False, limit=4)  # type: ignore[arg-type]
    assert [i.line() for i in result.items] == [
        "= unchanged link netns:r1:eth1 -- netns:r2:eth1 [t.yaml:2]",
        "~ update    link netns:r2:eth2 -- netns:r3:eth1 (needs --force) [t.yaml:3]: "
        "eth1 in netns:r3 is linked with another configuration (add --force to replace it)",
    ]
    assert result.exit_code == 7
    forced = await plan(FakeEngine(), loaded, force=True, prune=False, limit=4)  # type: ignore[arg-type]
    assert forced.exit_code == 0 and forced.items[1].details == ("replaced: --force",)


async def test_prune_removes_an_undeclared_link_once_even_with_both_ends_in_the_file():
    markers = {
        "netns:r1": [link_marker("netns:r1", "eth1", "netns:r2", "eth1")],
        "netns:r2": [
            link_marker("netns:r2", "eth1", "netns:r1", "eth1"),
            link_marker("netns:r2", "eth2", "netns:r3", "eth1"),
        ],
        "netns:r3": [link_marker("netns:r3", "eth1", "netns:r2", "eth2")],
    }
    text = 'links:\n  - endpoints: ["netns:r1:eth9", "netns:r2:eth9"]\n  - endpoints: ["netns:r2:eth2", "netns:r3:eth1"]\n'
    loaded = parse(text, "t.yaml")
    declared = {(e.guest, e.ifname) for s in link_specs(loaded) for e in s.ends}
    jobs = await prune_jobs(FakeEngine(markers), loaded, declared, limit=4)  # type: ignore[arg-type]
    assert [(j.guest, j.ifname, j.label, j.what) for j in jobs] == [
        ("netns:r1", "eth1", "link netns:r1:eth1 -- netns:r2:eth1", "link"),
    ]
    result = await plan(FakeEngine(markers), loaded, force=True, prune=True, limit=4)  # type: ignore[arg-type]
    assert result.items[-1].line() == "- remove    link netns:r1:eth1 -- netns:r2:eth1 [t.yaml:2]"


async def test_destroy_detaches_one_end_of_each_link_and_a_gone_guest_is_fine():
    loaded = parse(FILE, "t.yaml")
    jobs = await destroy_jobs(FakeEngine(), loaded, limit=4)  # type: ignore[arg-type]
    assert [(j.guest, j.ifname, j.missing_ok, j.what) for j in jobs] == [
        ("netns:r1", "eth1", True, "link"),
        ("netns:r2", "eth2", True, "link"),
    ]


async def test_link_jobs_run_atomic_and_roll_back_by_one_end():
    engine = FakeEngine()
    loaded = parse(FILE, "t.yaml")
    runner = BatchRunner(engine, limit=4, all_or_nothing=True)  # type: ignore[arg-type]
    report = await runner.run(link_jobs(loaded, link_specs(loaded)))
    assert [o.state for o in report.outcomes] == ["rolled back", "failed"]
    assert engine.detached == [("netns:r1", "eth1")]
    assert report.exit_code == 7
    data = report.to_dict()["results"]
    assert data[0]["job"] == "link" and data[0]["what"] == "link" and data[0]["link"]


async def test_missing_containerlab_nodes_are_refused_at_their_image():
    text = 'name: lab\ntopology:\n  nodes:\n    r1: {image: alpine}\n    r2: {}\n  links:\n    - endpoints: ["r1:eth1", "r2:eth1"]\n'
    loaded = parse(text, "lab.clab.yml")
    loaded.nodes["gone-r2"] = loaded.nodes.pop("clab-lab-r2")
    (item,) = await missing_nodes(FakeEngine(), loaded, limit=4)  # type: ignore[arg-type]
    assert str(item.error).startswith(
        "lab.clab.yml:5: topology.nodes.r2: pipework does not deploy nodes (it links containers"
        " that already run): no container named gone-r2"
    )
    assert item.error is not None and item.error.exit_code == 3
