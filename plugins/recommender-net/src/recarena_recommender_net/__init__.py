"""RecommenderNet: concat(user embedding, item embedding) -> MLP (+ user and item biases,
as in Keras' RecommenderNet) -> sigmoid, scaled to the training data's rating range [lo, hi].

``pretrain_epochs`` > 0 first fits the same embeddings (and biases) as a biased MF,
mu + b_u + b_i + u . i (``pretrain_lr``, per-rating L2 ``pretrain_reg``), early-stopped on
validation, and starts the MLP from them, as NeuMF starts from its pre-trained GMF and MLP. An MLP
over [u, i] from random embeddings learns little beyond the two biases before it overfits
(Rendle et al. 2020, "Neural Collaborative Filtering vs. Matrix Factorization Revisited"); from
pre-trained embeddings it keeps and refines what the dot product found."""

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


class _DotNet(nn.Module):
    """The pre-training stage: biased MF over embeddings shaped like RecommenderNet's."""

    def __init__(self, n_users, n_items, dim, mu):
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        for e in (self.user_emb, self.item_emb):
            nn.init.normal_(e.weight, std=0.05)
        for e in (self.user_bias, self.item_bias):
            nn.init.zeros_(e.weight)
        self.register_buffer("mu", torch.tensor(float(mu)))

    def forward(self, u, i):
        """u, i: int64 [B] -> rating float32 [B]"""
        dot = (self.user_emb(u) * self.item_emb(i)).sum(-1)
        return self.mu + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1) + dot


class _DotStage(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RATING})

    def __init__(self, dim=32, lr=0.0005, reg=0.1, epochs=100, batch_size=256):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size

    def build_network(self, train):
        return _DotNet(train.n_users, train.n_items, int(self.dim), float(train.rating.mean()))

    def loss(self, net, batch):
        u, i = batch["user"], batch["item"]
        reg = self.reg * (net.user_emb(u).pow(2).sum(-1) + net.item_emb(i).pow(2).sum(-1))
        return ((net(u, i) - batch["rating"]) ** 2 + reg).mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)


class RecommenderNet(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True, onnx=True)

    def __init__(self, dim: int = 32, hidden: tuple = (64, 32), dropout: float = 0.2, lr: float = 0.001,
                 weight_decay: float = 0.0, reg: float = 0.01, epochs: int = 100, batch_size: int = 256,
                 bias: bool = False, pretrain_epochs: int = 0, pretrain_lr: float = 0.0005, pretrain_reg: float = 0.1):
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.bias = bias
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.pretrain_reg = pretrain_reg

    def _fit(self, train, valid, monitor):
        self._init_from = None
        if self.pretrain_epochs:
            stage = _DotStage(dim=self.dim, lr=self.pretrain_lr, reg=self.pretrain_reg, epochs=self.pretrain_epochs,
                              batch_size=self.batch_size)
            self._init_from = self.fit_stage(stage, train, valid, monitor).network_
            self.pretrain_best_epoch_ = getattr(stage, "best_epoch_", None)
        try:
            super()._fit(train, valid, monitor)
        finally:
            self._init_from = None

    def refit_params(self):
        refit = super().refit_params()
        if getattr(self, "pretrain_best_epoch_", None) is not None:
            refit["pretrain_epochs"] = self.pretrain_best_epoch_ + 1
        return refit

    def build_network(self, train):
        lo, hi = train.rating_scale or (float(train.rating.min()), float(train.rating.max()))
        net = _Net(train.n_users, train.n_items, int(self.dim), list(self.hidden), float(self.dropout), lo, hi,
                   bool(self.bias))
        init = getattr(self, "_init_from", None)
        if init is not None:
            with torch.no_grad():
                net.user_emb.weight.copy_(init.user_emb.weight)
                net.item_emb.weight.copy_(init.item_emb.weight)
                if net.bias:
                    net.user_bias.weight.copy_(init.user_bias.weight)
                    net.item_bias.weight.copy_(init.item_bias.weight)
        return net

    def loss(self, net, batch):
        u, i = batch["user"], batch["item"]
        pred = net(u, i)
        reg = self.reg * (net.user_emb(u).pow(2).sum(-1) + net.item_emb(i).pow(2).sum(-1))
        return ((pred - batch["rating"]) ** 2 + reg).mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)
