"""serve export: bundles of leaderboard winners with parity checked in onnxruntime."""

import json

import numpy as np
import pytest

from recarena import runner
from recarena.errors import RecArenaError
from recarena_serve.export import export

QUIET = dict(progress=False, log=lambda *a, **k: None)
FAST = ["epochs=3", "dim=8", "trainer.logger=none"]


@pytest.fixture
def runs():
    a = runner.train("pop", "synthetic-rank", dataset="synthetic-4000", **QUIET)
    b = runner.train("biased-mf", "synthetic-rank", dataset="synthetic-4000", sets=FAST, **QUIET)
    return a, b


def test_exports_the_top_runs_with_parity_and_id_maps(runs, tmp_path):
    paths = export("synthetic-rank", tmp_path / "out", top=2)
    by_model = {json.loads((p / "manifest.json").read_text())["model"]: p for p in paths}
    assert set(by_model) == {"pop", "biased-mf"}
    mf = json.loads((by_model["biased-mf"] / "manifest.json").read_text())
    assert mf["graphs"][0]["kind"] == "recommend" and (by_model["biased-mf"] / "recommend.onnx").exists()
    assert all(d <= 1e-4 for d in mf["parity_max_abs_diff"].values())
    assert mf["metrics"]["ndcg@10"] == pytest.approx(runs[1]["metrics"]["ndcg@10"])
    pop = json.loads((by_model["pop"] / "manifest.json").read_text())
    assert pop["topn_table"]["k"] == 100 and np.load(by_model["pop"] / "topn_items.npy").shape[1] == 100
    ids = json.loads((by_model["pop"] / "ids.json").read_text())
    assert len(ids["users"]) == pop["n_users"] and len(ids["items"]) == pop["n_items"]


def test_refuses_a_bundle_whose_graph_differs(runs, tmp_path, monkeypatch):
    from recarena_biased_mf import BiasedMF

    original = BiasedMF.onnx_score_users
    monkeypatch.setattr(BiasedMF, "onnx_score_users", lambda self, net, u, ex: original(self, net, u, ex) * 1.01)
    with pytest.raises(RecArenaError, match=r"differs from the plugin beyond 0.0001 \(recommend.onnx by"):
        export(None, tmp_path / "out", run_ids=[runs[1]["run_id"]])
    assert not any((tmp_path / "out").iterdir()), "a refused bundle must leave nothing behind"


def test_export_takes_the_seed_with_the_best_validation_score_not_test(tmp_path):
    from recarena.store import ResultsStore
    from recarena_serve.export import pick_runs

    s = ResultsStore(tmp_path / "r.db")
    for rid, seed, test, valid in (("s0", 0, 0.20, 0.31), ("s1", 1, 0.35, 0.29)):
        s.record({"run_id": rid, "model": "ease", "dataset": "synthetic-2000", "protocol": "synthetic-rank",
                  "seed": seed, "status": "ok", "config": {}, "config_hash": "h", "run_hash": f"h{seed}",
                  "fit_seconds": 1.0, "test_metrics": {"ndcg@10": test}, "valid_metrics": {"ndcg@10": valid}})
    assert [r["run_id"] for r in pick_runs(s, "synthetic-rank", 1, None)] == ["s0"]
