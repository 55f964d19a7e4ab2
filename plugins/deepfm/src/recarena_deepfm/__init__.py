"""DeepFM (Guo et al. 2017): an FM and an MLP over the same field embeddings; the logit is
their sum.

``pretrain_epochs`` > 0 first fits the FM alone (at ``pretrain_lr``; FM converges best at a
larger step than the MLP tolerates), early-stopped on validation, and starts DeepFM's FM weights
and shared embeddings from it, as NeuMF starts from its pre-trained parts."""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, embedding_l2, fm_logit


class _Net(nn.Module):
    def __init__(self, n_features: int, n_fields: int, dim: int, hidden, dropout: float, batch_norm: bool = True,
                 input_dropout: float = 0.0, pooled: list[int] | None = None):
        super().__init__()
        # columns of a multi-valued field (genre slots) the deep part sees as one mean vector
        self.register_buffer("pooled", torch.tensor(pooled or [], dtype=torch.int64))
        keep = [c for c in range(n_fields) if c not in set(pooled or [])]
        self.register_buffer("single", torch.tensor(keep, dtype=torch.int64))
        self.w0 = nn.Parameter(torch.zeros(()))
        self.w = nn.Embedding(n_features, 1, padding_idx=0)
        self.v = nn.Embedding(n_features, dim, padding_idx=0)
        nn.init.zeros_(self.w.weight)
        nn.init.normal_(self.v.weight, std=0.01)
        with torch.no_grad():
            self.v.weight[0].zero_()
        layers, width = [nn.Dropout(input_dropout)] if input_dropout else [], (len(keep) + bool(pooled)) * dim
        for h in hidden:
            layers += [nn.Linear(width, h), *([nn.BatchNorm1d(h)] if batch_norm else []), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        return fm_logit(self.w0, self.w, self.v, feats) + self.mlp(self.deep_input(feats)).squeeze(-1)

    def deep_input(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> float32 [B, (F' [+ 1]) * dim], the field embeddings side by side."""
        e = self.v(feats)
        if self.pooled.numel() == 0:
            return e.flatten(1)
        multi = e[:, self.pooled]  # [B, slots, dim], padding slots are zero vectors
        n = (feats[:, self.pooled] != 0).sum(1, keepdim=True).clamp(min=1).to(e.dtype)
        return torch.cat([e[:, self.single].flatten(1), multi.sum(1) / n], 1)


class _FMNet(nn.Module):
    """The pre-training stage: DeepFM's FM part alone."""

    def __init__(self, n_features: int, dim: int):
        super().__init__()
        self.w0 = nn.Parameter(torch.zeros(()))
        self.w = nn.Embedding(n_features, 1, padding_idx=0)
        self.v = nn.Embedding(n_features, dim, padding_idx=0)
        nn.init.zeros_(self.w.weight)
        nn.init.normal_(self.v.weight, std=0.01)
        with torch.no_grad():
            self.v.weight[0].zero_()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        return fm_logit(self.w0, self.w, self.v, feats)


class _FMStage(CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR})

    def __init__(self, dim=16, lr=0.005, reg=0.0, epochs=50, batch_size=2048, use_side=True):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side

    def build_ctr_network(self, fields, train):
        return _FMNet(fields.n_features, int(self.dim))

    def logits(self, net, feats):
        return net(feats)

    def penalty(self, net, feats):
        return embedding_l2(self.reg, net, feats)


class DeepFM(CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR}, side_features=True, embeddings=True, onnx=True)

    def __init__(self, dim: int = 16, hidden: tuple = (128, 128, 128), dropout: float = 0.2, lr: float = 0.001,
                 weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 2048, use_side: bool = True,
                 batch_norm: bool = True, input_dropout: float = 0.0, pool_multi: bool = False,
                 pretrain_epochs: int = 0, pretrain_lr: float = 0.005, reg: float = 0.0):
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

    def _fit(self, train, valid, monitor):
        self._init_from = None
        if self.pretrain_epochs:
            stage = _FMStage(dim=self.dim, lr=self.pretrain_lr, reg=self.reg, epochs=self.pretrain_epochs,
                             batch_size=self.batch_size, use_side=self.use_side)
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

    def build_ctr_network(self, fields, train):
        pooled = [k for k, name in enumerate(fields.names) if name.endswith("]")] if self.pool_multi else []
        net = _Net(fields.n_features, fields.n_fields, int(self.dim), list(self.hidden), float(self.dropout),
                   bool(self.batch_norm), float(self.input_dropout), pooled)
        init = getattr(self, "_init_from", None)
        if init is not None:
            with torch.no_grad():
                for name in ("w0", "w.weight", "v.weight"):
                    net.get_parameter(name).copy_(init.get_parameter(name))
        return net

    def logits(self, net, feats):
        return net(feats)

    def penalty(self, net, feats):
        return embedding_l2(self.reg, net, feats)
