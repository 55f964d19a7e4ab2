"""Biased matrix factorization: r(u, i) = mu + b_u + b_i + p_u . q_i.

Explicit data: MSE with L2 on the factors and biases of each batch (as in Funk/Koren SVD).
Implicit data: BPR over sampled negatives, so the same model also ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recarena import Capabilities, Task
from recarena.torch_model import TorchRecommender


class _Net(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, mu: float, init_std: float, sparse: bool = False):
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, dim, sparse=sparse)
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        self.register_buffer("mu", torch.tensor(float(mu)))
        for e in (self.user_emb, self.item_emb):
            nn.init.normal_(e.weight, std=init_std)
        for e in (self.user_bias, self.item_bias):
            nn.init.zeros_(e.weight)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """u, i: int64 [B] -> float32 [B]"""
        return (
            self.mu
            + self.user_bias(u).squeeze(-1)
            + self.item_bias(i).squeeze(-1)
            + (self.user_emb(u) * self.item_emb(i)).sum(-1)
        )


class BiasedMF(TorchRecommender):
    """Biased MF. ``dim`` factors; ``reg`` L2 weight on the batch's factors and biases."""

    capabilities = Capabilities(tasks={Task.RATING, Task.RANKING}, embeddings=True, onnx=True)

    def __init__(
        self,
        dim: int = 64,
        lr: float = 0.005,
        reg: float = 0.05,
        bias_reg: float = 0.01,
        epochs: int = 40,
        batch_size: int = 1024,
        init_std: float = 0.01,
        n_neg: int = 1,
        optimizer: str = "adam",
    ):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.bias_reg = bias_reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.n_neg = n_neg
        self.optimizer = optimizer

    def build_network(self, train):
        mu = float(train.rating.mean()) if train.rating is not None else 0.0
        self.explicit_ = train.rating is not None
        return _Net(train.n_users, train.n_items, int(self.dim), mu, float(self.init_std), self.optimizer == "sparse_adam")

    def loss(self, net: _Net, batch):
        u, i = batch["user"], batch["item"]
        pu, qi = net.user_emb(u), net.item_emb(i)
        bu, bi = net.user_bias(u).squeeze(-1), net.item_bias(i).squeeze(-1)
        pred = net.mu + bu + bi + (pu * qi).sum(-1)
        if "rating" in batch:
            reg = self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1)) + self.bias_reg * (bu**2 + bi**2)
            return ((pred - batch["rating"]) ** 2 + reg).mean()
        j = batch["neg"]  # [B, n_neg]
        qj, bj = net.item_emb(j), net.item_bias(j).squeeze(-1)
        neg = net.mu + bu.unsqueeze(1) + bj + (pu.unsqueeze(1) * qj).sum(-1)
        reg = self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1) + (qj**2).sum(-1).mean(1))
        return (-F.logsigmoid(pred.unsqueeze(1) - neg).mean(1) + reg).mean()

    def score_users(self, net: _Net, users):
        return (
            net.mu
            + net.user_bias(users)
            + net.item_bias.weight.view(1, -1)
            + net.user_emb(users) @ net.item_emb.weight.T
        )

    def predict_pairs(self, net: _Net, users, items):
        return net(users, items)
