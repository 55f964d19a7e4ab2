"""Mult-VAE (Liang, Krishnan, Hoffman & Jebara, WWW 2018): a user's row of items, L2-normalised
and dropped out, is encoded to a Gaussian q(z | x) = N(mu, sigma^2); the decoder maps z to
logits over the catalogue, trained with the multinomial log-likelihood
``sum_i x_i log softmax(f(z))_i`` and the KL term weighted by beta, annealed linearly from 0
to ``anneal_cap`` over ``total_anneal_steps`` updates. Scoring uses z = mu (no sampling)."""

from __future__ import annotations

import torch
from torch import nn

from recarena.autoencoders import (
    UserRowRecommender,
    gaussian_kl,
    multinomial_nll,
    tanh_tower,
    weight_l2,
)
from recarena.params import Interval, IntSequence


class _Net(nn.Module):
    def __init__(self, n_items: int, hidden, latent: int):
        super().__init__()
        self.latent = int(latent)
        # the encoder's last layer gives mu and log sigma^2 side by side
        self.encoder = tanh_tower([n_items, *hidden, 2 * self.latent])
        self.decoder = tanh_tower([self.latent, *reversed(hidden), n_items])
        # optimizer updates so far: the KL annealing schedule's clock, saved with the weights
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def encode(self, rows: torch.Tensor, dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """rows float32 [B, n_items] -> (mu, logvar) float32 [B, latent] each."""
        x = nn.functional.normalize(rows, dim=1)
        x = nn.functional.dropout(x, dropout, training=self.training)
        h = self.encoder(x)
        return h[:, : self.latent], h[:, self.latent :]


class MultVAE(UserRowRecommender):
    """Defaults are the paper's ML-20M setting: one hidden layer of 600, latent 200, input
    dropout .5, Adam 1e-3, batch 500 users, beta annealed to .2 over 200,000 updates."""

    _parameter_constraints = {
        "hidden": [IntSequence(1, None, min_len=0)], "latent": [Interval(int, 1, None)],
        "dropout": [Interval(float, 0, 1, closed="left")], "anneal_cap": [Interval(float, 0, None)],
        "total_anneal_steps": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)],
    }

    def __init__(self, hidden: tuple = (600,), latent: int = 200, dropout: float = 0.5, anneal_cap: float = 0.2,
                 total_anneal_steps: int = 200000, reg: float = 0.0, epochs: int = 200, batch_size: int = 500,
                 lr: float = 0.001, optimizer: str = "adam", weight_decay: float = 0.0):
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.anneal_cap = anneal_cap
        self.total_anneal_steps = total_anneal_steps
        # L2 on the weights (the paper's TensorFlow code: lambda sum ||W||^2, per batch)
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        return _Net(train.n_items, [int(h) for h in self.hidden], int(self.latent))

    def beta(self, steps: int) -> float:
        """The KL weight after ``steps`` updates: min(anneal_cap, steps / total_anneal_steps)."""
        return min(float(self.anneal_cap), steps / float(self.total_anneal_steps))

    def loss(self, net, batch):
        rows = batch["row"]
        mu, logvar = net.encode(rows, float(self.dropout))
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if net.training else mu
        beta = self.beta(int(net.steps))
        if net.training:
            net.steps += 1
        loss = multinomial_nll(net.decoder(z), rows) + beta * gaussian_kl(mu, logvar).mean()
        if self.reg:
            loss = loss + float(self.reg) * weight_l2(net)
        return loss

    def forward_rows(self, net, rows, users):
        # scores are logits: the softmax is monotone, so the ranking is the same
        return net.decoder(net.encode(rows)[0])
