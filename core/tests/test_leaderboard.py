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


QUIET = dict(progress=False, log=lambda *a, **k: None)


def test_runs_on_two_datasets_make_two_boards():
    from recarena import runner

    for ds in ("synthetic-2000", "synthetic-3000"):
        runner.train("pop", "synthetic-rank", dataset=ds, **QUIET)
    bs = leaderboard.boards(ResultsStore(), "synthetic-rank")
    assert [(b["dataset"], b["current"], len(b["rows"])) for b in bs] == [("synthetic-2000", True, 1), ("synthetic-3000", True, 1)]
    assert all(b["protocol"] == "synthetic-rank" and len(b["protocol_hash"]) == 16 for b in bs)
    import pytest

    from recarena.errors import RecArenaError

    with pytest.raises(RecArenaError, match="runs on several datasets"):
        leaderboard.build(ResultsStore(), "synthetic-rank")
    assert leaderboard.build(ResultsStore(), "synthetic-rank", dataset="synthetic-3000")["rows"][0]["model"] == "pop"


def test_a_run_under_edited_protocol_content_is_not_ranked_with_current_runs(tmp_path, monkeypatch):
    from recarena import runner
    from recarena.protocols import content_hash, load_protocol

    (tmp_path / "protocols").mkdir()
    proto = tmp_path / "protocols" / "edit-me.yaml"
    body = ("name: edit-me\nversion: 1\ndataset: synthetic-2000\ntask: ranking\nfilter: {implicit: true}\n"
            "split: {method: ratio_by_user, ratios: [0.8, 0.1, 0.1], seed: 1}\nmetrics: [ndcg@10]\nselect: ndcg@10\n")
    proto.write_text(body)
    monkeypatch.setenv("RECARENA_CONFIGS", str(tmp_path))
    old = runner.train("pop", "edit-me", **QUIET)
    h_old = load_protocol("edit-me")["_hash"]
    # notes and anchors do not change what is compared; the split does, with or without a version bump
    proto.write_text(body + "description: same comparison, new words\nanchors: []\n")
    assert load_protocol("edit-me")["_hash"] == h_old
    proto.write_text(body.replace("seed: 1", "seed: 2"))
    new = runner.train("pop", "edit-me", **QUIET)
    bs = leaderboard.boards(ResultsStore(), "edit-me")
    assert [(b["current"], b["rows"][0]["run_ids"]) for b in bs] == [(True, [new["run_id"]]), (False, [old["run_id"]])]
    assert bs[1]["protocol_hash"] == h_old != content_hash(load_protocol("edit-me"))
    assert "OTHER content of this protocol" in leaderboard.render(bs[1])


def test_a_board_shows_only_the_anchors_of_its_dataset():
    from recarena.protocols import load_protocol

    proto = {**load_protocol("synthetic-rank"), "anchors": [
        {"model": "A", "dataset": "synthetic-2000", "metrics": {"ndcg@10": 0.1}},
        {"model": "B", "dataset": "synthetic-3000", "metrics": {"ndcg@10": 0.2}},
        {"model": "C", "metrics": {"ndcg@10": 0.3}}]}
    board = leaderboard._board(proto, proto["_hash"], "synthetic-2000", [])
    assert [a["model"] for a in board["anchors"]] == ["A", "C"]
