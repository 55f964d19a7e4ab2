"""Conformance kit: the checks every plugin's test file runs.

    from recarena.testing import parametrize_with_checks

    @parametrize_with_checks([MyModel(dim=8, epochs=3)],
                             expected_failures={"check_x": "why it cannot pass"})
    def test_conformance(model, check):
        check(model)

Checks are derived from the model's declared capabilities (like scikit-learn's
``parametrize_with_checks``). An expected failure must carry a written reason; it is a
strict xfail, so a check that starts passing is reported.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recarena.base import Recommender, Task
from recarena.data.filtering import to_implicit
from recarena.data.splits import ratio_by_user
from recarena.data.synthetic import checkerboard, synthetic
from recarena.errors import NotFittedError

KIT_TRAINER = {"progress_bar": False, "logger": "none", "accelerator": "cpu"}


@functools.cache
def _rating_data():
    data = synthetic(3000, n_users=120, n_items=80, seed=7)
    s = ratio_by_user(data, (0.8, 0.1, 0.1), seed=0)
    return s.train, s.valid, s.test


@functools.cache
def _implicit_data():
    train, valid, test = _rating_data()
    return to_implicit(train), to_implicit(valid), to_implicit(test)


def _train_data(model: Recommender, kind: str = "auto"):
    """The kit's training data for ``model``: ratings for rating models, 0/1 labels for
    CTR-only models, implicit rows for rankers (or when ``kind='implicit'``)."""
    caps = model.capabilities
    explicit = kind == "explicit" or (kind == "auto" and (caps.supports(Task.RATING) or caps.supports(Task.CTR)))
    train = _rating_data()[0] if explicit else _implicit_data()[0]
    if caps.supports(Task.CTR) and not caps.supports(Task.RATING) and explicit:
        from recarena.data.filtering import binarize

        train = binarize(train, 4)
    return train


def _fit(model: Recommender, kind: str = "auto", seed: int = 0) -> Recommender:
    return copy.deepcopy(model).fit(_train_data(model, kind), None, seed=seed, trainer=KIT_TRAINER)


def _users(m):
    return np.arange(min(m.n_users_, 37), dtype=np.int64)


def _outputs(m: Recommender) -> dict[str, np.ndarray]:
    out = {}
    u = _users(m)
    if m.capabilities.supports(Task.RATING) or m.capabilities.supports(Task.CTR):
        rng = np.random.default_rng(0)
        out["predict"] = m.predict(rng.integers(0, m.n_users_, 200), rng.integers(0, m.n_items_, 200))
    if m.capabilities.supports(Task.RANKING) or m.capabilities.supports(Task.SEQUENTIAL):
        out["score"] = m.score(u).cpu().numpy()
    return out


# ---- the checks ---------------------------------------------------------------------------


def check_init_stores_params(model: Recommender):
    """__init__ stores its arguments unchanged and does nothing else."""
    params = model.get_params()
    clone = type(model)(**params)
    assert clone.get_params() == params, "get_params() after __init__(**params) differs"
    learned = [k for k in vars(clone) if k.endswith("_") and not k.startswith("_")]
    assert not learned, f"__init__ set learned attributes {learned}"
    assert not clone.is_fitted
    extra = set(vars(clone)) - set(params)
    assert not extra, f"__init__ set attributes that are not parameters: {sorted(extra)}"


def check_fit_returns_self(model: Recommender):
    m = copy.deepcopy(model)
    assert m.fit(_train_data(m), seed=0, trainer=KIT_TRAINER) is m


def check_unfitted_raises(model: Recommender):
    m = copy.deepcopy(model)
    for call in (lambda: m.recommend([0], 5), lambda: m.predict([0], [0]), lambda: m.save(Path(tempfile.gettempdir()) / "x.pt")):
        try:
            call()
        except NotFittedError:
            continue
        raise AssertionError("using an unfitted model did not raise NotFittedError")


def check_seed_determinism(model: Recommender):
    a, b = _outputs(_fit(model, seed=3)), _outputs(_fit(model, seed=3))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=f"{k} differs between two fits with one seed")


def check_save_load_roundtrip(model: Recommender):
    m = _fit(model)
    with tempfile.TemporaryDirectory() as d:
        p = m.save(Path(d) / "model.pt")
        loaded = Recommender.load(p)
    assert type(loaded) is type(m) and loaded.get_params() == m.get_params()
    a, b = _outputs(m), _outputs(loaded)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-5, err_msg=f"{k} changed across save/load")


def check_rating_finite_in_scale(model: Recommender):
    m = _fit(model, "explicit")
    pred = _outputs(m)["predict"]
    assert np.isfinite(pred).all()
    lo, hi = _rating_data()[0].rating_scale
    assert pred.min() >= lo and pred.max() <= hi, (pred.min(), pred.max())
    assert pred.dtype == np.float32


def check_ranker_checkerboard(model: Recommender):
    """Even users like only even items and odd users only odd ones: a ranker must put the
    user's own class first."""
    train, test = checkerboard()
    m = copy.deepcopy(model).fit(to_implicit(train), seed=0, trainer=KIT_TRAINER)
    users = np.arange(train.n_users)
    items, _ = m.recommend(users, k=5)
    own = (items % 2) == (users[:, None] % 2)
    assert own.mean() >= 0.95, f"only {own.mean():.0%} of top-5 items are in the user's own class"


def check_k_larger_than_catalogue(model: Recommender):
    m = _fit(model, "implicit")
    n = m.n_items_
    items, scores = m.recommend([0, 1], k=n + 10)
    assert items.shape == (2, n) and scores.shape == (2, n)
    seen = set(m.seen_indices_[m.seen_indptr_[0] : m.seen_indptr_[1]].tolist())
    valid = items[0][items[0] >= 0]
    assert len(valid) == n - len(seen), "with k > catalogue every unseen item must be returned once"
    assert len(set(valid.tolist())) == len(valid)
    assert np.all(np.isneginf(scores[0][items[0] < 0]))


