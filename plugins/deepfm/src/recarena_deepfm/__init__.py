"""DeepFM (Guo et al. 2017): an FM and an MLP over the same field embeddings; the logit is
their sum.

``pretrain_epochs`` > 0 first fits the FM alone (``recarena.ctr.FMPretraining``, at
``pretrain_lr``), early-stopped on validation, and starts DeepFM's FM weights and shared
embeddings from it, as NeuMF starts from its pre-trained parts."""

from __future__ import annotations

import torch

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, FMPretraining
from recarena.nn import MLP, FMPart
from recarena.params import Interval, IntSequence


class _Net(FMPart):
    """DeepFM's network: the FM part (``w0``, ``w``, ``v``) and an MLP over the same ``v``."""

    def __init__(self, n_features: int, n_fields: int, dim: int, hidden, dropout: float, batch_norm: bool = True,
                 input_dropout: float = 0.0, pooled: list[int] | None = None):
        super().__init__(n_features, dim)
        # columns of a multi-valued field (genre slots) the deep part sees as one mean vector
        self.register_buffer("pooled", torch.tensor(pooled or [], dtype=torch.int64))
        keep = [c for c in range(n_fields) if c not in set(pooled or [])]
        self.register_buffer("single", torch.tensor(keep, dtype=torch.int64))
        self.mlp = MLP((len(keep) + bool(pooled)) * dim, hidden, dropout, batch_norm, out_dim=1,
                       input_dropout=input_dropout)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        return super().forward(feats) + self.mlp(self.deep_input(feats)).squeeze(-1)

    def deep_input(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> float32 [B, (F' [+ 1]) * dim], the field embeddings side by side."""
        e = self.v(feats)
        if self.pooled.numel() == 0:
            return e.flatten(1)
        multi = e[:, self.pooled]  # [B, slots, dim], padding slots are zero vectors
        n = (feats[:, self.pooled] != 0).sum(1, keepdim=True).clamp(min=1).to(e.dtype)
        return torch.cat([e[:, self.single].flatten(1), multi.sum(1) / n], 1)


class DeepFM(FMPretraining, CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [IntSequence(1, None, min_len=0)],
        "dropout": [Interval(float, 0, 1, closed="left")], "batch_norm": [bool],
        "input_dropout": [Interval(float, 0, 1, closed="left")], "pool_multi": [bool],
        "reg": [Interval(float, 0, None)],
    }

    def __init__(self, dim: int = 16, hidden: tuple = (128, 128, 128), dropout: float = 0.2, lr: float = 0.001,
                 weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 2048, use_side: bool = True,
                 batch_norm: bool = True, input_dropout: float = 0.0, pool_multi: bool = False,
                 pretrain_epochs: int = 0, pretrain_lr: float = 0.005, reg: float = 0.0, optimizer: str = "adam"):
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side
        self.batch_norm = batch_norm
        self.input_dropout = input_dropout
        self.pool_multi = pool_multi
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.reg = reg
        self.optimizer = optimizer

    def build_ctr_network(self, fields, train):
        pooled = [k for k, name in enumerate(fields.names) if name.endswith("]")] if self.pool_multi else []
        return _Net(fields.n_features, fields.n_fields, int(self.dim), list(self.hidden), float(self.dropout),
                    bool(self.batch_norm), float(self.input_dropout), pooled)
