"""Cache files under RUN_DIR: a hostile or broken one is ignored, never trusted."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipework.engine import statefile


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return statefile.cache_path(str(tmp_path / "run"), "thing.json")


def test_round_trip_and_modes(path: Path):
    statefile.write(path, {"a": [1, "b"]})
    assert statefile.read(path) == {"a": [1, "b"]}
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["thing.json"]  # no temporary left


def test_missing_is_none_without_a_word(path: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.DEBUG, logger="pipework"):
        assert statefile.read(path) is None
    assert caplog.records == []


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"[1, 2]", b'"text"', b"{" * 10000, b"\xff\xfe"]
)
def test_garbage_is_ignored_with_one_debug_line(
    path: Path, content: bytes, caplog: pytest.LogCaptureFixture
):
    statefile.write(path, {})
    path.write_bytes(content)
    with caplog.at_level(logging.DEBUG, logger="pipework"):
        assert statefile.read(path) is None
    assert len(caplog.records) == 1 and caplog.records[0].levelno == logging.DEBUG


def test_too_long_is_not_read(path: Path):
    statefile.write(path, {})
    path.write_text('{"a": "' + "x" * statefile.LIMIT + '"}')
    assert statefile.read(path) is None


def test_a_file_others_may_write_is_ignored(path: Path):
    statefile.write(path, {"a": 1})
    path.chmod(0o644)
    assert statefile.read(path) is None  # readable by others: not one of ours
    path.chmod(0o602)
    assert statefile.read(path) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_a_file_of_another_user_is_ignored(path: Path):
    statefile.write(path, {"a": 1})
    os.chown(path, 65534, 65534)
    assert statefile.read(path) is None


def test_a_symlink_is_not_followed(path: Path, tmp_path: Path):
    target = tmp_path / "elsewhere.json"
    statefile.write(path, {"a": 1})
    target.write_text('{"planted": true}')
    target.chmod(0o600)
    path.unlink()
    path.symlink_to(target)
    assert statefile.read(path) is None
    statefile.write(path, {"b": 2})  # replaces the link, never writes through it
    assert not path.is_symlink() and statefile.read(path) == {"b": 2}
    assert target.read_text() == '{"planted": true}'


def test_a_fifo_does_not_block(path: Path):
    statefile.write(path, {})
    path.unlink()
    os.mkfifo(path, 0o600)
    assert statefile.read(path) is None


def test_a_directory_others_may_write_is_not_written_to(path: Path):
    path.parent.mkdir(parents=True, mode=0o700)
    path.parent.chmod(0o777)
    statefile.write(path, {"a": 1})
    assert not path.exists()


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path: Path):
    blocker = tmp_path / "run"
    blocker.write_text("a file where RUN_DIR should be")
    statefile.write(statefile.cache_path(str(blocker), "x.json"), {"a": 1})  # no exception
