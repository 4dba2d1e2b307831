"""Batch files: the words of a line are shlex's, whichever way they are split."""

from __future__ import annotations

import shlex

from hypothesis import given
from hypothesis import strategies as st

from pipework.apps.batchfile import parse_batch, split_line

PIECES = st.sampled_from(
    [
        *("br1", "netns:web1", "198.18.1.2/24", "-i", "eth2", "=", "--mtu=1400", "U:x", "a b"),
        *(" ", "\t", "\r", "#", "'", '"', "\\", "é", "\xa0", "\x0b", "\x1c", "\u2003"),
    ]
)


@given(st.lists(PIECES, max_size=12).map("".join))
def test_split_line_is_shlex(line):
    try:
        expected = shlex.split(line, comments=True)
    except ValueError as exc:
        try:
            split_line(line)
        except ValueError as mine:
            assert str(mine) == str(exc)
        else:
            raise AssertionError(f"{line!r}: no error, shlex says {exc}")
        return
    assert split_line(line) == expected


@given(st.text(max_size=40))
def test_split_line_is_shlex_on_any_text(line):
    try:
        expected = shlex.split(line, comments=True)
    except ValueError:
        return
    assert split_line(line) == expected


def test_plain_and_quoted_lines_give_the_same_jobs():
    plain = parse_batch("br1 netns:web1 198.18.1.2/24 -i eth2\n", "b")
    quoted = parse_batch("br1 'netns:web1' \"198.18.1.2/24\" -i eth2  # note\n", "b")
    assert [j.spec for j in plain] == [j.spec for j in quoted]
