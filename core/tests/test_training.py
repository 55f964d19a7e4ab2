"""The Lightning base: early stopping on the protocol metric, best-epoch restore, seeding,
logging of evaluation metrics (wandb offline), config layering through the runner."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.base import Monitor
from recarena.data.splits import ratio_by_user
from recarena.data.synthetic import synthetic
from recarena.errors import RecArenaError
from recarena.eval.evaluator import RatingEvaluator
from recarena.torch_model import TorchRecommender


class TinyMF(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True)

    def __init__(self, dim=4, lr=0.05, epochs=30, batch_size=256, optimizer="adam", weight_decay=0.0):
        self.dim, self.lr, self.epochs, self.batch_size = dim, lr, epochs, batch_size
        self.optimizer, self.weight_decay = optimizer, weight_decay

    def build_network(self, train):
        net = nn.Module()
        net.user_emb = nn.Embedding(train.n_users, self.dim)
        net.item_emb = nn.Embedding(train.n_items, self.dim)
        net.register_buffer("mu", torch.tensor(float(train.rating.mean())))
        return net

    def predict_pairs(self, net, u, i):
        return net.mu + (net.user_emb(u) * net.item_emb(i)).sum(-1)

    def loss(self, net, batch):
        return ((self.predict_pairs(net, batch["user"], batch["item"]) - batch["rating"]) ** 2).mean()


@pytest.fixture(scope="module")
def split():
    return ratio_by_user(synthetic(6000, n_users=300, n_items=300, seed=1), (0.8, 0.1, 0.1), seed=0)


QUIET = {"progress_bar": False, "logger": "none"}


def test_early_stopping_restores_best_epoch(split, tmp_path):
    ev = RatingEvaluator(split.valid)
    mon = Monitor("rmse", "min", ev.evaluate)
    # a large learning rate without regularization overfits fast: validation RMSE turns up
    m = TinyMF(dim=32, lr=0.05, epochs=60).fit(split.train, split.valid, monitor=mon, trainer={**QUIET, "patience": 3})
    hist = [h["rmse"] for h in mon.history]
    assert m.epochs_trained_ < 60, "early stopping never triggered"
    best = int(np.argmin(hist))
    assert m.best_epoch_ == best
    assert ev.evaluate(m)["rmse"] == pytest.approx(hist[best], abs=1e-5), "the best epoch's weights were not restored"
    # one training-pass time per epoch run, validation not included in it
    assert len(m.epoch_seconds_) == m.epochs_trained_ == len(hist) and all(t > 0 for t in m.epoch_seconds_)


def test_same_seed_same_model_different_seed_different_model(split):
    a = TinyMF(epochs=3).fit(split.train, seed=1, trainer=QUIET)
    b = TinyMF(epochs=3).fit(split.train, seed=1, trainer=QUIET)
    c = TinyMF(epochs=3).fit(split.train, seed=2, trainer=QUIET)
    pa, pb, pc = (m.predict(split.test.user, split.test.item) for m in (a, b, c))
    assert np.array_equal(pa, pb) and not np.allclose(pa, pc)


def test_wandb_offline_logs_eval_metrics(split, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    mon = Monitor("rmse", "min", RatingEvaluator(split.valid).evaluate)
    m = TinyMF(epochs=2).fit(split.train, split.valid, monitor=mon,
                             trainer={"progress_bar": False, "logger": "wandb", "run_dir": str(tmp_path / "run")})
    m.log_final({"rmse": 1.0})
    # wandb's service process writes the run file; on a loaded machine (a CI run beside a
    # training) its last records land after finish() returns: wait for them, a while
    deadline = time.monotonic() + 60
    while True:
        runs = list(Path(tmp_path).rglob("offline-run-*"))
        history = b"".join(p.read_bytes() for r in runs for p in r.rglob("*.wandb"))
        if (b"val/rmse" in history and b"test/rmse" in history) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert runs, "no offline wandb run written"
    assert b"val/rmse" in history and b"test/rmse" in history


def test_unknown_trainer_setting_is_named(split):
    from recarena.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="acelerator"):
        TinyMF(epochs=1).fit(split.train, trainer={"acelerator": "cpu"})


def test_index_batches_shard_across_ranks_and_reshuffle(monkeypatch):
    from recarena.torch_model import IndexBatches

    t = {"x": torch.arange(103)}
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
        ds = IndexBatches(t, 10, seed=0)
        epoch0 = [b["x"] for b in ds]
        assert len(epoch0) == len(ds) == 6, "11 batches over 2 ranks: 6 steps each (one padded)"
        seen.append(torch.cat(epoch0))
        epoch1 = torch.cat([b["x"] for b in ds])
        assert not torch.equal(epoch1, seen[-1][: len(epoch1)])  # a new order each epoch
    both = torch.cat(seen)
    assert set(both.tolist()) == set(range(103)), "the ranks together must cover every row"


def test_raw_ids_both_ways_survive_save_and_load(tmp_path):
    import pandas as pd

    from recarena.base import Recommender
    from recarena.data.interactions import Interactions
    from recarena.errors import RecArenaError

    df = pd.DataFrame({"user": ["ann", "bob", "ann", "cy"], "item": [30, 10, 20, 30], "rating": [5.0, 3.0, 4.0, 2.0]})
    data = Interactions.from_frame(df, timestamp=None)
    data.rating_scale = (1.0, 5.0)
    m = TinyMF(epochs=2).fit(data, trainer=QUIET)
    loaded = Recommender.load(m.save(tmp_path / "m.pt"))
    pred = loaded.predict_raw(["bob", "cy"], [30, 10])
    want = m.predict(data.users.to_internal(["bob", "cy"]), data.items.to_internal([30, 10]))
    np.testing.assert_array_equal(pred, want)
    with pytest.raises(RecArenaError, match="Unknown raw id"):
        loaded.predict_raw(["dan"], [30])


def test_ema_setting_fits_the_exponential_average_of_the_weights(split):
    train = split.train
    # full batch: each epoch is one deterministic step, so runs of 1, 2 and 3 epochs with one seed
    # walk the same trajectory w1, w2, w3
    steps = [TinyMF(epochs=n, batch_size=10**6).fit(train, seed=3, trainer=QUIET).network_.user_emb.weight.detach()
             for n in (1, 2, 3)]
    d = 0.6
    ema = TinyMF(epochs=3, batch_size=10**6).fit(train, seed=3, trainer={**QUIET, "ema": d})
    # torch's AveragedModel starts from the first step's weights, then avg = d avg + (1 - d) w
    want = d * (d * steps[0] + (1 - d) * steps[1]) + (1 - d) * steps[2]
    torch.testing.assert_close(ema.network_.user_emb.weight.detach(), want)
    with pytest.raises(Exception, match="parameter 'ema' of the trainer settings: 1.5"):
        TinyMF(epochs=1).fit(train, seed=0, trainer={**QUIET, "ema": 1.5})


class LinearLoss(TinyMF):
    """A loss whose gradient is the same at every point: SGD's steps are -lr x that gradient."""

    def loss(self, net, batch):
        return net.user_emb.weight.sum() + 0.0 * batch["rating"].sum()


