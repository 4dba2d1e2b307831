"""Topology files: the schema, defaults, and errors that name file, line and field."""

from __future__ import annotations

import textwrap

import pytest

from pipework import UsageError
from pipework.apps.topology.loader import parse
from pipework.apps.topology.reconcile import specs
from pipework.engine.specs import RouteSpec, derive_mac


def load(text: str, name: str = "topo.yaml"):
    return parse(textwrap.dedent(text), name)


GOOD = """\
    version: 1
    bridges:
      - name: brpwt1
        mtu: 9000
      - {name: ovspwt1, kind: ovs, options: {datapath_type: netdev}}
    defaults:
      host: brpwt1
      address: 0/0
    attachments:
      - guest: web1
        address: 198.18.1.2/24@198.18.1.1
        mac: 02:12:34:56:58:10
        routes: [198.18.2.0/24 via 198.18.1.254 metric 5]
      - guest: netns:blue
        host: ovspwt1
        ifname: eth2
        vlan: 10
        mac: U:blue
"""


def test_a_good_file_gives_the_specs_the_command_line_would():
    loaded = load(GOOD)
    web1, blue = specs(loaded)
    assert web1.host == "brpwt1" and web1.kind == "bridge" and web1.mtu == 9000
    assert str(web1.address) == "198.18.1.2/24@198.18.1.1"
    # YAML 1.1 would read this MAC as a base-60 integer; here it stays a string.
    assert web1.mac == "02:12:34:56:58:10"
    assert web1.routes == (RouteSpec.parse("198.18.2.0/24 via 198.18.1.254 metric 5"),)
    assert blue.kind == "ovs" and blue.vlan == 10 and blue.ifname == "eth2"
    assert blue.options == {"datapath_type": "netdev"}
    assert blue.mac == derive_mac("blue")
    assert str(blue.address) == "0/0"
    assert loaded.where(("attachments", 1, "vlan")) == "topo.yaml:17"


def test_json_is_accepted_with_line_numbers():
    text = '{\n  "attachments": [\n    {"guest": "web1", "host": "brpwt1",\n     "address": "198.18.1.2"}\n  ]\n}\n'
    with pytest.raises(UsageError) as info:
        parse(text, "topo.json")
    assert str(info.value).startswith("topo.json:4: attachments[0].address: The IP address")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "attachments:\n  - guest: web1\n    host: br1\n    adress: 198.18.1.2/24\n",
            "topo.yaml:4: attachments[0].adress: unknown field 'adress'",
        ),
        (
            "attachments:\n  - host: br1\n",
            "topo.yaml:2: attachments[0].guest: this field is required",
        ),
        (
            "attachments:\n  - guest: web1\n    host: br1\n    vlan: 5000\n",
            "topo.yaml:4: attachments[0].vlan: VLAN ID 5000 is out of range (use 1 to 4094)",
        ),
        (
            "attachments:\n  - guest: web1\n    host: br1\n    mtu: nine\n",
            "topo.yaml:4: attachments[0].mtu: Input should be a valid integer",
        ),
        (
            "attachments:\n  - guest: web1\n    ifname: thisnameiswaytoolong\n",
            "topo.yaml:3: attachments[0].ifname: interface name 'thisnameiswaytoolong' is 20 bytes",
        ),
        (
            "attachments:\n  - guest: web1\n    routes: [0.0.0.0/0 via 198.18.1.1]\n",
            "topo.yaml:3: attachments[0].routes: route 0.0.0.0/0 via 198.18.1.1 is a default route",
        ),
        ("version: 2\n", "topo.yaml:1: version: unknown version (this pipework reads version 1)"),
        ("bridges: {name: br1}\n", "topo.yaml:1: bridges: Input should be a valid list"),
        ("- just\n- a list\n", "topo.yaml: a topology is a mapping"),
        ("attachments: [\n", "topo.yaml:2: not valid YAML"),
        (
            "attachments:\n  - guest: web1\n    guest: web2\n",
            "topo.yaml:3: attachments[0].guest is given twice",
        ),
        (
            "bridges:\n  - name: br1\n  - name: br1\n",
            "topo.yaml:3: bridges[1]: bridge br1 is already declared as bridges[0]",
        ),
        (
            "defaults: {host: br1}\nattachments:\n  - guest: web1\n  - guest: web1\n",
            "topo.yaml:4: attachments[1]: the default interface of web1 is already declared",
        ),
        (
            "attachments:\n  - {guest: a, host: b, address: 198.18.1.2/24, addresses: [slaac]}\n",
            "topo.yaml:2: attachments[0]: give address or addresses, not both",
        ),
        (
            "attachments:\n  - {guest: a, host: b, addresses: []}\n",
            "topo.yaml:2: attachments[0].addresses: the list of addresses is empty",
        ),
        (
            "attachments:\n  - {guest: a, host: b, addresses: [slaac, slaac]}\n",
            "topo.yaml:2: attachments[0].addresses: slaac is given twice",
        ),
        (
            "attachments:\n  - {guest: a, host: b, address: '0/0,slaac'}\n",
            "topo.yaml:2: attachments[0].address: 0/0 (no address) cannot be combined",
        ),
    ],
)
def test_schema_errors_are_one_located_line(text, expected):
    with pytest.raises(UsageError) as info:
        parse(text, "topo.yaml")
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_more_errors_are_counted_in_the_hint():
    with pytest.raises(UsageError) as info:
        parse("attachments:\n  - {guest: a, vlan: 0, mtu: 1}\n", "t.yaml")
    assert info.value.hint == "and 1 more error"


