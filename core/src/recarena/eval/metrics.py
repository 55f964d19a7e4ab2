"""Metric kernels. Definitions follow RecBole 1.2 (so our figures compare with its tables).

Ranking metrics take ``hits``: bool ``[B, K]`` (position j of user b's top-K list is a test
item) and ``n_rel``: int64 ``[B]`` (number of test items of each user, all > 0), and return
per-user float64 ``[B]`` values; callers average over users.
"""

from __future__ import annotations

import numpy as np
import torch

RANKING_METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "map", "recall_norm")


def ranking_metrics_from_hits(
    hits: torch.Tensor, n_rel: torch.Tensor, k: int, names=RANKING_METRICS
) -> dict[str, torch.Tensor]:
    """Per-user metrics @k from ``hits [B, >=k]`` and ``n_rel [B]``."""
    h = hits[:, :k].to(torch.float64)
    kk = h.shape[1]
    n_rel = n_rel.to(torch.float64)
    out: dict[str, torch.Tensor] = {}
    n_hit = h.sum(1)
    ranks = torch.arange(1, kk + 1, dtype=torch.float64, device=h.device)
    if "hit" in names:
        out["hit"] = (n_hit > 0).double()
    if "precision" in names:
        out["precision"] = n_hit / k
    if "recall" in names:
        out["recall"] = n_hit / n_rel
    if "recall_norm" in names:
        # the Mult-VAE paper's Recall@k: hits / min(k, |relevant|), so a user with more relevant
        # items than k can reach 1 (RecBole's Recall@k divides by |relevant|: another figure)
        out["recall_norm"] = n_hit / torch.clamp(n_rel, max=k)
    if "mrr" in names:
        first = torch.where(h > 0, ranks, torch.full_like(h, torch.inf)).min(1).values
        out["mrr"] = torch.where(torch.isinf(first), 0.0, 1.0 / first)
    if "ndcg" in names:
        disc = 1.0 / torch.log2(ranks + 1.0)
        dcg = (h * disc).sum(1)
        idcg_table = torch.cat([torch.zeros(1, dtype=torch.float64, device=h.device), disc.cumsum(0)])
        idcg = idcg_table[torch.clamp(n_rel, max=kk).long()]
        out["ndcg"] = dcg / idcg
    if "map" in names:
        prec_at = h.cumsum(1) / ranks
        out["map"] = (prec_at * h).sum(1) / torch.clamp(n_rel, max=k)
    return out


def gini_index(counts: np.ndarray) -> float:
    """Gini index of how often each item was recommended (``counts [n_items]``; 0 = equal)."""
    c = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(c)
    if n == 0 or c.sum() == 0:
        return 0.0
    idx = np.arange(1, n + 1)
    return float(((2 * idx - n - 1) * c).sum() / (n * c.sum()))


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    return float(np.mean(np.abs(pred - true)))


def auc(prob: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC via the rank-sum statistic (ties get average ranks)."""
    from scipy.stats import rankdata

    prob, label = np.asarray(prob, np.float64), np.asarray(label) > 0.5
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(prob)
    return float((r[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(prob: np.ndarray, label: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(prob, np.float64), eps, 1 - eps)
    y = np.asarray(label, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
