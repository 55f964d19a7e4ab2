"""Neural FM (He & Chua 2017): y = w0 + sum_f w_f + h . MLP(BI(V x)), where bi-interaction
pooling BI = sum_{f < g} v_f * v_g (a d-vector, ``recarena.nn.bi_interaction``) replaces the
FM's sum over dimensions with a learned tower.

As the paper does, the feature embeddings can start from a fitted FM (``pretrain_epochs``, see
``recarena.ctr.FMPretraining``); ``bi_dropout`` is the paper's dropout on the pooled vector.
"""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, FMPretraining
from recarena.nn import MLP, FMPart, bi_interaction
from recarena.params import Interval, IntSequence


class _Net(FMPart):
    """NFM's network: the FM parameters (``w0``, ``w``, ``v``) and the tower over BI(v)."""

    def __init__(self, n_features: int, dim: int, hidden, dropout: float, batch_norm: bool, bi_dropout: float):
        super().__init__(n_features, dim)
        # the paper normalizes the pooled vector before the tower (BN on the BI layer)
        self.bi_norm = nn.BatchNorm1d(dim) if batch_norm else nn.Identity()
        self.bi_dropout = nn.Dropout(bi_dropout)
        self.mlp = MLP(dim, hidden, dropout, batch_norm, out_dim=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        pooled = 0.5 * bi_interaction(self.v(feats))  # [B, d]
        return self.linear(feats) + self.mlp(self.bi_dropout(self.bi_norm(pooled))).squeeze(-1)


class NFM(FMPretraining, CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [IntSequence(1, None, min_len=0)],
        "dropout": [Interval(float, 0, 1, closed="left")], "bi_dropout": [Interval(float, 0, 1, closed="left")],
        "batch_norm": [bool], "reg": [Interval(float, 0, None)],
    }

    def __init__(self, dim: int = 16, hidden: tuple = (64,), dropout: float = 0.2, bi_dropout: float = 0.5,
                 batch_norm: bool = True, lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 50,
                 batch_size: int = 2048, use_side: bool = True, pretrain_epochs: int = 0,
                 pretrain_lr: float = 0.005, reg: float = 0.0, optimizer: str = "adam"):
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.bi_dropout = bi_dropout
        self.batch_norm = batch_norm
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.reg = reg
        self.optimizer = optimizer

    def build_ctr_network(self, fields, train):
        return _Net(fields.n_features, int(self.dim), list(self.hidden), float(self.dropout), bool(self.batch_norm),
                    float(self.bi_dropout))
