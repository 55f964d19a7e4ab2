"""Evaluators bind target data (and what to mask) to a set of metrics.

``evaluate(model)`` returns ``{"ndcg@10": ..., "recall@10": ..., ...}``. The ranking
evaluator is full-ranking: every item is scored for every evaluated user, items the user
already interacted with in the masked sets are excluded, then top-K. It works in chunks of
users sized from a memory budget, on whatever device the model scores on.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from recarena.base import Recommender, csr_rows
from recarena.data.interactions import Interactions
from recarena.errors import RecArenaError
from recarena.eval.metrics import (
    RANKING_METRICS,
    auc,
    gini_index,
    logloss,
    mae,
    ranking_metrics_from_hits,
    rmse,
)

_METRIC_RE = re.compile(r"^([a-z_]+)(?:@(\d+))?$")
BEYOND_ACCURACY = ("coverage", "avgpop", "gini")
RATING_METRICS = ("rmse", "mae")
#: reported for models that declare ``uncertainty``, whatever the protocol lists:
#: interval_coverage@P, the share of ratings inside the central P% predictive interval (a
#: calibrated model gets about P/100); confident_rmse@P, the RMSE of the P% of ratings with
#: the smallest predictive variance; confident_ratio@P, that over the overall RMSE
UNCERTAINTY_METRICS = ("interval_coverage", "confident_rmse", "confident_ratio")
CTR_METRICS = ("auc", "logloss")
LOWER_IS_BETTER = {"rmse", "mae", "logloss", "avgpop", "gini", "confident_rmse", "confident_ratio"}


def parse_metric(name: str) -> tuple[str, int | None]:
    """``"NDCG@10"`` -> ``("ndcg", 10)``; raises a clear error on unknown metrics."""
    m = _METRIC_RE.match(name.strip().lower())
    known = RANKING_METRICS + BEYOND_ACCURACY + RATING_METRICS + UNCERTAINTY_METRICS + CTR_METRICS
    if not m or m.group(1) not in known:
        raise RecArenaError(f"Unknown metric {name!r}; known metrics: {', '.join(known)} (ranking ones take @K).")
    base, k = m.group(1), m.group(2)
    if base in RANKING_METRICS + BEYOND_ACCURACY + UNCERTAINTY_METRICS and k is None:
        raise RecArenaError(f"Metric {name!r} needs a cutoff, e.g. {base}@10.")
    return base, int(k) if k else None


def metric_mode(name: str) -> str:
    return "min" if parse_metric(name)[0] in LOWER_IS_BETTER else "max"


def _merge_csr(n_users: int, parts: Sequence[Interactions]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(n_users + 1, np.int64), np.zeros(0, np.int64)
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.concat(p)
    return merged.user_item_sets()


class RankingEvaluator:
    """Full-ranking top-N evaluation.

    ``target``: the interactions to find (validation or test). ``exclude``: interactions
    whose items are masked for each user (training, plus validation at test time).
    ``context``: each user's time-ordered history given at scoring time (see ``_score_history``).
    ``metrics``: names like ``"ndcg@10"``; ``memory_budget``: bytes of float32 scores per
    chunk (the chunk's mask and hit tables add ~1/4 of that).
    """

    def __init__(
        self,
        target: Interactions,
        exclude: Sequence[Interactions] = (),
        metrics: Sequence[str] = ("recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10", "map@10"),
        memory_budget: int = 256 << 20,
        item_popularity: np.ndarray | None = None,
        fold_in: bool = False,
        context: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.metrics = [m.lower() for m in metrics]
        self.parsed = [parse_metric(m) for m in self.metrics]
        for base, _ in self.parsed:
            if base in RATING_METRICS + CTR_METRICS:
                raise RecArenaError(f"{base} is not a ranking metric.")
        self.max_k = max(k for _, k in self.parsed)
        self.n_users, self.n_items = target.n_users, target.n_items
        self.t_indptr, self.t_indices = target.user_item_sets()
        self.x_indptr, self.x_indices = _merge_csr(self.n_users, list(exclude))
        n_rel = np.diff(self.t_indptr)
        self.users = np.flatnonzero(n_rel > 0).astype(np.int64)
        self.n_rel = torch.from_numpy(n_rel[self.users])
        self.memory_budget = memory_budget
        # fold_in: the model scores each user from the excluded items as their history (the
        # context given at scoring time: a held-out user's fold-in items), not from training alone
        self.fold_in = fold_in
        # context: (indptr, indices) of each user's history in time order, given at scoring time
        # to a model that declares ``context`` (the validation item at test time); a model that
        # does not is scored from training, as a model with no use for it (pop) would be anyway
        self.context = context
        self.chunk = max(1, memory_budget // (4 * max(1, self.n_items)))
        self.popularity = (
            item_popularity
            if item_popularity is not None
            else (exclude[0].item_counts() if exclude else target.item_counts())
        )
        self._chunks = None

    def _prepare(self, chunk: int | None = None):
        if chunk is not None:
            self.chunk = chunk
        # Index pairs for masking and hits depend only on the data, so they are built once
        # and reused every epoch.
        chunks = []
        for s in range(0, len(self.users), self.chunk):
            uc = torch.from_numpy(self.users[s : s + self.chunk])
            xr, xc = csr_rows(self.x_indptr, self.x_indices, uc)
            tr, tc = csr_rows(self.t_indptr, self.t_indices, uc)
            chunks.append((uc, xr, xc, tr, tc, self.n_rel[s : s + self.chunk]))
        self._chunks = chunks

    @torch.no_grad()
    def evaluate(self, model: Recommender) -> dict[str, float]:
        chunk = max(1, self.memory_budget // (4 * max(1, self.n_items) * max(1, int(model.score_memory_factor))))
        if self._chunks is None or chunk != self.chunk:
            self._prepare(chunk)
        if model.n_items_ != self.n_items:
            raise RecArenaError(f"model has {model.n_items_} items, evaluation data {self.n_items}")
        device = model.device
        sums: dict[str, float] = {}
        rec_counts = torch.zeros(self.n_items, dtype=torch.int64, device=device)
        need_beyond = any(b in BEYOND_ACCURACY for b, _ in self.parsed)
        for uc, xr, xc, tr, tc, n_rel in self._chunks:
            scores = self._scores(model, uc)
            if len(xr):
                scores.index_put_((xr.to(device), xc.to(device)), torch.tensor(-torch.inf, device=device))
            top_s, top_i = torch.topk(scores, self.max_k, dim=1, sorted=True)
            del scores
            target = torch.zeros((len(uc), self.n_items), dtype=torch.bool, device=device)
            target[tr.to(device), tc.to(device)] = True
            hits = target.gather(1, top_i) & ~torch.isinf(top_s)
            del target
            n_rel_d = n_rel.to(device)
            for (base, k), name in zip(self.parsed, self.metrics):
                if base in RANKING_METRICS:
                    v = ranking_metrics_from_hits(hits, n_rel_d, k, names=(base,))[base]
                    sums[name] = sums.get(name, 0.0) + float(v.sum())
            if need_beyond:
                rec_counts += torch.bincount(top_i[:, : self.max_k].reshape(-1), minlength=self.n_items)
        n = max(1, len(self.users))
        out = {name: sums[name] / n for name in self.metrics if name in sums}
        if need_beyond:
            for (base, k), name in zip(self.parsed, self.metrics):
                if base not in BEYOND_ACCURACY:
                    continue
                if k != self.max_k:  # beyond-accuracy metrics need their own top-k lists
                    counts = self._counts_at(model, k)
                else:
                    counts = rec_counts.cpu().numpy()
                out[name] = self._beyond(base, counts)
        return out

    def _counts_at(self, model, k):
        counts = np.zeros(self.n_items, np.int64)
        for uc, xr, xc, *_ in self._chunks:
            scores = self._scores(model, uc)
            if len(xr):
                scores[xr.to(scores.device), xc.to(scores.device)] = -torch.inf
            counts += np.bincount(torch.topk(scores, k, 1).indices.cpu().numpy().ravel(), minlength=self.n_items)
        return counts

    def _scores(self, model: Recommender, users: torch.Tensor) -> torch.Tensor:
        if self.fold_in:
            return model._score_history(users.to(model.device), self.x_indptr, self.x_indices).float()
        if self.context is not None and model.capabilities.context:
            return model._score_history(users.to(model.device), *self.context).float()
        return model._score(users.to(model.device)).float()

    def _beyond(self, base: str, counts: np.ndarray) -> float:
        if base == "coverage":
            return float((counts > 0).sum() / self.n_items)
        if base == "avgpop":
            total = counts.sum()
            return float((counts * self.popularity).sum() / total) if total else 0.0
        return gini_index(counts)


class RatingEvaluator:
    """RMSE / MAE of ``model.predict`` on the target's (user, item, rating) rows (and their
    timestamps, for a model that declares ``timestamps``)."""

    def __init__(self, target: Interactions, metrics: Sequence[str] = ("rmse", "mae")):
        if target.rating is None:
            raise RecArenaError(f"{target.name} has no ratings: rating metrics need explicit data.")
        self.target, self.metrics = target, [m.lower() for m in metrics]

    #: what a model that declares ``uncertainty`` is also judged on
    uncertainty_metrics = ("interval_coverage@90", "confident_rmse@20", "confident_ratio@20")

    def evaluate(self, model: Recommender) -> dict[str, float]:
        when = self.target.timestamp if model.capabilities.timestamps else None
        pred = model.predict(self.target.user, self.target.item, timestamps=when)
        fns = {"rmse": rmse, "mae": mae}
        out = {m: fns[m](pred, self.target.rating) for m in self.metrics}
        if model.capabilities.uncertainty:
            var = model.predict_variance(self.target.user, self.target.item)
            for m in self.uncertainty_metrics:
                base, k = parse_metric(m)
                out[m] = uncertainty_metric(base, k, pred, var, self.target.rating)
        return out


def uncertainty_metric(name: str, k: int, pred: np.ndarray, var: np.ndarray, true: np.ndarray) -> float:
    """One of ``UNCERTAINTY_METRICS`` at ``k`` (percent) from predicted means ``pred``, variances
    ``var`` and ratings ``true`` (float32 [N] each), under a Gaussian predictive distribution."""
    from statistics import NormalDist

    if name == "interval_coverage":
        half = NormalDist().inv_cdf(0.5 + k / 200) * np.sqrt(np.maximum(var, 0.0))
        return float(np.mean(np.abs(true - pred) <= half))
    n = max(1, int(round(len(var) * k / 100)))
    sure = np.argsort(var, kind="stable")[:n]
    sure_rmse = rmse(pred[sure], true[sure])
    return sure_rmse if name == "confident_rmse" else sure_rmse / rmse(pred, true)


class CTREvaluator:
    """AUC / LogLoss of ``model.predict`` (a probability) against 0/1 labels in ``rating``."""

    def __init__(self, target: Interactions, metrics: Sequence[str] = ("auc", "logloss")):
        if target.rating is None:
            raise RecArenaError(f"{target.name} has no labels for CTR metrics.")
        self.target, self.metrics = target, [m.lower() for m in metrics]

    def evaluate(self, model: Recommender) -> dict[str, float]:
        prob = model.predict(self.target.user, self.target.item)
        fns = {"auc": auc, "logloss": logloss}
        return {m: fns[m](prob, self.target.rating) for m in self.metrics}


class SampledRankingEvaluator:
    """Sampled evaluation: each target (user, item) ranked against given negatives.

    ``negatives``: int64 ``[n_target, n_neg]``. Sampled metrics do not preserve model order
    (Krichene & Rendle 2020); this exists only to compare with papers that used it, and says so.
    """

    def __init__(self, target: Interactions, negatives: np.ndarray, metrics: Sequence[str] = ("hit@10", "ndcg@10")):
        warnings.warn(
            "Sampled evaluation requested: sampled metrics can reorder models "
            "(Krichene & Rendle 2020); use full ranking to compare models.",
            UserWarning,
            stacklevel=2,
        )
        self.target, self.negatives = target, np.asarray(negatives, np.int64)
        if len(self.negatives) != len(target):
            raise RecArenaError(f"{len(self.negatives)} negative rows for {len(target)} target rows")
        self.metrics = [m.lower() for m in metrics]
        self.parsed = [parse_metric(m) for m in self.metrics]

    def evaluate(self, model: Recommender) -> dict[str, float]:
        n, m = self.negatives.shape
        cand = np.concatenate([self.target.item[:, None], self.negatives], 1)  # [n, 1+m]
        users = np.repeat(self.target.user, m + 1)
        s = model.predict(users, cand.ravel()).reshape(n, m + 1)
        # rank of the positive among candidates (ties count against it, as is conservative)
        rank = (s[:, 1:] >= s[:, :1]).sum(1)
        hits_t = torch.zeros((n, m + 1), dtype=torch.bool)
        hits_t[torch.arange(n), torch.from_numpy(np.minimum(rank, m))] = True
        n_rel = torch.ones(n, dtype=torch.int64)
        out = {}
        for (base, k), name in zip(self.parsed, self.metrics):
            out[name] = float(ranking_metrics_from_hits(hits_t, n_rel, k, names=(base,))[base].mean())
        return out
