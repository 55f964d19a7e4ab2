"""Factorization machine (Rendle 2010) over categorical fields:
y = w0 + sum_f w_f + 1/2 sum_d ((sum_f v_fd)^2 - sum_f v_fd^2), the O(k n) form.

Rating task: y is the rating (MSE). CTR task (0/1 labels): y is a logit (cross-entropy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender
from recarena.nn import FMPart, embedding_l2
from recarena.params import Interval


class FM(CTRRecommender):
    """``lr`` .005 was chosen on ml1m-ctr's validation AUC from {.001, .002, .005}."""

    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)]}

    def __init__(self, dim: int = 16, lr: float = 0.005, reg: float = 0.0, weight_decay: float = 0.0,
                 epochs: int = 50, batch_size: int = 2048, use_side: bool = True, optimizer: str = "adam"):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side
        self.optimizer = optimizer

    def build_ctr_network(self, fields, train):
        y = train.rating
        binary = bool(((y == 0) | (y == 1)).all())
        net = FMPart(fields.n_features, int(self.dim), 0.0 if binary else float(y.mean()))
        # 0/1 labels: the output is a logit (cross-entropy); ratings: the rating itself (MSE)
        net.binary = binary
        return net

    def logits(self, net, feats):
        return net(feats)

    def loss(self, net, batch):
        feats = self._feats(net, batch["user"], batch["item"])
        out = net(feats)
        reg = embedding_l2(self.reg, net.v, feats)
        if net.binary:
            return F.binary_cross_entropy_with_logits(out, batch["rating"]) + reg
        return F.mse_loss(out, batch["rating"]) + reg

    def predict_pairs(self, net, users, items):
        out = net(self._feats(net, users, items))
        return torch.sigmoid(out) if net.binary else out
