"""The rating baselines every rating leaderboard needs beneath its models (the role ``pop``
plays on ranking ones): what a rating is without learning anything about who rates what.

- ``mode='global'``: the training mean, for every pair.
- ``mode='baseline'``: Koren's baseline predictor (Koren 2010, eq. 2-3): ``mu + b_u + b_i``
  with damped means, ``b_i = sum_u (r_ui - mu) / (damping + n_i)`` and then
  ``b_u = sum_i (r_ui - mu - b_i) / (damping + n_u)``; a user or item unseen in training
  gets 0."""

from __future__ import annotations

import numpy as np
import torch

from recarena import Capabilities, Recommender, Task
from recarena.params import Interval, Options


class Mean(Recommender):
    """``damping``: how many ratings' worth of pull towards the mean a user's or item's offset gets."""

    capabilities = Capabilities(tasks={Task.RATING}, onnx=True)
    _parameter_constraints = {"mode": [Options("global", "baseline")], "damping": [Interval(float, 0, None)]}

    def __init__(self, mode: str = "baseline", damping: float = 25.0):
        self.mode = mode
        self.damping = damping

    def _fit(self, train, valid, monitor):
        if train.rating is None:
            raise ValueError("mean predicts ratings: it needs explicit ratings in the training data.")
        r = train.rating.astype(np.float64)
        mu = float(r.mean())
        bu = np.zeros(self.n_users_)
        bi = np.zeros(self.n_items_)
        if self.mode == "baseline":
            lam = float(self.damping)
            bi = np.bincount(train.item, r - mu, self.n_items_) / (lam + np.bincount(train.item, minlength=self.n_items_))
            bu = np.bincount(train.user, r - mu - bi[train.item], self.n_users_) / (
                lam + np.bincount(train.user, minlength=self.n_users_))
        self.mu_ = torch.tensor(mu, dtype=torch.float32)
        self.user_offset_ = torch.from_numpy(bu.astype(np.float32))  # [n_users]
        self.item_offset_ = torch.from_numpy(bi.astype(np.float32))  # [n_items]

    def _predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users, items int64 [N] -> float32 [N]."""
        return self.mu_ + self.user_offset_[users] + self.item_offset_[items]

    def _export_onnx(self, path, k):
        from recarena import onnx_export as ox

        holder = torch.nn.Module()
        holder.register_buffer("mu", self.mu_.clone())
        holder.register_buffer("bu", self.user_offset_.clone())
        holder.register_buffer("bi", self.item_offset_.clone())
        return ox.manifest([ox.export_predict(lambda u, i: holder.mu + holder.bu[u] + holder.bi[i], holder,
                                              self.rating_scale_, path / "predict.onnx")])
