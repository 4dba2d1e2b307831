"""engine/locks.py: named locks held across processes (flock under RUN_DIR/locks).

Two ``HostLocks`` on one directory stand for two processes: each opens its
own file descriptions, which ``flock`` tells apart as it tells processes
apart. One test uses a real second process.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipework.engine.errors import PipeworkError
from pipework.engine.locks import (
    LOCK_DIR,
    HostLocks,
    LockTimeout,
    describe,
    holder_pid,
    lock_file_name,
)

pytestmark = pytest.mark.anyio
SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,40}-[0-9a-f]{16}\.lock$")


def files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / LOCK_DIR).iterdir())


def locked_by(path: Path) -> int | None:
    """Who holds a flock on the file at ``path`` now (/proc/locks)."""
    there = path.stat()
    return holder_pid(Path("/proc/locks").read_text(), there.st_dev, there.st_ino)


def test_the_holder_is_read_from_proc_locks() -> None:
    dev = os.makedev(0xFE, 0)
    table = (
        "1: POSIX  ADVISORY  WRITE 77 fe:00:42 0 EOF\n"
        "2: FLOCK  ADVISORY  WRITE 1234 fe:00:42 0 EOF\n"
        "2: -> FLOCK  ADVISORY  WRITE 999 fe:00:42 0 EOF\n"
        "3: FLOCK  ADVISORY  WRITE 55 fe:00:420 0 EOF\n"
    )
    assert holder_pid(table, dev, 42) == 1234
    assert holder_pid(table, dev, 420) == 55
    assert holder_pid(table, dev, 7) is None
    assert holder_pid("garbage\n\n1: FLOCK", dev, 42) is None


@given(st.text(st.characters(blacklist_categories=()), max_size=300))
def test_a_file_name_is_safe_whatever_the_lock_name(name: str) -> None:
    filename = lock_file_name(name)
    assert SAFE.match(filename), filename
    assert "/" not in filename and filename not in (".", "..") and not filename.startswith(".")


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "/", "guest:/dev/null:eth1", "a\0b", "ü" * 100, "", "..", "\ud800x"],
)
def test_hostile_lock_names(name: str) -> None:
    assert SAFE.match(lock_file_name(name))


def test_names_that_sanitize_alike_get_different_files() -> None:
    assert lock_file_name("bridge:br1") != lock_file_name("bridge/br1")
    assert lock_file_name("bridge:br1").startswith("bridge_br1-")


def test_describe() -> None:
    assert describe("bridge:br1") == "bridge br1"
    assert describe("guest:netns:g:eth1") == "guest netns:g:eth1"
    assert describe("plain") == "plain"


async def test_the_directory_is_private_and_no_file_stays(tmp_path: Path) -> None:
    locks = HostLocks(str(tmp_path / "run"), wait=5)
    async with locks.hold("bridge:br1"):
        assert files(tmp_path / "run") == [lock_file_name("bridge:br1")]
        assert locked_by(tmp_path / "run" / LOCK_DIR / lock_file_name("bridge:br1")) == os.getpid()
    mode = (tmp_path / "run" / LOCK_DIR).stat().st_mode
    assert stat.S_IMODE(mode) == 0o700
    assert files(tmp_path / "run") == []
    assert locks._local == {}  # nothing kept per name once unused
    locks.close()


async def test_another_process_waits_until_the_holder_lets_go(tmp_path: Path) -> None:
    first, second = HostLocks(str(tmp_path), wait=5), HostLocks(str(tmp_path), wait=5)
    events: list[str] = []
    holding = anyio.Event()

    async def hold_first() -> None:
        async with first.hold("bridge:br1"):
            holding.set()
            events.append("first in")
            await anyio.sleep(0.1)
            events.append("first out")

    async def hold_second() -> None:
        await holding.wait()
        async with second.hold("bridge:br1"):
            events.append("second in")
            # The file this holder locked is the one at the path (the first
            # holder removed its own: a naive retry would lock a lost inode).
            assert locked_by(tmp_path / LOCK_DIR / lock_file_name("bridge:br1")) == os.getpid()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold_first)
        tg.start_soon(hold_second)
    assert events == ["first in", "first out", "second in"]
    assert files(tmp_path) == []


async def test_other_names_do_not_wait(tmp_path: Path) -> None:
    first, second = HostLocks(str(tmp_path), wait=0.2), HostLocks(str(tmp_path), wait=0.2)
    async with first.hold("bridge:br1"), second.hold("bridge:br2"):
        pass


async def test_a_holder_that_stays_too_long_is_a_one_line_error(tmp_path: Path) -> None:
    first, second = HostLocks(str(tmp_path), wait=5), HostLocks(str(tmp_path), wait=0.2)
    async with first.hold("bridge:br1"):
        with pytest.raises(LockTimeout) as caught:
            async with second.hold("bridge:br1"):
                pytest.fail("got a lock another holds")
    message = str(caught.value)
    assert "\n" not in message
    assert f"(pid {os.getpid()})" in message and "lock on bridge br1" in message
    assert "0.2 s" in message and caught.value.exit_code == 10
    assert second._local == {}


async def test_a_cancelled_wait_and_a_cancelled_holder_release_everything(tmp_path: Path) -> None:
    first, second = HostLocks(str(tmp_path), wait=5), HostLocks(str(tmp_path), wait=5)
    before = len(os.listdir("/proc/self/fd"))
    async with first.hold("forward:br1"):
        with anyio.move_on_after(0.1):
            async with second.hold("forward:br1"):
                pytest.fail("got a lock another holds")
    with anyio.move_on_after(0.05):
        async with second.hold("forward:br1"):
            await anyio.sleep(5)  # cancelled while holding
    async with first.hold("forward:br1"):  # free again
        pass
    first.close()
    second.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert files(tmp_path) == []


async def test_tasks_of_one_engine_take_turns(tmp_path: Path) -> None:
    locks = HostLocks(str(tmp_path), wait=5)
    inside = 0
    most = 0

    async def one() -> None:
        nonlocal inside, most
        async with locks.hold("vlan:eth0.10"):
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.01)
            inside -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert most == 1 and locks._local == {}


async def test_a_real_other_process(tmp_path: Path) -> None:
    """A process that holds the lock file with flock(1)-style code: we wait for it."""
    locks = HostLocks(str(tmp_path), wait=5)
    (tmp_path / LOCK_DIR).mkdir(mode=0o700)
    path = tmp_path / LOCK_DIR / lock_file_name("bridge:br1")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid())\n"
            "print('held', flush=True); time.sleep(0.3)\n"
            "os.unlink(sys.argv[1])\n",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        start = anyio.current_time()
        async with locks.hold("bridge:br1"):
            assert anyio.current_time() - start > 0.1
            assert holder.poll() is not None or holder.wait(timeout=5) == 0
    finally:
        holder.kill()
        holder.wait()
        locks.close()


async def test_a_lock_directory_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    locks = HostLocks(str(tmp_path / "file"), wait=1)
    with pytest.raises(PipeworkError, match=r"cannot use the lock directory .*PIPEWORK_RUN_DIR"):
        async with locks.hold("bridge:br1"):
            pass
