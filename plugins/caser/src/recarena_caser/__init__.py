"""Caser (Tang & Wang, WSDM 2018): the last ``L`` items form an L x d "image"; horizontal
filters of heights 1..L catch union-level patterns, vertical filters weight the positions;
with the user embedding they predict the next item. Trained with binary cross-entropy on
the next item and ``n_neg`` sampled negatives; recommends from each user's last L items."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recarena import Capabilities, Task
from recarena.params import Interval
from recarena.sequences import last_items
from recarena.torch_model import TorchRecommender


class _Net(nn.Module):
    def __init__(self, n_users, n_items, dim, L, n_h, n_v, dropout, last_seq):
        super().__init__()
        # each user's last L training items [n_users, L] (padding n_items), what recommending
        # reads: it travels with the network, so saved and exported models have it
        self.register_buffer("last_seq", last_seq)
        self.n_items = n_items
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)  # last id pads short histories
        self.conv_v = nn.Conv2d(1, n_v, (L, 1))
        self.conv_h = nn.ModuleList([nn.Conv2d(1, n_h, (h, dim)) for h in range(1, L + 1)])
        self.fc = nn.Linear(n_v * dim + n_h * L, dim)
        self.drop = nn.Dropout(dropout)
        self.W2 = nn.Embedding(n_items, 2 * dim)
        self.b2 = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user_emb.weight, std=1.0 / dim)
        nn.init.normal_(self.item_emb.weight, std=1.0 / dim)
        nn.init.normal_(self.W2.weight, std=1.0 / (2 * dim))
        nn.init.zeros_(self.b2.weight)

    def state(self, users, seq):
        """users [B], seq [B, L] item ids -> [B, 2d] (sequence features, user embedding)"""
        E = self.item_emb(seq).unsqueeze(1)  # [B, 1, L, d]
        out_v = self.conv_v(E).flatten(1)  # [B, n_v * d]
        hs = []
        for conv in self.conv_h:
            h = F.relu(conv(E).squeeze(3))  # [B, n_h, L - h + 1]
            hs.append(F.max_pool1d(h, h.size(2)).squeeze(2))
        z = F.relu(self.fc(self.drop(torch.cat([out_v, *hs], 1))))
        return torch.cat([z, self.user_emb(users)], 1)


class Caser(TorchRecommender):
    capabilities = Capabilities(tasks={Task.SEQUENTIAL, Task.RANKING}, embeddings=True, onnx=True, context=True)
    negatives = True
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "L": [Interval(int, 1, None)], "n_h": [Interval(int, 1, None)],
        "n_v": [Interval(int, 1, None)], "dropout": [Interval(float, 0, 1, closed="left")],
    }

    def __init__(self, dim: int = 50, L: int = 5, n_h: int = 16, n_v: int = 4, dropout: float = 0.5,
                 lr: float = 0.001, weight_decay: float = 1e-6, epochs: int = 50, batch_size: int = 512, n_neg: int = 3,
                 neg_sampling: str = "uniform", optimizer: str = "adam"):
        self.dim = dim
        self.L = L
        self.n_h = n_h
        self.n_v = n_v
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.optimizer = optimizer

    def _sequences(self, train):
        """Training windows (user, last L items, next item) and each user's final window."""
        order = np.lexsort((train.timestamp, train.user)) if train.timestamp is not None else np.argsort(train.user, kind="stable")
        u, it = train.user[order], train.item[order]
        pad, L = train.n_items, int(self.L)
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        pos = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))
        # window k of row r: the item at r - L + k when it belongs to the same user, else padding
        idx = np.arange(len(u))[:, None] - L + np.arange(L)[None, :]
        valid = idx >= (np.arange(len(u)) - pos)[:, None]
        windows = np.where(valid, it[np.clip(idx, 0, None)], pad)
        keep = pos > 0  # the first item of a sequence has nothing to predict it from
        last = np.full((train.n_users, L), pad, np.int64)
        ends = np.r_[starts[1:], len(u)]
        for su, e in zip(u[starts], ends):  # each user's final L items, for recommending
            h = it[max(e - L, 0) : e]
            last[su, L - len(h) :] = h
        return u[keep], windows[keep], it[keep], last

    def training_tensors(self, train, network):
        users, windows, targets, _ = self._sequences(train)
        return {"user": torch.from_numpy(users), "seq": torch.from_numpy(windows), "item": torch.from_numpy(targets)}

    def build_network(self, train):
        last = torch.from_numpy(self._sequences(train)[3])
        return _Net(train.n_users, train.n_items, int(self.dim), int(self.L), int(self.n_h), int(self.n_v),
                    float(self.dropout), last)

    def loss(self, net, batch):
        s = net.state(batch["user"], batch["seq"])  # [B, 2d]
        pos = (net.W2(batch["item"]) * s).sum(-1) + net.b2(batch["item"]).squeeze(-1)
        j = batch["neg"]
        neg = torch.einsum("bnd,bd->bn", net.W2(j), s) + net.b2(j).squeeze(-1)
        return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))

    def score_users(self, net, users):
        return net.state(users, net.last_seq[users]) @ net.W2.weight.T + net.b2.weight.view(1, -1)

    def _score_history(self, users, indptr, indices):
        # the user's embedding from training, the window from the history given now (its last L)
        seq = last_items(users, indptr, indices, int(self.L), pad=self.n_items_).to(self.device)
        net = self.network_
        return net.state(users, seq) @ net.W2.weight.T + net.b2.weight.view(1, -1)

    def _embeddings(self):
        return {"user": self.network_.user_emb.weight.detach().numpy(),
                "item": self.network_.item_emb.weight.detach()[:-1].numpy()}
