"""Mixture-of-tastes models (Kula, "Mixture-of-tastes Models for Representing Users with
Diverse Interests", 2017).

A user has K taste vectors ``t_uk`` and K attention vectors ``a_uk``; an item one embedding
``e_i``. The score is the attention-weighted mix of the item's affinity to each taste,

    s(u, i) = sum_k softmax_k(a_uk . e_i) * (t_uk . e_i),

so the weights depend on the item: a user who likes both horror and children's films is not
averaged into someone who likes neither. Trained like ``bpr`` (pairwise loss, sampled
negatives, L2 on the rows a batch uses). With K = 1 the softmax is 1 and the model is BPR-MF:
taste 0 and the items are BPR-MF's parameters, drawn first and in the same order, so the same
seed gives ``bpr``'s predictions (a test checks it)."""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.nn import BiasedDot, batch_l2, bpr_loss
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


def mix(tastes: torch.Tensor, attention: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Scores of items for users: ``tastes``, ``attention`` float32 [B, K, d]; ``items``
    float32 [B, M, d] (each user's own items) or [M, d] (the same items for all) -> [B, M]."""
    eq = "bkd,bmd->bkm" if items.dim() == 3 else "bkd,md->bkm"
    weights = torch.softmax(torch.einsum(eq, attention, items), dim=1)
    return (weights * torch.einsum(eq, tastes, items)).sum(1)


class TastesNet(nn.Module):
    """``base``: a bias-free :class:`~recarena.nn.BiasedDot` (taste 0 in ``user_emb`` [n_users,
    dim], items in ``item_emb`` [n_items, dim]); ``more_tastes`` [n_users, (K-1) * dim] and
    ``attention`` [n_users, K * dim], created after it so that taste 0 and the items draw
    BPR-MF's initial weights. Each [n_users, dim] block is Xavier-initialised like taste 0."""

    def __init__(self, n_users: int, n_items: int, dim: int, n_tastes: int):
        super().__init__()
        self.dim, self.n_tastes = int(dim), int(n_tastes)
        self.base = BiasedDot(n_users, n_items, dim, bias=False, init="xavier")
        self.more_tastes = nn.Embedding(n_users, (n_tastes - 1) * dim)
        self.attention = nn.Embedding(n_users, n_tastes * dim)
        for table in (self.more_tastes, self.attention):
            for block in table.weight.data.split(dim, dim=1):
                nn.init.xavier_normal_(block)

    def user_rows(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """users int64 [B] -> (tastes, attention), float32 [B, K, dim] each."""
        t = torch.cat([self.base.user_emb(users), self.more_tastes(users)], 1)
        # -1, not len(users): a traced (ONNX) graph must keep the batch dimension free
        return t.view(-1, self.n_tastes, self.dim), self.attention(users).view(-1, self.n_tastes, self.dim)


class MixtureOfTastes(TorchRecommender):
    """Training defaults are ``bpr``'s (dim 64, lr 1e-3, batch 2048, 4 negatives).

    ``n_tastes``: K, taste (and attention) vectors per user; ``reg``: L2 on the batch's taste,
    attention and item rows, summed, divided by the batch size."""

    capabilities = Capabilities(tasks={Task.RANKING}, embeddings=True, onnx=True)
    negatives = True
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "n_tastes": [Interval(int, 1, None)],
                              "reg": [Interval(float, 0, None)]}

    def __init__(
        self,
        dim: int = 64,
        n_tastes: int = 4,
        reg: float = 0.0,
        lr: float = 0.001,
        epochs: int = 300,
        batch_size: int = 2048,
        n_neg: int = 4,
        neg_sampling: str = "uniform",
        optimizer: str = "adam",
        weight_decay: float = 0.0,
    ):
        self.dim = dim
        self.n_tastes = n_tastes
        self.reg = reg
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        return TastesNet(train.n_users, train.n_items, int(self.dim), int(self.n_tastes))

    def loss(self, net, batch):
        t, a = net.user_rows(batch["user"])  # [B, K, d] each
        qi = net.base.item_emb(batch["item"])  # [B, d]
        qj = net.base.item_emb(batch["neg"])  # [B, n_neg, d]
        pos = mix(t, a, qi.unsqueeze(1))  # [B, 1]
        neg = mix(t, a, qj)  # [B, n_neg]
        return bpr_loss(pos, neg) + batch_l2(self.reg, t, a, qi, qj)

    def score_users(self, net, users):
        """users int64 [B] -> float32 [B, n_items]."""
        t, a = net.user_rows(users)
        return mix(t, a, net.base.item_emb.weight)

    def _embeddings(self):
        # the item embeddings are the model's; a user has K tastes, not one vector
        return {"item": self.network_.base.item_emb.weight.detach().cpu().numpy()}
