"""Factorization machine (Rendle 2010) over categorical fields:
y = w0 + sum_f w_f + 1/2 sum_d ((sum_f v_fd)^2 - sum_f v_fd^2), the O(k n) form.

Rating task: y is the rating (MSE). CTR task (0/1 labels): y is a logit (cross-entropy).
"""

from __future__ import annotations

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
        return FMPart(fields.n_features, int(self.dim))

    def logits(self, net, feats):
        return net(feats)

    def penalty(self, net, feats):
        return embedding_l2(self.reg, net.v, feats)
