"""BPR-MF: user/item embeddings trained with the pairwise BPR loss over sampled negatives."""

from __future__ import annotations

import torch

from recarena import Capabilities, Task
from recarena.nn import BiasedDot, batch_l2, bpr_loss
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


class BPR(TorchRecommender):
    """``reg``: L2 on the batch's embeddings; ``n_neg`` negatives per positive (4 chosen on
    recbole-ml1m's validation NDCG@10: .1991 against .1951 with 1; lr 2e-3/5e-3, reg 1e-4 and
    batch 4096 were all worse; test .2416, anchor .2407)."""

    capabilities = Capabilities(tasks={Task.RANKING}, embeddings=True, onnx=True)
    negatives = True
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)]}

    def __init__(
        self,
        dim: int = 64,
        lr: float = 0.001,
        reg: float = 0.0,
        epochs: int = 300,
        batch_size: int = 2048,
        n_neg: int = 4,
        neg_sampling: str = "uniform",
        optimizer: str = "adam",
        weight_decay: float = 0.0,
    ):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        # optimizer=sparse_adam: sparse embedding gradients, so a step costs O(batch), not O(users + items)
        return BiasedDot(train.n_users, train.n_items, int(self.dim), bias=False, init="xavier",
                         sparse=self.optimizer == "sparse_adam")

    def loss(self, net, batch):
        pu = net.user_emb(batch["user"])  # [B, d]
        qi = net.item_emb(batch["item"])  # [B, d]
        qj = net.item_emb(batch["neg"])  # [B, n_neg, d]
        pos = (pu * qi).sum(-1, keepdim=True)
        neg = torch.einsum("bd,bnd->bn", pu, qj)
        return bpr_loss(pos, neg) + batch_l2(self.reg, pu, qi, qj)

    def score_users(self, net, users):
        return net.score(users)
