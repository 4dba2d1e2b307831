"""``pipework demo``: the main job on throwaway guests, proven by ping.

By default everything lives in anonymous network namespaces (a "host" with
the bridge, and two guests) held open by file descriptors, so nothing can
outlive the demo, even if it is killed. ``--keep`` uses named namespaces
(``ip netns``) instead and leaves them; ``--docker`` uses two containers.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from contextlib import AsyncExitStack
from typing import Annotated, Any

import typer

from pipework.cli.commands.common import options
from pipework.cli.render import describe, run_async
from pipework.engine import AddressSpec, AttachSpec, Engine, PipeworkError
from pipework.engine.engine import require_privileges
from pipework.engine.errors import ExternalCommandError, RuntimeUnavailableError
from pipework.engine.kernel.netlink import new_netns, socket_in_netns

BRIDGE = "brdemo0"
ADDRESSES = ("198.18.0.2/24", "198.18.0.3/24")
ICMP_ECHO_REQUEST = 8


def command(
    ctx: typer.Context,
    docker: Annotated[
        bool, typer.Option("--docker", help="Use two Docker containers instead of namespaces.")
    ] = False,
    image: Annotated[str, typer.Option("--image", help="Image for --docker.")] = "busybox",
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave everything in place afterwards.")
    ] = False,
) -> None:
    """Attach two throwaway guests to a bridge and prove they reach each other."""
    raise typer.Exit(run_demo(docker=docker, image=image, keep=keep, debug=options(ctx).debug))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_ping(netns_fd: int, dest: str, timeout: float = 2.0) -> float | None:
    """One ICMP echo from inside a namespace; the round trip in seconds, or None."""
    sock = socket_in_netns(netns_fd, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        ident = os.getpid() & 0xFFFF
        payload = b"pipework-demo"
        header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, 1)
        packet = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, _checksum(header + payload), ident, 1)
        start = time.monotonic()
        sock.sendto(packet + payload, (dest, 0))
        deadline = start + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (source, _) = sock.recvfrom(2048)
            except TimeoutError:
                return None
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if kind == 0 and rid == ident and source == dest:
                return time.monotonic() - start
    return None


def _ip_netns(*args: str) -> None:
    try:
        subprocess.run(["ip", "netns", *args], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise ExternalCommandError(f"ip netns {' '.join(args)} failed: {detail}".strip()) from None


def run_demo(*, docker: bool, image: str, keep: bool, debug: bool) -> int:
    async def demo() -> int:
        require_privileges()
        async with AsyncExitStack() as stack:
            fds: list[int] = []

            def hold(fd: int) -> int:
                fds.append(fd)
                stack.callback(os.close, fd)
                return fd

            if keep:
                names = [f"pwdemo-{n}" for n in ("host", "a", "b")]
                for name in names:
                    _ip_netns("add", name)
                host_ref = names[0]
                guests = [f"netns:{n}" for n in names[1:]]
                print(f"created network namespaces {', '.join(names)}")
            else:
                host_fd = hold(new_netns())
                host_ref = f"/proc/{os.getpid()}/fd/{host_fd}"
                guests = []
                print("created a throwaway 'host' network namespace for the bridge")
            if docker:
                guests = await _containers(stack, image, keep)
            elif not keep:
                guests = [f"/proc/{os.getpid()}/fd/{hold(new_netns())}" for _ in range(2)]
                print("created two throwaway guest network namespaces")
            engine = await stack.enter_async_context(Engine(host_netns=host_ref))
            attached = []
            for label, guest, address in zip("AB", guests, ADDRESSES, strict=True):
                spec = AttachSpec(host=BRIDGE, guest=guest, address=AddressSpec.parse(address))
                attachment = await engine.attach(spec)
                attached.append(attachment)
                line = describe(attachment)
                if guest.startswith("/proc/"):  # an anonymous namespace: name it
                    line = line.replace(f" in {attachment.guest.name} ", f" in guest {label} ")
                print("  " + line)
            ok = True
            for src, dst in ((attached[0], attached[1]), (attached[1], attached[0])):
                fd = await _netns_fd(engine, src.guest.key)
                try:
                    rtt = icmp_ping(fd, dst.addresses[0].split("/")[0])
                finally:
                    os.close(fd)
                a, b = src.addresses[0].split("/")[0], dst.addresses[0].split("/")[0]
                if rtt is None:
                    ok = False
                    print(f"  ping {a} -> {b}: no reply")
                else:
                    print(f"  ping {a} -> {b}: reply in {rtt * 1000:.2f} ms")
            if keep:
                print(
                    "kept everything; remove it with: "
                    + "; ".join(f"ip netns del {n}" for n in names)
                )
            else:
                print("tearing down: the namespaces, veths and bridge vanish with their fds")
        print("OK: the guests reach each other over the bridge" if ok else "FAILED")
        return 0 if ok else 1

    return run_async(demo, debug)


async def _netns_fd(engine: Engine, ref: str) -> int:
    guest = await engine.resolve(ref)
    fd = os.dup(guest.fd)
    guest.close()
    return fd


async def _containers(stack: AsyncExitStack, image: str, keep: bool) -> list[str]:
    try:
        import aiodocker
    except ImportError:  # pragma: no cover - a dependency
        raise RuntimeUnavailableError("aiodocker is not installed") from None
    client = aiodocker.Docker()
    stack.push_async_callback(client.close)
    names = []
    for suffix in ("a", "b"):
        name = f"pwdemo-{suffix}"
        config: dict[str, Any] = {
            "Image": image,
            "Cmd": ["sleep", "3600"],
            "HostConfig": {"NetworkMode": "none"},
        }
        try:
            container = await client.containers.run(config=config, name=name)
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                raise RuntimeUnavailableError(
                    f"image {image} is not available locally",
                    f"`docker pull {image}` or pass --image",
                ) from None
            if exc.status == 900:
                raise RuntimeUnavailableError(
                    "cannot reach the Docker daemon", "is dockerd running? set DOCKER_HOST"
                ) from None
            raise PipeworkError(f"cannot start container {name}: {exc.message}") from None
        if not keep:
            stack.push_async_callback(container.delete, force=True)
        names.append(name)
        print(f"started container {name} from {image}")
    return names
