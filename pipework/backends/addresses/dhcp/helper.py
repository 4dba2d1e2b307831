"""IPSPEC ``dhcp``: busybox ``udhcpc`` in a helper container.

The helper shares the guest container's network namespace (Docker's
``--net container:GUEST``) and nothing else, with only the capabilities
NET_ADMIN and NET_RAW. It is created and started through aiodocker from
``--dhcp-image`` (default ``busybox``), and runs pipework's hook
(``pipework.backends.addresses.dhcp.toolbox.hook_script``, copied in before it starts), which
configures the guest interface and prints the lease on the helper's
standard output, where pipework reads it.

- ``dhcp``: one-shot. pipework waits for the lease, then removes the helper.
- ``dhcp:-f``: kept. The helper stays to renew the lease; ``detach`` (and a
  ``--force`` re-run, a rollback) removes it.

Helpers are named ``pipework-dhcp-HASH`` and labelled ``pipework.helper=dhcp``,
``pipework.guest=CONTAINER_ID``, ``pipework.ifname=IFNAME``, so ``detach``
and ``gc`` find them from the interface's marker. A helper lives beside its
guest, in the Docker-compatible API its resolver named (``GuestInfo.api``:
Docker, or Podman's service, which the state directory records); only such
container guests can have one, others use a host client (``udhcpc``...).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from pipework.backends.addresses.dhcp.toolbox import (
    HELPER_OPTIONS,
    IMAGE,
    UDHCPC_OPTIONS,
    GuestResolvConf,
    Lease,
    StateDir,
    attachment_id,
    base_meta,
    check_lease,
    check_request,
    dhcp_hostname,
    give_back_default_route,
    guest_alive,
    hook_script,
    intact_result,
    keep_default_route,
    last_logged_report,
    last_words,
    lease_timeout,
    no_lease,
    parse_report,
    read_text,
    same_netns,
    udhcpc_args,
    wants_dns,
    write_guest_dns,
)
from pipework.backends.shared.dockerapi import API_DETAIL, DEFAULT_HOST, docker_host
from pipework.engine import (
    AddressContext,
    AddressProvider,
    AddressResult,
    AddressSpec,
    AttachSpec,
    DetachContext,
    EngineConfig,
    ExternalCommandError,
    GcContext,
    GuestInfo,
    PipeworkError,
    RuntimeUnavailableError,
    UnsupportedError,
    UsageError,
    hookimpl,
)
from pipework.engine.options import check_options
from pipework.records import Record

T = TypeVar("T")

DEFAULT_IMAGE = "busybox"
HOOK_DIR = "/pipework"
"""A directory of the helper's own, copied in with the hook before it starts:
the hook writes its report there. Not the root directory, which some images
(or Podman's storage) make read-only for a root without CAP_DAC_OVERRIDE."""
HOOK = f"{HOOK_DIR}/dhcp-hook"
"""The hook inside the helper."""
HELPER_REPORT = f"{HOOK_DIR}/lease"
"""Where the hook keeps its report inside the helper."""
LEASE_COPY = "lease"
"""The last report read from the helper, kept in the state directory."""
POLL = 0.1
LABEL_HELPER = "pipework.helper"
LABEL_GUEST = "pipework.guest"
LABEL_IFNAME = "pipework.ifname"


class Daemon(Record):
    """The Docker-compatible API a helper is made in: its guest's runtime's
    (``GuestInfo.api``: the Docker daemon, or Podman's service)."""

    url: str
    runtime: str = "docker"

    @classmethod
    def docker(cls) -> Daemon:
        return cls(docker_host())

    @classmethod
    def of(cls, api: str | None, runtime: str | None) -> Daemon:
        """The guest's (or a state's recorded) API; Docker's when none is known."""
        return cls(api, runtime or "docker") if api else cls.docker()

    @property
    def label(self) -> str:
        return "the Docker daemon" if self.runtime == "docker" else self.runtime.capitalize()

    @property
    def hint(self) -> str:
        if self.runtime == "docker":
            return "is dockerd running? set DOCKER_HOST to its socket"
        return f"is the {self.label} service running? see `pipework plugins`"


def _docker_here() -> bool:
    """Is there a Docker daemon to ask? A host without one (no DOCKER_HOST,
    no socket) has no helpers there, and gc need not say it could not look."""
    host = docker_host()
    return host != DEFAULT_HOST or Path(DEFAULT_HOST[len("unix://") :]).exists()


def helper_name(guest_key: str, ifname: str) -> str:
    return "pipework-dhcp-" + attachment_id(guest_key, ifname)


def hook_archive() -> bytes:
    """A tar holding the hook, for Docker's PUT /containers/ID/archive."""
    import tarfile  # lazy: every CLI run loads this plugin, few use DHCP

    data = hook_script(HELPER_REPORT, echo=True).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        directory = tarfile.TarInfo(HOOK_DIR.lstrip("/"))
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        info = tarfile.TarInfo(HOOK.lstrip("/"))
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class DhcpHelperProvider(AddressProvider):
    """IPSPEC ``dhcp`` and ``dhcp:OPTS``."""

    name = "dhcp"
    options = HELPER_OPTIONS

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._clients: dict[str, Any] = {}

    def handles(self, address: AddressSpec) -> bool:
        return address.method == "dhcp"

    @staticmethod
    def mode(address: AddressSpec) -> tuple[bool, tuple[str, ...]]:
        """(kept?, udhcpc options): ``-f`` keeps the helper, as in the original."""
        keep = "-f" in address.options
        options = tuple(o for o in address.options if o != "-f")
        UDHCPC_OPTIONS.check(options)
        return keep, options

    def validate(self, spec: AttachSpec, guest: GuestInfo) -> None:
        if API_DETAIL not in guest.details and guest.runtime != "docker":
            raise UsageError(
                f"the dhcp helper container needs a Docker or Podman guest; {guest.name} is not one",
                "use the host clients dhclient, udhcpc or dhcpcd instead",
            )
        check_options(self.name, self.options, {}, spec.address.settings)
        check_request(spec, guest)
        self.mode(spec.address)

    # -- Docker --------------------------------------------------------------------------
    def _client(self, daemon: Daemon | None = None) -> Any:
        url = (daemon or Daemon.docker()).url
        if url not in self._clients:
            import aiodocker

            self._clients[url] = aiodocker.Docker(url=url)
        return self._clients[url]

    async def _call(self, what: str, call: Awaitable[T], daemon: Daemon | None = None) -> T:
        """A Docker API call, bounded, with its failures as pipework errors."""
        import aiodocker

        daemon = daemon or Daemon.docker()
        try:
            with anyio.fail_after(self.config.timeout):
                return await call
        except TimeoutError:
            raise RuntimeUnavailableError(
                f"{daemon.label} at {daemon.url} did not answer within "
                f"{self.config.timeout:g} s ({what})"
            ) from None
        except aiodocker.DockerError as exc:
            if exc.status == 900:
                raise RuntimeUnavailableError(
                    f"cannot reach {daemon.label} at {daemon.url} ({what}): {exc.message}",
                    daemon.hint,
                ) from None
            raise

    async def _remove(self, container_id: str, daemon: Daemon | None = None) -> None:
        import aiodocker

        try:
            await self._call(
                "removing a dhcp helper",
                self._client(daemon).containers.container(container_id).delete(force=True),
                daemon,
            )
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise PipeworkError(
                    f"cannot remove dhcp helper {container_id[:12]}: {exc.message}"
                ) from None

    async def _helpers(
        self,
        guest_key: str | None = None,
        ifname: str | None = None,
        daemon: Daemon | None = None,
    ) -> list[Any]:
        labels = [f"{LABEL_HELPER}=dhcp"]
        if guest_key is not None:
            labels.append(f"{LABEL_GUEST}={guest_key}")
        if ifname is not None:
            labels.append(f"{LABEL_IFNAME}={ifname}")
        filters = json.dumps({"label": labels})
        return list(
            await self._call(
                "listing dhcp helpers",
                self._client(daemon).containers.list(all=True, filters=filters),
                daemon,
            )
        )

    async def _create(
        self, ctx: AddressContext, config: dict[str, Any], image: str, daemon: Daemon
    ) -> Any:
        import aiodocker

        name = helper_name(ctx.guest.info.key, ctx.ifname)
        containers = self._client(daemon).containers
        try:
            return await self._call(
                "creating a dhcp helper", containers.create(config, name=name), daemon
            )
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                raise UnsupportedError(
                    f"image {image} is not available to {daemon.label}",
                    f"`{daemon.runtime} pull {image}`, or choose one with --dhcp-image",
                ) from None
            if exc.status == 409:
                raise PipeworkError(
                    f"a container named {name} already exists",
                    f"remove it with `{daemon.runtime} rm -f {name}` (or run `pipework gc`)",
                ) from None
            raise PipeworkError(f"cannot create the dhcp helper {name}: {exc.message}") from None

    async def _start(self, container: Any, image: str, daemon: Daemon) -> None:
        import aiodocker

        try:
            await self._call("copying the hook", container.put_archive("/", hook_archive()), daemon)
            await self._call("starting a dhcp helper", container.start(), daemon)
        except aiodocker.DockerError as exc:
            if "executable file not found" in exc.message or "no such file" in exc.message:
                raise UnsupportedError(
                    f"image {image} has no udhcpc", "use a busybox image with --dhcp-image"
                ) from None
            raise PipeworkError(f"cannot start the dhcp helper: {exc.message}") from None

    # -- attach ---------------------------------------------------------------------------
    async def configure(self, ctx: AddressContext) -> AddressResult:
        info = ctx.guest.info
        self.validate(ctx.spec, info)
        keep, options = self.mode(ctx.address)
        timeout = lease_timeout(ctx.address)
        image = str(ctx.address.settings.get(IMAGE) or DEFAULT_IMAGE)
        dns = GuestResolvConf.locate(info, ctx.guest_ns.key) if wants_dns(ctx.address) else None
        daemon = Daemon.of(info.details.get(API_DETAIL), info.runtime)
        state = StateDir.of(self.config.run_dir, info.key, ctx.ifname)
        await self._discard(state, info.key, ctx.ifname)
        await keep_default_route(ctx, self.config.run_dir)
        meta = base_meta(ctx, self.name, "kept" if keep else "one-shot")
        # "helper": the container to remove on detach or rollback (None once
        # a one-shot helper is gone); "api": where it lives (Docker, Podman).
        helper = helper_name(info.key, ctx.ifname)
        state.create({**meta, "image": image, "helper": helper, "api": daemon.url})

        async def discard() -> None:
            await self._discard(state, info.key, ctx.ifname)

        ctx.journal.record(f"dhcp helper for {ctx.ifname}", discard)
        hostname = dhcp_hostname(info)
        args = udhcpc_args(ctx.ifname, HOOK, hostname, timeout, oneshot=not keep, foreground=True)
        config: dict[str, Any] = {
            "Image": image,
            "Entrypoint": ["udhcpc"],
            "Cmd": [*args, *options],
            "Labels": {
                LABEL_HELPER: "dhcp",
                LABEL_GUEST: info.key,
                LABEL_IFNAME: ctx.ifname,
                "pipework.guest-name": info.name,
                "pipework.mode": "kept" if keep else "one-shot",
            },
            "HostConfig": {
                "NetworkMode": f"container:{info.key}",
                "CapDrop": ["ALL"],
                "CapAdd": ["NET_ADMIN", "NET_RAW"],
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
            },
        }
        container = await self._create(ctx, config, image, daemon)
        await self._start(container, image, daemon)
        lease = await self._wait(ctx, container, timeout, daemon)
        if not keep:
            await self._remove(container.id, daemon)
            state.update_meta(helper=None)
        await check_lease(ctx, lease, "udhcpc (dhcp helper)")
        if dns is not None:
            await write_guest_dns(ctx, lease, dns, state)
        return lease.result()

    async def _wait(
        self, ctx: AddressContext, container: Any, seconds: float, daemon: Daemon
    ) -> Lease:
        """Read the helper's output until its hook reports a lease (``seconds`` at most)."""
        with anyio.move_on_after(seconds):
            while True:
                # State first, then output: a helper that had exited by then
                # has all it printed in the output (a one-shot helper exits
                # right after its report).
                details = await self._call("inspecting the dhcp helper", container.show(), daemon)
                logs = await self._logs(container, daemon)
                report = last_logged_report(logs)
                if report is not None:
                    try:
                        lease = Lease.from_report(report)
                    except (KeyError, ValueError) as exc:
                        raise PipeworkError(
                            f"the dhcp helper reported an unusable lease for {ctx.ifname}: {exc}"
                        ) from None
                    if lease is not None:
                        state = StateDir.of(self.config.run_dir, ctx.guest.info.key, ctx.ifname)
                        state.write(LEASE_COPY, "\n".join(f"{k}={v}" for k, v in report.items()))
                        return lease
                if not details["State"]["Running"]:
                    said = last_words(await self._logs(container, daemon, stderr=True))
                    raise ExternalCommandError(
                        f"the dhcp helper exited (status {details['State']['ExitCode']}) without "
                        f"a lease for {ctx.ifname} in {ctx.guest.name}: {said}",
                        "check the udhcpc options and the DHCP server",
                    )
                await anyio.sleep(POLL)
        said = last_words(await self._logs(container, daemon, stderr=True))
        raise no_lease("udhcpc (dhcp helper)", ctx, seconds, said)

    async def _logs(self, container: Any, daemon: Daemon, stderr: bool = False) -> str:
        lines = await self._call(
            "reading the dhcp helper's output", container.log(stdout=True, stderr=stderr), daemon
        )
        return "".join(lines)

    # -- detach, inspect, gc -------------------------------------------------------------------
    async def _discard(self, state: StateDir, guest_key: str, ifname: str) -> None:
        """Remove the helpers of one attachment, restore DNS, remove its state."""
        meta = state.meta()
        if meta.get("helper") or not meta:  # a helper may run (or we cannot tell)
            daemon = Daemon.of(meta.get("api"), meta.get("runtime"))
            for helper in await self._helpers(guest_key, ifname, daemon):
                await self._remove(helper.id, daemon)
        GuestResolvConf.restore(state)
        state.remove()

    async def release(self, ctx: DetachContext) -> None:
        marker = ctx.marker
        state = StateDir.of(self.config.run_dir, marker.guest, marker.ifname)
        # The route first: a client stopping may take its router's route away.
        await give_back_default_route(ctx, self.config.run_dir)
        await self._discard(state, marker.guest, marker.ifname)

    async def inspect(self, ctx: DetachContext) -> AddressResult | None:

        marker = ctx.marker
        state = StateDir.of(self.config.run_dir, marker.guest, marker.ifname)
        meta = state.meta()
        if meta.get("provider") != self.name:
            return None
        report = parse_report(read_text(state.file(LEASE_COPY)) or "")
        if meta.get("mode") == "kept" and not await self._helper_running(meta):
            return None
        return await intact_result(ctx, report)

    async def _helper_running(self, meta: dict[str, Any]) -> bool | None:
        """Is a kept attachment's helper running? None when it is gone."""
        import aiodocker

        daemon = Daemon.of(meta.get("api"), meta.get("runtime"))
        try:
            details = await self._call(
                "inspecting the dhcp helper",
                self._client(daemon).containers.container(meta["helper"]).show(),
                daemon,
            )
        except aiodocker.DockerError:
            return None
        return bool(details["State"]["Running"])

    async def describe(self, ctx: DetachContext) -> str:
        """The helper's state, for ``pipework ls``."""
        meta = StateDir.of(self.config.run_dir, ctx.marker.guest, ctx.marker.ifname).meta()
        if meta.get("provider") != self.name:
            return "no state (lease not renewed)"
        if meta.get("mode") != "kept":
            return "one-shot (lease configured, helper removed)"
        running = await self._helper_running(meta)
        if running is None:
            return f"kept, helper {meta.get('helper')} gone (a re-run restarts it)"
        return f"kept, helper {meta.get('helper')} {'running' if running else 'stopped'}"

    async def collect_garbage(self, ctx: GcContext) -> list[str]:
        """Helpers whose guest is gone, stopped or restarted, and their state.

        Helpers are looked for in Docker and in every other API (Podman) a
        state directory names."""
        dry_run = ctx.dry_run
        found = []
        daemons = {Daemon.docker()} if _docker_here() else set()
        for state in StateDir.all(self.config.run_dir):
            meta = state.meta()
            if meta.get("provider") == self.name:
                daemons.add(Daemon.of(meta.get("api"), meta.get("runtime")))
        for daemon in sorted(daemons, key=lambda d: d.url):
            found += await self._collect_helpers(daemon, dry_run)
        for state in StateDir.all(self.config.run_dir):
            meta = state.meta()
            if meta.get("provider") == self.name and not guest_alive(meta):
                found.append(f"dhcp state {state} of {meta.get('guest_name')}")
                if not dry_run:
                    state.remove()
        return found

    async def _collect_helpers(self, daemon: Daemon, dry_run: bool) -> list[str]:
        import aiodocker

        found = []
        for helper in await self._helpers(daemon=daemon):
            details = await self._call("inspecting a dhcp helper", helper.show(), daemon)
            labels = details["Config"].get("Labels") or {}
            guest_key = labels.get(LABEL_GUEST, "")
            try:
                guest = await self._call(
                    "inspecting a guest",
                    self._client(daemon).containers.container(guest_key).show(),
                    daemon,
                )
            except aiodocker.DockerError:
                guest = {"State": {}}  # gone
            if guest["State"].get("Running"):
                helper_pid = details["State"].get("Pid") or 0
                guest_pid = guest["State"].get("Pid") or 0
                if not helper_pid or self._same_netns(helper_pid, guest_pid):
                    continue  # a live helper of a live guest, or a stopped one to look at
            name = str(details.get("Name", helper.id)).lstrip("/")
            found.append(f"dhcp helper {name} of {labels.get('pipework.guest-name', guest_key)}")
            if not dry_run:
                await self._remove(helper.id, daemon)
        return found

    @staticmethod
    def _same_netns(pid: int, other: int) -> bool:
        try:
            st = os.stat(f"/proc/{other}/ns/net")
        except OSError:
            return False
        return same_netns(f"/proc/{pid}/ns/net", (st.st_dev, st.st_ino))

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.close()


@hookimpl
def pipework_address_providers(config: EngineConfig) -> list[DhcpHelperProvider]:
    return [DhcpHelperProvider(config)]


__all__ = ["DhcpHelperProvider", "helper_name"]
