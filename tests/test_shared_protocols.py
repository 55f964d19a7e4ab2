"""The named protocols on the real files in ../shared/data (skipped when absent)."""

from pathlib import Path

import pytest

from recarena import runner
from recarena.store import ResultsStore

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = [pytest.mark.data, pytest.mark.slow, pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")]
QUIET = dict(progress=False, log=lambda *a, **k: None)


def test_recbole_ml1m_pop_counts_and_ndcg():
    s = runner.train("pop", "recbole-ml1m", data_dir=str(SHARED), **QUIET)
    assert (s["data"]["interactions"], s["data"]["users"], s["data"]["items"]) == (834_449, 6_033, 3_123)
    assert (s["data"]["train"], s["data"]["valid"], s["data"]["test"]) == (673_059, 80_695, 80_695)
    assert abs(s["metrics"]["ndcg@10"] - 0.118) <= 0.01


def test_recbole_ml1m_is_recboles_own_split_ease_reproduces_the_published_row():
    # RecBole's published EASE row (lambda 1000): same split, same model -> same figures
    s = runner.train("ease", "recbole-ml1m", data_dir=str(SHARED), sets=["trainer.logger=none"], **QUIET)
    published = {"recall@10": 0.2139, "mrr@10": 0.4808, "ndcg@10": 0.2865, "hit@10": 0.7837, "precision@10": 0.2082}
    for k, v in published.items():
        assert abs(s["metrics"][k] - v) < 6e-5, (k, s["metrics"][k], v)


def test_ncf_loo_uses_the_published_negatives():
    with pytest.warns(UserWarning, match="Sampled evaluation"):
        s = runner.train("pop", "ncf-loo", data_dir=str(SHARED), **QUIET)
    assert s["data"]["test"] == 6_040
    # the NCF paper's ItemPop on this protocol: HR@10 about .45
    assert 0.43 < s["metrics"]["hit@10"] < 0.47


def test_ml100k_u1_biased_mf_quick_config_records_a_run():
    s = runner.train("biased-mf", "ml100k-u1", data_dir=str(SHARED),
                     sets=["solver=gradient", "epochs=6", "batch_size=1024", "lr=0.005", "trainer.logger=none"], **QUIET)
    assert s["data"]["test"] == 20_000 and s["metrics"]["rmse"] < 0.96
    (row,) = ResultsStore().runs(protocol="ml100k-u1")
    assert row["config"]["params"]["epochs"] == 6 and row["fit_seconds"] > 0 and row["peak_memory_mb"] is not None


def test_ml1m_strong_holds_out_500_and_500_users_and_ease_folds_them_in():
    from recarena.protocols import load_protocol, prepare

    p = prepare(load_protocol("ml1m-strong"), data_dir=str(SHARED))
    s = p.split
    valid_users, test_users = set(s.valid.user.tolist()), set(s.test.user.tolist())
    assert len(valid_users) == len(test_users) == 500 and not (valid_users | test_users) & set(s.train.user.tolist())
    fold = s.extra["test_fold_in"]
    assert set(fold.user.tolist()) == test_users and set(fold.item.tolist()) <= set(s.train.item.tolist())
    r = runner.train("ease", "ml1m-strong", data_dir=str(SHARED), sets=["trainer.logger=none"], **QUIET)
    # EASE from the fold-in items, against MetaRec's Mult-DAE .4681 (about +-.01 of split noise)
    assert r["data"]["test"] == len(s.test) and r["metrics"]["ndcg@100"] > 0.45


def test_ml1m_cold_items_holds_out_whole_items_and_mean_answers_them():
    from recarena import protocols

    prep = protocols.prepare(protocols.load_protocol("ml1m-cold-items"), data_dir=str(SHARED))
    s = prep.split
    trained = set(s.train.item.tolist())
    n_items = len(set(prep.data.item.tolist()))
    for part in (s.valid, s.test):
        items = set(part.item.tolist())
        assert not items & trained and len(items) == round(n_items * 0.1)
    # the baseline on cold items knows only the user: mu + b_u
    r = runner.train("mean", "ml1m-cold-items", data_dir=str(SHARED), **QUIET)
    assert 0.95 < r["metrics"]["rmse"] < 1.05


@pytest.mark.parametrize("name, dataset_rows", [("ml100k-temporal", 100_000), ("mlsmall-temporal", 100_004)])
def test_temporal_protocols_hold_out_each_users_latest_ratings(name, dataset_rows):
    import numpy as np

    from recarena import protocols

    prep = protocols.prepare(protocols.load_protocol(name), data_dir=str(SHARED))
    s = prep.split
    assert len(prep.data) == dataset_rows
    last_train = np.full(prep.data.n_users, np.iinfo(np.int64).min)
    np.maximum.at(last_train, s.train.user, s.train.timestamp)
    first_valid = np.full(prep.data.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first_valid, s.valid.user, s.valid.timestamp)
    assert (s.valid.timestamp >= last_train[s.valid.user]).all()
    assert (s.test.timestamp >= first_valid[s.test.user]).all()
    n = np.bincount(prep.data.user)
    assert (np.bincount(s.test.user, minlength=len(n)) == n // 10).all()


def test_s3rec_loo_is_s3recs_protocol_their_poprec_row_reproduced():
    """S3-Rec's PopRec row on Beauty (NDCG@10 .0068, HR@10 .0152) is popularity counted over all
    interactions, test items included; scored by our split, masking and metrics it comes out
    the same, which checks that the protocol is theirs. Our pop counts training rows only."""
    from recarena.protocols import load_protocol, prepare
    from recarena_pop import Pop

    p = prepare(load_protocol("s3rec-loo"), "s3rec-beauty", data_dir=str(SHARED))
    s = p.split
    assert (len(p.data), p.data.n_users, p.data.n_items) == (198_502, 22_363, 12_101)
    assert len(s.valid) == len(s.test) == 22_363
    leaky = Pop().fit(p.data)  # every interaction, as their PopRec
    m = p.evaluator("test").evaluate(leaky)
    assert abs(m["ndcg@10"] - 0.0068) < 5e-5 and abs(m["hit@10"] - 0.0152) < 5e-5, m
    ours = runner.train("pop", "s3rec-loo", "s3rec-beauty", data_dir=str(SHARED), **QUIET)["metrics"]
    assert abs(ours["ndcg@10"] - 0.0055) < 5e-5 and abs(ours["hit@10"] - 0.0115) < 5e-5, ours
    # the validation item is context at test time: the test evaluator hands each user's whole
    # sequence before the test item, in file order
    ctx = p.evaluator("test").context
    first = [int(x) for x in (SHARED / "s3rec" / "Beauty.txt").read_text().splitlines()[0].split()[1:]]
    row = ctx[1][ctx[0][0]:ctx[0][1]]
    assert p.data.items.to_raw(row).tolist() == first[:-1]
