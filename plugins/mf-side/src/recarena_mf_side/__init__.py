"""Biased MF with side features, SVDFeature-style (Chen et al., JMLR 2012).

A user's vector is its own ``p_u`` plus the sum of its attributes' vectors (ML-1M: gender,
age group, occupation), an item's its own ``q_i`` plus its attributes' (release year, each
genre); biases likewise:

    r(u, i) = mu + b_u + sum_a b_a + b_i + sum_g b_g + (p_u + sum_a v_a) . (q_i + sum_g v_g)

Attributes come from :func:`recarena.features.encode` (the CTR models' fields, id columns left
out). An item never seen in training still has its genres and year, so it is scored from what
similar items taught the model; ``biased-mf`` can only answer ``mu + b_u`` for it. With
``use_side=False`` the attribute tables are empty and the model is ``biased-mf``: the same
parameters drawn first and in the same order, the same loss (a test checks the predictions)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recarena import Capabilities, Task, features
from recarena.errors import RecArenaError
from recarena.nn import BiasedDot
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


def attribute_ids(train) -> tuple[np.ndarray, np.ndarray, int]:
    """Attribute ids per user (int64 [n_users, Fu]) and item (int64 [n_items, Fi]), numbered
    1..K over the attribute values in use; 0 pads (an item with fewer genres than the widest).
    Returns (users, items, K + 1)."""
    f = features.encode(train, use_side=True)
    u, i = f.user[:, 1:].numpy(), f.item[:, 1:].numpy()  # column 0 is the id itself
    values, inverse = np.unique(np.concatenate([u.ravel(), i.ravel()]), return_inverse=True)
    # np.unique sorts, so padding (0), when present, is values[0] and keeps id 0
    shift = 0 if len(values) and values[0] == 0 else 1
    ids = (inverse + shift).astype(np.int64)
    return ids[: u.size].reshape(u.shape), ids[u.size:].reshape(i.shape), len(values) + shift


class SideNet(nn.Module):
    """``base``: biased-mf's :class:`~recarena.nn.BiasedDot` (own vectors and biases, built
    first); ``side_emb`` [K + 1, dim] and ``side_bias`` [K + 1, 1] over attribute ids (row 0,
    padding, stays zero); buffers ``user_attrs`` int64 [n_users, Fu], ``item_attrs`` [n_items, Fi]."""

    def __init__(self, base: BiasedDot, user_attrs: np.ndarray, item_attrs: np.ndarray, n_attrs: int, init_std: float):
        super().__init__()
        self.base = base
        self.side_emb = nn.Embedding(n_attrs, base.user_emb.embedding_dim, padding_idx=0)
        self.side_bias = nn.Embedding(n_attrs, 1, padding_idx=0)
        nn.init.normal_(self.side_emb.weight, std=init_std)
        with torch.no_grad():
            self.side_emb.weight[0] = 0.0
        nn.init.zeros_(self.side_bias.weight)
        self.register_buffer("user_attrs", torch.from_numpy(user_attrs))
        self.register_buffer("item_attrs", torch.from_numpy(item_attrs))

    def parts(self, users: torch.Tensor, items: torch.Tensor):
        """users, items int64 [B] -> (own user vector [B, d], own item vector [B, d], user
        attribute vectors [B, Fu, d], item attribute vectors [B, Fi, d], own biases [B] x 2,
        attribute biases [B, Fu], [B, Fi])."""
        b = self.base
        ua, ia = self.user_attrs[users], self.item_attrs[items]
        return (b.user_emb(users), b.item_emb(items), self.side_emb(ua), self.side_emb(ia),
                b.user_bias(users).squeeze(-1), b.item_bias(items).squeeze(-1),
                self.side_bias(ua).squeeze(-1), self.side_bias(ia).squeeze(-1))

    def combine(self, pu, qi, va, vg, bu, bi, ba, bg) -> torch.Tensor:
        """:meth:`parts` -> predicted ratings float32 [B] (the loss reuses the parts for its L2)."""
        return self.base.mu + bu + ba.sum(1) + bi + bg.sum(1) + ((pu + va.sum(1)) * (qi + vg.sum(1))).sum(-1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users, items int64 [B] -> predicted ratings float32 [B]."""
        return self.combine(*self.parts(users, items))


class MFSide(TorchRecommender):
    """Defaults are biased-mf's (dim 64, lr 5e-4, batch 256, reg .1, bias_reg .01).

    ``reg``: L2 on the batch's own vectors, per rating; ``bias_reg``: the same on own biases;
    ``side_reg``: L2 per rating on the attribute vectors and biases. It is lighter than ``reg``
    on purpose: an attribute is shared by many ratings, so with an equal weight the per-rating
    penalty holds it to the same size as an id's own parameters and splits every item effect
    half and half between them, and a cold item, which has only its attributes, gets half of
    what they know (on synthetic genre data: cold-item RMSE .93 at side_reg = reg, .30 at reg / 10, .16 at reg / 100).
    ``use_side``: False leaves the attributes out (biased-mf)."""

    capabilities = Capabilities(tasks={Task.RATING}, side_features=True, embeddings=True, onnx=True)
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)],
                              "bias_reg": [Interval(float, 0, None)], "side_reg": [Interval(float, 0, None)],
                              "init_std": [Interval(float, 0, None)]}

    def __init__(
        self,
        dim: int = 64,
        lr: float = 0.0005,
        reg: float = 0.1,
        bias_reg: float = 0.01,
        side_reg: float = 0.001,
        epochs: int = 200,
        batch_size: int = 256,
        init_std: float = 0.01,
        use_side: bool = True,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
    ):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.bias_reg = bias_reg
        self.side_reg = side_reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.use_side = use_side
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        if train.rating is None:
            raise RecArenaError("mf-side is a rating model: it needs explicit ratings.")
        base = BiasedDot(train.n_users, train.n_items, int(self.dim), float(train.rating.mean()),
                         float(self.init_std)).zero_unseen(train.user, train.item)
        if self.use_side:
            users, items, n = attribute_ids(train)
        else:
            users, items, n = np.zeros((train.n_users, 0), np.int64), np.zeros((train.n_items, 0), np.int64), 1
        return SideNet(base, users, items, n, float(self.init_std))

    def loss(self, net, batch):
        parts = net.parts(batch["user"], batch["item"])
        pu, qi, va, vg, bu, bi, ba, bg = parts
        pred = net.combine(*parts)
        reg = self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1)) + self.bias_reg * (bu**2 + bi**2)
        if va.shape[1] or vg.shape[1]:
            reg = reg + self.side_reg * (va.pow(2).sum((1, 2)) + vg.pow(2).sum((1, 2)) + ba.pow(2).sum(1) + bg.pow(2).sum(1))
        return ((pred - batch["rating"]) ** 2 + reg).mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)

    def _embeddings(self):
        # a user's and an item's full vector: its own plus its attributes'
        net = self.network_
        with torch.no_grad():
            u = net.base.user_emb.weight + net.side_emb(net.user_attrs).sum(1)
            i = net.base.item_emb.weight + net.side_emb(net.item_attrs).sum(1)
        return {"user": u.numpy(), "item": i.numpy()}
