"""containerlab topology files as pipework topologies: what is read, what is
read past, what is refused (one located line naming the field)."""

from __future__ import annotations

import textwrap

import pytest

from pipework import UsageError
from pipework.apps.topology.loader import parse
from pipework.apps.topology.reconcile import link_specs, specs
from pipework.engine.errors import PipeworkError, UnsupportedError


def load(text: str, name: str = "lab.clab.yml"):
    return parse(textwrap.dedent(text), name)


def error(text: str, name: str = "lab.clab.yml") -> PipeworkError:
    with pytest.raises(PipeworkError) as info:
        load(text, name)
    return info.value


# docs/manual/network.md (containerlab): the srl02 lab, with a bridge and
# the extended form from docs/manual/topo-def-file.md.
SRL02 = """\
    name: srl02

    topology:
      kinds:
        nokia_srlinux:
          type: ixrd3
          image: ghcr.io/nokia/srlinux
      nodes:
        srl1:
          kind: nokia_srlinux
          startup-config: srl1.cfg
        srl2:
          kind: nokia_srlinux
        br-clab:
          kind: bridge
        myovs:
          kind: ovs-bridge

      links:
        - endpoints: ["srl1:e1-1", "srl2:e1-1"]
          ipv4: ["192.168.0.1/24", "192.168.0.2/24"]
        - endpoints: ["srl1:e1-2", "br-clab:eth1"]
        - type: veth
          endpoints:
            - node: srl1
              interface: e1-3
              mac: 02:00:00:00:00:01
              ipv6: 2001:db8::1/64
            - node: srl2
              interface: e1-3
              vars: {foo: bar}
          mtu: 1500
        - endpoints: ["myovs:ovsp1", "srl2:eth1"]
"""


def test_links_bridges_and_names_as_containerlab_makes_them():
    loaded = load(SRL02)
    first, second = link_specs(loaded)
    assert str(first) == "clab-srl02-srl1:e1-1 -- clab-srl02-srl2:e1-1"
    assert first.mtu == 9500  # containerlab's default
    assert [str(e.address) for e in first.ends] == ["192.168.0.1/24", "192.168.0.2/24"]
    assert second.mtu == 1500 and second.a.mac == "02:00:00:00:00:01"
    assert str(second.a.address) == "2001:db8::1/64" and str(second.b.address) == "0/0"
    assert [(b.name, b.kind) for b in loaded.topology.bridges] == [
        ("br-clab", "bridge"),
        ("myovs", "ovs"),
    ]
    on_bridge, on_ovs = specs(loaded)
    assert (on_bridge.guest, on_bridge.ifname, on_bridge.host) == (
        "clab-srl02-srl1",
        "e1-2",
        "br-clab",
    )
    assert on_bridge.host_ifname == "eth1" and on_bridge.kind == "bridge"
    assert (on_ovs.guest, on_ovs.ifname, on_ovs.host_ifname, on_ovs.kind) == (
        "clab-srl02-srl2",
        "eth1",
        "ovsp1",
        "ovs",
    )
    assert set(loaded.nodes) == {"clab-srl02-srl1", "clab-srl02-srl2"}
    assert loaded.nodes["clab-srl02-srl1"] == ("lab.clab.yml:9", "topology.nodes.srl1")
    # Locations are containerlab's.
    assert loaded.where(("links", 1)) == "lab.clab.yml:23"
    assert loaded.where(("links", 1, "endpoints", 0, "mac")) == "lab.clab.yml:27"
    assert loaded.where(("attachments", 1)) == "lab.clab.yml:33"


@pytest.mark.parametrize(
    ("prefix", "container"),
    [
        (None, "clab-lab1-r1"),
        ('""', "r1"),
        ("myprefix", "myprefix-lab1-r1"),
        ("__lab-name", "lab1-r1"),
    ],
)
def test_container_names_follow_the_prefix(prefix, container):
    head = "name: lab1\n" + (f"prefix: {prefix}\n" if prefix is not None else "")
    text = (
        head
        + 'topology:\n  nodes: {r1: {}, r2: {}}\n  links:\n    - endpoints: ["r1:eth1", "r2:eth1"]\n'
    )
    (spec,) = link_specs(parse(text, "x.yaml"))  # known by its keys, not its name
    assert spec.a.guest == container


def test_an_ext_container_is_the_container_of_its_own_name():
    text = """\
        name: ext-cont
        topology:
          nodes:
            srl: {kind: nokia_srlinux, image: ghcr.io/nokia/srlinux}
            external-node1: {kind: ext-container}
          links:
            - endpoints: ["srl:e1-1", "external-node1:eth1"]
        """
    (spec,) = link_specs(load(text))
    assert (spec.a.guest, spec.b.guest) == ("clab-ext-cont-srl", "external-node1")


