"""GRU4Rec (Hidasi et al., ICLR 2016): a GRU reads the user's last ``max_len`` items; its state
after each item, projected to the item embedding's size, scores the next item against the
(shared) item embeddings. Trained at every position at once with full-catalogue
cross-entropy (``loss_type="ce"``, the softmax the improved GRU4Rec of Hidasi & Karatzoglou
2018 and RecBole use) or one sampled negative per position (``loss_type="bce"``)."""

from __future__ import annotations

from torch import nn

from recarena.nn import init_item_gru
from recarena.params import Interval
from recarena.sequences import SequentialRecommender


class _Net(nn.Module):
    def __init__(self, n_items, dim, hidden, n_layers, dropout):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)  # last id pads
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, n_layers, batch_first=True, bias=False)
        self.proj = nn.Linear(hidden, dim)
        init_item_gru(self.item_emb, self.gru)
        self.item_emb.weight.data[n_items].zero_()

    def forward(self, seq):
        """seq int64 [B, L] (left-padded with n_items) -> float32 [B, L, dim]"""
        # a bias-free GRU fed the zero padding row keeps a zero state through the padding, so
        # a left-padded sequence reads as if it started at its first item
        out, _ = self.gru(self.drop(self.item_emb(seq)))
        return self.proj(out)


class GRU4Rec(SequentialRecommender):
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [Interval(int, 1, None)], "n_layers": [Interval(int, 1, None)],
        "dropout": [Interval(float, 0, 1, closed="left")],
    }

    def __init__(self, dim: int = 64, hidden: int = 128, n_layers: int = 1, dropout: float = 0.3, max_len: int = 50, train_windows: str = "last",
                 loss_type: str = "ce", n_neg: int = 1, neg_sampling: str = "uniform", lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 200,
                 batch_size: int = 256, optimizer: str = "adam"):
        self.dim = dim
        self.hidden = hidden
        self.n_layers = n_layers
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

    def build_encoder(self, n_items):
        return _Net(n_items, int(self.dim), int(self.hidden), int(self.n_layers), float(self.dropout))

    def encode(self, network, seq):
        return network(seq)
