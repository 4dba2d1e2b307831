"""The OVSDB JSON-RPC client: socket path, framing, data notation, results,
and the client against a fake server on a unix socket (no root, no OVS)."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from pipework.backends.links.ovs import ovsdb
from pipework.backends.links.ovs.ovsdb import (
    JsonSplitter,
    OvsdbClient,
    OvsdbError,
    OvsdbUnavailable,
    check_results,
    socket_path,
)
from pipework.engine import NotPermittedError, TimeoutExpiredError, UsageError

pytestmark = pytest.mark.anyio


# -- where the server is -------------------------------------------------------------------


def test_default_socket_path():
    assert socket_path({}) == "/var/run/openvswitch/db.sock"


def test_ovs_rundir_like_ovs_vsctl():
    assert socket_path({"OVS_RUNDIR": "/tmp/x"}) == "/tmp/x/db.sock"


@pytest.mark.parametrize("value", ["/tmp/y/db.sock", "unix:/tmp/y/db.sock"])
def test_pipework_ovsdb_takes_precedence(value):
    assert socket_path({"OVS_RUNDIR": "/tmp/x", "PIPEWORK_OVSDB": value}) == "/tmp/y/db.sock"


@pytest.mark.parametrize("value", ["tcp:198.18.0.1:6640", "ssl:198.18.0.1:6640", "unix:"])
def test_only_unix_sockets(value):
    with pytest.raises(UsageError, match="only unix sockets are supported") as info:
        socket_path({"PIPEWORK_OVSDB": value})
    assert info.value.exit_code == 2


# -- framing ------------------------------------------------------------------------------------

MESSAGES = [
    {"id": 1, "result": [{"rows": [{"name": 'br{0}"[x]', "ids": ["map", [["k", "v\\"]]]}]}]},
    {"method": "echo", "params": [], "id": "echo"},
    {"id": 2, "result": [], "error": None, "text": 'ünïcødé \u2028 \\\\" }'},
    [1, [2, [3, {"a": "]"}]]],
]


def test_split_whole_messages_back_to_back():
    data = b" \n".join(json.dumps(m).encode() for m in MESSAGES) + b"\n"
    assert JsonSplitter().feed(data) == MESSAGES


def test_split_at_every_byte_boundary():
    data = b"".join(json.dumps(m, ensure_ascii=False).encode() for m in MESSAGES)
    for cut in range(1, len(data)):
        splitter = JsonSplitter()
        got = splitter.feed(data[:cut]) + splitter.feed(data[cut:])
        assert got == MESSAGES, cut


def test_split_byte_by_byte():
    data = b"".join(json.dumps(m).encode() for m in MESSAGES)
    splitter = JsonSplitter()
    got = []
    for i in range(len(data)):
        got += splitter.feed(data[i : i + 1])
    assert got == MESSAGES and splitter.pending == 0


def test_an_incomplete_message_waits_for_more():
    splitter = JsonSplitter()
    assert splitter.feed(b'{"id": 1, "result": "a\\') == []
    assert splitter.pending > 0
    assert splitter.feed(b'"b"}') == [{"id": 1, "result": 'a"b'}]


@pytest.mark.parametrize("data", [b"HTTP/1.1 400 Bad Request\r\n", b"42", b'"x"'])
def test_something_that_is_not_json_rpc(data):
    with pytest.raises(OvsdbError, match="not JSON-RPC"):
        JsonSplitter().feed(data)


def test_malformed_json():
    with pytest.raises(OvsdbError, match="malformed JSON"):
        JsonSplitter().feed(b'{"a": nope}')


def test_a_runaway_message_is_cut_off():
    splitter = JsonSplitter(limit=100)
    with pytest.raises(OvsdbError, match="exceeded 100 bytes"):
        splitter.feed(b'{"a": "' + b"x" * 200)


# -- the data notation ----------------------------------------------------------------------


def test_notation_helpers():
    assert ovsdb.uuid("u1") == ["uuid", "u1"]
    assert ovsdb.named_uuid("n") == ["named-uuid", "n"]
    assert ovsdb.oset(iter([1, 2])) == ["set", [1, 2]]
    assert ovsdb.omap({"b": "2", "a": "1"}) == ["map", [["a", "1"], ["b", "2"]]]
    # A set of one is sent as the bare atom; a UUID atom is not a set.
    assert ovsdb.set_items(["uuid", "u1"]) == [["uuid", "u1"]]
    assert ovsdb.set_items(["set", [["uuid", "u1"], ["uuid", "u2"]]]) == [
        ["uuid", "u1"],
        ["uuid", "u2"],
    ]
    assert ovsdb.uuids(["uuid", "u1"]) == {"u1"}
    assert ovsdb.uuids(["set", []]) == frozenset()
    assert ovsdb.optional(["set", []]) is None and ovsdb.optional(7) == 7
    assert ovsdb.map_items(["map", [["k", "v"]]]) == {"k": "v"}


@pytest.mark.parametrize(
    ("func", "value"),
    [(ovsdb.map_items, ["set", []]), (ovsdb.uuid_str, "u1"), (ovsdb.uuid_str, ["named-uuid", "x"])],
)
def test_notation_errors(func, value):
    with pytest.raises(OvsdbError, match="was expected"):
        func(value)


# -- transaction results ----------------------------------------------------------------------

OPS = [
    {"op": "wait", "table": "Port", "where": [], "until": "==", "rows": []},
    {"op": "insert", "table": "Port", "row": {}},
]


def test_results_pass_through():
    assert check_results(OPS, [{}, {"uuid": ["uuid", "u1"]}]) == [{}, {"uuid": ["uuid", "u1"]}]


def test_a_failing_operation_is_named():
    with pytest.raises(OvsdbError, match=r"wait on Port: timed out: \"wait\" timed out") as info:
        check_results(OPS, [{"error": "timed out", "details": '"wait" timed out'}])
    assert (info.value.error, info.value.op) == ("timed out", OPS[0])
    assert info.value.exit_code == 9


def test_a_failing_commit_is_the_extra_result():
    results = [{}, {"uuid": ["uuid", "u"]}, {"error": "constraint violation", "details": "dup"}]
    with pytest.raises(OvsdbError, match=r"\(commit: constraint violation: dup\)") as info:
        check_results(OPS, results)
    assert info.value.error == "constraint violation" and info.value.op is None


@pytest.mark.parametrize("results", [None, {"x": 1}, [{}]])
def test_short_or_odd_results(results):
    with pytest.raises(OvsdbError):
        check_results(OPS, results)


# -- the client against a fake server ---------------------------------------------------------

Handler = Callable[["FakeServer", anyio.abc.SocketStream, dict[str, Any]], Awaitable[None]]


class FakeServer:
    """A unix-socket JSON-RPC server; ``handler`` answers each request."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.replies: list[Any] = []

    async def serve(self, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED):
        listener = await anyio.create_unix_listener(self.path)
        task_status.started()
        await listener.serve(self._connection)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        splitter = JsonSplitter()
        async with stream:
            try:
                while True:
                    for message in splitter.feed(await stream.receive()):
                        if "method" in message:
                            self.requests.append(message)
                            await self.handler(self, stream, message)
                        else:
                            self.replies.append(message)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass


