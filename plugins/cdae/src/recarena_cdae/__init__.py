"""CDAE, the Collaborative Denoising Auto-Encoder (Wu, DuBois, Zheng & Ester, WSDM 2016).
A user's row of items y_u is corrupted (each entry dropped with probability ``corruption``,
the rest scaled by 1 / (1 - corruption)) and encoded together with the user's own node,
``z_u = h(W^T y~_u + V_u + b)``; the decoder reconstructs the whole row,
``y^_u = sigmoid(W'^T z_u + b')``, trained on the cross-entropy (or squared error) over every
item, with L2 on W, W' and the batch's user nodes.

What makes it collaborative *and* personal is the user node V_u: a user the model never
trained on (a fold-in user) has none, and is encoded from their items alone (V_u = 0)."""

from __future__ import annotations

import torch
from torch import nn

from recarena.autoencoders import UserRowRecommender
from recarena.params import Interval, Options

_ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda x: x}


class _Net(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int, activation: str, trained: torch.Tensor):
        super().__init__()
        self.encoder = nn.Linear(n_items, dim)  # W and b
        self.user_node = nn.Embedding(n_users, dim)  # V
        nn.init.zeros_(self.user_node.weight)
        self.decoder = nn.Linear(dim, n_items)  # W' and b'
        self.activation = activation
        # users with a training item: the others have no node (zero), whatever their row
        self.register_buffer("trained", trained)

    def forward(self, rows: torch.Tensor, users: torch.Tensor, corruption: float = 0.0) -> torch.Tensor:
        """rows float32 [B, n_items], users int64 [B] -> logits float32 [B, n_items]."""
        x = nn.functional.dropout(rows, corruption, training=self.training)
        node = self.user_node(users) * self.trained[users].unsqueeze(1).to(rows.dtype)
        return self.decoder(_ACTIVATIONS[self.activation](self.encoder(x) + node))


class CDAE(UserRowRecommender):
    """Defaults are RecBole's CDAE (64 hidden units, ReLU, corruption .5, cross-entropy,
    L2 .01); the paper's best on its data used sigmoid hidden units and 50 dimensions."""

    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "corruption": [Interval(float, 0, 1, closed="left")],
        "activation": [Options(*_ACTIVATIONS)], "loss_type": [Options("bce", "mse")], "reg": [Interval(float, 0, None)],
    }

    def __init__(self, dim: int = 64, corruption: float = 0.5, activation: str = "relu", loss_type: str = "bce",
                 reg: float = 0.01, epochs: int = 300, batch_size: int = 256, lr: float = 0.001, optimizer: str = "adam",
                 weight_decay: float = 0.0):
        self.dim = dim
        self.corruption = corruption
        self.activation = activation
        self.loss_type = loss_type
        # lambda / 2 (||W||^2 + ||W'||^2) per batch, plus lambda / 2 ||V_u||^2 averaged over its users
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        trained = torch.from_numpy(train.user_counts() > 0)
        return _Net(train.n_users, train.n_items, int(self.dim), self.activation, trained)

    def loss(self, net, batch):
        rows, users = batch["row"], batch["user"]
        logits = net(rows, users, float(self.corruption))
        if self.loss_type == "bce":
            fit = nn.functional.binary_cross_entropy_with_logits(logits, rows, reduction="none").sum(1).mean()
        else:
            fit = (torch.sigmoid(logits) - rows).pow(2).sum(1).mean()
        if not self.reg:
            return fit
        l2 = net.encoder.weight.pow(2).sum() + net.decoder.weight.pow(2).sum()
        return fit + float(self.reg) / 2 * (l2 + net.user_node(users).pow(2).sum(1).mean())

    def forward_rows(self, net, rows, users):
        # logits: the sigmoid is monotone, so the ranking is the same
        return net(rows, users)
