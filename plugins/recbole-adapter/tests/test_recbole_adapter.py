"""The RecBole adapter: listing, refusals, RecArena's split reaching RecBole, the conformance
kit on one model per task, export parity and serving (runs in .venv-recbole)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from recarena import plugins
from recarena.errors import RecArenaError
from recarena.params import InvalidParameterError
from recarena.testing import (
    KIT_TRAINER,
    _fit,
    _kit_monitor,
    _split,
    _train_data,
    parametrize_with_checks,
)
from recarena_recbole import zoo

BPR = zoo.BPR(embedding_size=16, epochs=8, train_batch_size=256, learning_rate=0.05)
GRU4REC = zoo.GRU4Rec(embedding_size=16, hidden_size=16, epochs=5, train_batch_size=256, learning_rate=0.01,
                      MAX_ITEM_LIST_LENGTH=10)
FM = zoo.FM(embedding_size=4, epochs=3, train_batch_size=256, learning_rate=0.01)
ONE_PER_TASK = [BPR, GRU4REC, FM]


@parametrize_with_checks(ONE_PER_TASK)
def test_conformance(model, check):
    check(model)


def test_every_recbole_model_is_listed_with_its_task_without_importing_recbole():
    code = ("import sys, json; from recarena import plugins; found = {n: plugins.info(n) for n in plugins.available() "
            "if n.startswith('recbole/')}; print(json.dumps({'n': len(found), 'recbole_imported': 'recbole' in sys.modules, "
            "'provider': sorted({i.provider for i in found.values()}), 'dist': sorted({i.distribution for i in found.values()})}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out == {"n": 94, "recbole_imported": False, "provider": ["recbole"], "dist": ["recarena-recbole"]}
    tasks = {name: plugins.get(f"recbole/{name}").capabilities.to_dict()["tasks"] for name in ("BPR", "SASRec", "DeepFM", "KGAT")}
    assert tasks == {"BPR": ["ranking"], "SASRec": ["sequential"], "DeepFM": ["ctr"], "KGAT": ["ranking"]}


def test_parameters_are_recboles_names_and_defaults():
    cls = plugins.get("recbole/SASRec")
    d = cls.default_params()
    assert (d["n_layers"], d["n_heads"], d["hidden_size"], d["loss_type"], d["train_neg_sample_args"]) == (2, 2, 64, "CE", None)
    assert (d["learning_rate"], d["train_batch_size"], d["MAX_ITEM_LIST_LENGTH"]) == (0.001, 2048, 50)
    assert plugins.get("recbole/SASRec")().layer_norm_eps == 1e-12  # RecBole reads `1e-12` as a float
    with pytest.raises(TypeError, match="no parameter 'hidden_sise'.*hidden_size"):
        cls(hidden_sise=32)
    with pytest.raises(InvalidParameterError, match="learning_rate"):
        cls(learning_rate=-1.0).fit(_train_data(GRU4REC), seed=0, trainer=KIT_TRAINER)


def test_a_model_recarena_cannot_feed_is_refused_by_name_before_any_data_is_read(tmp_path):
    from recarena.runner import train
    from recarena.store import ResultsStore

    store = ResultsStore(tmp_path / "store.db")
    with pytest.raises(RecArenaError, match="recbole/KGAT cannot run.*knowledge graph"):
        train("recbole/KGAT", "synthetic-rank", store=store, progress=False, log=lambda *a: None)
    with pytest.raises(RecArenaError, match="does not support the ranking task"):
        train("recbole/FM", "synthetic-rank", store=store, progress=False, log=lambda *a: None)
    assert store.count() == 0


def test_recbole_ease_scores_recarenas_training_split_exactly():
    """RecBole's EASE, fitted through the adapter, equals the closed form computed here from
    RecArena's own training rows: the split, the ids and the score order all arrive intact."""
    m = zoo.EASE(reg_weight=10.0).fit(_train_data(BPR), seed=0, trainer=KIT_TRAINER)
    X = _train_data(BPR).csr().toarray()
    X[X != 0] = 1.0
    G = X.T @ X + 10.0 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    users = np.arange(m.n_users_)
    np.testing.assert_allclose(m.score(users).numpy(), X @ B, rtol=1e-4, atol=1e-4)


