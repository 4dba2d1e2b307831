"""What keeps pipework 0.1.0's attachments and callers working.

Two things live here, and nothing else should need them:

- **The 0.1.0 fingerprint.** 0.1.0 kept backend options in the core data
  model and fingerprinted four of them in places of their own
  (``fingerprint_v1``, frozen: never change it). Today's fingerprint
  (``AttachSpec.fingerprint``, "v2") is computed generically from the
  options that are set; for a request without settings it is the same
  digest, for one with ``--pkey``, ``--direct-phys``, ``--dns`` or
  ``--allow-forward`` it differs. An interface whose marker carries either
  for a request is the same configuration (``same_configuration``), so
  ``ls``, ``detach``, ``gc`` and an unchanged re-run work on attachments
  0.1.0 made. A re-run leaves such a marker as it is; only a replacement
  (``--force``) writes a v2 one.
- **0.1.0's attribute names** (``AttachSpec.pkey``, ``.direct_phys``,
  ``.allow_forward``; ``AddressSpec.dns``, ``.timeout``, ``.image``;
  ``GuestInfo.api``; ``AttachmentRecord.dhcp``): read-only views of the
  generic mappings that replaced them. The constructors still take them as
  keyword arguments (dataclass ``InitVar``\\ s) and fold them in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipework.engine.options import OptionValue

if TYPE_CHECKING:
    from pipework.engine.marker import Marker
    from pipework.engine.specs import AddressSpec, AttachSpec, RouteSpec

UNSET: Any = type("Unset", (), {"__repr__": lambda self: "<not given>"})()
"""The default of a legacy keyword argument: "not given" (None and False
are values: they clear the setting)."""

# -- the keys 0.1.0's fields became ------------------------------------------------------

LINK_KEYS = ("pkey", "direct_phys", "allow_forward")
"""``AttachSpec.settings`` keys for ``pkey=``, ``direct_phys=``, ``allow_forward=``
(declared by the ipoib, phys and bridge backends)."""
ADDRESS_KEYS = ("dns", "timeout", "image")
"""``AddressSpec.settings`` keys for ``dns=``, ``timeout=``, ``image=``
(declared by the DHCP providers)."""
UNCOUNTED_ADDRESS_KEYS = frozenset({"timeout", "image"})
"""Settings 0.1.0 left out of its fingerprint (they say how, not what); the
v2 fingerprint leaves them out too, whatever a provider declares."""
API_KEY = "api"
"""The ``GuestInfo.details`` key of ``GuestInfo.api``."""


class LegacyAttachFields:
    """``AttachSpec``'s 0.1.0 fields, read from ``settings``."""

    settings: Mapping[str, OptionValue]

    @property
    def pkey(self) -> int | None:
        """``--pkey``: the IPoIB partition key (``settings["pkey"]``)."""
        value = self.settings.get("pkey")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def direct_phys(self) -> bool:
        """``--direct-phys`` (``settings["direct_phys"]``)."""
        return bool(self.settings.get("direct_phys", False))

    @property
    def allow_forward(self) -> bool:
        """``--allow-forward`` (``settings["allow_forward"]``)."""
        return bool(self.settings.get("allow_forward", False))


class LegacyAddressFields:
    """``AddressSpec``'s 0.1.0 fields, read from ``settings``."""

    settings: Mapping[str, OptionValue]

    @property
    def dns(self) -> bool:
        """``--dns`` (``settings["dns"]``)."""
        return bool(self.settings.get("dns", False))

    @property
    def timeout(self) -> float | None:
        """``--dhcp-timeout`` in seconds (``settings["timeout"]``)."""
        value = self.settings.get("timeout")
        return float(value) if isinstance(value, int | float) else None

    @property
    def image(self) -> str | None:
        """``--dhcp-image`` (``settings["image"]``)."""
        value = self.settings.get("image")
        return value if isinstance(value, str) else None


class LegacyGuestFields:
    """``GuestInfo.api``, read from ``details``."""

    details: Mapping[str, str]

    @property
    def api(self) -> str | None:
        """The Docker-compatible API that manages the guest (``details["api"]``)."""
        return self.details.get(API_KEY)


class LegacyRecordFields:
    """``AttachmentRecord.dhcp``, read from ``address_state``."""

    address_state: str | None

    @property
    def dhcp(self) -> str | None:
        """The address provider's ``describe()`` text (``address_state``)."""
        return self.address_state


def drop_defaults(cls: type, *names: str) -> None:
    """Remove the class attributes ``@dataclass`` leaves for ``InitVar`` defaults,
    so that the legacy views above are what ``obj.NAME`` reads."""
    for name in names:
        if name in vars(cls):
            delattr(cls, name)


# -- the 0.1.0 fingerprint (frozen) ---------------------------------------------------------


def fingerprint_v1(spec: AttachSpec, backend: str, host: str) -> str:
    """``AttachSpec.fingerprint()`` exactly as pipework 0.1.0 computed it.

    Never change this function: markers in running systems hold its output.
    It formats the address and the routes itself, so a later change of
    ``AddressSpec.__str__`` or ``RouteSpec.__str__`` cannot alter it.
    """
    link, address = spec.settings, spec.address.settings
    parts = [
        backend,
        host,
        _address_v1(spec.address),
        spec.mac or "",
        str(spec.vlan or ""),
        spec.tag or "",
        str(link.get("pkey") or ""),
        str(spec.mtu or ""),
        spec.host_ifname or "",
        "direct" if link.get("direct_phys") else "",
        *(f"{k}={v}" for k, v in sorted(spec.options.items())),
        *(["dns"] if address.get("dns") else []),
        *(f"route={_route_v1(route)}" for route in spec.routes),
        *(["allow-forward"] if link.get("allow_forward") else []),
    ]
    return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()[:12]


def _address_v1(address: AddressSpec) -> str:
    if address.method != "static":
        import shlex  # a DHCP client's options only

        return address.method + (":" + shlex.join(address.options) if address.options else "")
    if address.address is None:
        return "0/0"
    return f"{address.address}" + (f"@{address.gateway}" if address.gateway else "")


def _route_v1(route: RouteSpec) -> str:
    text = str(route.dst)
    if route.via is not None:
        text += f" via {route.via}"
    if route.metric is not None:
        text += f" metric {route.metric}"
    return text


def expressible_in_v1(spec: AttachSpec) -> bool:
    """Could 0.1.0 have made this request? Only then can a v1 fingerprint match it
    (a setting 0.1.0 did not know would otherwise be ignored)."""
    if spec.ipv6_link_local:
        return False
    return set(spec.settings) <= set(LINK_KEYS) and set(spec.address.settings) <= set(ADDRESS_KEYS)


def same_configuration(found: str, marker: Marker, spec: AttachSpec) -> bool:
    """Is ``found``, the ``cfg`` of an existing interface's marker, the
    configuration ``spec`` asks for? ``marker`` is the one an attach of
    ``spec`` would write now (its ``cfg``, ``kind`` and ``host``)."""
    if found == marker.cfg:
        return True
    return expressible_in_v1(spec) and found == fingerprint_v1(spec, marker.kind, marker.host)


__all__ = [
    "ADDRESS_KEYS",
    "API_KEY",
    "LINK_KEYS",
    "UNCOUNTED_ADDRESS_KEYS",
    "UNSET",
    "LegacyAddressFields",
    "LegacyAttachFields",
    "LegacyGuestFields",
    "LegacyRecordFields",
    "drop_defaults",
    "expressible_in_v1",
    "fingerprint_v1",
    "same_configuration",
]
