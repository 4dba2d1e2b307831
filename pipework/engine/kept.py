"""Kept address clients: what a provider leaves running after an attach.

A kept DHCP client (``udhcpc-f``...) stays to renew its lease after the
attach that started it has ended. ``pipework daemon`` supervises them
(``pipework/daemon/supervisor.py``): it asks every address provider which
kept clients it knows (``AddressProvider.kept()``, gathered by
``Engine.kept_clients()``), notices renewals and exits, and starts a dead
one again through the provider's own ``configure`` (``Engine.revive_kept()``)
while its interface is still there.

This module holds the record a provider describes one client with, and the
checks the engine makes before it acts on one: what a provider reads back
from its state files may have been tampered with, so nothing in a record is
trusted until the kernel confirms it (the guest's namespace identity, the
interface's marker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipework.engine.marker import Marker
from pipework.engine.specs import AddressSpec, GuestInfo

Revival = Literal["restarted", "alive", "gone"]
"""What ``Engine.revive_kept`` did: started the client again; nothing, it
runs (an attach just made it); nothing, its attachment is gone."""


@dataclass(frozen=True)
class KeptClient:
    """One kept client, as its provider found it (``AddressProvider.kept()``).

    ``alive`` is the provider's verdict from evidence (the recorded process
    with its start time, the expected program in the expected sandbox), not
    a pidfile's say-so. ``address`` is the request to start it again with;
    ``anchor`` and ``netns`` say where the guest's namespace is and which one
    it must be. The lease fields are what the client last reported (None
    when unknown); ``renewals`` counts its bound and renew events and
    ``lease_stamp`` changes whenever it reports again.
    """

    provider: str
    guest: str
    """The guest's key, as markers hold it."""
    guest_name: str
    ifname: str
    address: AddressSpec
    alive: bool
    pid: int | None = None
    starttime: int | None = None
    """The process's start time (clock ticks since boot, /proc/PID/stat)."""
    runtime: str = ""
    guest_pid: int | None = None
    anchor: str | None = None
    """A path whose namespace is the guest's while the guest lives."""
    netns: tuple[int, int] | None = None
    """The guest namespace's identity (device, inode) when the client was started."""
    state: str = ""
    """Where the provider keeps the client's files (for messages)."""
    lease_address: str | None = None
    lease_seconds: int | None = None
    renewals: int = 0
    lease_stamp: str = ""
    renewed_at: float | None = None
    """When the client last reported a lease (Unix seconds), if it said."""

    @property
    def identity(self) -> tuple[str, str, str]:
        """Which attachment it serves: (provider, guest key, interface)."""
        return (self.provider, self.guest, self.ifname)

    @property
    def guest_info(self) -> GuestInfo:
        return GuestInfo(
            name=self.guest_name or self.guest,
            key=self.guest,
            runtime=self.runtime or "path",
            pid=self.guest_pid,
        )

    def serves(self, marker: Marker | None) -> bool:
        """Does the interface marked ``marker`` belong to this client's attachment?"""
        return (
            marker is not None
            and marker.guest == self.guest
            and marker.ifname == self.ifname
            and bool(marker.addr)
            and marker.addr != "static"
        )


__all__ = ["KeptClient", "Revival"]
