"""Metric names are case-insensitive, and each metric's direction is defined once."""

from recarena.eval.evaluator import metric_mode
from recarena.protocols import load_protocol


def test_select_and_metrics_are_read_case_insensitively(tmp_path):
    p = tmp_path / "upper.yaml"
    p.write_text("name: upper\ndataset: any\ntask: ranking\nsplit: {method: ratio_by_user, ratios: [0.8, 0.2]}\n"
                 "metrics: [NDCG@10, Recall@10]\nselect: NDCG@10\n")
    proto = load_protocol(str(p))
    assert proto["select"] == "ndcg@10" and proto["metrics"] == ["ndcg@10", "recall@10"]


def test_diversity_metrics_are_lower_is_better_for_everyone():
    assert [metric_mode(m) for m in ("gini@10", "avgpop@10", "rmse", "ndcg@10")] == ["min", "min", "min", "max"]
