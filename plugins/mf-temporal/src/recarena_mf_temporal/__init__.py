"""Biased MF with temporal dynamics (Koren, "Collaborative Filtering with Temporal Dynamics",
KDD 2009): the timeSVD model's time-dependent biases and, optionally, drifting user factors.

    r(u, i, t) = mu + b_u + a_u dev_u(t) + b_{u,day(t)} + b_i + b_{i,bin(t)}
                 + q_i . (p_u + a^p_u dev_u(t))

``dev_u(t) = sign(t - t_u) |t - t_u|^beta`` (t in days as Koren's, or a finer unit:
``drift_seconds``), ``t_u`` the mean time of u's training ratings, t held to the user's training
span (a drift is not extrapolated past it); ``b_{u,day}`` a user's offset on one day (a mood, or someone else at the keyboard),
learned for the (user, day) pairs of training and 0 on any other day; ``b_{i,bin}`` an item's
offset in one of ``n_bins`` equal slices of the training period (a film's popularity moves).

A rating's time comes from the data (the evaluator passes each target row's timestamp);
without one (``predict(users, items)``, the served predict graph) the model answers as of the
user's last training day. With ``temporal=False`` every time term is absent and the model is
``biased-mf``: the same parameters drawn first and in the same order, the same loss (a test
checks the predictions)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.errors import RecArenaError
from recarena.nn import BiasedDot
from recarena.params import Interval
from recarena.torch_model import Stage, TorchRecommender


class Clock:
    """Where training happened in time. For the drift, on its own clock (``drift_s`` seconds a
    tick): each user's mean tick ``t_u`` (float64 [n_users]) and first and last tick (int64
    [n_users]); each user's last training timestamp; in days: the first day and the bin width of
    the training period, and the sorted (user, day) keys that have a day offset."""

    def __init__(self, user: np.ndarray, timestamp: np.ndarray, n_users: int, n_bins: int, beta: float, day_s: int,
                 drift_s: int):
        self.day_s, self.drift_s, self.beta, self.n_bins = int(day_s), int(drift_s), float(beta), int(n_bins)
        days = timestamp // self.day_s
        ticks = timestamp // self.drift_s  # the drift's clock
        self.first = int(days.min())
        span = int(days.max()) - self.first + 1
        self.bin_days = max(1, -(-span // self.n_bins))  # ceil
        cnt = np.bincount(user, minlength=n_users)
        self.mean_tick = np.bincount(user, ticks.astype(np.float64), minlength=n_users) / np.maximum(cnt, 1)
        lo, hi = np.full(n_users, np.iinfo(np.int64).max), np.full(n_users, np.iinfo(np.int64).min)
        np.minimum.at(lo, user, ticks)
        np.maximum.at(hi, user, ticks)
        lo[cnt == 0] = hi[cnt == 0] = ticks.min()  # a user without training rows: no drift
        self.first_tick, self.last_tick = lo, hi
        self.last_time = np.full(n_users, int(timestamp.min()), np.int64)  # each user's last training timestamp
        np.maximum.at(self.last_time, user, timestamp)
        self.width = span + 1  # keys: user * width + (day - first), day inside the training period
        self.keys = np.unique(user.astype(np.int64) * self.width + (days - self.first))
        self.n_users = n_users

    def mean_day_offset(self, day_bias: np.ndarray) -> np.ndarray:
        """Each user's mean over their training days of ``day_bias`` (float32 [n_slots + 1], row 0
        unused) -> float32 [n_users] (0 for a user without training rows)."""
        owner = self.keys // self.width
        total = np.bincount(owner, day_bias[1:].astype(np.float64), minlength=self.n_users)
        return (total / np.maximum(np.bincount(owner, minlength=self.n_users), 1)).astype(np.float32)

    def features(self, user: np.ndarray, timestamp: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For pairs' users (int64 [N]) at ``timestamp`` (int64 [N], or None: each user's last
        training timestamp): dev_u(t) float32 [N], day slot int64 [N] (0: no offset, else 1 + index
        of the (user, day) key), time bin int64 [N] (clamped to the training period's bins)."""
        ts = self.last_time[user] if timestamp is None else np.asarray(timestamp, np.int64)
        days = ts // self.day_s
        # the drift holds its value outside the user's training span: a power of the distance
        # from the mean extrapolates without bound, and the ratings asked for come later
        ticks = np.clip(ts // self.drift_s, self.first_tick[user], self.last_tick[user])
        delta = ticks - self.mean_tick[user]
        dev = (np.sign(delta) * np.abs(delta) ** self.beta).astype(np.float32)
        rel = days - self.first
        key = user.astype(np.int64) * self.width + rel
        pos = np.searchsorted(self.keys, key)
        hit = (rel >= 0) & (rel < self.width) & (pos < len(self.keys))
        hit &= self.keys[np.minimum(pos, len(self.keys) - 1)] == key
        slot = np.where(hit, pos + 1, 0).astype(np.int64)
        bins = np.clip(rel // self.bin_days, 0, self.n_bins - 1).astype(np.int64)
        return dev, slot, bins


class TemporalNet(nn.Module):
    """``base``: biased-mf's :class:`~recarena.nn.BiasedDot`, built first. With ``temporal``:
    ``drift`` [n_users, 1] (a_u), ``day_bias`` [n_slots + 1, 1] (row 0, no offset, stays 0),
    ``bin_bias`` [n_items * n_bins, 1], and with ``drift_factors`` ``factor_drift`` [n_users, dim]
    (a^p_u); all start at 0. Buffers ``now_dev`` float32 / ``now_slot`` int64 [n_users] and
    ``now_bin``: each user's time features on their last training day (time-free prediction)."""

    def __init__(self, base: BiasedDot, n_slots: int, n_bins: int, temporal: bool, drift_factors: bool,
                 now: tuple[np.ndarray, np.ndarray, np.ndarray]):
        super().__init__()
        self.base, self.temporal, self.n_bins = base, bool(temporal), int(n_bins)
        n_users, n_items, dim = base.user_emb.num_embeddings, base.item_emb.num_embeddings, base.user_emb.embedding_dim
        self.drift_factors = bool(drift_factors) and self.temporal
        if self.temporal:
            self.drift = nn.Embedding(n_users, 1)
            self.day_bias = nn.Embedding(n_slots + 1, 1, padding_idx=0)
            self.bin_bias = nn.Embedding(n_items * self.n_bins, 1)
            tables = [self.drift, self.day_bias, self.bin_bias]
            if self.drift_factors:
                self.factor_drift = nn.Embedding(n_users, dim)
                tables.append(self.factor_drift)
            for t in tables:
                nn.init.zeros_(t.weight)
        self.register_buffer("now_dev", torch.from_numpy(now[0]))
        self.register_buffer("now_slot", torch.from_numpy(now[1]))
        self.register_buffer("now_bin", torch.from_numpy(now[2]))

    def terms(self, u, i, dev, slot, bins):
        """The prediction and the parameters a batch uses (for their L2): float32 [B], then a
        list of (weight name, tensor) pairs."""
        b = self.base
        pu, qi = b.user_emb(u), b.item_emb(i)
        bu, bi = b.user_bias(u).squeeze(-1), b.item_bias(i).squeeze(-1)
        used = [("reg", pu), ("reg", qi), ("bias_reg", bu), ("bias_reg", bi)]
        out = b.mu + bu + bi
        if self.temporal:
            a = self.drift(u).squeeze(-1)
            d = self.day_bias(slot).squeeze(-1)
            ib = self.bin_bias(i * self.n_bins + bins).squeeze(-1)
            out = out + a * dev + d + ib
            used += [("time_reg", a), ("time_reg", d), ("time_reg", ib)]
            if self.drift_factors:
                ap = self.factor_drift(u)
                pu = pu + ap * dev.unsqueeze(-1)
                used.append(("time_reg", ap))
        return out + (pu * qi).sum(-1), used

    def forward(self, u, i, dev, slot, bins):
        """users, items int64 [B], dev float32 [B], day slot and time bin int64 [B] -> float32 [B]."""
        return self.terms(u, i, dev, slot, bins)[0]


class MFTemporal(TorchRecommender):
    """Defaults are biased-mf's (dim 64, lr 5e-4, batch 256, reg .1, bias_reg .01) and
    Koren's (beta .4, 30 item bins).

    ``temporal``: False leaves every time term out (biased-mf); ``drift_factors``: a user's
    factors drift too (a^p_u dev_u(t)); ``time_reg``: L2 per rating on the time terms;
    ``day_seconds``: the length of a day in the data's time unit; ``drift_seconds``: the drift's
    time unit (a day by default; ML-100K users rate in sessions, and a drift within one shows
    only in hours or minutes); ``static_epochs``: first fit the model without its time terms
    (biased-mf, early-stopped on its own), then start the temporal model from it (0: no such
    stage). The time terms fit the validation rows within a few epochs (most of them fall on a
    day the user rated on in training), and early stopping then ends the joint fit while the
    factors are still undertrained: the stage gives them their own selection first."""

    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True, onnx=True, timestamps=True)
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)], "bias_reg": [Interval(float, 0, None)],
        "time_reg": [Interval(float, 0, None)], "init_std": [Interval(float, 0, None)],
        "n_bins": [Interval(int, 1, None)], "beta": [Interval(float, 0, None)], "temporal": [bool],
        "drift_factors": [bool], "day_seconds": [Interval(int, 1, None)], "drift_seconds": [Interval(int, 1, None)],
        "static_epochs": [Interval(int, 0, None)],
    }

    def __init__(
        self,
        dim: int = 64,
        lr: float = 0.0005,
        reg: float = 0.1,
        bias_reg: float = 0.01,
        time_reg: float = 0.01,
        epochs: int = 200,
        batch_size: int = 256,
        init_std: float = 0.01,
        n_bins: int = 30,
        beta: float = 0.4,
        temporal: bool = True,
        drift_factors: bool = False,
        day_seconds: int = 86400,
        drift_seconds: int = 86400,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        static_epochs: int = 0,
    ):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.bias_reg = bias_reg
        self.time_reg = time_reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.n_bins = n_bins
        self.beta = beta
        self.temporal = temporal
        self.drift_factors = drift_factors
        self.day_seconds = day_seconds
        self.drift_seconds = drift_seconds
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.static_epochs = static_epochs

    def stages(self):
        if not self.temporal:
            return []
        return [Stage("static", "static_epochs", lambda m: type(m)(**{**m.get_params(), "temporal": False, "static_epochs": 0}))]

    def init_from_stages(self, net, fitted):
        if "static" in fitted:
            with torch.no_grad():
                net.base.load_state_dict(fitted["static"].base.state_dict())

    def build_network(self, train):
        if train.rating is None:
            raise RecArenaError("mf-temporal is a rating model: it needs explicit ratings.")
        if train.timestamp is None:
            raise RecArenaError(f"mf-temporal needs timestamps, and {train.name} has none (use a protocol on data with "
                                "timestamps, such as ml100k-temporal, or temporal=False).")
        base = BiasedDot(train.n_users, train.n_items, int(self.dim), float(train.rating.mean()),
                         float(self.init_std)).zero_unseen(train.user, train.item)
        self.clock_ = Clock(train.user, train.timestamp, train.n_users, int(self.n_bins), float(self.beta),
                            int(self.day_seconds), int(self.drift_seconds))
        now = self.clock_.features(np.arange(train.n_users), None)
        return TemporalNet(base, len(self.clock_.keys), int(self.n_bins), bool(self.temporal), bool(self.drift_factors), now)

    def training_tensors(self, train, network):
        t = super().training_tensors(train, network)
        dev, slot, bins = self.clock_.features(train.user, train.timestamp)
        return {**t, "dev": torch.from_numpy(dev), "slot": torch.from_numpy(slot), "bin": torch.from_numpy(bins)}

    def loss(self, net, batch):
        pred, used = net.terms(batch["user"], batch["item"], batch["dev"], batch["slot"], batch["bin"])
        (_, pu), (_, qi), (_, bu), (_, bi), *time_terms = used
        # per rating, biased-mf's penalty term for term (so temporal=False is biased-mf exactly),
        # then each time term's square (a factor drift's squared norm)
        penalty = self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1)) + self.bias_reg * (bu**2 + bi**2)
        for _, p in time_terms:
            penalty = penalty + self.time_reg * (p.pow(2).sum(-1) if p.dim() == 2 else p.pow(2))
        return ((pred - batch["rating"]) ** 2 + penalty).mean()

    def predict_pairs(self, net, users, items):
        """As of each user's last training day (the time-free answer and the served graph)."""
        return net(users, items, net.now_dev[users], net.now_slot[users], net.now_bin[users])

    def _predict_at(self, users, items, timestamps):
        u = users.cpu().numpy()
        dev, slot, bins = self.clock_.features(u, timestamps.cpu().numpy())
        d = self.device
        out = self.network_(users, items, torch.from_numpy(dev).to(d), torch.from_numpy(slot).to(d), torch.from_numpy(bins).to(d))
        if self.network_.temporal and (slot == 0).any():
            # a day the user has no training rows on gets their mean day offset, not none: with
            # the L2 split between b_u and the offsets, part of a user's lasting bias sits in the
            # offsets of the days they rated on (on ml100k-temporal's validation rows, leaving the
            # offset out costs .014 RMSE and the mean gives back all but .002)
            mean = self.clock_.mean_day_offset(self.network_.day_bias.weight.detach().cpu().numpy()[:, 0])
            out = out + torch.from_numpy(np.where(slot == 0, mean[u], 0.0).astype(np.float32)).to(d)
        return out

    def _embeddings(self):
        b = self.network_.base
        return {"user": b.user_emb.weight.detach().cpu().numpy(), "item": b.item_emb.weight.detach().cpu().numpy()}
