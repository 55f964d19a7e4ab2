"""Conformance kit: the checks every plugin's test file runs.

    from recarena.testing import parametrize_with_checks

    @parametrize_with_checks([MyModel(dim=8, epochs=3)],
                             expected_failures={"check_x": "why it cannot pass"})
    def test_conformance(model, check):
        check(model)

Checks are derived from the model's declared capabilities (like scikit-learn's
``parametrize_with_checks``); each failure message names the hook or convention to fix. An
expected failure must carry a written reason; it is a strict xfail, so a check that starts
passing is reported. The kit is also a pytest plugin (``recarena.pytest_plugin``): every test
it parametrizes runs with ``RECARENA_HOME`` in the test's temporary folder.

Fits are deterministic, so checks that only read a fitted model share one fit per
(model, data, seed); checks that need independent fits make their own.
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from recarena.base import Monitor, Recommender, Task
from recarena.data.filtering import to_implicit
from recarena.data.interactions import Interactions
from recarena.data.splits import ratio_by_user
from recarena.data.synthetic import checkerboard, synthetic
from recarena.errors import NotFittedError

KIT_TRAINER = {"progress_bar": False, "logger": "none", "accelerator": "cpu"}
#: attributes the base classes set during fit that are deliberately not saved
_BASE_TRANSIENT = {"_last_logger"}


@functools.cache
def _rating_data():
    data = synthetic(3000, n_users=120, n_items=80, seed=7)
    s = ratio_by_user(data, (0.8, 0.1, 0.1), seed=0)
    return s.train, s.valid, s.test


@functools.cache
def _implicit_data():
    train, valid, test = _rating_data()
    return to_implicit(train), to_implicit(valid), to_implicit(test)


@functools.cache
def _other_data():
    """A second, different training set (for the check that a refit forgets the first fit)."""
    s = ratio_by_user(synthetic(2000, n_users=90, n_items=70, seed=11), (0.9, 0.1), seed=1)
    return s.train


def _explicit(model: Recommender, kind: str) -> bool:
    caps = model.capabilities
    return kind == "explicit" or (kind == "auto" and (caps.supports(Task.RATING) or caps.supports(Task.CTR)))


def _adapt(model: Recommender, data, explicit: bool):
    """``data`` as ``model`` trains on it: ratings, 0/1 labels for CTR-only models, or implicit."""
    caps = model.capabilities
    if not explicit:
        return to_implicit(data)
    if caps.supports(Task.CTR) and not caps.supports(Task.RATING):
        from recarena.data.filtering import binarize

        return binarize(data, 4)
    return data


def _split(model: Recommender, kind: str = "auto"):
    """The kit's (train, valid) for ``model`` (see ``_adapt``)."""
    train, valid, _ = _rating_data()
    explicit = _explicit(model, kind)
    return _adapt(model, train, explicit), _adapt(model, valid, explicit)


def _train_data(model: Recommender, kind: str = "auto"):
    return _split(model, kind)[0]


def _fresh_fit(model: Recommender, kind: str = "auto", seed: int = 0) -> Recommender:
    return copy.deepcopy(model).fit(_train_data(model, kind), None, seed=seed, trainer=KIT_TRAINER)


_FITS: dict = {}


def _fit(model: Recommender, kind: str = "auto", seed: int = 0) -> Recommender:
    """A fitted copy of ``model``; fits are shared between checks (each gets its own copy)."""
    key = (type(model), repr(model), _explicit(model, kind), seed)
    if key not in _FITS:
        _FITS[key] = _fresh_fit(model, kind, seed)
    return copy.deepcopy(_FITS[key])


def _is_torch(model) -> bool:
    from recarena.torch_model import TorchRecommender

    return isinstance(model, TorchRecommender)


def _ranks(model) -> bool:
    return model.capabilities.supports(Task.RANKING) or model.capabilities.supports(Task.SEQUENTIAL)


def _pairs(model) -> bool:
    return model.capabilities.supports(Task.RATING) or model.capabilities.supports(Task.CTR)


def _users(m):
    return np.arange(min(m.n_users_, 37), dtype=np.int64)


def _outputs(m: Recommender) -> dict[str, np.ndarray]:
    out = {}
    u = _users(m)
    if _pairs(m):
        rng = np.random.default_rng(0)
        out["predict"] = m.predict(rng.integers(0, m.n_users_, 200), rng.integers(0, m.n_items_, 200))
    if _ranks(m):
        out["score"] = m.score(u).cpu().numpy()
    return out


