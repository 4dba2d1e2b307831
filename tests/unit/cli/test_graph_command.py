"""``pipework graph FILE`` as a user runs it (no root: a file needs no kernel)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LAB = """\
version: 1
bridges: [{name: br1}, {name: ovsbr0, kind: ovs}]
attachments:
  - {guest: web1, host: br1, address: 198.18.1.2/24}
  - {guest: netns:blue, host: ovsbr0, vlan: 10}
links:
  - endpoints: ["web1:eth2", "netns:blue:eth2"]
"""


def pipework(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "pipework", *args],
        capture_output=True,
        timeout=60,
        env=env,
        input=None if input is None else input.encode(),
        check=False,
    )


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(LAB)
    return path


def test_mermaid_is_the_default_on_stdout(lab: Path) -> None:
    done = pipework("graph", str(lab))
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert text.startswith("flowchart LR\n")
    assert '("web1")' in text and '{{"ovsbr0<br/>OVS bridge"}}' in text
    assert '===|"eth2 #60;-#62; eth2"|' in text


def test_the_format_follows_the_outputs_suffix_and_stdin_is_read(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "lab.dot"
    done = pipework("graph", "-", "-o", str(out), input=lab.read_text())
    assert done.returncode == 0 and done.stdout == b"", done.stderr
    assert out.read_text().startswith("graph pipework {")
    done = pipework("graph", str(lab), "--format", "mermaid", "-o", str(out))
    assert out.read_text().startswith("flowchart LR")


def test_json_is_the_model(lab: Path) -> None:
    done = pipework("--json", "graph", str(lab))
    data = json.loads(done.stdout)
    assert [n["name"] for n in data["nodes"]] == ["br1", "ovsbr0", "web1", "netns:blue"]
    assert [e["kind"] for e in data["edges"]] == ["attachment", "attachment", "link"]


def test_without_graphviz_svg_is_one_line_naming_the_package(lab: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    done = pipework("graph", str(lab), "-f", "svg", env=env)
    assert done.returncode == 8
    lines = done.stderr.decode().splitlines()
    assert lines == [
        "pipework: Graphviz is not installed (no dot on PATH, needed for --format svg) "
        "(install the Debian package graphviz, or use --format dot or --format mermaid)"
    ]
    assert done.stdout == b""


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_png_is_written_to_a_file(lab: Path, tmp_path: Path) -> None:
    out = tmp_path / "lab.png"
    done = pipework("graph", str(lab), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["graph", "/nonexistent.yaml"], 2, "/nonexistent.yaml: no such file"),
        (["graph", "LAB", "-f", "jpeg"], 2, "Invalid value for '--format'"),
        (
            ["graph", "LAB", "-o", "/nonexistent/dir/x.dot"],
            2,
            "cannot write /nonexistent/dir/x.dot",
        ),
    ],
)
def test_bad_input_is_one_line(lab: Path, args: list[str], code: int, message: str) -> None:
    done = pipework(*[str(lab) if a == "LAB" else a for a in args])
    assert done.returncode == code, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipework: ") and message in lines[0], lines


def test_a_bad_topology_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("links:\n  - endpoints: ['web1:eth1', 'web1:eth2']\n")
    done = pipework("graph", str(path))
    assert done.returncode == 2
    assert done.stderr.decode().startswith(f"pipework: {path}:2: links[0]")


def fake_dot(tmp_path: Path, body: str) -> dict[str, str]:
    script = tmp_path / "dot"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}


def test_a_failing_dot_is_one_line_exit_9(lab: Path, tmp_path: Path) -> None:
    env = fake_dot(
        tmp_path, "cat >/dev/null; echo 'Error: <stdin>: syntax error in line 3' >&2; exit 1"
    )
    done = pipework("graph", str(lab), "-f", "png", "-o", str(tmp_path / "x.png"), env=env)
    assert done.returncode == 9
    assert done.stderr.decode().splitlines() == [
        "pipework: dot -Tpng failed (status 1): Error: <stdin>: syntax error in line 3"
    ]
    assert not (tmp_path / "x.png").exists()


def test_a_hung_dot_is_stopped_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipework.cli.commands.graph import run_dot
    from pipework.engine.errors import TimeoutExpiredError

    monkeypatch.setenv("PATH", fake_dot(tmp_path, "exec sleep 30")["PATH"])
    with pytest.raises(TimeoutExpiredError, match=r"within 0\.5 s"):
        run_dot("graph g {}", "svg", timeout=0.5)


def test_dot_gets_the_text_on_stdin_and_an_argument_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipework.cli.commands.graph import run_dot

    monkeypatch.setenv("PATH", fake_dot(tmp_path, 'echo "args: $*"; cat')["PATH"])
    assert (
        run_dot('graph g { n1 [label="$(id)"]; }', "svg")
        == b'args: -Tsvg\ngraph g { n1 [label="$(id)"]; }'
    )
