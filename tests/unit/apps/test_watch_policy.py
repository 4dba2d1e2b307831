"""The label policy of ``pipework watch``: which labels the watcher acts on."""

from __future__ import annotations

import logging

import pytest

from pipework.apps.watch import specs_from_labels
from pipework.apps.watch_policy import (
    OPTIONS,
    HostFacts,
    LabelPolicy,
    host_refusal,
    own_keys,
    policy_from,
    spec_refusal,
)
from pipework.engine import AttachSpec, UsageError
from pipework.engine.events import GuestEvent

CID = "3a55e189703c3f8596828a2b1abac08804d9d5744f12f372bb3a94dd268bbb6f"
DEFAULT = LabelPolicy()
NEW_BRIDGE = HostFacts("bridge", exists=False)


def parsed(value: str, ifname: str = "eth1") -> AttachSpec:
    specs, errors = specs_from_labels(
        GuestEvent("start", f"docker:{CID}", CID, "web1", {f"pipework.{ifname}": value})
    )
    assert errors == [], errors
    (spec,) = specs
    return spec


def verdict(
    value: str, facts: HostFacts = NEW_BRIDGE, policy: LabelPolicy = DEFAULT, own: bool = True
) -> str | None:
    spec = parsed(value)
    return spec_refusal(spec, own=own, policy=policy) or host_refusal(spec, facts, policy)


# -- own labels and inherited ones ---------------------------------------------------------


def test_own_keys_are_those_the_image_does_not_give_with_that_value():
    labels = {"pipework.eth1": "br1 0/0", "pipework.eth2": "br2 0/0", "other": "x"}
    image = {"pipework.eth1": "br1 0/0", "pipework.eth2": "br9 0/0", "unused": "y"}
    assert own_keys(labels, image) == {"pipework.eth2", "other"}
    assert own_keys(labels, {}) == set(labels)
    assert own_keys(labels, None) == set(labels)  # a runtime without images
    assert own_keys(labels, labels) == set()  # a source that could not tell


def test_an_inherited_label_is_refused_unless_image_labels_are_allowed():
    reason = verdict("br1 198.18.30.2/24", own=False)
    assert reason is not None and "--allow-image-labels" in reason and "image" in reason
    assert verdict("br1 198.18.30.2/24", own=False, policy=LabelPolicy(image_labels=True)) is None


# -- what passes by default ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "br1 198.18.30.2/24@198.18.30.1",
        "br1 198.18.30.2/24 02:aa:bb:cc:dd:ee",
        "br1 198.18.30.2/24 U:web1@10",
        "brpwtw0 0/0 --mtu 1400",
        "br1 2001:db8::2/64 --vlan 7",
        "ovsbr0 dhcp:-f @10",
        "ovsbr0 dhcp --dhcp-timeout 5 --dns",
        "br1 udhcpc-f",
        "br1 udhcpc:-f",
        "br1 dhclient",
        "br1 dhcpcd-f",
        "br1 0/0 -a 4 --kind bridge",
        "br1 198.18.30.2/24 --no-announce --ipv6-link-local",
    ],
)
def test_the_safe_subset_passes(value):
    kind = "ovs" if value.startswith("ovs") else "bridge"
    assert verdict(value, HostFacts(kind, exists=False)) is None
    assert verdict(value, HostFacts(kind, exists=True, ours=True)) is None


# -- hostile labels ------------------------------------------------------------------------

PHYS = HostFacts("phys", exists=True)
MACVLAN = HostFacts("macvlan", exists=True)
FOREIGN_BRIDGE = HostFacts("bridge", exists=True, ours=False)


