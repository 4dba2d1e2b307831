"""open_netns opens only namespace files: a FIFO, a device or a directory named
as a guest (on the command line, or as a guest key in a forged marker) is
refused before it is opened, so nothing blocks and no device acts."""

from __future__ import annotations

import os
import threading

import pytest

from pipework.engine import GuestInfo, UsageError, open_netns


def _info(path: str) -> GuestInfo:
    return GuestInfo(name=path, key=path, runtime="path")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "regular"])
def test_what_is_not_a_namespace_is_refused_without_blocking(tmp_path, kind):
    path = str(tmp_path / kind)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = "/dev/null"
    elif kind == "directory":
        os.mkdir(path)
    else:
        with open(path, "w") as handle:
            handle.write("not a namespace")
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            open_netns(path, _info(path))
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the thread (a writer opens the FIFO), then fail
        with open(path, "w"):
            pass
        pytest.fail(f"open_netns blocked on a {kind}")
    assert len(outcome) == 1 and isinstance(outcome[0], UsageError)
    assert "is not a network namespace" in str(outcome[0])


def test_a_namespace_file_is_opened():
    guest = open_netns("/proc/self/ns/net", _info("/proc/self/ns/net"))
    try:
        assert guest.fd >= 0
    finally:
        guest.close()


def test_a_nul_character_is_a_one_line_usage_error():
    with pytest.raises(UsageError) as info:
        open_netns("/run/netns/a\0b", _info("netns:a\0b"))
    assert "NUL" in str(info.value) and "\n" not in str(info.value)
