"""Plain MF: r(u, i) = mu + p_u . q_i, trained on MSE with L2 on the batch's factors.

``mu`` is the training mean, a constant offset (not a learned bias): this is the baseline
that biased-mf improves on.
"""

from __future__ import annotations

from recarena import Capabilities, Task
from recarena.nn import BiasedDot
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


class MF(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True, onnx=True)
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)],
                              "init_std": [Interval(float, 0, None)]}

    def __init__(self, dim: int = 64, lr: float = 0.001, reg: float = 0.1, epochs: int = 100,
                 batch_size: int = 256, init_std: float = 0.01, optimizer: str = "adam", weight_decay: float = 0.0):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        if train.rating is None:
            from recarena.errors import RecArenaError

            raise RecArenaError("mf is a rating model: it needs explicit ratings.")
        return BiasedDot(train.n_users, train.n_items, int(self.dim), float(train.rating.mean()), float(self.init_std),
                         bias=False).zero_unseen(train.user, train.item)  # unseen user or item: mu

    def loss(self, net, batch):
        pu, qi = net.user_emb(batch["user"]), net.item_emb(batch["item"])
        pred = net.mu + (pu * qi).sum(-1)
        return ((pred - batch["rating"]) ** 2 + self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1))).mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)