def _name(model) -> str:
    return type(model).__name__


# ---- the checks ---------------------------------------------------------------------------


def check_init_stores_params(model: Recommender):
    """__init__ stores its arguments unchanged, under their own names, and does nothing else."""
    params_names = type(model)._param_names()
    missing = [n for n in params_names if n not in vars(model)]
    assert not missing, (
        f"{_name(model)}.__init__ does not store {missing} as attributes of the same name "
        f"(scikit-learn convention: self.{missing[0]} = {missing[0]}); get_params() reads them back")
    params = model.get_params()
    clone = type(model)(**params)
    assert clone.get_params() == params, f"{_name(model)}: get_params() after __init__(**params) differs"
    learned = [k for k in vars(clone) if k.endswith("_") and not k.startswith("_")]
    assert not learned, f"{_name(model)}.__init__ set learned attributes {learned}: set them in fit"
    assert not clone.is_fitted
    extra = set(vars(clone)) - set(params)
    assert not extra, f"{_name(model)}.__init__ set attributes that are not parameters: {sorted(extra)}"


def check_defaults_construct(model: Recommender):
    """The class constructs with no arguments, and its defaults satisfy its own constraints."""
    cls = type(model)
    sig = inspect.signature(cls.__init__)
    no_default = [n for n in cls._param_names() if sig.parameters[n].default is inspect.Parameter.empty]
    assert not no_default, (f"{_name(model)}.__init__ parameters {no_default} have no default: a plugin ships "
                            "its defaults in its __init__ signature")
    from recarena.params import InvalidParameterError

    try:
        cls()._validate_params()
    except InvalidParameterError as e:
        raise AssertionError(f"{_name(model)}'s default parameters break its own constraints: {e}") from None


def check_parameters_declared(model: Recommender):
    """Every parameter has a declared constraint; declarations name real parameters; a torch
    plugin takes the training fields the base reads (and those of what it declares)."""
    from recarena.params import declared

    cls = type(model)
    names = cls._param_names()
    cons = declared(cls)
    if _is_torch(model):
        from recarena.torch_model import NEGATIVE_PARAMS, TRAINING_PARAMS

        required = {n: "every torch plugin takes the training fields " + ", ".join(TRAINING_PARAMS)
                    for n in TRAINING_PARAMS}
        if model.negatives:
            required.update({n: "a plugin that declares negatives = True takes n_neg and neg_sampling"
                             for n in NEGATIVE_PARAMS})
        if model.capabilities.side_features:
            required["use_side"] = "a plugin whose capabilities declare side_features takes use_side"
        for n, why in required.items():
            if n not in names:
                close = difflib.get_close_matches(n, names, n=1, cutoff=0.5)
                raise AssertionError(f"{_name(model)}.__init__ has no parameter {n!r}: {why}"
                                     + (f"; {close[0]!r} looks like a misspelling of it" if close else ""))
        if not model.negatives:
            stray = [n for n in NEGATIVE_PARAMS if n in names]
            assert not stray, (f"{_name(model)} takes {stray} but does not declare `negatives = True`: the base "
                               "draws no negatives for it, so the parameter would change nothing")
    undeclared = [n for n in names if n not in cons]
    assert not undeclared, (
        f"{_name(model)}: parameters {undeclared} have no declared constraint: add them to "
        "_parameter_constraints (e.g. {'dim': [Interval(int, 1, None)]}; see recarena.params)")
    own = {n for k in cls.__mro__ if k.__module__.split(".")[0] != "recarena"
           for n in (vars(k).get("_parameter_constraints") or {})}
    for n in sorted(own - set(names)):
        close = difflib.get_close_matches(n, names, n=1)
        raise AssertionError(f"{_name(model)}._parameter_constraints declares {n!r}, which __init__ does not take"
                             + (f" (a typo of {close[0]!r}?)" if close else ""))


def check_invalid_params_refused(model: Recommender):
    """A value outside each parameter's constraints makes fit raise InvalidParameterError
    before any work."""
    from recarena.params import InvalidParameterError, declared, invalid_example

    train = _train_data(model)
    for name, cons in declared(type(model)).items():
        if name not in type(model)._param_names():
            continue
        bad = invalid_example(cons)
        m = copy.deepcopy(model).set_params(**{name: bad})
        try:
            m.fit(train, seed=0, trainer=KIT_TRAINER)
        except InvalidParameterError:
            continue
        except Exception as e:
            raise AssertionError(f"{_name(model)}(..., {name}={bad!r}) failed with {type(e).__name__}: {e}, not an "
                                 "InvalidParameterError before any work: declare its constraint") from e
        raise AssertionError(f"{_name(model)}(..., {name}={bad!r}) trained: its constraint does not refuse it")


