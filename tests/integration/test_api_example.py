"""docs/API.md's example runs, and the page shows it exactly."""

from __future__ import annotations

import sys

from support import infra

EXAMPLE = infra.REPO_ROOT / "examples" / "api_example.py"
MARK = "<!-- the block below is examples/api_example.py, verbatim -->\n```python\n"


def test_the_page_shows_the_example_verbatim():
    page = (infra.REPO_ROOT / "docs" / "API.md").read_text()
    start = page.index(MARK) + len(MARK)
    assert page[start : page.index("```\n", start)] == EXAMPLE.read_text()


def test_the_api_example_runs_and_cleans_up():
    proc = infra.run([sys.executable, str(EXAMPLE)], cwd=infra.REPO_ROOT, timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("created: eth1 in netns:pwex-a-")
    assert lines[1].startswith("created: eth1 in netns:pwex-b-")
    assert lines[2].startswith(
        "failed (exit code 3): no network namespace named pwex-does-not-exist"
    )
    assert (
        '"status": "unchanged"' in lines[3]
        and '"routes": ["198.18.61.0/24 via 198.18.60.254"]' in lines[3]
    )
    assert lines[-2].endswith(": ['eth1']") and lines[-1].endswith(": ['eth1']")
    assert not [
        p for p in infra.run(["ip", "netns", "list"]).stdout.split() if p.startswith("pwex-")
    ]
