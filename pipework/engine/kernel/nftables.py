"""The nftables ruleset generation: has a namespace's firewall changed?

Every committed nftables transaction in a network namespace (``nft``,
iptables-nft, Docker through either) increments that namespace's ruleset
generation, which ``NFT_MSG_GETGEN`` on a NETLINK_NETFILTER socket returns.
A verdict drawn from reading the ruleset therefore holds as long as the
generation is the same: the bridge backend keeps its FORWARD-trap verdict
per generation instead of running ``nft`` on every attach.

The generation alone does not name a namespace, and namespace inode numbers
are reused, so a ``Generation`` also carries the namespace's cookie
(``SO_NETNS_COOKIE``, unique until the next boot) and the boot's id.
iptables-legacy tables are not nftables and move no generation: callers
must not use one for them.
"""

from __future__ import annotations

import socket
import struct

from pipework.engine.kernel.netlink import socket_in_netns
from pipework.engine.kernel.rtnl import Rtnl, attributes

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
SO_NETNS_COOKIE = 71
"""socket(7), Linux 5.14 and later: the namespace's 64-bit cookie."""
BOOT_ID = "/proc/sys/kernel/random/boot_id"
TIMEOUT = 1.0
"""Seconds to wait for the kernel's answer (it answers at once)."""

_NFGENMSG = struct.Struct("!BBH")
"""struct nfgenmsg: family, version (NFNETLINK_V0), res_id (big-endian)."""

Generation = tuple[str, int, int]
"""(boot id, namespace cookie, ruleset generation)."""


def request_body() -> bytes:
    """The body of NFT_MSG_GETGEN: an nfgenmsg for any family."""
    return _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)


def parse_generation(payload: bytes) -> int | None:
    """The generation id in an NFT_MSG_NEWGEN answer's payload (None: none there)."""
    if len(payload) < _NFGENMSG.size:
        return None
    value = attributes(payload[_NFGENMSG.size :]).get(NFTA_GEN_ID)
    if value is None or len(value) != 4:
        return None
    (generation,) = struct.unpack("!I", value)
    return int(generation)


def parse_cookie(raw: bytes) -> int | None:
    """``SO_NETNS_COOKIE``'s value (None: not 8 bytes, or 0)."""
    if len(raw) != 8:
        return None
    (cookie,) = struct.unpack("=Q", raw)
    return int(cookie) or None


def boot_id() -> str | None:
    try:
        with open(BOOT_ID) as handle:
            text = handle.read(64).strip()
    except OSError:
        return None
    return text or None


def generation(fd: int | None) -> Generation | None:
    """The namespace ``fd``'s ruleset generation (None: its own), or None when
    the kernel cannot say (no nf_tables, a kernel before 5.14, no permission)."""
    boot = boot_id()
    if boot is None:
        return None
    try:
        sock = socket_in_netns(fd, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except Exception:  # an OSError, or the namespace cannot be entered
        return None
    try:
        sock.settimeout(TIMEOUT)
        cookie = parse_cookie(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))
        if cookie is None:
            return None
        answers = Rtnl(sock).request(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN, 0, request_body())
    except OSError:  # RtnlError included: nf_tables missing, EPERM; a timeout
        return None
    finally:
        sock.close()
    found = [g for g in map(parse_generation, answers) if g is not None]
    return (boot, cookie, found[0]) if found else None


__all__ = ["Generation", "generation", "parse_cookie", "parse_generation", "request_body"]