def check_fit_returns_self(model: Recommender):
    m = copy.deepcopy(model)
    assert m.fit(_train_data(m), seed=0, trainer=KIT_TRAINER) is m, f"{_name(model)}.fit must return self"


def check_unfitted_raises(model: Recommender):
    m = copy.deepcopy(model)
    for call in (lambda: m.recommend([0], 5), lambda: m.predict([0], [0]), lambda: m.save(Path(tempfile.gettempdir()) / "x.pt")):
        try:
            call()
        except NotFittedError:
            continue
        raise AssertionError("using an unfitted model did not raise NotFittedError")


def check_ranker_implements_score(model: Recommender):
    """A ranking or sequential plugin scores the whole catalogue."""
    from recarena.torch_model import TorchRecommender

    if _is_torch(model):
        assert type(model).score_users is not TorchRecommender.score_users, (
            f"{_name(model)} declares the ranking task but does not implement score_users(network, users [B] int64) "
            "-> float32 [B, n_items]: predict_pairs alone cannot rank the catalogue")
    else:
        assert type(model)._score is not Recommender._score, (
            f"{_name(model)} declares the ranking task but does not implement _score(users [B] int64) -> "
            "float32 [B, n_items]")


def check_output_contract(model: Recommender):
    """``_score`` returns a float32 torch tensor [B, n_items]; ``_predict`` one [N]."""
    m = _fit(model)
    users = torch.from_numpy(_users(m)[:5])
    hook_s = "score_users" if _is_torch(m) else "_score"
    hook_p = "predict_pairs" if _is_torch(m) else "_predict"
    checks = []
    if _ranks(m):
        checks.append((hook_s, lambda: m._score(users.to(m.device)), (len(users), m.n_items_), "[B, n_items]"))
    if _pairs(m):
        items = torch.arange(len(users)) % m.n_items_
        checks.append((hook_p, lambda: m._predict(users.to(m.device), items.to(m.device)), (len(users),), "[N]"))
    for hook, call, shape, doc in checks:
        with torch.no_grad():
            out = call()
        assert torch.is_tensor(out), f"{_name(m)}.{hook} must return a torch.Tensor {doc}, got {type(out).__name__}"
        assert tuple(out.shape) == shape, (f"{_name(m)}.{hook} must return shape {doc} = {list(shape)}, got "
                                           f"{list(out.shape)}")
        assert out.dtype == torch.float32, f"{_name(m)}.{hook} must return float32, got {out.dtype}"


def check_learned_attributes_suffixed(model: Recommender):
    """Everything fit sets on the model ends in '_' (save/load keeps exactly those)."""
    m = _fit(model)
    params = set(type(m)._param_names())
    bad = sorted(k for k in vars(m) if k not in params and not k.endswith("_") and k not in _BASE_TRANSIENT)
    assert not bad, (f"{_name(m)}: fit set {bad}, which neither are parameters nor end in '_': learned attributes "
                     f"end in '_' or save/load loses them (rename to {bad[0].lstrip('_')}_; per-fit state a torch "
                     "plugin's hooks share belongs in the network)")


def check_entry_point(model: Recommender):
    """The plugin's distribution is installed and an entry point resolves to its class."""
    from importlib.metadata import packages_distributions

    from recarena import plugins

    cls = type(model)
    plugins.discover.cache_clear()
    found = [i for i in plugins.discover().values() if i.resolves_to(cls)]
    if found:
        return
    top = cls.__module__.split(".")[0]
    dists = packages_distributions().get(top)
    where = (f"its distribution {', '.join(sorted(set(dists)))} is installed but declares no entry point for it"
             if dists else f"no installed distribution provides the module {top!r}")
    raise AssertionError(
        f"{_name(model)}: {where}. Add `NAME = \"{cls.__module__}:{cls.__qualname__}\"` under "
        f'[project.entry-points."{plugins.GROUP}"] in its pyproject.toml and reinstall it (just setup)')


