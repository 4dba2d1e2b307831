"""DHCP for Docker guests: the ``dhcp`` helper container and the host clients,
against a real dnsmasq and the private dockerd."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from support import infra
from support.checks import gc_context, links
from support.dhcp import DNS_SERVER, DOMAIN, client_pids_in
from support.faults import attach_with_each_fault

from pipework import AddressSpec, AttachSpec, Engine
from pipework.backends.addresses.dhcp.toolbox import StateDir, last_logged_report
from pipework.engine import TimeoutExpiredError, UsageError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.usefixtures("host_files_unchanged", "dhcp_run_dir", "no_dhcp_helpers"),
]

HOST_RESOLV = "/etc/resolv.conf"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _server_installed():
    infra.require_binaries("dnsmasq")


def spec(container: infra.Container, ipspec: str, **kw) -> AttachSpec:
    options = {k: kw.pop(k) for k in ("dns", "timeout", "image") if k in kw}
    return AttachSpec(
        host="brpwtd", guest=container.name, address=AddressSpec.parse(ipspec, **options), **kw
    )


def helpers(container: infra.Container) -> list[dict]:
    ids = container.daemon.cli(
        "ps", "-aq", "--filter", "label=pipework.helper=dhcp",
        "--filter", f"label=pipework.guest={container.id}",
    ).stdout.split()  # fmt: skip
    return json.loads(container.daemon.cli("inspect", *ids).stdout) if ids else []


def container_addresses(container: infra.Container, ifname: str = "eth1") -> list[str]:
    out = infra.run(
        ["nsenter", "-t", str(container.pid), "-n", "ip", "-j", "addr", "show", "dev", ifname]
    ).stdout
    return [
        f"{a['local']}/{a['prefixlen']}"
        for a in json.loads(out)[0]["addr_info"]
        if a["scope"] == "global"
    ]


async def test_one_shot_helper_gets_a_lease_and_goes(
    host_ns, make_container, dhcp_server, busybox_image
):
    server = dhcp_server()
    web = make_container()
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(spec(web, "dhcp", image=busybox_image))
    assert att.status == "created" and att.address_method == "dhcp"
    assert server.in_pool(att.addresses[0]) and container_addresses(web) == list(att.addresses)
    assert (att.gateway, att.dns, att.domain) == (server.server_ip, (DNS_SERVER,), DOMAIN)
    assert server.leases()[att.mac].hostname == web.name
    assert infra.ping(web, server.server_ip)
    assert helpers(web) == []  # one-shot: the helper is gone
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.detach(web.name)
    assert set(links(web)) == {"lo"}


async def test_kept_helper_is_labelled_and_removed_on_detach(
    host_ns, make_container, dhcp_server, dhcp_run_dir
):
    server = dhcp_server()
    web = make_container()
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(spec(web, "dhcp:-f", mac="U:" + web.name))
        (helper,) = helpers(web)
        assert helper["State"]["Running"]
        assert helper["HostConfig"]["NetworkMode"] == f"container:{web.id}"
        assert helper["HostConfig"]["CapAdd"] == ["NET_ADMIN", "NET_RAW"]
        assert helper["Config"]["Labels"]["pipework.ifname"] == "eth1"
        assert helper["Config"]["Image"] == "busybox"  # the default image
        again = await engine.attach(spec(web, "dhcp:-f", mac="U:" + web.name))
        assert again.status == "unchanged" and again.addresses == att.addresses
        assert again.dns == (DNS_SERVER,)
        # A helper that stopped is not "unchanged": the re-run replaces it.
        web.daemon.cli("stop", "-t", "1", helper["Id"])
        replaced = await engine.attach(spec(web, "dhcp:-f", mac="U:" + web.name))
        assert replaced.status == "replaced" and replaced.addresses == att.addresses
        assert [h["State"]["Running"] for h in helpers(web)] == [True]
        await engine.detach(web.name)
    assert helpers(web) == [] and set(links(web)) == {"lo"}
    assert server.in_pool(att.addresses[0])
    assert list(dhcp_run_dir.glob("dhcp/*")) == []


async def test_gc_removes_the_helper_of_a_dead_guest(host_ns, make_container, dhcp_server):
    dhcp_server()
    web = make_container()
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(web, "dhcp:-f"))
        provider = next(p for p in engine.providers if p.name == "dhcp")
        assert (
            await provider.collect_garbage(gc_context(engine.host, dry_run=True)) == []
        )  # alive: not garbage
        web.daemon.cli("kill", web.id)
        listed = await provider.collect_garbage(gc_context(engine.host, dry_run=True))
        assert any(f"of {web.name}" in line for line in listed), listed
        assert helpers(web)  # a dry run removes nothing
        assert await provider.collect_garbage(gc_context(engine.host)) == listed
    assert helpers(web) == []


async def test_dns_goes_into_the_containers_own_resolv_conf(host_ns, make_container, dhcp_server):
    dhcp_server()
    web = make_container()
    original = web.exec("cat", "/etc/resolv.conf").stdout
    with open(HOST_RESOLV, "rb") as fh:
        host_before = fh.read()
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.attach(spec(web, "dhcp", dns=True))
        seen = web.exec("cat", "/etc/resolv.conf").stdout
        assert f"nameserver {DNS_SERVER}" in seen and f"search {DOMAIN}" in seen
        # A host client with --dns writes the same, the container's, file.
        await engine.attach(spec(web, "udhcpc", dns=True, ifname="eth2"))
        assert web.exec("cat", "/etc/resolv.conf").stdout.count("nameserver") == 1
        await engine.detach(web.name, "eth2")
        assert web.exec("cat", "/etc/resolv.conf").stdout == seen
        await engine.detach(web.name)
    assert web.exec("cat", "/etc/resolv.conf").stdout == original
    with open(HOST_RESOLV, "rb") as fh:
        assert fh.read() == host_before


@pytest.mark.parametrize("client", ["dhclient", "udhcpc", "dhcpcd"])
async def test_host_clients_serve_containers(client, host_ns, make_container, dhcp_server):
    infra.require_binaries(client)
    server = dhcp_server()
    web = make_container()
    async with Engine(host_netns=host_ns.path) as engine:
        att = await engine.attach(spec(web, f"{client}-f"))
        assert server.in_pool(att.addresses[0]) and infra.ping(web, server.server_ip)
        assert client_pids_in(infra.netns_key(web.netns_path))
        state = StateDir.of(engine.config.run_dir, web.id, "eth1")
        assert state.meta()["guest_name"] == web.name
        await engine.detach(web.name)
    assert client_pids_in(infra.netns_key(web.netns_path)) == []


async def test_helper_errors(host_ns, make_container, dhcp_server, make_netns):
    dhcp_server()
    web = make_container()
    plain = make_netns("n")
    async with Engine(host_netns=host_ns.path) as engine:
        with pytest.raises(UsageError, match="needs a Docker or Podman guest"):
            await engine.attach(
                AttachSpec(
                    host="brpwtd", guest=f"netns:{plain.name}", address=AddressSpec.parse("dhcp")
                )
            )
        from pipework.engine import UnsupportedError

        with pytest.raises(UnsupportedError, match="image pwt/nosuchimage is not available"):
            await engine.attach(spec(web, "dhcp", image="pwt/nosuchimage"))
        with pytest.raises(UsageError, match="udhcpc option -s is set by pipework"):
            await engine.attach(spec(web, "dhcp:-s /bin/true"))
    assert set(links(web)) == {"lo"} and set(links(plain)) == {"lo"}


@pytest.mark.parametrize("ipspec", ["dhcp", "dhcp:-f"])
async def test_helper_timeout_leaves_nothing(ipspec, host_ns, make_container, dhcp_run_dir):
    host_ns.exec("ip", "link", "add", "brpwtd", "type", "bridge")
    host_ns.exec("ip", "link", "set", "brpwtd", "up")
    web = make_container()
    async with Engine(host_netns=host_ns.path) as engine:
        with pytest.raises(TimeoutExpiredError) as failure:
            await engine.attach(spec(web, ipspec, timeout=2))
    assert str(failure.value).startswith(
        f"udhcpc (dhcp helper) got no DHCP lease for eth1 in {web.name} within 2 s (it said: "
    )
    assert helpers(web) == [] and set(links(web)) == {"lo"}
    assert list(dhcp_run_dir.glob("dhcp/*")) == []


async def test_kept_helper_rollback_after_every_step(
    host_ns, make_container, dhcp_server, monkeypatch
):
    dhcp_server()
    web = make_container()

    def check(step: str) -> None:
        assert helpers(web) == [], f"fault after {step}"
        assert set(links(web)) == {"lo"}, f"fault after {step}"

    faulted = await attach_with_each_fault(
        monkeypatch, host_ns.path, spec(web, "dhcp:-f", dns=True), check
    )
    assert "dhcp helper for eth1" in faulted and any("DNS" in s for s in faulted), faulted
    assert [h["State"]["Running"] for h in helpers(web)] == [True]
    async with Engine(host_netns=host_ns.path) as engine:
        await engine.detach(web.name)
    assert helpers(web) == []


@pytest.mark.slow
async def test_every_kept_client_renews_at_t1_and_detach_stops_it(
    host_ns, make_netns, make_container, dhcp_server, dhcp_run_dir
):
    """dnsmasq's shortest lease is 2 minutes, so T1 comes after 1 minute: the
    three host clients (on namespaces) and the helper (on a container) are
    attached at once and watched together, for one minute of wall time."""
    server = dhcp_server(lease_time="2m")
    guests = {client: make_netns("k") for client in ("dhclient", "udhcpc", "dhcpcd")}
    web = make_container()
    refs = {**{c: f"netns:{g.name}" for c, g in guests.items()}, "dhcp": web.name}
    kept = {"dhclient": "dhclient-f", "udhcpc": "udhcpc-f", "dhcpcd": "dhcpcd-f", "dhcp": "dhcp:-f"}
    async with Engine(host_netns=host_ns.path) as engine:
        attached = {
            client: await engine.attach(
                AttachSpec(host="brpwtd", guest=ref, address=AddressSpec.parse(kept[client]))
            )
            for client, ref in refs.items()
        }
    first = {client: server.leases()[att.mac] for client, att in attached.items()}
    for client, guest in guests.items():
        assert client_pids_in(infra.netns_key(guest.path)), f"{client} is not running"
    assert [h["State"]["Running"] for h in helpers(web)] == [True]

    def report(client: str) -> dict[str, str]:
        if client == "dhcp":
            (helper,) = helpers(web)
            logs = web.daemon.cli("logs", helper["Id"]).stdout
            return last_logged_report(logs) or {}
        return StateDir.of(str(dhcp_run_dir), refs[client], "eth1").report()

    # A renewal of every lease: a second ACK, a later expiry at the server,
    # and the hook's report of a renew event.
    deadline = time.monotonic() + 100
    renewed: set[str] = set()
    while renewed != set(refs) and time.monotonic() < deadline:
        await anyio.sleep(1)
        for client, att in attached.items():
            seen = report(client)
            if (
                server.acks(att.mac) >= 2
                and server.leases()[att.mac].expiry > first[client].expiry
                and int(seen.get("count", 0)) >= 2
                and seen.get("event", "").lower() in ("renew", "rebind")
            ):
                renewed.add(client)
    assert renewed == set(refs), f"not renewed: {set(refs) - renewed}\n{server.log()}"
    for client, att in attached.items():
        assert server.leases()[att.mac].ip == first[client].ip  # the same address
    async with Engine(host_netns=host_ns.path) as engine:
        for ref in refs.values():
            await engine.detach(ref)
    for client, guest in guests.items():
        assert client_pids_in(infra.netns_key(guest.path)) == [], client
    assert helpers(web) == [] and list(dhcp_run_dir.glob("dhcp/*")) == []
