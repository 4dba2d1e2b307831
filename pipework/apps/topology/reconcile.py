"""Converging on a topology file: plan, apply, prune, destroy.

``plan()`` looks and changes nothing: for each declared bridge it asks the
backend what ``prepare_host`` would do (a dry run), for each attachment
``Engine.examine()``, and with ``prune`` it lists the pipework interfaces of
the file's guests that the file no longer names.

Applying is then: bridges first (in file order), the attachments and the
links (``links:``, veth pairs straight between two guests) as one
``BatchRunner`` run (each atomic, or all-or-nothing), and the pruning last,
only when the attachments went through, since a removal cannot be undone.
``destroy`` detaches every attachment and link the file names (in one
batched teardown; detaching one end of a link removes it) and removes the
bridges pipework created for it, once empty.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from pipework.apps.runner import Job
from pipework.apps.topology.loader import Path_, TopologyFile
from pipework.apps.topology.schema import bridge_settings
from pipework.engine.errors import (
    ConflictError,
    GuestNotFoundError,
    GuestNotRunningError,
    PipeworkError,
    UnsupportedError,
)
from pipework.engine.linkspec import LinkSpec
from pipework.engine.marker import LINK_KIND
from pipework.engine.specs import AttachSpec

if TYPE_CHECKING:
    from pipework.engine.engine import Engine
    from pipework.engine.marker import Marker

ACTION_SIGNS = {
    "create": "+",
    "unchanged": "=",
    "repair": "~",
    "update": "~",
    "remove": "-",
    "deferred": ".",
    "conflict": "!",
    "error": "!",
}


@dataclass
class PlanItem:
    """One line of a plan: what would happen to one bridge or attachment."""

    what: str
    """``bridge``, ``attachment`` or ``link``."""
    action: str
    """create, unchanged, repair (rebuild a broken one), update (needs
    ``--force``), remove (``--prune``), deferred (made with its first port),
    conflict, error."""
    label: str
    where: str | None = None
    details: tuple[str, ...] = ()
    error: PipeworkError | None = None
    ifname: str | None = None

    @property
    def blocked(self) -> bool:
        """Would applying fail here?"""
        return self.error is not None

    def line(self) -> str:
        sign = ACTION_SIGNS.get(self.action, "?")
        text = f"{sign} {self.action:<9} {self.what} {self.label}"
        if self.details:
            text += f" ({'; '.join(self.details)})"
        if self.where:
            text += f" [{self.where}]"
        if self.error is not None:
            text += f": {self.error}"
        return text

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"what": self.what, "action": self.action, "label": self.label}
        if self.where:
            data["where"] = self.where
        if self.details:
            data["details"] = list(self.details)
        if self.error is not None:
            data["error"] = str(self.error)
            data["exit_code"] = self.error.exit_code
        return data


@dataclass
class Plan:
    items: list[PlanItem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """What applying would end with: the first blocking item's code, or 0."""
        return next((i.error.exit_code for i in self.items if i.error is not None), 0)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item.action] = counts.get(item.action, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": [i.to_dict() for i in self.items],
            "summary": self.summary(),
            "exit_code": self.exit_code,
        }


def specs(loaded: TopologyFile, *, force: bool = False) -> list[AttachSpec]:
    """Every attachment's ``AttachSpec``; the first bad one is a located ``UsageError``."""
    result = []
    for i in range(len(loaded.topology.attachments)):
        try:
            result.append(loaded.topology.spec(i, force=force))
        except PipeworkError as exc:
            raise loaded.error(("attachments", i), exc) from None
    return result


def attach_jobs(loaded: TopologyFile, all_specs: Sequence[AttachSpec]) -> list[Job]:
    return [Job.attach(spec, loaded.where(("attachments", i))) for i, spec in enumerate(all_specs)]


def link_specs(loaded: TopologyFile, *, force: bool = False) -> list[LinkSpec]:
    """Every link's ``LinkSpec``; the first bad one is a located ``UsageError``."""
    result = []
    for i, decl in enumerate(loaded.topology.links):
        try:
            result.append(decl.spec(force=force))
        except PipeworkError as exc:
            raise loaded.error(("links", i), exc) from None
    return result


