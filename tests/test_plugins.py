"""Discovery by entry point: lazy, duplicate names refused, unknown names list what exists."""

from importlib.metadata import EntryPoint

import pytest

from recarena import plugins
from recarena.errors import RecArenaError, UnknownNameError


class FakeDist:
    def __init__(self, name, version="1.0"):
        self.name, self.version = name, version


def fake_eps(*specs):
    eps = []
    for name, value, dist in specs:
        ep = EntryPoint(name, value, plugins.GROUP)
        ep = ep._for(FakeDist(dist)) if hasattr(ep, "_for") else ep
        object.__setattr__(ep, "dist", FakeDist(dist))
        eps.append(ep)
    return eps


@pytest.fixture
def patched(monkeypatch):
    def use(*specs):
        monkeypatch.setattr(plugins, "entry_points", lambda group: fake_eps(*specs))
        plugins.discover.cache_clear()

    yield use
    plugins.discover.cache_clear()


def test_installed_plugins_are_found():
    assert {"pop", "biased-mf"} <= set(plugins.available())
    assert plugins.get("pop").__name__ == "Pop"


def test_duplicate_names_refused_naming_both(patched):
    patched(("mf", "a:A", "recarena-mf"), ("mf", "b:B", "other-mf"))
    with pytest.raises(plugins.DuplicatePluginError, match="recarena-mf.*other-mf"):
        plugins.discover()


def test_lazy_and_broken_plugin(patched):
    patched(("broken", "no_such_module_xyz:Thing", "recarena-broken"))
    assert plugins.available() == ["broken"]  # listing imports nothing
    with pytest.raises(RecArenaError, match="failed to import"):
        plugins.get("broken")


def test_unknown_lists_available(patched):
    patched(("pop", "recarena_pop:Pop", "recarena-pop"))
    with pytest.raises(UnknownNameError, match="Available: pop"):
        plugins.get("popp")
