"""A topology file's links: section: brief and per-endpoint forms, and its errors, located."""

from __future__ import annotations

import textwrap

import pytest

from pipework import UsageError
from pipework.apps.topology.loader import parse
from pipework.apps.topology.reconcile import declared_ends, link_jobs, link_specs
from pipework.engine.specs import RouteSpec, derive_mac


def load(text: str, name: str = "topo.yaml"):
    return parse(textwrap.dedent(text), name)


def error(text: str) -> str:
    with pytest.raises(UsageError) as info:
        load(text)
    return str(info.value)


CHAIN = """\
    links:
      - endpoints: ["netns:r1:eth1", "netns:r2:eth1"]
        mtu: 9000
      - endpoints:
          - guest: netns:r2
            ifname: eth2
            address: 198.18.40.1/30
            mac: U:r2e2
            routes: [198.18.50.0/24 via 198.18.40.2]
          - "netns:r3:eth1"
"""


def test_brief_and_per_endpoint_forms_give_link_specs():
    loaded = load(CHAIN)
    first, second = link_specs(loaded)
    assert str(first) == "netns:r1:eth1 -- netns:r2:eth1" and first.mtu == 9000
    assert str(first.a.address) == "0/0"
    assert (second.a.guest, second.a.ifname) == ("netns:r2", "eth2")
    assert str(second.a.address) == "198.18.40.1/30" and second.a.mac == derive_mac("r2e2")
    assert second.a.routes == (RouteSpec.parse("198.18.50.0/24 via 198.18.40.2"),)
    assert (second.b.guest, second.b.ifname) == ("netns:r3", "eth1") and second.mtu is None
    assert declared_ends([first, second]) == {
        ("netns:r1", "eth1"),
        ("netns:r2", "eth1"),
        ("netns:r2", "eth2"),
        ("netns:r3", "eth1"),
    }
    jobs = link_jobs(loaded, [first, second])
    assert [j.where for j in jobs] == ["topo.yaml:2", "topo.yaml:4"]
    assert jobs[0].label == "link netns:r1:eth1 -- netns:r2:eth1" and jobs[0].what == "link"


def test_force_reaches_the_link_spec():
    (spec,) = link_specs(load('links: [{endpoints: ["a:eth1", "b:eth1"]}]\n'), force=True)
    assert spec.force


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'links:\n  - endpoints: ["r1:eth1", "r1:eth2"]\n',
            "topo.yaml:2: links[0]: both endpoints are in r1: a link joins two different guests",
        ),
        (
            'links:\n  - endpoints: ["r1:eth1", "r2"]\n',
            "topo.yaml:2: links[0].endpoints[1]: endpoint 'r2' names no interface",
        ),
        (
            'links:\n  - endpoints: ["r1:eth1", "netns:r2"]\n',
            "topo.yaml:2: links[0].endpoints[1]: endpoint 'netns:r2' names no interface",
        ),
        (
            "links:\n  - endpoints:\n      - r1:eth1\n      - {guest: r2}\n",
            "topo.yaml:4: links[0].endpoints[1].ifname: this field is required",
        ),
        (
            'links:\n  - endpoints: ["r1:eth1", "r2:eth1"]\n    mtu: 20\n',
            "topo.yaml:3: links[0].mtu: ",
        ),
        (
            "links:\n  - endpoints:\n      - r1:eth1\n      - {guest: r2, ifname: eth1, mac: zz}\n",
            "topo.yaml:4: links[0].endpoints[1].mac: 'zz' is not a MAC address",
        ),
        (
            "links:\n  - endpoints:\n      - r1:eth1\n      - guest: r2\n        ifname: eth1\n"
            "        address: 198.18.1.300/24\n",
            "topo.yaml:6: links[0].endpoints[1].address: ",
        ),
        (
            'links:\n  - endpoints: ["r1:eth1"]\n',
            "topo.yaml:2: links[0].endpoints: List should have at least 2 items",
        ),
        (
            'links:\n  - endpoints: ["r1:eth1", "r2:eth1"]\n    colour: red\n',
            "topo.yaml:3: links[0].colour: unknown field 'colour'",
        ),
        (
            'links:\n  - endpoints: ["r1:this-name-is-too-long", "r2:eth1"]\n',
            "topo.yaml:2: links[0].endpoints[0]: ",
        ),
    ],
)
def test_bad_links_are_one_located_line(text, expected):
    assert error(text).startswith(expected)


def test_an_interface_declared_twice_is_refused_wherever_it_is():
    two_links = (
        'links:\n  - endpoints: ["r1:eth1", "r2:eth1"]\n  - endpoints: ["r3:eth1", "r1:eth1"]\n'
    )
    assert error(two_links).startswith(
        "topo.yaml:3: links[1].endpoints[1]: eth1 in r1 is already declared as links[0].endpoints[0]"
    )
    with_attachment = (
        "attachments:\n  - {guest: r1, host: br1, ifname: eth2}\n"
        'links:\n  - endpoints: ["r2:eth1", "r1:eth2"]\n'
    )
    assert error(with_attachment).startswith(
        "topo.yaml:4: links[0].endpoints[1]: eth2 in r1 is already declared as attachments[0]"
    )
    default = (
        'attachments:\n  - {guest: r1, host: br1}\nlinks:\n  - endpoints: ["r1:eth1", "r2:eth1"]\n'
    )
    assert "as attachments[0] (its default interface)" in error(default)
    # Another interface of the same guests is fine.
    fine = (
        'attachments:\n  - {guest: r1, host: br1}\nlinks:\n  - endpoints: ["r1:eth2", "r2:eth1"]\n'
    )
    assert len(link_specs(load(fine))) == 1
