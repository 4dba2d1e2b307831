"""``pipework batch`` files: one original-style command line per line."""

from __future__ import annotations

import pytest

from pipework import UsageError
from pipework.cli.commands.batch import parse_batch


def test_lines_comments_and_a_leading_pipework():
    jobs = parse_batch(
        "# a comment\n\nbr1 web1 198.18.1.2/24  # trailing comment\n"
        "pipework br1 -i eth2 web1 198.18.2.2/24 U:web1\n",
        "b.txt",
    )
    assert [j.where for j in jobs] == ["b.txt:3", "b.txt:4"]
    assert jobs[0].spec is not None and jobs[0].spec.guest == "web1"
    assert jobs[1].spec is not None and jobs[1].spec.ifname == "eth2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("br1 web1 198.18.1.2\n", "b.txt:1: The IP address should include a netmask."),
        ("\nbr1 web1\n", "b.txt:2: missing IPSPEC"),
        ("br1 web1 0/0 --bogus\n", "b.txt:1: unknown option --bogus"),
        ("br1 'web1 0/0\n", "b.txt:1: No closing quotation"),
        ("br1 web1 0/0\nbr2 web1 0/0\n", "b.txt:2: the default interface in web1 is already"),
    ],
)
def test_a_bad_line_names_its_line(text, expected):
    with pytest.raises(UsageError) as info:
        parse_batch(text, "b.txt")
    assert str(info.value).startswith(expected), str(info.value)
    assert "\n" not in str(info.value)


def test_progress_lines_stay_one_line_whatever_a_name_holds():
    import io

    from pipework.cli.batchrun import PlainProgress

    out, err = io.StringIO(), io.StringIO()
    progress = PlainProgress(out, err)
    progress.line("failed: netns:a\0b\nc", failure=True)
    progress.line("created: netns:d\x1be")
    assert err.getvalue() == "pipework: failed: netns:a\\x00b\\nc\n"
    assert out.getvalue() == "created: netns:d\\x1be\n"