def test_lr_halflife_halves_the_rate_every_that_many_epochs(split):
    # full batch, SGD, constant gradient 1: after n epochs w_n = w_0 - sum of the n epochs' rates
    def user_weights(epochs, **trainer):
        net = LinearLoss(lr=0.1, epochs=epochs, batch_size=10**6, optimizer="sgd").fit(
            split.train, seed=3, trainer={**QUIET, **trainer}).network_
        return net.user_emb.weight.detach()

    w0 = LinearLoss(lr=0.0, epochs=1, batch_size=10**6, optimizer="sgd").fit(
        split.train, seed=3, trainer=QUIET).network_.user_emb.weight.detach()
    torch.testing.assert_close(user_weights(4), w0 - 0.4)
    # halflife 2 epochs: rates .1, .1 / sqrt 2, .05, .05 / sqrt 2
    want = w0 - 0.1 * sum(0.5 ** (e / 2) for e in range(4))
    torch.testing.assert_close(user_weights(4, lr_halflife=2.0), want)
    with pytest.raises(Exception, match="parameter 'lr_halflife' of the trainer settings"):
        user_weights(1, lr_halflife=-1.0)


def test_gradient_clip_scales_the_whole_gradient_down_to_the_given_norm(split):
    # full-batch SGD, one step: w1 = w0 - lr g; clipped, w1 = w0 - lr g min(1, c / |g|), with |g|
    # the norm of every parameter's gradient together
    def weights(lr, **trainer):
        net = TinyMF(dim=8, lr=lr, epochs=1, batch_size=10**6, optimizer="sgd").fit(
            split.train, seed=3, trainer={**QUIET, **trainer}).network_
        return torch.cat([net.user_emb.weight.detach().ravel(), net.item_emb.weight.detach().ravel()])

    w0, w1 = weights(0.0), weights(0.5)
    norm = float((w1 - w0).norm()) / 0.5
    c = norm / 4
    torch.testing.assert_close(weights(0.5, gradient_clip=c) - w0, (w1 - w0) * c / norm)
    torch.testing.assert_close(weights(0.5, gradient_clip=2 * norm), w1)  # under the limit: untouched
    with pytest.raises(Exception, match="gradient_clip"):
        TinyMF(epochs=1).fit(split.train, seed=0, trainer={**QUIET, "gradient_clip": -1.0})

    class SparseMF(TinyMF):
        def build_network(self, train):
            net = super().build_network(train)
            net.item_emb = nn.Embedding(train.n_items, self.dim, sparse=True)
            return net

    # torch cannot take the norm of sparse gradients: refused by name before the first step
    with pytest.raises(RecArenaError, match="'gradient_clip' needs dense gradients.*item_emb"):
        SparseMF(epochs=1).fit(split.train, seed=0, trainer={**QUIET, "gradient_clip": 1.0})


