"""The daemon's checks of what a request holds (daemon/server.py) and of
where it listens (daemon/service.py)."""

from __future__ import annotations

import os
import socket

import pytest

from pipework.daemon.server import BadRequest, checked_job, local_command
from pipework.daemon.service import activated_socket, bound_socket, group_id
from pipework.engine.errors import ConflictError, UsageError


def test_a_good_job_is_taken_as_it_is():
    job = checked_job(
        {"argv": ["br1", "web1", "0/0"], "env": {"PIPEWORK_X": "1"}, "stdin": None,
         "terminal": {"stdout": [24, 80], "stderr": None}}
    )  # fmt: skip
    assert job == {
        "program": "pipework",
        "argv": ["br1", "web1", "0/0"],
        "env": {"PIPEWORK_X": "1"},
        "stdin": None,
        "terminal": {"stdout": [24, 80], "stderr": None},
    }
    assert checked_job({"program": "pipework-cni", "stdin": "{}"})["program"] == "pipework-cni"


@pytest.mark.parametrize(
    "body",
    [
        {"program": "/bin/sh"},
        {"program": ["pipework"]},
        {"argv": "ls"},
        {"argv": [1]},
        {"argv": ["a\0b"]},
        {"argv": ["x"] * 5000},
        {"env": ["A=1"]},
        {"env": {"A": 1}},
        {"stdin": 5},
        {"terminal": "tty"},
        {"terminal": {"stdout": [24]}},
        {"terminal": {"stdout": ["24", "80"]}},
        {"terminal": {"stdout": [True, 80.5]}},
    ],
)
def test_a_bad_job_is_one_line(body):
    with pytest.raises(BadRequest) as caught:
        checked_job(body)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "local"),
    [
        (["daemon"], "daemon"),
        (["--debug", "watch", "--once"], "watch"),
        (["--podman-host", "daemon", "ls"], None),  # the value of an option is no command
        (["-P", "watch", "events"], "events"),
        (["br1", "daemon", "0/0"], None),
        (["ls"], None),
        ([], None),
    ],
)
def test_the_commands_the_daemon_does_not_run(argv, local):
    assert local_command(argv) == local


def test_a_socket_is_bound_only_root_may_reach(tmp_path):
    path = str(tmp_path / "run" / "pipework.sock")
    sock = bound_socket(path, None)
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with pytest.raises(ConflictError, match="already answers"):
            bound_socket(path, None)
    finally:
        sock.close()
    again = bound_socket(path, os.getgid())  # the stale one is replaced
    try:
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    finally:
        again.close()


def test_a_path_that_is_no_socket_is_left_alone(tmp_path):
    path = tmp_path / "pipework.sock"
    path.write_text("mine")
    with pytest.raises(UsageError, match="is not a socket"):
        bound_socket(str(path), None)
    assert path.read_text() == "mine"


def test_socket_activation_only_for_this_process():
    assert activated_socket({"LISTEN_PID": "1", "LISTEN_FDS": "1"}) is None
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
    with pytest.raises(UsageError, match="2 sockets"):
        activated_socket(environ)
    assert "LISTEN_FDS" not in environ  # not passed on


def test_socket_activation_takes_descriptor_3(tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s"))
    listener.listen(1)
    saved = os.dup(3) if _open(3) else None
    os.dup2(listener.fileno(), 3)
    try:
        sock = activated_socket({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"})
        assert sock is not None and sock.getsockname() == str(tmp_path / "s")
        sock.detach()
    finally:
        if saved is None:
            os.close(3)
        else:
            os.dup2(saved, 3)
            os.close(saved)
        listener.close()


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_groups_by_name_or_number():
    assert group_id("root") == 0
    with pytest.raises(UsageError, match="no group named"):
        group_id("no-such-group-pipework")
    assert group_id("12345") == 12345
