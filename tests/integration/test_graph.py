"""``pipework graph``: a topology file drawn by the real Graphviz, and the live
picture of an attachment and a link made for the test."""

from __future__ import annotations

import html
import re
import shutil
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed"
)


def svg_texts(svg: str) -> list[str]:
    """The text of every ``<text>`` element (Graphviz writes ``-`` as ``&#45;``)."""
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


@needs_dot
def test_a_topology_file_as_svg_names_its_guests_and_bridges(run_pipework, tmp_path: Path):
    path = tmp_path / "lab.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            bridges:
              - {name: brpwg0, mtu: 9000}
              - {name: ovspwg0, kind: ovs}
            attachments:
              - {guest: web1, host: brpwg0, address: 198.18.60.2/24}
              - {guest: "netns:a<b&c", host: ovspwg0, vlan: 12}
            links:
              - endpoints: ["r1:eth1", "r2:eth1"]
              - endpoints:
                  - {guest: r2, ifname: eth2, address: 198.18.61.1/30}
                  - "netns:r3:eth7"
            """
        )
    )
    out = tmp_path / "lab.svg"
    done = run_pipework("graph", str(path), "-o", str(out))
    assert done.returncode == 0, done.stderr
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "a<b" not in svg  # escaped in the SVG: a name is text, never markup
    texts = svg_texts(svg)
    for name in ("web1", "brpwg0", "ovspwg0", "netns:a<b&c", "r1", "r2", "netns:r3"):
        assert name in texts, (name, texts)
    for label in ("Linux bridge", "OVS bridge", "VLAN 12", "198.18.60.2/24", "eth7"):
        assert label in texts, (label, texts)
    assert svg.count('class="node"') == 7 and svg.count('class="edge"') == 4


def test_the_live_picture_shows_an_attachment_and_a_link_once(
    host_ns, make_netns, run_pipework, tmp_path: Path
):
    a, b = make_netns("ga"), make_netns("gb")
    done = run_pipework(
        "attach", "brpwg1", f"netns:{a.name}", "--ip", "198.18.62.2/24", netns=host_ns.name
    )
    assert done.returncode == 0, done.stderr
    done = run_pipework(
        "link", f"netns:{a.name}:eth2", f"netns:{b.name}:eth3",
        "--ip", "198.18.63.1/30", "--peer-ip", "198.18.63.2/30", "--mtu", "1400",
        netns=host_ns.name,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    dot = run_pipework("graph", "--format", "dot", netns=host_ns.name)
    assert dot.returncode == 0, dot.stderr
    ids = dict(re.findall(r'^    (n\d+) \[label="([^"\\]*(?:\\.[^"\\]*)*)"', dot.stdout, re.M))
    by_label = {label.split("\\n")[0]: node for node, label in ids.items()}
    bridge, guest_a, guest_b = (
        by_label["brpwg1"],
        by_label[f"netns:{a.name}"],
        by_label[f"netns:{b.name}"],
    )
    assert ids[bridge] == "brpwg1\\nLinux bridge"
    assert f'    {guest_a} -- {bridge} [label="eth1\\n198.18.62.2/24"];' in dot.stdout
    link_lines = [
        line for line in dot.stdout.splitlines()
        if re.match(rf"    ({guest_a} -- {guest_b}|{guest_b} -- {guest_a}) ", line)
    ]  # fmt: skip
    assert len(link_lines) == 1, dot.stdout
    assert "198.18.63.1/30" in link_lines[0] and "198.18.63.2/30" in link_lines[0]
    assert "eth2" in link_lines[0] and "eth3" in link_lines[0] and "MTU 1400" in link_lines[0]

    mermaid = run_pipework("graph", netns=host_ns.name)
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert f'{bridge}["brpwg1<br/>Linux bridge"]' in mermaid.stdout
    assert mermaid.stdout.count(" ===|") >= 1

    if shutil.which("dot"):
        out = tmp_path / "live.svg"
        done = run_pipework("graph", "-o", str(out), netns=host_ns.name)
        assert done.returncode == 0, done.stderr
        texts = svg_texts(out.read_text())
        assert {f"netns:{a.name}", f"netns:{b.name}", "brpwg1", "eth2", "eth3"} <= set(texts)

    # Gone from the picture once detached (either end takes the link).
    for args in (["-i", "eth1"], ["-i", "eth3"]):
        guest = a if args[1] == "eth1" else b
        done = run_pipework("detach", f"netns:{guest.name}", *args, netns=host_ns.name)
        assert done.returncode == 0, done.stderr
    after = run_pipework("graph", "-f", "dot", netns=host_ns.name)
    assert after.returncode == 0, after.stderr
    assert f"netns:{a.name}" not in after.stdout and f"netns:{b.name}" not in after.stdout
    assert '"brpwg1\\nLinux bridge"' in after.stdout  # the bridge pipework made, empty now