@pytest.mark.parametrize(
    ("value", "facts", "fragment"),
    [
        ("eth0 0/0 --direct-phys", PHYS, "--allow-direct-phys --allow-host eth0"),
        ("eth0 198.18.30.2/24", MACVLAN, "--allow-kinds macvlan --allow-host eth0"),
        ("eth0 0/0 --kind ipvlan", HostFacts("ipvlan", True), "--allow-kinds ipvlan"),
        ("ib0 0/0 @8001", HostFacts("ipoib", True), "--allow-kinds ipoib"),
        ("docker0 0/0", FOREIGN_BRIDGE, "--allow-host docker0"),
        ("br0 198.18.30.2/24", FOREIGN_BRIDGE, "did not create"),
        ("br-1a2b3c4d5e6f 0/0", FOREIGN_BRIDGE, "--allow-host br-1a2b3c4d5e6f"),
        ("ovs-br-int 0/0", HostFacts("ovs", True), "did not create"),
        ("br1 0/0 --allow-forward", NEW_BRIDGE, "--allow-forward"),
        ("br1 0/0 -l eth0", NEW_BRIDGE, "--allow-option host-ifname"),
        ("br1 0/0 --host-ifname wlan0", NEW_BRIDGE, "--allow-option host-ifname"),
        ("ovsbr0 0/0 -o datapath_type=netdev", HostFacts("ovs", False), "--allow-option opt"),
        ("eth0 0/0 --mode private --kind bridge", NEW_BRIDGE, "--allow-option opt"),
        ("br1 'dhclient:-sf /tmp/x.sh'", NEW_BRIDGE, "--allow-option dhcp-options"),
        ("br1 'dhclient:-cf /etc/shadow'", NEW_BRIDGE, "--allow-option dhcp-options"),
        ("br1 dhcpcd:-f", NEW_BRIDGE, "--allow-option dhcp-options"),  # its config file
        ("br1 dhcp --dhcp-image evil/image", NEW_BRIDGE, "--allow-option dhcp-image"),
        ("br1 0/0 --force", NEW_BRIDGE, "--allow-option force"),
        ("br1 myipam", NEW_BRIDGE, "--allow-option method"),
        ("mac:02:00:00:00:00:01 0/0", MACVLAN, "not by a mac: selector"),
        ("br\u00e91 0/0", NEW_BRIDGE, "not plain"),
        ("br1\u200b 0/0", NEW_BRIDGE, "not plain"),
        ("\uff42\uff52\uff11 0/0", NEW_BRIDGE, "not plain"),  # fullwidth "br1"
        ("eth0 0/0", HostFacts("dummy", False), "--allow-kinds dummy"),
        ("eth0 0/0", HostFacts("p2p", False), "--allow-kinds p2p"),
    ],
)
def test_hostile_labels_are_refused_with_the_allowance_named(value, facts, fragment):
    reason = verdict(value, facts)
    assert reason is not None and fragment in reason
    assert "\n" not in reason and len(reason) < 200


def test_weird_guest_interface_names_are_refused():
    spec = parsed("br1 0/0", ifname="\u0435th1")  # a Cyrillic "e"
    assert "not plain" in (spec_refusal(spec, own=True, policy=DEFAULT) or "")


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"pipework.eth1": "br1 0/0 " + "x" * 600}, "at most 512"),
        ({"pipework.eth1/x": "br1 0/0"}, "not valid"),
        ({"pipework.eth1 x": "br1 0/0"}, "not valid"),
        ({"pipework." + "e" * 16: "br1 0/0"}, "at most 15"),
        ({"pipework.\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9": "br1 0/0"}, "at most 15"),
        ({"pipework.eth1": "br1 0/0\x00"}, ""),
    ],
)
def test_overlong_and_malformed_labels_are_errors(labels, fragment):
    specs, errors = specs_from_labels(GuestEvent("start", "docker:x", CID, "web1", labels))
    if specs:  # what parses is still judged by the policy
        assert spec_refusal(specs[0], own=True, policy=DEFAULT) is not None
    else:
        assert len(errors) == 1 and fragment in str(errors[0])


# -- allowances ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "facts", "policy"),
    [
        (
            "eth0 0/0 --direct-phys",
            PHYS,
            LabelPolicy(direct_phys=True, hosts=frozenset({"eth0"})),
        ),
        (
            "eth0 198.18.30.2/24",
            MACVLAN,
            LabelPolicy(kinds=frozenset({"macvlan"}), hosts=frozenset({"eth0"})),
        ),
        ("br0 198.18.30.2/24", FOREIGN_BRIDGE, LabelPolicy(hosts=frozenset({"br0"}))),
        ("br1 0/0 --allow-forward", NEW_BRIDGE, LabelPolicy(forward=True)),
        ("br1 0/0 -l vpw1 --force", NEW_BRIDGE, LabelPolicy(options=frozenset(OPTIONS))),
        ("dummy0 0/0", HostFacts("dummy", False), LabelPolicy(kinds=frozenset({"dummy"}))),
    ],
)
def test_each_allowance_allows_what_it_names(value, facts, policy):
    assert verdict(value, facts) is not None
    assert verdict(value, facts, policy) is None


def test_an_allowance_is_not_another():
    # A kind allowed, but not its parent: still refused.
    only_kind = LabelPolicy(kinds=frozenset({"macvlan"}))
    assert "--allow-host eth0" in (verdict("eth0 0/0", MACVLAN, only_kind) or "")
    # --direct-phys allowed for eth1 does not pass eth0 through.
    phys_eth1 = LabelPolicy(direct_phys=True, hosts=frozenset({"eth1"}))
    assert verdict("eth0 0/0 --direct-phys", PHYS, phys_eth1) is not None
    # Allowing a host does not allow its kind.
    assert verdict("eth0 0/0", MACVLAN, LabelPolicy(hosts=frozenset({"eth0"}))) is not None
    # --allow-forward does not allow --direct-phys.
    assert verdict("eth0 0/0 --direct-phys", PHYS, LabelPolicy(forward=True)) is not None


