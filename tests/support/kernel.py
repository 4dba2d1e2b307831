"""What this kernel can do, probed once in a throwaway network namespace.

Integration tests for link kinds the kernel lacks skip with exactly this
reason; everything else runs for real.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

#: ``ip link add`` arguments that need each feature (besides a parent).
PROBES = {
    "dummy": ["pwtprobe", "type", "dummy"],
    "ipvlan": ["link", "pwtparent", "name", "pwtprobe", "type", "ipvlan"],
    "macvlan": ["link", "pwtparent", "name", "pwtprobe", "type", "macvlan"],
    "vlan": ["link", "pwtparent", "name", "pwtprobe", "type", "vlan", "id", "10"],
    "ipoib": ["link", "pwtparent", "name", "pwtprobe", "type", "ipoib"],
    "bridge VLAN filtering": ["pwtprobe", "type", "bridge", "vlan_filtering", "1"],
}
MODULES = {
    "dummy": "module dummy",
    "ipvlan": "module ipvlan",
    "macvlan": "module macvlan",
    "vlan": "module 8021q",
    "ipoib": "module ib_ipoib",
    "bridge VLAN filtering": "CONFIG_BRIDGE_VLAN_FILTERING",
}


@functools.cache
def supports(feature: str) -> bool:
    """True if the kernel knows ``feature`` (probed in a private namespace).

    IPoIB children of a veth fail either way; "Unknown device type" is what
    tells a missing module from a parent that is not InfiniBand.
    """
    script = "ip link add pwtparent type veth peer name pwtpeer && ip link add " + " ".join(
        PROBES[feature]
    )
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    if feature == "ipoib":
        return "Unknown device type" not in result.stderr
    return result.returncode == 0


def infiniband_interfaces() -> list[str]:
    """Host interfaces of type 32 (ARPHRD_INFINIBAND)."""
    net = Path("/sys/class/net")
    return [p.name for p in net.iterdir() if (p / "type").read_text().strip() == "32"]


def require(feature: str) -> None:
    """Skip (also in CI) when the kernel lacks ``feature``: that is a fact
    about the machine, not a missing package."""
    if not supports(feature):
        pytest.skip(f"this kernel has no {feature} support ({MODULES[feature]})")
