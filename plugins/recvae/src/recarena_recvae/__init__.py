"""RecVAE (Shenbin, Alekseev, Tutubalina, Malykh & Nikolenko, WSDM 2020): Mult-VAE with

- a deeper encoder: five dense layers of swish + layer norm, each reading the sum of all
  earlier layers' outputs, on the L2-normalised, dropped-out row;
- a composite prior: a mixture of N(0, I), the posterior of the encoder as it was before the
  current round of updates (which keeps the encoder from drifting), and a wide N(0, e^10 I);
- a KL weight that grows with the user's number of items (``gamma * |x_u|``) instead of an
  annealed beta;
- alternating updates: ``enc_epochs`` passes over the users updating the encoder alone (input
  dropout on), the old encoder refreshed, then ``dec_epochs`` passes updating the decoder alone
  (no dropout).

One training epoch here is one pass over the users; a RecVAE round is enc_epochs + dec_epochs
of them, and validation runs once a round (``trainer.check_val_every_n_epoch``)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from recarena.autoencoders import UserRowRecommender
from recarena.params import Interval, Options

_LOG_2PI = math.log(2 * math.pi)


def _log_normal(x, mu, logvar):
    """Elementwise log N(x; mu, exp(logvar)), broadcasting."""
    return -0.5 * (logvar + _LOG_2PI + (x - mu).pow(2) / logvar.exp())


class _Encoder(nn.Module):
    def __init__(self, n_items: int, hidden: int, latent: int, n_layers: int = 5):
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(n_items if k == 0 else hidden, hidden) for k in range(n_layers)])
        self.ln = nn.ModuleList([nn.LayerNorm(hidden, eps=0.1) for _ in range(n_layers)])
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(self, rows: torch.Tensor, dropout: float = 0.0):
        """rows float32 [B, n_items] -> (mu, logvar) float32 [B, latent] each."""
        x = nn.functional.dropout(nn.functional.normalize(rows, dim=1), dropout, training=self.training)
        outs: list[torch.Tensor] = []
        h = x
        for fc, ln in zip(self.fc, self.ln):
            a = fc(h) + sum(outs) if outs else fc(h)
            h = ln(nn.functional.silu(a))  # swish
            outs.append(h)
        return self.mu(h), self.logvar(h)


class _Net(nn.Module):
    def __init__(self, n_items: int, hidden: int, latent: int, mixture: tuple[float, float, float], steps_per_epoch: int):
        super().__init__()
        self.encoder = _Encoder(n_items, hidden, latent)
        self.decoder = nn.Linear(latent, n_items)
        # the composite prior's middle component: a frozen copy, refreshed by the training schedule
        self.encoder_old = copy.deepcopy(self.encoder).requires_grad_(False)
        self.register_buffer("log_mixture", torch.tensor(mixture).log())
        self.steps_per_epoch = steps_per_epoch
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def log_prior(self, rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(z) under the composite prior, per latent dimension: [B, latent]."""
        post_mu, post_logvar = self.encoder_old(rows)
        zero = torch.zeros_like(z)
        parts = torch.stack([_log_normal(z, zero, zero), _log_normal(z, post_mu, post_logvar),
                             _log_normal(z, zero, zero + 10.0)], -1)
        return torch.logsumexp(parts + self.log_mixture, -1)


