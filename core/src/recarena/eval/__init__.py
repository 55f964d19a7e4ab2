"""Vectorized evaluation: full-ranking top-N, rating and CTR metrics."""

from recarena.eval.evaluator import (
    CTREvaluator,
    RankingEvaluator,
    RatingEvaluator,
    SampledRankingEvaluator,
    parse_metric,
)
from recarena.eval.metrics import (
    auc,
    gini_index,
    logloss,
    mae,
    ranking_metrics_from_hits,
    rmse,
)

__all__ = [
    "CTREvaluator",
    "RankingEvaluator",
    "RatingEvaluator",
    "SampledRankingEvaluator",
    "auc",
    "gini_index",
    "logloss",
    "mae",
    "parse_metric",
    "ranking_metrics_from_hits",
    "rmse",
]
