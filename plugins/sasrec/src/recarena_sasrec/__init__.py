"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's last ``max_len``
items with learned positions; the state after the last item, dotted with the (shared) item
embeddings, scores the next item. Trained at every position of the sequence at once, with
full-catalogue cross-entropy (``loss_type="ce"``, RecBole's choice) or the paper's one sampled
negative per position (``loss_type="bce"``)."""

from __future__ import annotations

import torch
from torch import nn

from recarena.nn import TransformerBlock, causal_mask
from recarena.params import Interval
from recarena.sequences import SequentialRecommender


class _Net(nn.Module):
    def __init__(self, n_items, dim, max_len, n_layers, heads, dropout):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)  # last id pads
        self.pos_emb = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([TransformerBlock(dim, heads, dropout) for _ in range(n_layers)])
        # BERT's initialisation, as SASRec's public PyTorch ports use
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()

    def forward(self, seq):
        """seq int64 [B, T] (T <= max_len, left-padded with n_items) -> float32 [B, T, dim]"""
        real = seq < self.n_items
        # left-padded: the newest item is always the last position, whatever the width
        L = self.pos_emb.num_embeddings
        pos = torch.arange(L - seq.shape[1], L, device=seq.device)
        x = self.drop(self.norm(self.item_emb(seq) + self.pos_emb(pos).unsqueeze(0)))
        mask = causal_mask(real)
        for block in self.blocks:
            x = block(x, mask)
        return x


class SASRec(SequentialRecommender):
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "n_layers": [Interval(int, 1, None)], "heads": [Interval(int, 1, None)],
        "dropout": [Interval(float, 0, 1, closed="left")],
    }

    def __init__(self, dim: int = 64, n_layers: int = 2, heads: int = 2, dropout: float = 0.5, max_len: int = 50, train_windows: str = "last",
                 loss_type: str = "ce", n_neg: int = 1, neg_sampling: str = "uniform", lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 200,
                 batch_size: int = 256, optimizer: str = "adam"):
        self.dim = dim
        self.n_layers = n_layers
        self.heads = heads
        self.dropout = dropout
        self.max_len = max_len
        self.train_windows = train_windows
        self.loss_type = loss_type
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer

    def _validate_params(self):
        super()._validate_params()
        if self.dim % self.heads:
            from recarena.params import InvalidParameterError

            raise InvalidParameterError("sasrec", "heads", self.heads, f"a divisor of dim {self.dim}")

    def build_encoder(self, n_items):
        return _Net(n_items, int(self.dim), int(self.max_len), int(self.n_layers), int(self.heads), float(self.dropout))

    def encode(self, network, seq):
        return network(seq)


__all__ = ["SASRec"]
