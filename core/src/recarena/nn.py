"""Building blocks shared by the model plugins (RecBole's ``model/layers.py`` idea): each
block exists once and every plugin that needs it imports it from here, never from another
plugin. Each block's parameters are created in a fixed order, so a plugin built from them
draws the same initial weights for the same seed.

- :class:`MLP`: the tower of NCF, RecommenderNet and DeepFM
- :class:`FMPart` and :func:`fm_logit`: a factorization machine's first- and second-order part
- :class:`BiasedDot`: mu + b_u + b_i + p_u . q_i (MF, biased MF, BPR, pre-training stages)
- :func:`embedding_l2`: L2 on the embedding rows a batch uses
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Sequential):
    """``[Dropout(input_dropout)] + [Linear, (BatchNorm1d), ReLU, Dropout] per hidden width
    [+ Linear(last, out_dim)]``: float32 ``[B, in_dim]`` -> ``[B, out_dim or hidden[-1]]``.

    A subclass of ``nn.Sequential``, so its parameters are named ``0.weight``, ``1.bias``..."""

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0, batch_norm: bool = False,
                 out_dim: int | None = None, input_dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout else []
        width = int(in_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), *([nn.BatchNorm1d(int(h))] if batch_norm else []), nn.ReLU(),
                       nn.Dropout(dropout)]
            width = int(h)
        if out_dim is not None:
            layers.append(nn.Linear(width, int(out_dim)))
            width = int(out_dim)
        super().__init__(*layers)
        self.out_features = width


def fm_logit(w0: torch.Tensor, w: nn.Embedding, v: nn.Embedding, feats: torch.Tensor) -> torch.Tensor:
    """FM over feature ids ``feats`` int64 ``[B, F]``: w0 + sum_f w_f + 1/2 sum_d ((sum_f v_fd)^2 -
    sum_f v_fd^2), the O(k n) form; returns float32 ``[B]``. Padding id 0 has zero weight and embedding."""
    e = v(feats)  # [B, F, d]
    return w0 + w(feats).squeeze(-1).sum(1) + 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)


class FMPart(nn.Module):
    """A factorization machine's parameters: bias ``w0``, first-order weights ``w``
    ``[n_features, 1]`` (zeros) and factors ``v`` ``[n_features, dim]`` (N(0, 0.01)); feature id 0
    is padding (zero weight and factors). ``forward(feats int64 [B, F]) -> float32 [B]`` logits.
    Models that add a deep part on the same embeddings (DeepFM) subclass it."""

    def __init__(self, n_features: int, dim: int, bias: float = 0.0):
        super().__init__()
        self.w0 = nn.Parameter(torch.tensor(float(bias)))
        self.w = nn.Embedding(n_features, 1, padding_idx=0)
        self.v = nn.Embedding(n_features, dim, padding_idx=0)
        nn.init.zeros_(self.w.weight)
        nn.init.normal_(self.v.weight, std=0.01)
        with torch.no_grad():
            self.v.weight[0].zero_()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return fm_logit(self.w0, self.w, self.v, feats)


class BiasedDot(nn.Module):
    """``mu + b_u + b_i + p_u . q_i`` over ``user_emb [n_users, dim]``, ``item_emb [n_items, dim]``
    and, with ``bias``, ``user_bias`` / ``item_bias`` ``[n, 1]`` (zeros). ``mu`` (a buffer) is
    left out when None. ``init``: 'normal' (std ``init_std``) or 'xavier' for the factors.
    ``sparse``: sparse gradients (for the ``sparse_adam`` optimizer)."""

    def __init__(self, n_users: int, n_items: int, dim: int, mu: float | None = None, init_std: float = 0.01,
                 bias: bool = True, sparse: bool = False, init: str = "normal"):
        super().__init__()
        self.bias = bool(bias)
        self.user_emb = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, dim, sparse=sparse)
        if self.bias:
            self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
            self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        self.has_mu = mu is not None
        if self.has_mu:
            self.register_buffer("mu", torch.tensor(float(mu)))
        for e in (self.user_emb, self.item_emb):
            if init == "xavier":
                nn.init.xavier_normal_(e.weight)
            else:
                nn.init.normal_(e.weight, std=init_std)
        if self.bias:
            for e in (self.user_bias, self.item_bias):
                nn.init.zeros_(e.weight)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """u, i: int64 [B] -> float32 [B]"""
        # summed left to right, mu first: the order fixes the float result
        dot = (self.user_emb(u) * self.item_emb(i)).sum(-1)
        if not self.bias:
            return self.mu + dot if self.has_mu else dot
        bu = self.user_bias(u).squeeze(-1)
        out = self.mu + bu if self.has_mu else bu
        return out + self.item_bias(i).squeeze(-1) + dot

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """users: int64 [B] -> float32 [B, n_items], every item's score."""
        if not self.bias:
            dot = self.user_emb(users) @ self.item_emb.weight.T
            return self.mu + dot if self.has_mu else dot
        bu = self.user_bias(users)
        out = self.mu + bu if self.has_mu else bu
        return out + self.item_bias.weight.view(1, -1) + self.user_emb(users) @ self.item_emb.weight.T


def embedding_l2(reg: float, table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor | float:
    """``reg`` x the squared norm of the rows of ``table`` that ``ids`` (int64 ``[B, F]``) use,
    summed over fields, mean over rows: L2 on the rows a batch touches, so a rare feature is
    shrunk as often as it is seen (Adam's weight_decay would shrink every row every step)."""
    return reg * table(ids).pow(2).sum((1, 2)).mean() if reg else 0.0
