"""The daemon's zygote prepares the default plugin manager once; its
workers' engines reuse it, and anything else gets a fresh one."""

from __future__ import annotations

import pytest

from pipework.engine import plugins


@pytest.fixture
def prepared():
    plugins.prepare_plugin_manager()
    try:
        yield plugins._prepared[0]
    finally:
        plugins._prepared.clear()


def test_the_default_manager_is_reused_once_prepared(prepared):
    assert plugins.make_plugin_manager() is prepared
    assert plugins.make_plugin_manager((), entry_points=True) is prepared


def test_extra_plugins_or_no_entry_points_get_a_manager_of_their_own(prepared):
    class Extra:
        pass

    assert plugins.make_plugin_manager([Extra()]) is not prepared
    assert plugins.make_plugin_manager(entry_points=False) is not prepared


def test_without_preparing_every_call_builds_one():
    assert not plugins._prepared
    assert plugins.make_plugin_manager() is not plugins.make_plugin_manager()
