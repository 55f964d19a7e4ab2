"""RBM for collaborative filtering (Salakhutdinov, Mnih & Hinton, ICML 2007). Each user is a
restricted Boltzmann machine over the items they rated: one softmax visible unit per rated
item, over the K rating values, and binary hidden units; the weights W_ik^j are shared by all
users (a user's RBM uses the rows of the items they rated). Trained by contrastive divergence
(CD-``cd_steps``): the gradient of the free-energy gap ``F(v_data) - F(v_model)``, where
v_model is reached by ``cd_steps`` Gibbs steps from the data over the same rated items,
is the CD update. A rating is predicted as the expected value under the visible softmax of
the item given the hidden probabilities of the user's ratings (mean field, one pass).

Not an autoencoder trained on reconstruction error: it models the joint distribution of a
user's ratings and learns only from sampling."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.autoencoders import RatingRows, onnx_predict_from_rows, predict_from_rows
from recarena.errors import RecArenaError
from recarena.params import Interval
from recarena.torch_model import OptimizerSpec, TorchRecommender


class _Net(nn.Module):
    def __init__(self, rows: RatingRows, levels: torch.Tensor, hidden: int, init_std: float):
        super().__init__()
        self.rows = rows
        n, K = rows.R.shape[1], len(levels)
        self.register_buffer("levels", levels)  # float32 [K], the rating values, ascending
        self.W = nn.Parameter(torch.randn(n * K, hidden) * init_std)
        # visible biases: the log of each item's rating-value frequencies (Hinton's guide)
        onehot = self.onehot(torch.arange(rows.n_rows)).sum(0) + 1.0  # [n, K], add-one smoothed
        self.b = nn.Parameter((onehot / onehot.sum(1, keepdim=True)).log().reshape(-1))
        self.c = nn.Parameter(torch.zeros(hidden))

    @property
    def K(self) -> int:
        return len(self.levels)

    def onehot(self, ids: torch.Tensor) -> torch.Tensor:
        """The rows ``ids`` [B] as softmax units: float32 [B, n, K], all zero where unrated."""
        r, m = self.rows.R[ids], self.rows.M[ids]
        return (r.unsqueeze(-1) == self.levels).to(r.dtype) * m.unsqueeze(-1)

    def hidden_prob(self, v: torch.Tensor) -> torch.Tensor:
        """v float32 [B, n, K] -> p(h = 1 | v) float32 [B, hidden]."""
        return torch.sigmoid(self.c + v.flatten(1) @ self.W)

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h float32 [B, hidden] -> logits of p(v_i = k | h), float32 [B, n, K]."""
        return (self.b + h @ self.W.T).unflatten(1, (-1, self.K))

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -sum_ik v_ik b_ik - sum_j softplus(c_j + sum_ik v_ik W_ik^j), per row: [B]."""
        flat = v.flatten(1)
        return -(flat @ self.b) - nn.functional.softplus(self.c + flat @ self.W).sum(1)

    def expected(self, ids: torch.Tensor) -> torch.Tensor:
        """Expected rating of every column for rows ``ids`` [B]: float32 [B, n]."""
        p = torch.softmax(self.visible_logits(self.hidden_prob(self.onehot(ids))), -1)
        return p @ self.levels


class RBM(TorchRecommender):
    """Defaults: 100 hidden units, CD-1, SGD with momentum .9, lr .01 per user in a batch of 100,
    weight decay .001, as the paper's Netflix runs (which raise the CD steps to 3, 5, 9 later)."""

    capabilities = Capabilities(tasks={Task.RATING}, onnx=True)
    optimizers = {"momentum": OptimizerSpec(lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd))}
    _parameter_constraints = {
        "hidden": [Interval(int, 1, None)], "cd_steps": [Interval(int, 1, None)], "init_std": [Interval(float, 0, None)],
        "item_based": [bool],
    }

    def __init__(self, hidden: int = 100, cd_steps: int = 1, init_std: float = 0.01, item_based: bool = False,
                 epochs: int = 100, batch_size: int = 100, lr: float = 0.01, optimizer: str = "momentum",
                 weight_decay: float = 0.001):
        self.hidden = hidden
        self.cd_steps = cd_steps
        self.init_std = init_std
        self.item_based = item_based
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        if train.rating is None:
            raise RecArenaError("rbm is a rating model: it needs explicit ratings.")
        levels = np.unique(train.rating)
        if len(levels) > 20:
            raise RecArenaError(f"rbm needs ratings on a few discrete values (one softmax unit each); the training data has "
                                f"{len(levels)} distinct values ({levels[:5].tolist()}...): round them to a scale first.")
        return _Net(RatingRows(train, bool(self.item_based)), torch.from_numpy(levels.astype(np.float32)),
                    int(self.hidden), float(self.init_std))

    def training_tensors(self, train, network):
        return {"row": network.rows.trained_rows()}

    def loss(self, net, batch):
        v0 = net.onehot(batch["row"])
        mask = v0.sum(-1, keepdim=True)  # 1 on rated entries: the negative phase samples only those
        with torch.no_grad():
            v = v0
            for _ in range(int(self.cd_steps)):
                h = torch.bernoulli(net.hidden_prob(v))
                p = torch.softmax(net.visible_logits(h), -1)
                idx = torch.multinomial(p.reshape(-1, net.K), 1).view(p.shape[:-1])
                v = nn.functional.one_hot(idx, net.K).to(v0.dtype) * mask
        # the gradient of this gap is the CD-k update (per user, averaged over the batch)
        return (net.free_energy(v0) - net.free_energy(v)).mean()

    def predict_pairs(self, net, users, items):
        return predict_from_rows(net.expected, net.rows, users, items)

    def onnx_predict_pairs(self, net, users, items):
        return onnx_predict_from_rows(net.expected, net.rows, users, items)