def test_policy_from_the_options():
    policy = policy_from(kinds=["macvlan,ipvlan", " dummy "], hosts=["eth0"], options=["force,opt"])
    assert policy.kinds == {"macvlan", "ipvlan", "dummy"}
    assert policy.hosts == {"eth0"} and policy.options == {"force", "opt"}
    assert policy.allowed_kinds == {"bridge", "ovs", "macvlan", "ipvlan", "dummy"}
    assert "phys" in policy_from(direct_phys=True).allowed_kinds


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"options": ["everything"]}, "no option named everything"),
        ({"kinds": ["mac vlan"]}, "not a kind name"),
        ({"hosts": ["eth0/x"]}, "not valid"),
        ({"hosts": ["x" * 16]}, "at most 15"),
    ],
)
def test_bad_allowances_are_usage_errors(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        policy_from(**kwargs)


# -- the watcher applies it ----------------------------------------------------------------


class FakeHost:
    def __init__(self, links: dict[str, str]) -> None:
        self.links = links  # name -> kind

    async def link(self, name: str) -> object | None:
        return self.links.get(name) and type("L", (), {"kind": self.links[name]})()


class FakeBackend:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeEngine:
    """What the watcher asks of an engine, and the attaches it made."""

    limit = 4

    def __init__(self, links: dict[str, str], ours: set[str] = frozenset()) -> None:
        self.host = FakeHost(links)
        self.ours = ours
        self.attached: list[AttachSpec] = []

    async def choose_backend(self, spec: AttachSpec, link: object | None) -> FakeBackend:
        if spec.kind:
            return FakeBackend(spec.kind)
        if link is not None:
            return FakeBackend(link.kind)  # type: ignore[attr-defined]
        return FakeBackend("ovs" if spec.host.startswith("ovs") else "bridge")

    async def owns_host(self, kind: str, name: str) -> bool:
        return name in self.ours

    async def attach(self, spec: AttachSpec) -> object:
        self.attached.append(spec)
        return type("R", (), {"status": "unchanged", "to_dict": lambda self: {}})()


class FakeSource:
    name = "fake"


def run_watcher(engine: FakeEngine, *events: GuestEvent, policy: LabelPolicy | None = None):
    import anyio

    from pipework.apps.watch import Watcher

    watcher = Watcher(engine, [FakeSource()], policy=policy)  # type: ignore[list-item]

    async def main() -> None:
        for event in events:
            await watcher.handle(event)

    anyio.run(main)
    return watcher


def guest(labels: dict[str, str], image: dict[str, str] | None = None, key: str = CID):
    return GuestEvent("start", f"docker:{key}", key, "web1", labels, image_labels=image or {})


def test_the_watcher_acts_on_own_labels_and_refuses_the_rest_once(caplog):
    engine = FakeEngine({"eth0": "macvlan", "br0": "bridge", "brpw": "bridge"}, ours={"brpw"})
    labels = {
        "pipework.eth1": "br1 198.18.30.2/24",
        "pipework.eth2": "eth0 0/0 --direct-phys",
        "pipework.eth3": "br0 0/0",
        "pipework.eth4": "brpw 0/0",
        "pipework.eth5": "br9 0/0",
    }
    image = {"pipework.eth5": "br9 0/0"}
    with caplog.at_level(logging.WARNING, "pipework.watch"):
        watcher = run_watcher(engine, *[guest(labels, image)] * 3)
    assert [s.ifname for s in engine.attached] == ["eth1", "eth4"] * 3
    refusals = [r for r in caplog.records if getattr(r, "event", None) == "refused"]
    assert sorted(r.ifname for r in refusals) == ["eth2", "eth3", "eth5"]  # once each
    assert all(r.getMessage().startswith("label pipework.eth") for r in refusals)
    status = watcher.status()
    assert status["refused"] == 3 and set(status["guests"][CID]["refused"]) == {
        "eth2", "eth3", "eth5",
    }  # fmt: skip


def test_allowances_let_the_labels_through():
    engine = FakeEngine({"eth0": "phys", "br0": "bridge"})
    labels = {
        "pipework.eth2": "eth0 0/0 --direct-phys",
        "pipework.eth3": "br0 0/0 --allow-forward",
    }
    policy = policy_from(direct_phys=True, forward=True, hosts=["eth0", "br0"], image_labels=True)
    run_watcher(engine, guest(labels, dict(labels)), policy=policy)
    assert sorted(s.ifname for s in engine.attached) == ["eth2", "eth3"]


def test_helper_containers_are_not_guests(caplog):
    engine = FakeEngine({})
    helper = {
        "pipework.helper": "dhcp",
        "pipework.guest": CID,
        "pipework.ifname": "eth1",
        "pipework.guest-name": "web1",
    }
    with caplog.at_level(logging.DEBUG, "pipework"):
        watcher = run_watcher(engine, guest(helper, key="f" * 64))
    assert engine.attached == [] and caplog.records == [] and watcher.guests == {}


def test_a_label_that_does_not_parse_is_logged_once_per_guest(caplog):
    engine = FakeEngine({})
    with caplog.at_level(logging.WARNING, "pipework.watch"):
        run_watcher(engine, *[guest({"pipework.eth1": "br1 nonsense!"})] * 3)
    assert len(caplog.records) == 1 and caplog.records[0].event == "label"
