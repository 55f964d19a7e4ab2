"""recarena new plugin: every kind writes a distribution whose model passes the kit."""

import importlib
import sys
import tomllib

import pytest

from recarena import testing
from recarena.errors import RecArenaError
from recarena.scaffold import KINDS, new_plugin

# the checks that need no install (the entry point is checked once `just setup` installed it)
CORE_CHECKS = ["check_init_stores_params", "check_defaults_construct", "check_parameters_declared",
               "check_output_contract", "check_learned_attributes_suffixed", "check_save_load_roundtrip",
               "check_ranker_implements_score", "check_ranker_checkerboard", "check_rating_finite_in_scale",
               "check_ctr_probabilities", "check_onnx_parity", "check_export_leaves_model"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_writes_a_plugin_that_passes_the_kit(kind, tmp_path, monkeypatch):
    name = f"scaf-{kind}"
    folder = new_plugin(name, kind, tmp_path)
    module = "recarena_" + name.replace("-", "_")
    meta = tomllib.loads((folder / "pyproject.toml").read_text())
    cls_name = "".join(p.capitalize() for p in name.split("-"))
    assert meta["project"]["entry-points"]["recarena.models"] == {name: f"{module}:{cls_name}"}
    assert (folder / "tests" / f"test_{module.removeprefix('recarena_')}.py").exists()
    monkeypatch.syspath_prepend(str(folder / "src"))
    try:
        mod = importlib.import_module(module)
        test_mod = (folder / "tests" / f"test_{module.removeprefix('recarena_')}.py").read_text()
        small = test_mod.split(f"[{cls_name}(", 1)[1].split(")]", 1)[0]
        model = eval(f"mod.{cls_name}({small})", {"mod": mod})  # the kit's settings from the test file
        ran = 0
        for check in testing.checks_for(model):
            if check.__name__ in CORE_CHECKS:
                check(model)
                ran += 1
        assert ran >= 7
        # and it trains through the runner on a synthetic protocol of its task
        proto = {"torch-rating": "synthetic-rating", "ctr": None}.get(kind, "synthetic-rank")
        if proto:
            from recarena import plugins, runner

            cls = getattr(mod, cls_name)
            info = plugins.PluginInfo(name, f"recarena-{name}", "0.1.0", f"{module}:{cls_name}", lambda: cls)
            monkeypatch.setattr(plugins, "discover", lambda: {name: info})
            s = runner.train(name, proto, dataset="synthetic-2000", sets=[f"{k.strip()}" for k in small.split(",")],
                             progress=False, log=lambda *a, **k: None)
            assert s["model"] == name and all(v == v for v in s["metrics"].values())
    finally:
        sys.modules.pop(module, None)


def test_bad_names_and_existing_ones_are_refused(tmp_path):
    with pytest.raises(RecArenaError, match="lowercase letters"):
        new_plugin("My_Model", "torch-rating", tmp_path)
    with pytest.raises(RecArenaError, match="Unknown plugin kind 'gnn'"):
        new_plugin("my-model", "gnn", tmp_path)
    with pytest.raises(RecArenaError, match="'bpr' is already installed"):
        new_plugin("bpr", "torch-ranking", tmp_path)
    new_plugin("twice", "closed-form", tmp_path)
    with pytest.raises(RecArenaError, match="already exists"):
        new_plugin("twice", "closed-form", tmp_path)
