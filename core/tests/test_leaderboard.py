"""The leaderboard chooses configurations on validation only."""

from recarena import leaderboard
from recarena.store import ResultsStore


def _run(store, rid, model, chash, seed, test, valid=None):
    store.record({"run_id": rid, "model": model, "dataset": "synthetic-2000", "protocol": "synthetic-rank",
                  "seed": seed, "status": "ok", "config": {}, "config_hash": chash, "run_hash": f"{chash}{seed}",
                  "fit_seconds": 1.0, "test_metrics": {"ndcg@10": test},
                  "valid_metrics": {"ndcg@10": valid} if valid is not None else {}})


def test_a_configuration_without_validation_is_never_ranked_above_a_validated_one(tmp_path):
    s = ResultsStore(tmp_path / "r.db")
    _run(s, "a", "ease", "h1", 0, test=0.30, valid=0.20)
    _run(s, "b", "peeker", "h2", 0, test=0.90)  # test metrics only: nothing to choose it by
    board = leaderboard.build(s, "synthetic-rank")
    assert [(r["model"], r["ranked"]) for r in board["rows"]] == [("ease", True), ("peeker", False)]
    text = leaderboard.render(board)
    assert "-  peeker (no validation: unranked)" in text and "1  ease" in text


def test_the_configuration_is_chosen_by_validation_not_test(tmp_path):
    s = ResultsStore(tmp_path / "r.db")
    _run(s, "a", "bpr", "good-valid", 0, test=0.20, valid=0.30)
    _run(s, "b", "bpr", "good-test", 0, test=0.40, valid=0.10)
    _run(s, "c", "bpr", "no-valid", 0, test=0.99)
    rows = leaderboard.build(s, "synthetic-rank")["rows"]
    assert rows[0]["config_hash"] == "good-valid" and rows[0]["ranked"]
    assert [r["config_hash"] for r in rows[1:]] == ["no-valid"]