def test_an_attachment_needs_a_host_or_a_kind():
    loaded = load("attachments:\n  - guest: web1\n")
    with pytest.raises(UsageError) as info:
        specs(loaded)
    assert str(info.value).startswith("topo.yaml:2: attachments[0]: an attachment needs a host")


def test_kind_alone_names_the_host_and_defaults_merge():
    loaded = load(
        """\
        defaults: {mtu: 1400, options: {mode: private}}
        attachments:
          - {guest: a, kind: dummy}
          - {guest: b, host: eth9, kind: macvlan, options: {mode: vepa}}
        """
    )
    a, b = specs(loaded)
    assert a.host == "dummy" and a.kind == "dummy" and a.mtu == 1400
    assert a.options == {"mode": "private"}
    assert b.options == {"mode": "vepa"}


def test_an_empty_file_is_an_empty_topology():
    assert load("").topology.attachments == []
    assert load("# nothing yet\n").topology.bridges == []


BILLION_LAUGHS = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["attachments: *a8"]
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("attachments: &a [*a]\n", "attachments[0] contains itself (an alias loop)"),
        ("bridges: &b\n  - name: br1\n    more: *b\n", "contains itself (an alias loop)"),
        (BILLION_LAUGHS, "expands to more than"),
        ("attachments: " + "[" * 100 + "]" * 100 + "\n", "nest too deeply"),
        # (libyaml says "exceeded maximum nesting depth", ours "nest too deeply")
        ("attachments: " + "[" * 5000 + "]" * 5000 + "\n", "nest"),
        ('{"attachments": ' + "[" * 100_000 + "]" * 100_000 + "}", "nest too deeply"),
    ],
    ids=["loop", "loop-in-mapping", "bomb", "deep", "deeper-than-the-parser", "deep-json"],
)
def test_hostile_yaml_is_one_error_line_quickly(text, expected):
    import time

    started = time.monotonic()
    with pytest.raises(UsageError) as caught:
        parse(text, "lab.yaml" if not text.startswith("{") else "lab.json")
    assert expected in caught.value.message
    assert "\n" not in caught.value.message
    assert time.monotonic() - started < 5  # a bound on CPU, not a benchmark


def test_an_alias_used_twice_is_still_fine():
    loaded = parse(
        textwrap.dedent(
            """\
            defaults: {mtu: &m 1400}
            bridges: [{name: br1, mtu: *m}, {name: br2, mtu: *m}]
            """
        ),
        "lab.yaml",
    )
    assert [b.mtu for b in loaded.topology.bridges] == [1400, 1400]


def test_announce_and_link_local_per_attachment_and_in_defaults():
    loaded = load(
        """\
        defaults: {host: br1, announce: false}
        attachments:
          - {guest: a, address: 198.18.0.2/24}
          - {guest: b, address: 198.18.0.3/24, announce: true, ipv6_link_local: true}
        """
    )
    a, b = specs(loaded)
    assert (a.announce, a.ipv6_link_local) == (False, False)
    assert (b.announce, b.ipv6_link_local) == (True, True)
    with pytest.raises(UsageError, match=r"attachments\[0\]\.announce"):
        parse("attachments:\n  - {guest: a, host: br1, announce: maybe}\n", "topo.yaml")


def test_several_addresses_in_a_topology_file():
    loaded = load(
        "defaults: {host: brpwt1, address: dhclient}\n"
        "attachments:\n"
        "  - guest: web1\n"
        "    addresses: [198.18.1.2/24@198.18.1.1, 2001:db8:1::2/64@2001:db8:1::1]\n"
        "  - guest: web2\n"
        "    address: dhclient,slaac\n"
        "  - guest: web3\n"
    )
    web1, web2, web3 = specs(loaded)
    assert [str(a) for a in web1.addresses] == [
        "198.18.1.2/24@198.18.1.1",
        "2001:db8:1::2/64@2001:db8:1::1",
    ]
    assert [a.word for a in web2.addresses] == ["dhclient", "slaac"]
    assert [a.word for a in web3.addresses] == ["dhclient"]  # the default