def link_jobs(loaded: TopologyFile, all_links: Sequence[LinkSpec]) -> list[Job]:
    return [Job.link_job(spec, loaded.where(("links", i))) for i, spec in enumerate(all_links)]


def declared_ends(all_links: Sequence[LinkSpec]) -> set[tuple[str, str]]:
    """(guest as written, ifname) of every link end."""
    return {(end.guest, end.ifname) for spec in all_links for end in spec.ends}


async def missing_nodes(engine: Engine, loaded: TopologyFile, *, limit: int) -> list[PlanItem]:
    """The guests the file expects to run already (containerlab's nodes)
    that do not: pipework deploys none. One error item each, in file order."""
    items: dict[str, PlanItem] = {}
    limiter = anyio.CapacityLimiter(limit)

    async def one(guest: str, where: str, what: str) -> None:
        async with limiter:
            try:
                (await engine.resolve(guest)).close()
            except (GuestNotFoundError, GuestNotRunningError) as exc:
                error = copy.copy(exc)
                error.message = (
                    f"{where}: {what}: pipework does not deploy nodes (it links containers that already"
                    f" run): {exc.message}"
                )
                error.hint = (
                    f"start {guest} first (containerlab deploy, or docker run --name {guest})"
                )
                error.args = (error.message,)
                items[guest] = PlanItem("node", "error", guest, where, error=error)

    async with anyio.create_task_group() as tg:
        for guest, (where, what) in loaded.nodes.items():
            tg.start_soon(one, guest, where, what)
    return [items[guest] for guest in loaded.nodes if guest in items]


async def prepare_bridges(
    engine: Engine, loaded: TopologyFile, *, force: bool, dry_run: bool
) -> tuple[list[PlanItem], list[str]]:
    """Create or check the declared bridges; (what happened, which were created).

    Stops at the first bridge that fails (raising it, located) after removing
    the bridges this call created.
    """
    items: list[PlanItem] = []
    created: list[str] = []
    for i, bridge in enumerate(loaded.topology.bridges):
        where = loaded.where(("bridges", i))
        if bridge.kind not in engine.kinds:
            error = UnsupportedError(
                f"no link backend named {bridge.kind!r}",
                f"known kinds: {', '.join(engine.kinds)}",
            )
            raise loaded.error(("bridges", i, "kind"), error)
        try:
            change = await engine.prepare_host(
                bridge.kind, bridge.name, bridge_settings(bridge), force=force, dry_run=dry_run
            )
        except PipeworkError as exc:
            if dry_run:
                items.append(PlanItem("bridge", "error", bridge.name, where, error=exc))
                continue
            await release_bridges(engine, loaded, only=created)
            raise loaded.error(("bridges", i), exc) from None
        if change is None:  # the backend keeps no shared host resources
            items.append(
                PlanItem("bridge", "deferred", bridge.name, where, ("made with its first port",))
            )
            continue
        details = tuple(change.details)
        if change.action == "update" and not force:
            details += ("needs --force",)
        item = PlanItem("bridge", change.action, bridge.name, where, details)
        if dry_run and change.action == "update" and not force:
            item.error = ConflictError(f"bridge {bridge.name} differs", "add --force to change it")
        if change.action == "create":
            created.append(bridge.name)
        items.append(item)
    return items, created


async def release_bridges(
    engine: Engine, loaded: TopologyFile, *, only: Sequence[str] | None = None
) -> list[str]:
    """Remove the file's bridges (declared, or named as a host) that pipework
    created and that have no ports left; return their names.

    A host named by an attachment without a ``kind`` is offered to every
    backend's ``release_host``: each removes only what it marked.
    """
    names: dict[str, str | None] = {b.name: b.kind for b in loaded.topology.bridges}
    for spec in specs(loaded):
        names.setdefault(spec.host, spec.kind)
    removed = []
    for name, kind in names.items():
        if only is not None and name not in only:
            continue
        kinds = [kind] if kind is not None else engine.kinds
        for each in kinds:
            try:
                released = await engine.release_host(each, name)
            except PipeworkError:
                if kind is not None:
                    raise
                continue  # a guess (Open vSwitch not running, say): not ours to remove
            if released:
                removed.append(name)
                break
    return removed


