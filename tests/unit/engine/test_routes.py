"""Extra routes on an attachment: ``DEST [via GATEWAY] [metric N]``."""

from __future__ import annotations

import ipaddress

import pytest

from pipework import AttachSpec, UsageError
from pipework.engine.specs import RouteSpec


def test_parse_forms():
    route = RouteSpec.parse("198.18.2.0/24 via 198.18.1.254 metric 50")
    assert route.dst == ipaddress.ip_network("198.18.2.0/24")
    assert route.via == ipaddress.ip_address("198.18.1.254")
    assert route.metric == 50
    assert str(route) == "198.18.2.0/24 via 198.18.1.254 metric 50"
    assert str(RouteSpec.parse("2001:db8:5::/48")) == "2001:db8:5::/48"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("0.0.0.0/0 via 198.18.1.1", "default route"),
        ("198.18.2.1/24", "host bits set"),
        ("198.18.2.0/24 via", "is not DEST"),
        ("198.18.2.0/24 dev eth1", "is not DEST"),
        ("198.18.2.0/24 via 198.18.1.1 via 198.18.1.2", "is not DEST"),
        ("198.18.2.0/24 via nope", "not an IP address"),
        ("198.18.2.0/24 via 2001:db8::1", "another address family"),
        ("198.18.2.0/24 metric x", "not a number"),
    ],
)
def test_bad_routes_are_one_line_usage_errors(text, message):
    with pytest.raises(UsageError) as info:
        RouteSpec.parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_attach_spec_takes_strings_and_refuses_duplicates():
    spec = AttachSpec(host="br1", guest="web1", routes=["198.18.2.0/24 via 198.18.1.1"])  # type: ignore[arg-type]
    assert spec.routes == (RouteSpec.parse("198.18.2.0/24 via 198.18.1.1"),)
    with pytest.raises(UsageError, match="twice"):
        AttachSpec(
            host="br1", guest="web1", routes=("198.18.2.0/24", "198.18.2.0/24 via 198.18.1.1")
        )  # type: ignore[arg-type]


def test_routes_change_the_fingerprint_only_when_set():
    plain = AttachSpec(host="br1", guest="web1")
    routed = AttachSpec(host="br1", guest="web1", routes=(RouteSpec.parse("198.18.2.0/24"),))
    assert plain.fingerprint("bridge", "br1") != routed.fingerprint("bridge", "br1")
    # Attachments made before routes existed keep their fingerprint.
    assert plain.fingerprint("bridge", "br1") == AttachSpec(host="br1", guest="web1").fingerprint(
        "bridge", "br1"
    )
