"""BPR-MF: user/item embeddings trained with the pairwise BPR loss over sampled negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recarena import Capabilities, Task
from recarena.torch_model import TorchRecommender


class _Net(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.user_emb.weight)
        nn.init.xavier_normal_(self.item_emb.weight)


class BPR(TorchRecommender):
    """``reg``: L2 on the batch's embeddings; ``n_neg`` negatives per positive."""

    capabilities = Capabilities(tasks={Task.RANKING}, embeddings=True, onnx=True)

    def __init__(
        self,
        dim: int = 64,
        lr: float = 0.001,
        reg: float = 0.0,
        epochs: int = 300,
        batch_size: int = 2048,
        n_neg: int = 1,
        neg_sampling: str = "uniform",
    ):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling

    def build_network(self, train):
        return _Net(train.n_users, train.n_items, int(self.dim))

    def loss(self, net, batch):
        pu = net.user_emb(batch["user"])  # [B, d]
        qi = net.item_emb(batch["item"])  # [B, d]
        qj = net.item_emb(batch["neg"])  # [B, n_neg, d]
        pos = (pu * qi).sum(-1, keepdim=True)
        neg = torch.einsum("bd,bnd->bn", pu, qj)
        loss = -F.logsigmoid(pos - neg).mean()
        if self.reg:
            loss = loss + self.reg * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum()) / len(pu)
        return loss

    def score_users(self, net, users):
        return net.user_emb(users) @ net.item_emb.weight.T
