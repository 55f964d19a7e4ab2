import numpy as np
import torch

from recarena import runner
from recarena.base import Recommender
from recarena.data.splits import global_random
from recarena.data.synthetic import synthetic
from recarena.testing import parametrize_with_checks
from recarena_recommender_net import RecommenderNet, _DotStage

QUIET = {"logger": "none", "progress_bar": False}


@parametrize_with_checks([
    RecommenderNet(dim=8, hidden=(16,), epochs=4),
    RecommenderNet(dim=8, hidden=(16,), epochs=4, bias=True),
    RecommenderNet(dim=8, hidden=(16,), epochs=3, bias=True, pretrain_epochs=3),
])
def test_conformance(model, check):
    check(model)


def _data():
    s = global_random(synthetic(4_000, seed=3), [0.9, 0.1], seed=0)
    return s.train, s.test


def test_pretraining_starts_the_mlp_from_the_dot_stage_embeddings():
    train, valid = _data()
    # lr 0: the second stage cannot move anything, so what it holds is what it started from
    net = RecommenderNet(dim=8, hidden=(16,), epochs=1, lr=0.0, bias=True, pretrain_epochs=4, batch_size=512)
    net.fit(train, valid, seed=5, trainer=QUIET)
    stage = _DotStage(dim=8, lr=net.pretrain_lr, reg=net.pretrain_reg, epochs=4, batch_size=512)
    stage.fit(train, valid, seed=5, trainer=QUIET)
    for name in ("user_emb", "item_emb", "user_bias", "item_bias"):
        torch.testing.assert_close(getattr(net.network_, name).weight, getattr(stage.network_, name).weight)
    # the stage's own fit is a biased MF worth its name: better than the training mean
    pred = stage.predict(valid.user, valid.item)
    assert np.sqrt(np.mean((pred - valid.rating) ** 2)) < np.sqrt(np.mean((train.rating.mean() - valid.rating) ** 2))


def test_refit_repeats_both_stages_early_stopping(tmp_path, recarena_home):
    proto = tmp_path / "synthetic-refit.yaml"
    proto.write_text(
        "name: synthetic-refit\nversion: 1\ndataset: synthetic-3000\ntask: rating\n"
        "split: {method: global_random, ratios: [0.8, 0.2], valid_ratio: 0.1, seed: 1}\n"
        "refit: true\nmetrics: [rmse]\nselect: rmse\n"
    )
    # large steps: both stages overfit 3,000 rows within a few epochs
    sets = ["dim=8", "hidden=[16]", "epochs=30", "lr=0.01", "bias=true", "pretrain_epochs=30", "pretrain_lr=0.02",
            "pretrain_reg=0.0", "trainer.logger=none", "trainer.patience=2"]
    s = runner.train("recommender-net", str(proto), sets=sets, progress=False, log=lambda *a, **k: None)
    refit = Recommender.load(s["artifact"])
    # the refit ran each stage for the epochs its early stopping chose, not the 30 asked for
    assert refit.epochs == s["best_epoch"] + 1 < 30
    assert 1 <= refit.pretrain_epochs < 30
