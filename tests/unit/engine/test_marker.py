"""Ownership markers survive the round trip through an interface alias."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipework.engine import Marker
from pipework.engine import marker as marker_module
from pipework.engine.specs import short_hash


def test_round_trip_with_odd_characters():
    marker = Marker(
        guest="netns:a b",
        ifname="eth1",
        kind="bridge",
        host="br1",
        hostif="pw1",
        addr="dhcp",
        cfg="x",
    )
    alias = marker.format()
    assert alias.startswith("pipework ") and len(alias) < 256
    assert Marker.parse(alias) == marker


def test_foreign_aliases_are_not_ours():
    assert Marker.parse(None) is None
    assert Marker.parse("uplink to rack 3") is None
    assert Marker.parse("pipework auto-created") is None
    assert Marker.parse("pipework guest=x") is None


def test_generated_names_are_deterministic_and_short():
    a = "pw" + short_hash("0123" * 16, "eth1")
    assert a == "pw" + short_hash("0123" * 16, "eth1")
    assert a != "pw" + short_hash("0123" * 16, "eth2")
    assert len(a) <= 15


# -- quote/unquote: urllib.parse's, without importing it on every attach ---------------

_ESCAPES = st.sampled_from(["%", "%2", "%41", "%c3%a9", "%C3", "%e2%82", "%ZZ", "%%", "%a", "%٣٣"])
_TEXT = st.lists(st.one_of(st.text(max_size=6), _ESCAPES), max_size=8).map("".join)


@given(_TEXT)
def test_quote_and_unquote_agree_with_urllib(text: str) -> None:
    from urllib.parse import quote as url_quote
    from urllib.parse import unquote as url_unquote

    assert marker_module.unquote(text) == url_unquote(text)
    try:
        expected = url_quote(text, safe="")
    except UnicodeEncodeError:  # a lone surrogate: both refuse it
        with pytest.raises(UnicodeEncodeError):
            marker_module.quote(text)
        return
    assert marker_module.quote(text) == expected
    assert marker_module.unquote(marker_module.quote(text)) == text
