"""The thin client: what it sends, how it relays frames, when it runs in-process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.unix_http import serve_once

from pipework import client

HEAD = b"HTTP/1.0 200 OK\r\nPipework-Protocol: 1\r\nContent-Type: application/x-ndjson\r\n\r\n"


@pytest.fixture
def env(tmp_path):
    return {client.SOCKET_ENV: str(tmp_path / "pipework.sock"), "PATH": "/bin", "LD_PRELOAD": "x"}


def frames(*items: dict) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


def test_output_and_exit_code_come_back_as_the_worker_gave_them(env, capfdbinary):
    seen = serve_once(
        env[client.SOCKET_ENV],
        HEAD + frames({"stdout": "created: eth1\n"}, {"stderr": "warn \udcff\n"}, {"exit": 4}),
    )
    assert client.run("pipework", ["br1", "web1", "0/0"], environ=env) == 4
    out, err = capfdbinary.readouterr()
    assert out == b"created: eth1\n"
    assert err == b"warn \xff\n"  # bytes that are no UTF-8 come back as they were
    request = seen[0]
    assert request.startswith(b"POST /v1/run HTTP/1.0\r\n") and b"Pipework-Protocol: 1" in request
    body = json.loads(request.partition(b"\r\n\r\n")[2])
    assert body["program"] == "pipework" and body["argv"] == ["br1", "web1", "0/0"]
    assert body["env"] == {client.SOCKET_ENV: env[client.SOCKET_ENV]}  # never PATH, LD_*


def test_no_daemon_or_another_protocol_runs_in_process(env, capfd):
    assert client.run("pipework", ["ls"], environ=env, debug=True) is None
    assert "no daemon answers" in capfd.readouterr().err
    serve_once(env[client.SOCKET_ENV] + "", b"HTTP/1.0 400 Bad\r\nPipework-Protocol: 2\r\n\r\n{}")
    assert client.run("pipework", ["ls"], environ=env, debug=True) is None
    assert "running in-process" in capfd.readouterr().err
    assert client.run("pipework", ["ls"], environ={**env, client.NO_DAEMON_ENV: "1"}) is None


def test_a_refusal_runs_in_process(env, capfd):
    serve_once(
        env[client.SOCKET_ENV],
        b"HTTP/1.0 421 Misdirected\r\nPipework-Protocol: 1\r\n\r\n"
        + json.dumps(
            {"error": "the client is in another pid namespace", "code": "namespace"}
        ).encode(),
    )
    assert client.run("pipework", ["ls"], environ=env, debug=True) is None
    assert "another pid namespace" in capfd.readouterr().err


@pytest.mark.parametrize(
    "body",
    [frames({"stdout": "half"}), frames({"stdout": "half"}) + b"{broken\n", b"[1]\n"],
)
def test_a_daemon_gone_mid_command_is_one_line_and_exit_11(env, capfd, body):
    serve_once(env[client.SOCKET_ENV], HEAD + body)
    assert client.run("pipework", ["br1", "web1", "0/0"], environ=env) == client.LOST
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipework: "), lines


@pytest.mark.parametrize(("code", "expected"), [(0, 0), (130, 130), (-1, 1), (999, 1), ("3", 1)])
def test_exit_codes_are_checked(env, code, expected):
    serve_once(env[client.SOCKET_ENV], HEAD + frames({"exit": code}))
    assert client.run("pipework", ["ls"], environ=env) == expected


def test_not_http_is_no_daemon(env):
    serve_once(env[client.SOCKET_ENV], b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(client.Unreachable):
        client.open_stream("GET", "/v1/version", environ=env)


def test_socket_path_and_disabled():
    assert client.socket_path({}) == "/run/pipework/pipework.sock"
    assert client.socket_path({"PIPEWORK_RUN_DIR": "/x"}) == "/x/pipework.sock"
    assert client.socket_path({client.SOCKET_ENV: "/y.sock", "PIPEWORK_RUN_DIR": "/x"}) == "/y.sock"
    assert client.disabled({client.NO_DAEMON_ENV: "1"})
    assert not client.disabled({client.NO_DAEMON_ENV: "0"}) and not client.disabled({})


def test_the_client_imports_the_standard_library_only():
    code = (
        "import sys; before = set(sys.modules); import pipework.client;"
        "print(sorted(m for m in set(sys.modules) - before))"
    )
    loaded = eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout)  # fmt: skip
    foreign = [m for m in loaded if m.partition(".")[0] not in sys.stdlib_module_names]
    assert sorted(foreign) == ["pipework", "pipework.client"], foreign


def test_fetch_reads_a_whole_answer(env):
    serve_once(env[client.SOCKET_ENV], b"HTTP/1.0 200 OK\r\n\r\n" + b'{"served": 3}')
    assert json.loads(client.fetch("/v1/version", environ=env)) == {"served": 3}
    with pytest.raises(client.Unreachable):
        client.fetch("/v1/version", environ=env)  # nobody answers any more
