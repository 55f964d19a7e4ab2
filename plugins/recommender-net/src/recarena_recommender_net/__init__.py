"""RecommenderNet: concat(user embedding, item embedding) -> MLP (+ user and item biases,
as in Keras' RecommenderNet) -> sigmoid, scaled to the training data's rating range [lo, hi]."""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.torch_model import TorchRecommender


class _Net(nn.Module):
    def __init__(self, n_users, n_items, dim, hidden, dropout, lo, hi, bias=True):
        super().__init__()
        self.bias = bool(bias)
        if self.bias:
            self.user_bias = nn.Embedding(n_users, 1)
            self.item_bias = nn.Embedding(n_items, 1)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=0.05)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        layers, width = [], 2 * dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("lo", torch.tensor(float(lo)))
        self.register_buffer("hi", torch.tensor(float(hi)))

    def forward(self, u, i):
        """u, i: int64 [B] -> rating float32 [B] in [lo, hi]"""
        x = torch.cat([self.user_emb(u), self.item_emb(i)], -1)
        logit = self.mlp(x).squeeze(-1)
        if self.bias:
            logit = logit + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1)
        return self.lo + (self.hi - self.lo) * torch.sigmoid(logit)


class RecommenderNet(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True, onnx=True)

    def __init__(self, dim: int = 32, hidden: tuple = (64, 32), dropout: float = 0.2, lr: float = 0.001,
                 weight_decay: float = 0.0, reg: float = 0.01, epochs: int = 100, batch_size: int = 256,
                 bias: bool = False):
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.bias = bias

    def build_network(self, train):
        lo, hi = train.rating_scale or (float(train.rating.min()), float(train.rating.max()))
        return _Net(train.n_users, train.n_items, int(self.dim), list(self.hidden), float(self.dropout), lo, hi, bool(self.bias))

    def loss(self, net, batch):
        u, i = batch["user"], batch["item"]
        pred = net(u, i)
        reg = self.reg * (net.user_emb(u).pow(2).sum(-1) + net.item_emb(i).pow(2).sum(-1))
        return ((pred - batch["rating"]) ** 2 + reg).mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)
