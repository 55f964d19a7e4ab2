"""Factorization machine (Rendle 2010) over categorical fields:
y = w0 + sum_f w_f + 1/2 sum_d ((sum_f v_fd)^2 - sum_f v_fd^2), the O(k n) form.

Rating task: y is the rating (MSE). CTR task (0/1 labels): y is a logit (cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, embedding_l2, fm_logit


class FMNet(nn.Module):
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
        """feats: int64 [B, F] feature ids (0 = padding) -> float32 [B]"""
        return fm_logit(self.w0, self.w, self.v, feats)


class FM(CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)

    def __init__(self, dim: int = 16, lr: float = 0.001, reg: float = 0.0, weight_decay: float = 0.0,
                 epochs: int = 50, batch_size: int = 2048, use_side: bool = True):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side

    def build_ctr_network(self, fields, train):
        y = train.rating
        self.binary_ = bool(((y == 0) | (y == 1)).all())
        return FMNet(fields.n_features, int(self.dim), 0.0 if self.binary_ else float(y.mean()))

    def logits(self, net, feats):
        return net(feats)

    def loss(self, net, batch):
        feats = self._feats(net, batch["user"], batch["item"])
        out = net(feats)
        reg = embedding_l2(self.reg, net, feats)
        if self.binary_:
            return F.binary_cross_entropy_with_logits(out, batch["rating"]) + reg
        return F.mse_loss(out, batch["rating"]) + reg

    def predict_pairs(self, net, users, items):
        out = net(self._feats(net, users, items))
        return torch.sigmoid(out) if self.binary_ else out