def test_ema_with_early_stopping_keeps_the_averaged_weights_validation_chose(split):
    # validation scores the averaged weights; the model restored from the best checkpoint must
    # be those same weights, not the raw ones of that epoch (a weights-only checkpoint skips
    # the averaging callback's hook and holds the raw ones)
    ev = RatingEvaluator(split.valid)
    mon = Monitor("rmse", "min", ev.evaluate)
    m = TinyMF(dim=32, lr=0.05, epochs=60).fit(split.train, split.valid, monitor=mon, trainer={**QUIET, "patience": 3, "ema": 0.9})
    hist = [h["rmse"] for h in mon.history]
    assert m.epochs_trained_ < 60, "early stopping never triggered"
    assert m.best_epoch_ == int(np.argmin(hist)) < len(hist) - 1
    assert ev.evaluate(m)["rmse"] == pytest.approx(min(hist), abs=1e-6)


def test_ema_keeps_the_live_buffers_at_validation_in_the_best_checkpoint_and_after_the_fit(split):
    # buffers are not averaged, but Lightning's swap, final copy and checkpoint move them too: a
    # counter of training steps must read the live count everywhere, not the one from the start
    # (torch's AveragedModel with use_buffers=False copies the live buffers at each update)
    class Counting(TinyMF):
        def build_network(self, train):
            net = super().build_network(train)
            net.register_buffer("steps", torch.zeros((), dtype=torch.int64))
            return net

        def loss(self, net, batch):
            net.steps += 1
            return super().loss(net, batch)

    per_epoch = -(-len(split.train) // 256)
    plain = Counting(epochs=3).fit(split.train, seed=0, trainer={**QUIET, "ema": 0.9})
    assert int(plain.network_.steps) == 3 * per_epoch
    seen = []
    ev = RatingEvaluator(split.valid)

    def evaluate(model):
        seen.append(int(model.network_.steps))
        return ev.evaluate(model)

    m = Counting(dim=32, lr=0.05, epochs=60).fit(split.train, split.valid, monitor=Monitor("rmse", "min", evaluate),
                                                 trainer={**QUIET, "patience": 3, "ema": 0.9})
    assert seen == [(e + 1) * per_epoch for e in range(len(seen))]
    assert int(m.network_.steps) == (m.best_epoch_ + 1) * per_epoch  # the best epoch's, restored


def test_weight_averaging_copies_the_network_not_the_recommender(split):
    """Lightning's EMA deep-copies the LightningModule: the recommender, its evaluator and the
    monitor must stay shared, only the network is copied."""
    import copy

    from recarena.torch_model import _Module

    owner = TinyMF(epochs=1)
    net = owner.build_network(split.train)
    mon = Monitor("rmse", "min", RatingEvaluator(split.valid).evaluate)
    module = _Module(owner, net, mon)
    twin = copy.deepcopy(module)
    assert twin.shared.owner is owner and twin.shared.monitor is mon
    assert twin.network is not net and torch.equal(twin.network.user_emb.weight, net.user_emb.weight)


def test_missing_batch_field_names_the_declaration(split):
    from recarena.data.filtering import to_implicit

    class NoNegatives(TinyMF):
        def build_network(self, train):
            net = nn.Module()
            net.w = nn.Parameter(torch.zeros(1))
            return net

        def loss(self, net, batch):
            return batch["neg"].float().sum() * net.w.sum()

    with pytest.raises(KeyError, match="declares `negatives = True`"):
        NoNegatives(epochs=1).fit(to_implicit(split.train), trainer=QUIET)


def test_sparse_adam_needs_sparse_embeddings_and_says_so_before_training(split):
    """TinyMF's embeddings are dense: sparse_adam is refused by name before the first step."""
    with pytest.raises(RecArenaError, match=r"sparse_adam.*dense ones: user_emb\.weight, item_emb\.weight"):
        TinyMF(optimizer="sparse_adam", epochs=1).fit(split.train, trainer=QUIET)


def test_loading_a_model_whose_plugin_is_not_installed_names_it(tmp_path):
    """A run of a plugin installed elsewhere (a recbole/ model, in .venv-recbole) is refused by
    name, not with a bare ModuleNotFoundError."""
    from recarena.base import Recommender

    blob = {"format": 1, "class": "recarena_not_here.zoo:BPR", "params": {}, "state": {}}
    torch.save(blob, tmp_path / "m.pt")
    with pytest.raises(RecArenaError, match=r"recarena_not_here\.zoo:BPR.*'recarena_not_here' is not installed"):
        Recommender.load(tmp_path / "m.pt")