def check_seed_determinism(model: Recommender):
    # the shared fit is itself a fresh fit with seed 0: one more fresh fit makes the pair
    a, b = _outputs(_fit(model, seed=0)), _outputs(_fresh_fit(model, seed=0))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=f"{k} differs between two fits with one seed")


def check_second_fit_forgets(model: Recommender):
    """Fitting a fitted model again equals a fresh fit: nothing of the first fit survives."""
    explicit = _explicit(model, "auto")
    other = _adapt(model, _other_data(), explicit)
    again = _fit(model, seed=0).fit(other, seed=1, trainer=KIT_TRAINER)  # a copy of the shared first fit
    fresh = copy.deepcopy(model).fit(other, seed=1, trainer=KIT_TRAINER)
    assert set(vars(again)) == set(vars(fresh)), (
        f"{_name(model)}: a second fit kept attributes of the first: {sorted(set(vars(again)) ^ set(vars(fresh)))}")
    a, b = _outputs(again), _outputs(fresh)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6,
                                   err_msg=f"{k}: a second fit differs from a fresh fit on the same data and seed")


def _kit_monitor(model: Recommender, valid):
    from recarena.eval.evaluator import CTREvaluator, RankingEvaluator, RatingEvaluator

    caps = model.capabilities
    if caps.supports(Task.RATING):
        return Monitor("rmse", "min", RatingEvaluator(valid, ["rmse"]).evaluate)
    if caps.supports(Task.CTR):
        return Monitor("auc", "max", CTREvaluator(valid, ["auc"]).evaluate)
    train = _train_data(model)
    return Monitor("ndcg@10", "max", RankingEvaluator(valid, [train], ["ndcg@10"]).evaluate)


def check_fit_with_validation(model: Recommender):
    """Fit with a validation set and a monitor; a model that early-stops keeps its best epoch."""
    train, valid = _split(model)
    mon = _kit_monitor(model, valid)
    m = copy.deepcopy(model).fit(train, valid, seed=0, monitor=mon, trainer=KIT_TRAINER)
    if not _is_torch(m) or getattr(m, "best_epoch_", None) is None:
        return
    assert mon.history, f"{_name(m)} never validated during training"
    pick = max if mon.mode == "max" else min
    best = pick(h[mon.metric] for h in mon.history)
    now = mon.evaluate(m)[mon.metric]
    assert abs(now - best) <= 1e-5, (f"{_name(m)}: after early stopping the model scores {mon.metric}={now:.6f}, "
                                     f"not its best epoch's {best:.6f}: the best weights were not restored")


def check_refit(model: Recommender):
    """``refit_params()`` repeats the model selection (epochs of the model and of every declared
    stage) and a fresh model fits train + valid with them."""
    train, valid = _split(model)
    mon = _kit_monitor(model, valid)
    m = copy.deepcopy(model).fit(train, valid, seed=0, monitor=mon, trainer=KIT_TRAINER)
    refit = m.refit_params() if hasattr(m, "refit_params") else {}
    if _is_torch(m):
        if getattr(m, "best_epoch_", None) is not None:
            assert refit.get("epochs") == m.best_epoch_ + 1, f"{_name(m)}.refit_params() lacks the chosen epochs"
        stages = {st.name: st for st in m.stages()}
        for name, best in (getattr(m, "stage_best_epochs_", None) or {}).items():
            if best is not None:
                assert refit.get(stages[name].epochs) == best + 1, (
                    f"{_name(m)}: stage {name!r} chose {best + 1} epochs but refit_params() does not say so")
    again = copy.deepcopy(model).set_params(**refit)
    again.fit(train.concat(valid), None, seed=0, trainer=KIT_TRAINER)
    assert again.is_fitted


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


def check_ctr_probabilities(model: Recommender):
    """A CTR model predicts probabilities: finite, in [0, 1]."""
    from recarena.data.filtering import binarize

    m = copy.deepcopy(model).fit(binarize(_rating_data()[0], 4), seed=0, trainer=KIT_TRAINER)
    pred = _outputs(m)["predict"]
    assert np.isfinite(pred).all() and pred.min() >= 0 and pred.max() <= 1, (
        f"{_name(m)} predicted outside [0, 1] on 0/1 labels ({pred.min()}, {pred.max()}): return sigmoid(logit)")


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
    items, scores = m.recommend(users, k=7) if _ranks(m) else (None, None)
    if items is not None:
        for k, u in enumerate(users):
            i1, s1 = m.recommend([u], k=7)
            np.testing.assert_allclose(s1[0], scores[k], rtol=0, atol=1e-5)
            # identical scores may swap order; compare as sets of equal-score items
            assert set(i1[0][np.isfinite(s1[0])].tolist()) == set(items[k][np.isfinite(scores[k])].tolist())
    if _pairs(m):
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
    try:
        emb = m.embeddings()
    except NotImplementedError as e:
        raise AssertionError(str(e)) from None
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


