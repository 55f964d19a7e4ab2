"""Mult-DAE (Liang, Krishnan, Hoffman & Jebara, WWW 2018): the denoising counterpart of
Mult-VAE. A user's row of items is L2-normalised, dropped out (the noise) and passed through a
deterministic tanh encoder and decoder to logits over the catalogue, trained with the
multinomial log-likelihood ``sum_i x_i log softmax(f(x~))_i`` plus L2 on the weights; no
latent distribution and no KL term."""

from __future__ import annotations

from torch import nn

from recarena.autoencoders import UserRowRecommender, multinomial_nll, tanh_tower, weight_l2
from recarena.params import Interval, IntSequence


class _Net(nn.Module):
    def __init__(self, n_items: int, hidden, latent: int):
        super().__init__()
        self.encoder = tanh_tower([n_items, *hidden, latent])
        self.decoder = tanh_tower([latent, *reversed(hidden), n_items])

    def forward(self, rows, dropout: float = 0.0):
        """rows float32 [B, n_items] -> logits float32 [B, n_items]."""
        x = nn.functional.dropout(nn.functional.normalize(rows, dim=1), dropout, training=self.training)
        # tanh on the code as well: the paper's DAE has it between every pair of layers
        return self.decoder(self.encoder(x).tanh())


class MultDAE(UserRowRecommender):
    """Defaults are the paper's: [I -> 200 -> I] (no hidden layer between input and code),
    input dropout .5, Adam 1e-3, batch 500 users, and the L2 of their code: .01 / batch_size
    times the weights' sum of squares per batch (``reg`` = 2e-5)."""

    _parameter_constraints = {
        "hidden": [IntSequence(1, None, min_len=0)], "latent": [Interval(int, 1, None)],
        "dropout": [Interval(float, 0, 1, closed="left")], "reg": [Interval(float, 0, None)],
    }

    def __init__(self, hidden: tuple = (), latent: int = 200, dropout: float = 0.5, reg: float = 2e-5,
                 epochs: int = 200, batch_size: int = 500, lr: float = 0.001, optimizer: str = "adam",
                 weight_decay: float = 0.0):
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        # lambda sum ||W||^2 added to each batch's loss (the paper's TensorFlow objective)
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        return _Net(train.n_items, [int(h) for h in self.hidden], int(self.latent))

    def loss(self, net, batch):
        rows = batch["row"]
        loss = multinomial_nll(net(rows, float(self.dropout)), rows)
        return loss + float(self.reg) * weight_l2(net) if self.reg else loss

    def forward_rows(self, net, rows, users):
        return net(rows)
