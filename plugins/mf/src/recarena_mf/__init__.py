"""Plain MF: r(u, i) = mu + p_u . q_i, trained on MSE with L2 on the batch's factors.

``mu`` is the training mean, a constant offset (not a learned bias): this is the baseline
that biased-mf improves on.
"""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.torch_model import TorchRecommender


class _Net(nn.Module):
    def __init__(self, n_users, n_items, dim, mu, init_std):
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)
        self.register_buffer("mu", torch.tensor(float(mu)))


class MF(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True, onnx=True)

    def __init__(self, dim: int = 64, lr: float = 0.001, reg: float = 0.1, epochs: int = 100,
                 batch_size: int = 256, init_std: float = 0.01):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std

    def build_network(self, train):
        if train.rating is None:
            from recarena.errors import RecArenaError

            raise RecArenaError("mf is a rating model: it needs explicit ratings.")
        return _Net(train.n_users, train.n_items, int(self.dim), float(train.rating.mean()), float(self.init_std))

    def loss(self, net, batch):
        pu, qi = net.user_emb(batch["user"]), net.item_emb(batch["item"])
        pred = net.mu + (pu * qi).sum(-1)
        return ((pred - batch["rating"]) ** 2 + self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1))).mean()

    def predict_pairs(self, net, users, items):
        return net.mu + (net.user_emb(users) * net.item_emb(items)).sum(-1)