async def plan(
    engine: Engine, loaded: TopologyFile, *, force: bool, prune: bool, limit: int
) -> Plan:
    """What applying ``loaded`` would do (with ``--force``, ``--prune``)."""
    missing = await missing_nodes(engine, loaded, limit=limit)
    bridges, _ = await prepare_bridges(engine, loaded, force=force, dry_run=True)
    all_specs = specs(loaded, force=force)
    items: list[PlanItem] = [PlanItem("attachment", "error", "") for _ in all_specs]
    limiter = anyio.CapacityLimiter(limit)

    async def one(i: int, spec: AttachSpec) -> None:
        where = loaded.where(("attachments", i))
        label = f"{spec.ifname or 'the default interface'} in {spec.guest} on {spec.host}"
        async with limiter:
            try:
                found = await engine.examine(spec)
            except PipeworkError as exc:
                items[i] = PlanItem("attachment", "error", label, where, error=exc)
                return
        label = f"{found.marker.ifname} in {found.guest.name} on {found.marker.kind} {found.marker.host}"
        item = PlanItem(
            "attachment",
            found.action,
            label,
            where,
            details=(addressing(spec),),
            ifname=found.marker.ifname,
        )
        if found.action == "update":
            _update(
                item,
                f"{found.marker.ifname} in {found.guest.name} is attached with another"
                " configuration",
                force=force,
            )
        elif found.action == "conflict":
            item.error = ConflictError(
                f"{found.marker.ifname} already exists in {found.guest.name} and pipework did"
                " not create it",
                "choose another ifname",
            )
        items[i] = item

    all_links = link_specs(loaded, force=force)
    linked: list[PlanItem] = [PlanItem("link", "error", "") for _ in all_links]

    async def link(i: int, spec: LinkSpec) -> None:
        async with limiter:
            linked[i] = await _link_item(engine, spec, loaded.where(("links", i)), force=force)

    async with anyio.create_task_group() as tg:
        for i, spec in enumerate(all_specs):
            tg.start_soon(one, i, spec)
        for i, link_spec in enumerate(all_links):
            tg.start_soon(link, i, link_spec)
    result = Plan([*missing, *bridges, *items, *linked])
    if prune:
        declared = {
            (spec.guest, item.ifname)
            for spec, item in zip(all_specs, items, strict=True)
            if item.ifname is not None
        } | declared_ends(all_links)
        for job in await prune_jobs(engine, loaded, declared, limit=limit):
            label = job.label.removeprefix(f"{job.what} ")
            result.items.append(PlanItem(job.what, "remove", label, job.where))
    return result


def addressing(spec: AttachSpec) -> str:
    """How the interface gets each of its addresses, for a plan line:
    ``198.18.1.2/24@198.18.1.1 static, slaac``."""
    if spec.address.method == "static" and spec.address.address is None:
        return "no address"
    return ", ".join(f"{a} static" if a.method == "static" else a.word for a in spec.addresses)


def _update(item: PlanItem, changed: str, *, force: bool) -> None:
    """An update's plan line: replaced with ``--force``, else the error
    ``changed`` (what stands has another configuration)."""
    if force:
        item.details += ("replaced: --force",)
    else:
        item.details += ("needs --force",)
        item.error = ConflictError(changed, "add --force to replace it")


async def _link_item(engine: Engine, spec: LinkSpec, where: str, *, force: bool) -> PlanItem:
    """The plan line of one link: what ``Engine.link`` would do, and why it would fail."""
    label = str(spec)
    try:
        found = await engine.examine_link(spec)
    except PipeworkError as exc:
        return PlanItem("link", "error", label, where, error=exc)
    item = PlanItem("link", found.action, label, where)
    ends = [e for e in (found.a, found.b) if e.action == found.action]
    at = " and ".join(f"{e.marker.ifname} in {e.guest.name}" for e in ends)
    if found.action == "update":
        verb = "is" if len(ends) == 1 else "are"
        _update(item, f"{at} {verb} linked with another configuration", force=force)
    elif found.action == "conflict":
        item.error = ConflictError(
            f"{at} already exists and pipework did not create it (or cannot verify it)",
            "choose another interface name",
        )
    return item


