"""Our entry-point scan agrees with importlib.metadata."""

import importlib.metadata
import textwrap

import pytest

from pipework.engine.entrypoints import EntryPoint, entry_points


def test_agrees_with_importlib_metadata_for_every_group_we_can_see():
    for group in ("pipework", "console_scripts", "pytest11"):
        ours = sorted((ep.name, ep.value) for ep in entry_points(group))
        theirs = sorted(
            {(ep.name, ep.value) for ep in importlib.metadata.entry_points(group=group)}
        )
        assert ours == theirs, group


def test_builtins_come_from_the_pipework_distribution():
    eps = {ep.name: ep for ep in entry_points("pipework")}
    assert {"bridge", "static", "docker", "netns", "pid"} <= eps.keys()
    assert eps["bridge"].distribution == "pipework"
    assert eps["bridge"].value == "pipework.backends.links.bridge"


def test_parsing_and_first_distribution_wins(tmp_path):
    for root, version in (("a", "2.0"), ("b", "1.0")):
        dist = tmp_path / root / f"my_plugin-{version}.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: my-plugin\nVersion: {version}\n\nbody\n"
        )
        (dist / "entry_points.txt").write_text(
            textwrap.dedent(
                """
                [console_scripts]
                x = y:z
                # a comment
                [pipework]
                p2p = my_plugin
                other = my_plugin.sub:Thing.factory
                """
            )
        )
    found = entry_points(
        "pipework", [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "missing")]
    )
    assert [(e.name, e.value, e.distribution, e.version) for e in found] == [
        ("p2p", "my_plugin", "my-plugin", "2.0"),
        ("other", "my_plugin.sub:Thing.factory", "my-plugin", "2.0"),
    ]


def test_an_entry_point_is_an_immutable_value():
    one = EntryPoint("p2p", "my_plugin", "my-plugin", "2.0")
    assert one == EntryPoint("p2p", "my_plugin", "my-plugin", "2.0")
    assert one != EntryPoint("p2p", "my_plugin", "my-plugin", "2.1")
    assert len({one, EntryPoint("p2p", "my_plugin", "my-plugin", "2.0")}) == 1
    assert repr(one) == (
        "EntryPoint(name='p2p', value='my_plugin', distribution='my-plugin', version='2.0')"
    )
    assert (one.name, one.value, one.distribution, one.version) == (
        "p2p", "my_plugin", "my-plugin", "2.0",
    )  # fmt: skip
    with pytest.raises(AttributeError):
        one.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del one.value  # type: ignore[misc]
    assert one != ("p2p", "my_plugin", "my-plugin", "2.0")