def test_macvlan_and_dummy_links_are_attachments():
    text = """\
        name: m
        topology:
          nodes:
            l1: {kind: linux, image: alpine:3}
          links:
            - endpoints: ["l1:eth1", "macvlan:enp0s3"]
            - type: macvlan
              endpoint: {node: l1, interface: eth2, mac: 02:00:00:00:00:02}
              host-interface: enp0s4
              mode: private
            - type: dummy
              endpoint: {node: l1, interface: dummy0}
              mtu: 1400
        """
    brief, extended, dummy = specs(load(text))
    assert (brief.kind, brief.host, brief.ifname, brief.options) == (
        "macvlan",
        "enp0s3",
        "eth1",
        {"mode": "bridge"},
    )
    assert (extended.host, extended.options, extended.mac) == (
        "enp0s4",
        {"mode": "private"},
        "02:00:00:00:00:02",
    )
    assert (dummy.kind, dummy.host, dummy.ifname, dummy.mtu) == ("dummy", "dummy", "dummy0", 1400)


TWO = textwrap.dedent(
    """\
    name: lab
    topology:
      nodes:
        r1: {kind: linux, image: alpine:3}
        r2: {kind: linux, image: alpine:3}
      links:
        - endpoints: ["r1:eth1", "r2:eth1"]
    """
)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("name: lab", "name: lab\nmgmt:\n  network: custom_mgmt"),
            "lab.clab.yml:2: mgmt: pipework makes no management network",
        ),
        (
            ("{kind: linux, image: alpine:3}\n  ", "{kind: linux, exec: [ip a]}\n  "),
            "lab.clab.yml:4: topology.nodes.r1.exec: pipework runs no commands in nodes",
        ),
        (
            ("r1: {kind: linux, image: alpine:3}", "r1: {kind: linux, mgmt-ipv4: 172.20.20.2}"),
            "lab.clab.yml:4: topology.nodes.r1.mgmt-ipv4: pipework makes no management network",
        ),
        (
            ("  nodes:", "  defaults:\n    stages: {}\n  nodes:"),
            "lab.clab.yml:4: topology.defaults.stages: pipework runs no commands in nodes",
        ),
        (
            ('["r1:eth1", "r2:eth1"]', '["r1:eth1", "mgmt-net:r1-eth1"]'),
            "lab.clab.yml:7: topology.links[0].endpoints[1]: pipework makes no management network",
        ),
        (
            ('["r1:eth1", "r2:eth1"]', '["r1:eth1", "host:r1_eth1"]'),
            "lab.clab.yml:7: topology.links[0].endpoints[1]: pipework makes no veth to the host's",
        ),
        (
            (
                '- endpoints: ["r1:eth1", "r2:eth1"]',
                "- type: vxlan\n      endpoint: {node: r1, interface: eth1}\n"
                "      remote: 198.18.0.1\n      vni: 10\n      dst-port: 4789",
            ),
            "lab.clab.yml:7: topology.links[0].type: containerlab's vxlan links are not read",
        ),
        (
            (
                '- endpoints: ["r1:eth1", "r2:eth1"]',
                "- {type: mgmt-net, endpoint: {node: r1, interface: e}}",
            ),
            "lab.clab.yml:7: topology.links[0].type: pipework makes no management network",
        ),
        (
            ("r2: {kind: linux, image: alpine:3}", "r2: {kind: linux, network-mode: host}"),
            "lab.clab.yml:5: topology.nodes.r2.network-mode: this node is in the host's namespace",
        ),
        (
            ("name: lab", "name: lab-${X}"),
            "lab.clab.yml:1: name: pipework does not expand environment variables",
        ),
    ],
)
def test_what_only_a_deployer_does_is_refused_naming_the_field(change, expected):
    exc = error(TWO.replace(*change))
    assert isinstance(exc, UnsupportedError) and exc.exit_code == 8
    assert str(exc).startswith(expected), str(exc)
    assert "\n" not in str(exc)