class RecVAE(UserRowRecommender):
    """Defaults are the paper's (and its code's): hidden 600, latent 200, gamma .005, input
    dropout .5, mixture weights (3/20, 3/4, 1/10), Adam 5e-4, batch 500 users, 3 encoder passes
    and 1 decoder pass per round, 50 rounds (200 epochs here)."""

    trainer_defaults = {"check_val_every_n_epoch": 4, "patience": 5}
    _parameter_constraints = {
        "hidden": [Interval(int, 1, None)], "latent": [Interval(int, 1, None)], "gamma": [Interval(float, 0, None)],
        "beta": [Interval(float, 0, None)], "dropout": [Interval(float, 0, 1, closed="left")],
        "enc_epochs": [Interval(int, 1, None)], "dec_epochs": [Interval(int, 1, None)],
        "mixture": [list, tuple], "noise_scale": [Interval(float, 0, None)],
        "user_sampling": [Options("uniform", "activity")], "init": [Options("pytorch", "xavier")],
    }

    def __init__(self, hidden: int = 600, latent: int = 200, gamma: float = 0.005, beta: float = 0.2,
                 dropout: float = 0.5, enc_epochs: int = 3, dec_epochs: int = 1, mixture: tuple = (0.15, 0.75, 0.1),
                 noise_scale: float = 1.0, user_sampling: str = "uniform", init: str = "pytorch", epochs: int = 200, batch_size: int = 500, lr: float = 0.0005, optimizer: str = "adam",
                 weight_decay: float = 0.0):
        self.hidden = hidden
        self.latent = latent
        # KL weight gamma * (the user's number of items); gamma = 0 uses the constant beta
        self.gamma = gamma
        self.beta = beta
        self.dropout = dropout
        self.enc_epochs = enc_epochs
        self.dec_epochs = dec_epochs
        self.mixture = mixture
        # standard deviation of the reparameterisation noise, in units of the posterior's: 1 is the
        # paper's sampling; RecBole draws it with std .01, which leaves the KL term as a regulariser
        # of a nearly deterministic code
        self.noise_scale = noise_scale
        # "uniform": an epoch is every user once, in random order (the paper's code, and
        # RecBole's: its RecVAE trains on batches of users, recbole.data.utils._get_AE_dataloader);
        # "activity": each batch's users are drawn with replacement in proportion to their
        # number of training items (a user once per item of theirs, as interaction-wise
        # batches would give), with an epoch still as many rows as users
        self.user_sampling = user_sampling
        # "pytorch": the layers' own initialisation (the paper's code); "xavier": Xavier-normal
        # weights and zero biases, as RecBole initialises its RecVAE
        self.init = init
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def _validate_params(self):
        super()._validate_params()
        w = np.asarray(self.mixture, dtype=float)
        if w.shape != (3,) or (w <= 0).any() or abs(w.sum() - 1) > 1e-6:
            from recarena.params import InvalidParameterError

            raise InvalidParameterError(getattr(self, "plugin_name", "RecVAE"), "mixture", self.mixture,
                                        "three positive weights summing to 1 (standard normal, old posterior, wide normal)")

    def build_network(self, train):
        n_users = int((train.user_counts() > 0).sum())
        net = _Net(train.n_items, int(self.hidden), int(self.latent), tuple(float(w) for w in self.mixture),
                   math.ceil(n_users / int(self.batch_size)))
        if self.init == "xavier":
            for m in net.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_normal_(m.weight)
                    nn.init.zeros_(m.bias)
            net.encoder_old.load_state_dict(net.encoder.state_dict())
        return net

    def batch_maker(self, train, tensors, seed):
        make = super().batch_maker(train, tensors, seed)
        if self.user_sampling == "uniform":
            return make
        users = tensors["user"]
        counts = train.user_counts()[users.numpy()].astype(np.float64)
        p = counts / counts.sum()
        rng = np.random.default_rng(seed)

        def draw(idx):
            return make(torch.from_numpy(rng.choice(len(users), size=len(idx), p=p)))

        return draw

    def phase(self, steps: int, steps_per_epoch: int) -> str:
        """``"encoder"`` or ``"decoder"``: which part update number ``steps`` trains."""
        epoch = steps // steps_per_epoch
        return "encoder" if epoch % (int(self.enc_epochs) + int(self.dec_epochs)) < int(self.enc_epochs) else "decoder"

    def loss(self, net, batch):
        rows = batch["row"]
        if net.training:
            part = self.phase(int(net.steps), net.steps_per_epoch)
            if part == "decoder" and self.phase(int(net.steps) - 1, net.steps_per_epoch) == "encoder":
                net.encoder_old.load_state_dict(net.encoder.state_dict())
            # the part not being trained gets no gradient, so Adam leaves it and its moments alone
            net.encoder.requires_grad_(part == "encoder")
            net.decoder.requires_grad_(part == "decoder")
            net.steps += 1
            dropout = float(self.dropout) if part == "encoder" else 0.0
        else:
            dropout = 0.0
        mu, logvar = net.encoder(rows, dropout)
        z = mu + float(self.noise_scale) * torch.randn_like(mu) * (0.5 * logvar).exp() if net.training else mu
        mll = (torch.log_softmax(net.decoder(z), 1) * rows).sum(1)
        weight = float(self.gamma) * rows.sum(1) if self.gamma else torch.full_like(mll, float(self.beta))
        kl = (_log_normal(z, mu, logvar) - net.log_prior(rows, z)).sum(1)
        return (-mll + weight * kl).mean()

    def forward_rows(self, net, rows, users):
        return net.decoder(net.encoder(rows)[0])