def test_validation_is_recarenas_and_the_best_epoch_is_kept(monkeypatch):
    """The monitor (RecArena's evaluator) is asked once an epoch, RecBole's early stopping acts
    on it, the model ends at its best epoch's weights, and a `--epochs=...` word on the command
    line does not reach RecBole's config."""
    monkeypatch.setattr(sys, "argv", ["recarena", "--epochs=40"])
    train, valid = _split(BPR)
    mon = _kit_monitor(BPR, valid)
    m = copy.deepcopy(BPR).set_params(epochs=6, learning_rate=0.2).fit(train, valid, seed=0, monitor=mon,
                                                                      trainer={**KIT_TRAINER, "patience": 2})
    assert 1 <= len(mon.history) <= 6 and m.epochs_trained_ == len(mon.history)
    scores = [h["ndcg@10"] for h in mon.history]
    assert m.best_epoch_ == int(np.argmax(scores))
    assert mon.evaluate(m)["ndcg@10"] == pytest.approx(max(scores), abs=1e-6)
    assert m.refit_params() == {"epochs": m.best_epoch_ + 1}


@pytest.mark.parametrize("model", ONE_PER_TASK, ids=lambda m: type(m).__name__)
def test_served_answers_equal_the_models(model, ssdb, tmp_path):
    from recarena_serve import serving
    from recarena_serve.export import write_bundle

    m = _fit(model)
    name = type(m).__name__.lower()
    bundle = write_bundle(m, tmp_path / name, {"model": f"recbole/{type(m).__name__}", "run_id": f"run-{name}", "dataset": "kit"})
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["graphs"] and max(manifest["parity_max_abs_diff"].values()) <= 1e-4
    serving.deploy([bundle], ssdb, name=name, progress=False)
    svc = serving.Service(ssdb, name)
    users = [m.user_ids_.raw[i] for i in (0, 7, m.n_users_ - 1)]
    for u in users:
        if "ctr" in m.capabilities.to_dict()["tasks"]:
            items = [m.item_ids_.raw[i] for i in range(0, m.n_items_, 5)]
            got = [p["score"] for p in svc.predict(u, items)["predictions"]]
            np.testing.assert_allclose(got, m.predict_raw([u] * len(items), items), rtol=1e-5, atol=1e-5)
        else:
            got = svc.recommend(u, 10)
            want_items, want_scores = m.recommend_raw([u], 10)
            assert [it["item"] for it in got["items"]] == [int(i) for i in want_items[0]]
            np.testing.assert_allclose([it["score"] for it in got["items"]], want_scores[0], rtol=1e-5, atol=1e-5)


def test_a_sequential_model_reads_the_context_given_at_scoring_time():
    """What the evaluator gives as context (a leave-one-out validation item at test time) is
    what the RecBole model reads: the same scores as RecBole's full_sort_predict on the
    sequence built by hand, in RecBole's ids."""
    import torch
    from recbole.data.interaction import Interaction

    m = _fit(GRU4REC)
    indptr, items = m.serving_history()
    u = 3
    row = np.r_[items[indptr[u]:indptr[u + 1]], 5]
    got = m.score_history(np.array([u]), np.array([0] * (u + 1) + [len(row)] * (m.n_users_ - u)), row).numpy()[0]
    last = torch.as_tensor(m.item_rb_[torch.as_tensor(row[-10:])]).unsqueeze(0)
    inter = Interaction({"user_id": m.user_rb_[[u]], "item_id_list": last, "item_length": torch.tensor([last.shape[1]])})
    want = m.model_.full_sort_predict(inter).reshape(1, -1)[0, m.item_rb_].detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_monitor_none_trains_every_epoch():
    m = copy.deepcopy(BPR).set_params(epochs=2).fit(_train_data(BPR), None, seed=0, trainer=KIT_TRAINER)
    assert m.best_epoch_ is None and m.refit_params() == {}


def test_a_failed_fit_leaves_the_model_unfitted():
    m = copy.deepcopy(FM)
    with pytest.raises(RecArenaError, match="0/1 labels"):
        m.fit(_train_data(BPR), seed=0, trainer=KIT_TRAINER)  # implicit rows, no labels
    assert not m.is_fitted



def test_a_sequential_model_that_reads_item_features_gets_them():
    """FDSA reads the items' side features through RecBole's selected_features: the adapter
    writes them and names every one; a dataset without them is refused by name."""
    m = zoo.FDSA(epochs=1, hidden_size=16, inner_size=32, MAX_ITEM_LIST_LENGTH=10)
    fitted = copy.deepcopy(m).fit(_train_data(GRU4REC), seed=0, trainer=KIT_TRAINER)
    assert sorted(fitted.model_.selected_features) == ["genres", "year"]
    bare = copy.deepcopy(_train_data(GRU4REC))
    bare.item_features = None
    with pytest.raises(RecArenaError, match="reads the items' side features"):
        copy.deepcopy(m).fit(bare, seed=0, trainer=KIT_TRAINER)