def check_export_leaves_model(model: Recommender):
    """Exporting never changes the model: its predictions before and after are identical."""
    m = _fit(model)
    before = _outputs(m)
    attrs_before = sorted(vars(m))
    net_before = ({k: v.clone() for k, v in m.network_.state_dict().items()}, m.network_.training) if _is_torch(m) else None
    with tempfile.TemporaryDirectory() as d:
        m.export_onnx(Path(d), k=10)
    after = _outputs(m)
    assert sorted(vars(m)) == attrs_before, f"{_name(m)}.export_onnx changed the model's attributes"
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=f"{_name(m)}: {k} changed after export_onnx")
    if net_before is not None:
        state, training = net_before
        now = m.network_.state_dict()
        assert set(now) == set(state), f"{_name(m)}.export_onnx added or removed network state: {set(now) ^ set(state)}"
        for k, v in state.items():
            assert torch.equal(now[k], v), f"{_name(m)}.export_onnx changed the network's {k}"
        assert m.network_.training == training


def check_fold_in_matches_training(model: Recommender):
    """A model that folds users in scores a user given their own training items as history
    exactly as it scores them from training."""
    m = _fit(model, "implicit")
    users = _users(m)
    try:
        folded = m.score_history(users, m.seen_indptr_, m.seen_indices_).cpu().numpy()
    except NotImplementedError as e:
        raise AssertionError(f"{_name(m)} declares fold_in but {e}: implement _score_history(users, indptr, "
                             "indices) -> float32 [B, n_items]") from None
    np.testing.assert_allclose(folded, m.score(users).cpu().numpy(), rtol=1e-5, atol=1e-5,
                               err_msg=f"{_name(m)}: folding in a user's training items differs from their training scores")


def check_context_matches_training(model: Recommender):
    """A model that takes context scores a user given their own training history, in time
    order, exactly as it scores them from training; a sequential one also reads what is given:
    one more item at the end changes the user's scores."""
    m = _fit(model, "implicit")
    users = _users(m)
    indptr, indices = _train_data(m, "implicit").sequences()
    try:
        given = m.score_history(users, indptr, indices).cpu().numpy()
    except NotImplementedError as e:
        raise AssertionError(f"{_name(m)} declares context but {e}: implement _score_history(users, indptr, "
                             "indices) -> float32 [B, n_items]") from None
    np.testing.assert_allclose(given, m.score(users).cpu().numpy(), rtol=1e-5, atol=1e-5,
                               err_msg=f"{_name(m)}: scoring a user from their training sequence differs from their "
                                       "training scores")
    if m.capabilities.supports(Task.SEQUENTIAL):
        u = int(users[0])
        row = indices[indptr[u]:indptr[u + 1]]
        extra = int((row[-1] + 1) % m.n_items_)
        longer = np.r_[row, extra]
        after = m.score_history(np.array([u]), np.array([0] * (u + 1) + [len(longer)] * (m.n_users_ - u)), longer)
        assert not np.allclose(after.cpu().numpy()[0], given[0]), (
            f"{_name(m)} declares context but ignores it: one more item at the end of user {u}'s history "
            "left their scores unchanged")


def check_predict_variance(model: Recommender):
    """A model that declares uncertainty gives a finite, non-negative float32 variance per
    pair, the same for a pair alone as in a batch, and the evaluator reports its calibration."""
    from recarena.eval import RatingEvaluator

    m = _fit(model)
    users = np.repeat(_users(m), 3)
    items = np.resize(np.arange(m.n_items_), len(users))
    try:
        var = m.predict_variance(users, items)
    except NotImplementedError as e:
        raise AssertionError(f"{_name(m)} declares uncertainty but {e}: implement _predict_variance(users, items) "
                             "-> float32 [N]") from None
    assert var.shape == (len(users),) and var.dtype == np.float32, (var.shape, var.dtype)
    assert np.isfinite(var).all() and (var >= 0).all(), f"{_name(m)}: variances must be finite and >= 0"
    np.testing.assert_allclose(m.predict_variance(users[:1], items[:1]), var[:1], rtol=1e-5, atol=1e-6)
    target = Interactions(users, items, m.user_ids_, m.item_ids_, np.full(len(users), 3.0, np.float32))
    got = RatingEvaluator(target, ["rmse"]).evaluate(m)
    assert set(RatingEvaluator.uncertainty_metrics) <= set(got), sorted(got)