def test_a_bridge_in_a_container_namespace_is_refused():
    text = TWO.replace(
        "  links:", "    br01|r1: {kind: bridge, network-mode: 'container:r1'}\n  links:"
    )
    exc = error(text)
    assert str(exc).startswith(
        "lab.clab.yml:6: topology.nodes.br01|r1.network-mode: pipework's bridges are in the host's"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("name: lab\n", ""), "lab.clab.yml:1: name: this field is required"),
        (
            ('"r2:eth1"', '"r9:eth1"'),
            "lab.clab.yml:7: topology.links[0].endpoints[1]: node 'r9' is not in",
        ),
        (
            ('"r2:eth1"', '"r2"'),
            "lab.clab.yml:7: topology.links[0].endpoints[1]: endpoint 'r2' names no",
        ),
        (
            ('"r2:eth1"', '"r2:ethernet-1/1"'),
            "lab.clab.yml:7: topology.links[0].endpoints[1]: interface name 'ethernet-1/1' is not",
        ),
        (
            ('"r2:eth1"', '"r1:eth2"'),
            "lab.clab.yml:7: topology.links[0]: both endpoints are in clab-lab-r1",
        ),
        (
            ('"r2:eth1"]', '"r2:eth1"]\n      colour: red'),
            "lab.clab.yml:8: topology.links[0].colour: unknown field 'colour'",
        ),
        (
            ('"r2:eth1"]', '"r2:eth1"]\n      mtu: 10'),
            "lab.clab.yml:8: topology.links[0].mtu: ",
        ),
        (
            ('"r2:eth1"]', '"r2:eth1"]\n      ipv4: ["198.18.0.1/24", "2001:db8::1/64"]'),
            "lab.clab.yml:8: topology.links[0].ipv4[1]: '2001:db8::1/64' is not an IPv4",
        ),
        (
            ("  nodes:", "  colours: {}\n  nodes:"),
            "lab.clab.yml:3: topology.colours: unknown field 'colours'",
        ),
        (
            (
                '- endpoints: ["r1:eth1", "r2:eth1"]',
                "- {type: veth, endpoints: [{node: r1, interface: eth1}, {node: r2}]}",
            ),
            "lab.clab.yml:7: topology.links[0].endpoints[1].interface: this field is required",
        ),
        (
            (
                '- endpoints: ["r1:eth1", "r2:eth1"]',
                '- endpoints: ["r1:eth1", "r2:eth1"]\n    - endpoints: ["r2:eth1", "r1:eth3"]',
            ),
            "lab.clab.yml:8: topology.links[1].endpoints[0]: eth1 in clab-lab-r2 is already declared as topology.links[0].endpoints[1]",
        ),
        # Values of the wrong type: a located line, never a traceback.
        (
            ("r1: {kind: linux,", "r1: {kind: [linux],"),
            "lab.clab.yml:4: topology.nodes.r1.kind: a string is expected here",
        ),
        (
            ("r1: {kind: linux,", "r1: {group: [g],"),
            "lab.clab.yml:4: topology.nodes.r1.group: a string is expected here",
        ),
        (
            (
                '- endpoints: ["r1:eth1", "r2:eth1"]',
                '- {type: [veth], endpoints: ["r1:eth1", "r2:eth1"]}',
            ),
            "lab.clab.yml:7: topology.links[0].type: a string is expected here",
        ),
    ],
)
def test_bad_input_is_one_located_usage_error(change, expected):
    exc = error(TWO.replace(*change))
    assert isinstance(exc, UsageError) and exc.exit_code == 2
    assert str(exc).startswith(expected), str(exc)


def test_both_addresses_of_one_end_are_refused():
    text = TWO.replace(
        '"r2:eth1"]', '"r2:eth1"]\n      ipv4: ["198.18.0.1/24"]\n      ipv6: ["2001:db8::1/64"]'
    )
    exc = error(text)
    assert isinstance(exc, UnsupportedError)
    assert str(exc).startswith(
        "lab.clab.yml:9: topology.links[0].ipv6[0]: pipework gives an endpoint one address"
    )


def test_a_pipework_file_is_not_taken_for_containerlab():
    loaded = parse('links: [{endpoints: ["a:eth1", "b:eth1"]}]\n', "lab.yaml")
    assert not loaded.sources and not loaded.nodes


@pytest.mark.parametrize("node", ["pid:1", "/proc/1/ns/net", "netns:x", "lxc:r1", "-r1"])
def test_a_node_name_that_is_another_guest_reference_is_refused(node):
    """With ``prefix: ""`` (or an ext-container) the node name is the guest
    reference: it must be a container's name, never the host (pid:1) or a path."""
    text = (
        TWO.replace("name: lab\n", 'name: lab\nprefix: ""\n')
        .replace("r1: {", f'"{node}": {{')
        .replace('"r1:eth1"', f'{{node: "{node}", interface: eth1}}')
    )
    exc = error(text)
    assert isinstance(exc, UsageError) and exc.exit_code == 2
    assert f"{node!r} is not a container name" in str(exc), str(exc)
    assert "\n" not in str(exc)