def check_exclude_seen(model: Recommender):
    m = _fit(model, "implicit")
    users = _users(m)
    items, _ = m.recommend(users, k=20)
    for row, u in zip(items, users):
        seen = set(m.seen_indices_[m.seen_indptr_[u] : m.seen_indptr_[u + 1]].tolist())
        assert not (set(row.tolist()) & seen), f"user {u} was recommended an item they had seen"
    items_all, _ = m.recommend(users, k=m.n_items_, exclude_seen=False)
    assert (items_all >= 0).all(), "exclude_seen=False must return the full catalogue"


def check_batch_equals_single(model: Recommender):
    m = _fit(model)
    users = _users(m)[:9]
    items, scores = m.recommend(users, k=7) if (m.capabilities.supports(Task.RANKING) or m.capabilities.supports(Task.SEQUENTIAL)) else (None, None)
    if items is not None:
        for k, u in enumerate(users):
            i1, s1 = m.recommend([u], k=7)
            np.testing.assert_allclose(s1[0], scores[k], rtol=0, atol=1e-5)
            # identical scores may swap order; compare as sets of equal-score items
            assert set(i1[0][np.isfinite(s1[0])].tolist()) == set(items[k][np.isfinite(scores[k])].tolist())
    if m.capabilities.supports(Task.RATING) or m.capabilities.supports(Task.CTR):
        rng = np.random.default_rng(1)
        u, i = rng.integers(0, m.n_users_, 50), rng.integers(0, m.n_items_, 50)
        batch = m.predict(u, i)
        single = np.array([m.predict([a], [b])[0] for a, b in zip(u, i)])
        np.testing.assert_allclose(batch, single, rtol=0, atol=1e-5)


def check_bad_ids_raise(model: Recommender):
    m = _fit(model)
    for call in (lambda: m.recommend([m.n_users_], 5), lambda: m.recommend([-1], 5)):
        try:
            call()
        except (IndexError, ValueError):
            continue
        raise AssertionError("an out-of-range user id did not raise")


def check_embeddings_shapes(model: Recommender):
    m = _fit(model)
    emb = m.embeddings()
    assert emb, "embeddings() returned nothing"
    for name, n in (("user", m.n_users_), ("item", m.n_items_)):
        if name in emb:
            e = emb[name]
            assert e.ndim == 2 and e.shape[0] == n and e.dtype == np.float32, (name, e.shape, e.dtype)
            assert np.isfinite(e).all()


def check_onnx_parity(model: Recommender):
    """Every exported graph matches the plugin within 1e-4 at batch sizes 1, 7 and 256."""
    from recarena.onnx_export import parity

    m = _fit(model)
    with tempfile.TemporaryDirectory() as d:
        manifest = m.export_onnx(Path(d), k=10)
        assert manifest["graphs"], "export_onnx wrote no graph"
        worst = parity(m, Path(d), manifest["graphs"])
    bad = {f: v for f, v in worst.items() if not v <= 1e-4}
    assert not bad, f"ONNX graphs differ from the plugin by more than 1e-4: {bad}"


def checks_for(model: Recommender) -> list[Callable]:
    caps = model.capabilities
    checks = [check_init_stores_params, check_fit_returns_self, check_unfitted_raises,
              check_seed_determinism, check_save_load_roundtrip, check_batch_equals_single, check_bad_ids_raise]
    if caps.supports(Task.RATING):
        checks.append(check_rating_finite_in_scale)
    if caps.supports(Task.RANKING) or caps.supports(Task.SEQUENTIAL):
        checks += [check_ranker_checkerboard, check_k_larger_than_catalogue, check_exclude_seen]
    if caps.embeddings:
        checks.append(check_embeddings_shapes)
    if caps.onnx:
        checks.append(check_onnx_parity)
    return checks


def parametrize_with_checks(models: list[Recommender], expected_failures: dict[str, str] | None = None):
    """A pytest.mark.parametrize over (model, check) pairs derived from capabilities."""
    import pytest

    expected_failures = dict(expected_failures or {})
    for name, reason in expected_failures.items():
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise ValueError(f"expected failure {name!r} needs a written reason, got {reason!r}")
    params, seen = [], set()
    for model in models:
        for check in checks_for(model):
            seen.add(check.__name__)
            marks = []
            if check.__name__ in expected_failures:
                marks.append(pytest.mark.xfail(reason=expected_failures[check.__name__], strict=True))
            params.append(pytest.param(model, check, id=f"{type(model).__name__}-{check.__name__}", marks=marks))
    unknown = set(expected_failures) - seen
    if unknown:
        raise ValueError(f"expected_failures names checks that do not apply: {sorted(unknown)}")
    return pytest.mark.parametrize("model, check", params)


def isolated_home_fixture():
    """An autouse pytest fixture: each test writes under its own RECARENA_HOME, never
    downloads, and keeps wandb off unless RECARENA_TEST_WANDB says otherwise. Use in a
    conftest.py as ``isolated_home = isolated_home_fixture()``."""
    import os

    import pytest

    @pytest.fixture(autouse=True)
    def isolated_home(tmp_path, monkeypatch):
        monkeypatch.setenv("RECARENA_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("RECARENA_OFFLINE", "1")
        monkeypatch.setenv("WANDB_MODE", os.environ.get("RECARENA_TEST_WANDB", "disabled"))
        yield

    return isolated_home