async def prune_jobs(
    engine: Engine,
    loaded: TopologyFile,
    declared: set[tuple[str, str]],
    *,
    limit: int,
) -> list[Job]:
    """Detach jobs for the pipework interfaces of the file's guests that the
    file does not name (``declared``: (guest as written, ifname)). An
    undeclared link end is one job for the whole link (detaching either end
    removes both), even when both its guests are the file's."""
    guests: dict[str, Path_] = {}
    for i, decl in enumerate(loaded.topology.attachments):
        guests.setdefault(decl.guest, ("attachments", i, "guest"))
    for i, link in enumerate(loaded.topology.links):
        for j, end in enumerate(link.endpoints):
            guests.setdefault(end.guest, ("links", i, "endpoints", j))
    found: dict[str, tuple[str, list[Marker]]] = {}
    limiter = anyio.CapacityLimiter(limit)

    async def one(guest: str) -> None:
        async with limiter:
            try:
                info, markers = await engine.owned(guest)
            except (GuestNotFoundError, GuestNotRunningError):
                return  # a guest that is gone took its interfaces with it
        undeclared = [m for m in markers if (guest, m.ifname) not in declared]
        found[guest] = (info.key, sorted(undeclared, key=lambda m: m.ifname))

    async with anyio.create_task_group() as tg:
        for guest in guests:
            tg.start_soon(one, guest)
    names = {key: guest for guest, (key, _) in found.items()}
    jobs: list[Job] = []
    taken: set[tuple[str, str]] = set()
    for guest, path in guests.items():
        key, markers = found.get(guest, ("", []))
        for marker in markers:
            if (key, marker.ifname) in taken:
                continue  # the other end of a link already being removed
            where = loaded.where(path)
            if marker.kind != LINK_KIND:
                jobs.append(Job.detach(guest, marker.ifname, where))
                continue
            taken.add((marker.host, marker.peer))
            peer = f"{names.get(marker.host, marker.host)}:{marker.peer}"
            label = f"link {guest}:{marker.ifname} -- {peer}"
            jobs.append(Job.detach(guest, marker.ifname, where, label=label, what="link"))
    return jobs


async def destroy_jobs(engine: Engine, loaded: TopologyFile, *, limit: int) -> list[Job]:
    """Detach jobs for every attachment and link the file names (a link: its
    first end, which takes the other with it)."""
    all_specs = specs(loaded)
    jobs: list[Job | None] = [None] * len(all_specs)
    limiter = anyio.CapacityLimiter(limit)

    async def one(i: int, spec: AttachSpec) -> None:
        ifname = spec.ifname
        if ifname is None:
            backend = engine.backends.get(spec.kind or "")
            ifname = backend.default_ifname if backend is not None else None
        if ifname is None:
            async with limiter:
                try:
                    ifname = (await engine.examine(spec)).marker.ifname
                except PipeworkError:
                    ifname = "eth1"
        jobs[i] = Job.detach(spec.guest, ifname, loaded.where(("attachments", i)), missing_ok=True)

    async with anyio.create_task_group() as tg:
        for i, spec in enumerate(all_specs):
            tg.start_soon(one, i, spec)
    links = [
        Job.detach(
            spec.a.guest,
            spec.a.ifname,
            loaded.where(("links", i)),
            missing_ok=True,
            label=f"link {spec}",
            what="link",
        )
        for i, spec in enumerate(link_specs(loaded))
    ]
    return [job for job in jobs if job is not None] + links


__all__ = [
    "Plan",
    "PlanItem",
    "attach_jobs",
    "declared_ends",
    "destroy_jobs",
    "link_jobs",
    "link_specs",
    "missing_nodes",
    "plan",
    "prepare_bridges",
    "prune_jobs",
    "release_bridges",
    "specs",
]