async def send(stream: anyio.abc.SocketStream, message: Any) -> None:
    await stream.send(json.dumps(message).encode())


async def echo_rows(server: FakeServer, stream: anyio.abc.SocketStream, request: dict) -> None:
    """Answer a transact with one select-like result per operation."""
    ops = request["params"][1:]
    await send(stream, {"id": request["id"], "error": None, "result": [{"rows": []} for _ in ops]})


@pytest.fixture
async def serve(tmp_path):
    async with anyio.create_task_group() as tg:

        async def start(handler: Handler) -> FakeServer:
            server = FakeServer(str(tmp_path / "db.sock"), handler)
            await tg.start(server.serve)
            return server

        yield start
        tg.cancel_scope.cancel()


SELECT = [{"op": "select", "table": "Bridge", "where": [], "columns": ["name"]}]


async def test_a_transaction_round_trip(serve):
    server = await serve(echo_rows)
    client = OvsdbClient(server.path, timeout=5)
    assert await client.transact(SELECT, what="listing") == [{"rows": []}]
    assert server.requests[0]["method"] == "transact"
    assert server.requests[0]["params"] == ["Open_vSwitch", *SELECT]
    await client.aclose()


async def test_the_connection_is_reused(serve):
    server = await serve(echo_rows)
    client = OvsdbClient(server.path, timeout=5)
    for _ in range(3):
        await client.transact(SELECT, what="listing")
    assert server.connections == 1 and len({r["id"] for r in server.requests}) == 3
    await client.aclose()


