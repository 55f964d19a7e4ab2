"""The vectorized, chunked full-ranking evaluator against a plain per-user reference."""

import math

import numpy as np
import pytest
import torch

from recarena.base import Capabilities, Recommender, Task
from recarena.data.filtering import to_implicit
from recarena.data.splits import ratio_by_user
from recarena.data.synthetic import synthetic
from recarena.errors import RecArenaError
from recarena.eval.evaluator import RankingEvaluator, SampledRankingEvaluator, parse_metric


class RandomScores(Recommender):
    capabilities = Capabilities(tasks={Task.RANKING})

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _fit(self, train, valid, monitor):
        g = torch.Generator().manual_seed(self.seed)
        self.table_ = torch.rand(train.n_users, train.n_items, generator=g)

    def _score(self, users):
        return self.table_[users]


def reference(model, split, k):
    train, valid, test = split.train, split.valid, split.test
    scores = model.table_.numpy().copy()
    out = {"ndcg": [], "recall": [], "hit": [], "mrr": [], "precision": []}
    for u in range(train.n_users):
        rel = set(test.item[test.user == u].tolist())
        if not rel:
            continue
        s = scores[u].copy()
        s[train.item[train.user == u]] = -np.inf
        s[valid.item[valid.user == u]] = -np.inf
        top = np.argsort(-s, kind="stable")[:k]
        h = [1 if i in rel else 0 for i in top]
        dcg = sum(x / math.log2(r + 2) for r, x in enumerate(h))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
        out["ndcg"].append(dcg / idcg)
        out["recall"].append(sum(h) / len(rel))
        out["precision"].append(sum(h) / k)
        out["hit"].append(float(any(h)))
        first = next((r for r, x in enumerate(h) if x), None)
        out["mrr"].append(0.0 if first is None else 1 / (first + 1))
    return {f"{m}@{k}": float(np.mean(v)) for m, v in out.items()}


@pytest.mark.parametrize("budget", [256 << 20, 4 * 50 * 7])  # one chunk vs many chunks of 7 users
def test_matches_reference(budget):
    data = to_implicit(synthetic(4000, n_users=90, n_items=50, seed=2))
    s = ratio_by_user(data, (0.8, 0.1, 0.1), seed=1)
    m = RandomScores(seed=5).fit(s.train)
    ev = RankingEvaluator(s.test, [s.train, s.valid], ["ndcg@5", "recall@5", "hit@5", "mrr@5", "precision@5"], memory_budget=budget)
    got = ev.evaluate(m)
    want = reference(m, s, 5)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


def test_beyond_accuracy_metrics():
    data = to_implicit(synthetic(1500, n_users=60, n_items=40, seed=3))
    s = ratio_by_user(data, (0.8, 0.1, 0.1), seed=1)
    m = RandomScores().fit(s.train)
    got = RankingEvaluator(s.test, [s.train], ["coverage@5", "gini@5", "avgpop@5", "ndcg@5"]).evaluate(m)
    assert 0 < got["coverage@5"] <= 1 and 0 <= got["gini@5"] < 1 and got["avgpop@5"] > 0


def test_sampled_evaluation_warns_and_ranks():
    data = to_implicit(synthetic(2000, n_users=40, n_items=60, seed=4))
    s = ratio_by_user(data, (0.9, 0.1), seed=1)
    m = RandomScores().fit(s.train)
    negs = np.tile(np.arange(10), (len(s.test), 1))
    with pytest.warns(UserWarning, match="Sampled evaluation"):
        ev = SampledRankingEvaluator(s.test, negs, ["hit@10", "hit@1"])
    got = ev.evaluate(m)
    assert got["hit@10"] >= got["hit@1"]


def test_parse_metric_errors():
    assert parse_metric("NDCG@10") == ("ndcg", 10)
    with pytest.raises(RecArenaError, match="Unknown metric"):
        parse_metric("ndgc@10")
    with pytest.raises(RecArenaError, match="needs a cutoff"):
        parse_metric("recall")