def check_predict_at_times(model: Recommender):
    """A model that declares timestamps predicts a float32 [N] for pairs at given times, and
    without times as of each user's last training row."""
    m = _fit(model)
    train = _train_data(model)
    if train.timestamp is None:
        raise AssertionError("the kit's training data has no timestamps")
    last = np.full(m.n_users_, np.iinfo(np.int64).min)
    np.maximum.at(last, train.user, train.timestamp)
    users = np.unique(train.user)[:37]
    items = np.resize(np.arange(m.n_items_), len(users))
    try:
        at_last = m.predict(users, items, timestamps=last[users])
    except NotImplementedError as e:
        raise AssertionError(f"{_name(m)} declares timestamps but {e}: implement _predict_at(users, items, "
                             "timestamps) -> float32 [N]") from None
    assert at_last.shape == (len(users),) and at_last.dtype == np.float32 and np.isfinite(at_last).all()
    np.testing.assert_allclose(m.predict(users, items), at_last, rtol=1e-5, atol=1e-5,
                               err_msg=f"{_name(m)}: without timestamps, predict must answer as of each user's last training row")
    later = m.predict(users, items, timestamps=last[users] + 400 * 86400)
    assert np.isfinite(later).all()


def checks_for(model: Recommender) -> list[Callable]:
    caps = model.capabilities
    checks = [check_init_stores_params, check_defaults_construct, check_parameters_declared,
              check_invalid_params_refused, check_entry_point, check_fit_returns_self, check_unfitted_raises,
              check_output_contract, check_learned_attributes_suffixed, check_seed_determinism,
              check_second_fit_forgets, check_fit_with_validation, check_refit, check_save_load_roundtrip,
              check_batch_equals_single, check_bad_ids_raise]
    if caps.supports(Task.RATING):
        checks.append(check_rating_finite_in_scale)
    if caps.supports(Task.CTR):
        checks.append(check_ctr_probabilities)
    if caps.supports(Task.RANKING) or caps.supports(Task.SEQUENTIAL):
        checks += [check_ranker_implements_score, check_ranker_checkerboard, check_k_larger_than_catalogue,
                   check_exclude_seen]
    if caps.fold_in:
        checks.append(check_fold_in_matches_training)
    if caps.context:
        checks.append(check_context_matches_training)
    if caps.embeddings:
        checks.append(check_embeddings_shapes)
    if caps.uncertainty:
        checks.append(check_predict_variance)
    if caps.timestamps:
        checks.append(check_predict_at_times)
    if caps.onnx:
        checks += [check_onnx_parity, check_export_leaves_model]
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
            marks = [pytest.mark.recarena_kit]
            if check.__name__ in expected_failures:
                marks.append(pytest.mark.xfail(reason=expected_failures[check.__name__], strict=True))
            params.append(pytest.param(model, check, id=f"{type(model).__name__}-{check.__name__}", marks=marks))
    unknown = set(expected_failures) - seen
    if unknown:
        raise ValueError(f"expected_failures names checks that do not apply: {sorted(unknown)}")
    return pytest.mark.parametrize("model, check", params)


def isolate_home(monkeypatch, home) -> None:
    """Point RECARENA_HOME at ``home``, download nothing, keep wandb off unless
    RECARENA_TEST_WANDB says otherwise (for the test ``monkeypatch`` belongs to)."""
    import os

    monkeypatch.setenv("RECARENA_HOME", str(home))
    monkeypatch.setenv("RECARENA_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", os.environ.get("RECARENA_TEST_WANDB", "disabled"))


def isolated_home_fixture():
    """An autouse pytest fixture: each test writes under its own RECARENA_HOME (see
    ``isolate_home``). Use in a conftest.py as ``isolated_home = isolated_home_fixture()``."""
    import pytest

    @pytest.fixture(autouse=True)
    def isolated_home(tmp_path, monkeypatch):
        isolate_home(monkeypatch, tmp_path / "home")
        yield

    return isolated_home
