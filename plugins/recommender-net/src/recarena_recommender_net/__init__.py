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
from recarena.nn import MLP, BiasedDot
from recarena.params import Interval, IntSequence
from recarena.torch_model import Stage, TorchRecommender


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
        self.mlp = MLP(2 * dim, hidden, dropout, out_dim=1)
        self.register_buffer("lo", torch.tensor(float(lo)))
        self.register_buffer("hi", torch.tensor(float(hi)))

    def forward(self, u, i):
        """u, i: int64 [B] -> rating float32 [B] in [lo, hi]"""
        x = torch.cat([self.user_emb(u), self.item_emb(i)], -1)
        logit = self.mlp(x).squeeze(-1)
        if self.bias:
            logit = logit + self.user_bias(u).squeeze(-1) + self.item_bias(i).squeeze(-1)
        return self.lo + (self.hi - self.lo) * torch.sigmoid(logit)


class _DotStage(TorchRecommender):
    """The pre-training stage: a biased MF over embeddings shaped like RecommenderNet's."""

    capabilities = Capabilities(tasks={Task.RATING})
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)]}

    def __init__(self, dim=32, lr=0.0005, reg=0.1, epochs=100, batch_size=256, optimizer="adam", weight_decay=0.0):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        return BiasedDot(train.n_users, train.n_items, int(self.dim), float(train.rating.mean()), 0.05)

    def loss(self, net, batch):
        u, i = batch["user"], batch["item"]
        reg = self.reg * (net.user_emb(u).pow(2).sum(-1) + net.item_emb(i).pow(2).sum(-1))
        return ((net(u, i) - batch["rating"]) ** 2 + reg).mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)


class RecommenderNet(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True, onnx=True)
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [IntSequence(1, None, min_len=0)],
        "dropout": [Interval(float, 0, 1, closed="left")], "reg": [Interval(float, 0, None)], "bias": [bool],
        "pretrain_epochs": [Interval(int, 0, None)], "pretrain_lr": [Interval(float, 0, None)],
        "pretrain_reg": [Interval(float, 0, None)],
    }

    def __init__(self, dim: int = 32, hidden: tuple = (64, 32), dropout: float = 0.2, lr: float = 0.001,
                 weight_decay: float = 0.0, reg: float = 0.01, epochs: int = 100, batch_size: int = 256,
                 bias: bool = False, pretrain_epochs: int = 0, pretrain_lr: float = 0.0005, pretrain_reg: float = 0.1,
                 optimizer: str = "adam"):
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
        self.optimizer = optimizer

    def stages(self):
        return [Stage("dot", "pretrain_epochs", lambda m: _DotStage(
            dim=m.dim, lr=m.pretrain_lr, reg=m.pretrain_reg, batch_size=m.batch_size))]

    def init_from_stages(self, net, fitted):
        dot = fitted["dot"]
        net.user_emb.weight.copy_(dot.user_emb.weight)
        net.item_emb.weight.copy_(dot.item_emb.weight)
        if net.bias:
            net.user_bias.weight.copy_(dot.user_bias.weight)
            net.item_bias.weight.copy_(dot.item_bias.weight)

    def build_network(self, train):
        lo, hi = train.rating_scale or (float(train.rating.min()), float(train.rating.max()))
        return _Net(train.n_users, train.n_items, int(self.dim), list(self.hidden), float(self.dropout), lo, hi,
                    bool(self.bias))

    def loss(self, net, batch):
        u, i = batch["user"], batch["item"]
        pred = net(u, i)
        reg = self.reg * (net.user_emb(u).pow(2).sum(-1) + net.item_emb(i).pow(2).sum(-1))
        return ((pred - batch["rating"]) ** 2 + reg).mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)