async def test_concurrent_transactions_do_not_wait_for_each_other(serve):
    gate = anyio.Event()

    async def slow_first(server, stream, request):
        if request["params"][1]["table"] == "Slow":
            await gate.wait()  # held until the fast one has been answered
        await echo_rows(server, stream, request)

    server = await serve(slow_first)
    client = OvsdbClient(server.path, timeout=5)
    order = []

    async def one(table):
        await client.transact([{"op": "select", "table": table, "where": []}], what=table)
        order.append(table)
        if table == "Fast":
            gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "Slow")
        await anyio.sleep(0.05)
        tg.start_soon(one, "Fast")
    assert order == ["Fast", "Slow"] and server.connections == 2
    await client.aclose()


async def test_echo_probes_are_answered(serve):
    async def probe_first(server, stream, request):
        await send(stream, {"method": "echo", "params": ["ping"], "id": "echo"})
        await send(stream, {"method": "update", "params": [None, {}], "id": None})
        await anyio.sleep(0.05)  # let the reply to the probe arrive first
        await echo_rows(server, stream, request)

    server = await serve(probe_first)
    client = OvsdbClient(server.path, timeout=5)
    await client.transact(SELECT, what="listing")
    assert server.replies == [{"result": ["ping"], "error": None, "id": "echo"}]
    await client.aclose()


async def test_an_error_reply(serve):
    async def refuse(server, stream, request):
        await send(stream, {"id": request["id"], "result": None, "error": "unknown database"})

    server = await serve(refuse)
    client = OvsdbClient(server.path, timeout=5)
    with pytest.raises(OvsdbError, match="OVSDB refused listing: unknown database"):
        await client.transact(SELECT, what="listing")


async def test_a_silent_server_times_out(serve):
    async def silent(server, stream, request):
        await anyio.sleep(10)

    server = await serve(silent)
    client = OvsdbClient(server.path, timeout=5)
    with pytest.raises(
        TimeoutExpiredError, match=r"did not answer within 0.2 s \(listing\)"
    ) as info:
        await client.transact(SELECT, what="listing", seconds=0.2)
    assert info.value.exit_code == 10
    assert client._idle == []  # a connection in an unknown state is not reused


async def test_a_server_that_hangs_up(serve):
    async def hang_up(server, stream, request):
        await stream.aclose()

    server = await serve(hang_up)
    client = OvsdbClient(server.path, timeout=5)
    with pytest.raises(OvsdbUnavailable, match="lost the connection to OVSDB") as info:
        await client.transact(SELECT, what="listing")
    assert info.value.exit_code == 5


async def test_an_idle_connection_the_server_closed_is_replaced(serve):
    streams = []

    async def remember(server, stream, request):
        streams.append(stream)
        await echo_rows(server, stream, request)

    server = await serve(remember)
    client = OvsdbClient(server.path, timeout=5)
    await client.transact(SELECT, what="listing")
    await streams[0].aclose()  # ovsdb-server restarted, say
    await anyio.sleep(0.05)
    assert await client.transact(SELECT, what="listing") == [{"rows": []}]
    assert server.connections == 2
    await client.aclose()


async def test_no_socket_means_not_running(tmp_path):
    client = OvsdbClient(str(tmp_path / "db.sock"), timeout=5)
    assert not client.available()
    with pytest.raises(OvsdbUnavailable) as info:
        await client.transact(SELECT, what="listing")
    assert info.value.exit_code == 5
    assert (
        info.value.message == f"Open vSwitch is not running (no OVSDB socket at {tmp_path}/db.sock)"
    )
    assert "PIPEWORK_OVSDB" in (info.value.hint or "")


async def test_a_stale_socket_refuses(tmp_path):
    path = str(tmp_path / "db.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)  # bound, never listening: what a crashed server leaves
    try:
        with pytest.raises(OvsdbUnavailable, match="nothing listens on the OVSDB socket"):
            await OvsdbClient(path, timeout=5).transact(SELECT, what="listing")
    finally:
        stale.close()


@pytest.mark.parametrize(
    ("code", "kind", "fragment"),
    [
        (
            errno.EACCES,
            NotPermittedError,
            "cannot connect to OVSDB at /x/db.sock: Permission denied",
        ),
        (errno.ECONNREFUSED, OvsdbUnavailable, "nothing listens on the OVSDB socket /x/db.sock"),
        (errno.ENOENT, OvsdbUnavailable, "no OVSDB socket at /x/db.sock"),
        (
            errno.ENOTSOCK,
            OvsdbUnavailable,
            "cannot connect to OVSDB at /x/db.sock: Socket operation",
        ),
    ],
)
def test_connection_errors_say_what_is_wrong(code, kind, fragment):
    error = ovsdb._unavailable("/x/db.sock", OSError(code, os.strerror(code)))
    assert type(error) is kind and fragment in error.message
