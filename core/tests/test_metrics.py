"""Metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from recarena.eval.metrics import auc, gini_index, logloss, mae, ranking_metrics_from_hits, rmse


def test_ranking_metrics_hand_computed():
    # user 0: hits at ranks 1 and 3 of 5, 4 relevant items; user 1: hit at rank 2, 1 relevant
    hits = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=torch.bool)
    n_rel = torch.tensor([4, 1])
    m = {k: v.numpy() for k, v in ranking_metrics_from_hits(hits, n_rel, 5).items()}
    assert m["hit"].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(m["precision"], [2 / 5, 1 / 5])
    np.testing.assert_allclose(m["recall"], [2 / 4, 1 / 1])
    np.testing.assert_allclose(m["mrr"], [1.0, 0.5])
    dcg0 = 1 / math.log2(2) + 1 / math.log2(4)
    idcg0 = sum(1 / math.log2(r + 1) for r in range(1, 5))
    np.testing.assert_allclose(m["ndcg"], [dcg0 / idcg0, (1 / math.log2(3)) / 1.0])
    # MAP@5 (RecBole): sum of precision@k at hits / min(n_rel, K)
    np.testing.assert_allclose(m["map"], [(1 / 1 + 2 / 3) / 4, (1 / 2) / 1])


def test_cutoff_shorter_than_list_and_no_hits():
    hits = torch.tensor([[0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    m = ranking_metrics_from_hits(hits, torch.tensor([1, 2]), 2)
    assert m["hit"].tolist() == [0.0, 0.0]
    assert m["ndcg"].tolist() == [0.0, 0.0] and m["mrr"].tolist() == [0.0, 0.0]


def test_rating_and_ctr_metrics():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    # AUC: positives {0.9, 0.4}, negatives {0.5, 0.1}: pairs won 3 of 4
    assert auc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == pytest.approx(0.75)
    assert auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie counts half
    assert logloss([0.8, 0.3], [1, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)


def test_gini():
    assert gini_index([5, 5, 5, 5]) == pytest.approx(0.0)
    # one item gets everything among 4: (2*4-4-1)*1/(4*1) = 3/4
    assert gini_index([0, 0, 0, 7]) == pytest.approx(0.75)


def test_recall_norm_divides_by_the_smaller_of_k_and_the_relevant_count():
    import torch

    from recarena.eval.metrics import ranking_metrics_from_hits

    hits = torch.tensor([[True, False, True], [True, True, False]])
    n_rel = torch.tensor([5, 2])
    out = ranking_metrics_from_hits(hits, n_rel, 3, names=("recall", "recall_norm"))
    # user 0: 2 hits of 5 relevant, top-3: recall 2/5, recall_norm 2/min(3, 5); user 1: 2/2 both
    assert out["recall"].tolist() == [0.4, 1.0] and out["recall_norm"].tolist() == [2 / 3, 1.0]
