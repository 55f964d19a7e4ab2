"""Discovery by entry point: lazy, duplicate names refused, unknown names list what exists."""

from importlib.metadata import EntryPoint

import pytest

from recarena import plugins
from recarena.errors import RecArenaError, UnknownNameError


class FakeDist:
    def __init__(self, name, version="1.0"):
        self.name, self.version = name, version


def fake_eps(*specs, group=plugins.GROUP):
    eps = []
    for name, value, dist in specs:
        ep = EntryPoint(name, value, group)
        ep = ep._for(FakeDist(dist)) if hasattr(ep, "_for") else ep
        object.__setattr__(ep, "dist", FakeDist(dist))
        eps.append(ep)
    return eps


@pytest.fixture
def patched(monkeypatch):
    def use(*specs, providers=()):
        eps = {plugins.GROUP: fake_eps(*specs), plugins.PROVIDER_GROUP: fake_eps(*providers, group=plugins.PROVIDER_GROUP)}
        monkeypatch.setattr(plugins, "entry_points", lambda group: eps.get(group, []))
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


def provider_listing():
    """A provider's listing: model names -> classes (by import path or as objects)."""
    from recarena_pop import Pop

    return {"Pop": Pop, "EASE": "recarena_ease:EASE"}


@pytest.fixture(autouse=True)
def zoo_module(monkeypatch):
    """The provider's module, importable as ``zoo_listing``."""
    import types

    mod = types.ModuleType("zoo_listing")
    mod.provider_listing = provider_listing
    monkeypatch.setitem(__import__("sys").modules, "zoo_listing", mod)


def test_provider_models_under_a_namespace(patched):
    patched(("pop", "recarena_pop:Pop", "recarena-pop"), providers=[("demo", "zoo_listing:provider_listing", "demo-zoo")])
    assert plugins.available() == ["demo/EASE", "demo/Pop", "pop"]
    ease = plugins.get("demo/EASE")
    assert ease.__name__ == "EASE" and plugins.info("demo/EASE").distribution == "demo-zoo"
    assert plugins.info("demo/Pop").resolves_to(plugins.get("pop"))
    assert plugins.info("demo/EASE").describe()["provider"] == "demo"


def test_broken_provider_is_named(patched):
    patched(providers=[("zoo", "no_such_module_xyz:listing", "zoo-dist")])
    with pytest.raises(RecArenaError, match="provider 'zoo' \\(zoo-dist 1.0.*failed to list its models"):
        plugins.discover()


def test_a_provider_model_trains_with_its_namespaced_overrides(patched, tmp_path, monkeypatch):
    from recarena import runner
    from recarena.config import resolve
    from recarena.protocols import load_protocol

    patched(providers=[("demo", "zoo_listing:provider_listing", "demo-zoo")])
    (tmp_path / "configs" / "models" / "demo").mkdir(parents=True)
    (tmp_path / "configs" / "models" / "demo" / "EASE.yaml").write_text("params: {reg: 7.5}\n")
    monkeypatch.setenv("RECARENA_CONFIGS", str(tmp_path / "configs"))
    proto = load_protocol("synthetic-rank")
    cfg = resolve(plugins.get("demo/EASE"), "demo/EASE", proto, "synthetic-2000", 0)
    assert cfg["params"]["reg"] == 7.5
    s = runner.train("demo/EASE", "synthetic-rank", dataset="synthetic-2000", progress=False, log=lambda *a, **k: None)
    assert s["model"] == "demo/EASE" and s["metrics"]["ndcg@10"] > 0


def test_no_plugin_imports_another_plugin():
    """Shared code lives in recarena (recarena.nn for model blocks), never in a plugin."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "plugins"
    offenders = []
    for src in sorted(root.glob("*/src/recarena_*/**/*.py")):
        own = src.relative_to(root).parts[2]
        for node in ast.walk(ast.parse(src.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{src.relative_to(root)} imports {n}" for n in names
                          if n.split(".")[0].startswith("recarena_") and n.split(".")[0] != own]
    assert not offenders, offenders
