"""Variational biased MF: a Gaussian posterior over every factor and bias instead of a point.

Each user's ``[b_u, p_u]`` and item's ``[b_i, q_i]`` has a mean-field posterior
``N(m, diag(s^2))``; the priors are ``N(0, prior_std^2 I)``, or with ``learn_prior`` ``N(0,
diag(v))`` with one learned variance per dimension for users and one for items (type-II
maximum likelihood, as BPMF's hyperpriors do by sampling). Learned from small initial factors,
the prior variances shrink with them and prune the factors (ML-1M: validation RMSE .903, a
biases-only model's), so the fixed prior is the default. Ratings are ``N(mu + b_u + b_i + p_u . q_i, sigma^2_ui)``, with ``noise='global'``
one sigma for all, with ``'user_item'`` ``log sigma^2_ui = c + a_u + a_i`` (some users rate
consistently, some items divide people). Trained by maximising the ELBO with the
reparameterization trick: one sample per rating, and each row's KL spread over its ratings
(``KL_u / n_u`` per rating of u), so an epoch counts every KL once.

Prediction: the predictive mean ``mu + m_bu + m_bi + m_u . m_i`` and variance
``s_bu^2 + s_bi^2 + sum_d (m_ud^2 s_id^2 + m_id^2 s_ud^2 + s_ud^2 s_id^2) + sigma^2_ui``
(exact for independent Gaussians). What makes it more than biased MF: it knows how sure it
is. An unseen user or item has its prior as posterior: mean 0, the prior's variance."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.errors import RecArenaError
from recarena.nn import BiasedDot
from recarena.params import Interval, Options
from recarena.torch_model import TorchRecommender


class VariationalNet(nn.Module):
    """``mean``: the posterior means, a :class:`~recarena.nn.BiasedDot` (biases and factors);
    ``user_logstd`` [n_users, 1 + dim], ``item_logstd`` [n_items, 1 + dim]: log posterior std
    of [bias, factors]; ``user_prior`` / ``item_prior`` [1 + dim]: log prior variances
    (parameters with ``learn_prior``, else buffers);
    ``log_noise``: c; with user_item noise ``user_noise`` [n_users, 1], ``item_noise`` [n_items, 1];
    buffers ``user_count`` / ``item_count`` float32: training ratings per row (>= 1), and
    ``user_seen`` / ``item_seen`` bool: whether a row has any."""

    def __init__(self, train, dim: int, init_std: float, noise: str, prior_std: float, learn_prior: bool):
        super().__init__()
        n_u, n_i = train.n_users, train.n_items
        self.mean = BiasedDot(n_u, n_i, dim, float(train.rating.mean()), init_std).zero_unseen(train.user, train.item)
        prior_logvar = torch.full((dim + 1,), 2 * math.log(prior_std))
        if learn_prior:
            self.user_prior = nn.Parameter(prior_logvar.clone())
            self.item_prior = nn.Parameter(prior_logvar.clone())
        else:
            self.register_buffer("user_prior", prior_logvar.clone())
            self.register_buffer("item_prior", prior_logvar.clone())
        self.user_logstd = nn.Embedding(n_u, dim + 1)
        self.item_logstd = nn.Embedding(n_i, dim + 1)
        users = np.bincount(train.user, minlength=n_u)
        items = np.bincount(train.item, minlength=n_i)
        with torch.no_grad():
            self.user_logstd.weight.fill_(math.log(init_std))
            self.item_logstd.weight.fill_(math.log(init_std))
        self.log_noise = nn.Parameter(torch.tensor(math.log(float(train.rating.var()) + 1e-6)))
        self.noise = noise
        if noise == "user_item":
            self.user_noise = nn.Embedding(n_u, 1)
            self.item_noise = nn.Embedding(n_i, 1)
            nn.init.zeros_(self.user_noise.weight)
            nn.init.zeros_(self.item_noise.weight)
        self.register_buffer("user_count", torch.from_numpy(np.maximum(users, 1).astype(np.float32)))
        self.register_buffer("item_count", torch.from_numpy(np.maximum(items, 1).astype(np.float32)))
        self.register_buffer("user_seen", torch.from_numpy(users > 0))
        self.register_buffer("item_seen", torch.from_numpy(items > 0))

    def posterior(self, users: torch.Tensor, items: torch.Tensor):
        """users, items int64 [B] -> means and stds of [bias, factors]: 4 x float32 [B, 1 + dim]."""
        m = self.mean
        mu_u = torch.cat([m.user_bias(users), m.user_emb(users)], 1)
        mu_i = torch.cat([m.item_bias(items), m.item_emb(items)], 1)
        # an unseen row's posterior is its prior (its mean is already 0: zero_unseen)
        s_u = torch.where(self.user_seen[users, None], self.user_logstd(users), self.user_prior / 2).exp()
        s_i = torch.where(self.item_seen[items, None], self.item_logstd(items), self.item_prior / 2).exp()
        return mu_u, s_u, mu_i, s_i

    def noise_var(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """sigma^2 per pair, float32 [B]."""
        log = self.log_noise.expand(len(users))
        if self.noise == "user_item":
            log = log + self.user_noise(users).squeeze(-1) + self.item_noise(items).squeeze(-1)
        return log.exp()

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The predictive mean, float32 [B]."""
        return self.mean(users, items)

    def variance(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The predictive variance, float32 [B]."""
        mu_u, s_u, mu_i, s_i = self.posterior(users, items)
        v_u, v_i = s_u.pow(2), s_i.pow(2)
        bias = v_u[:, 0] + v_i[:, 0]
        dot = (mu_u[:, 1:].pow(2) * v_i[:, 1:] + mu_i[:, 1:].pow(2) * v_u[:, 1:] + v_u[:, 1:] * v_i[:, 1:]).sum(1)
        return bias + dot + self.noise_var(users, items)


def gaussian_kl(m: torch.Tensor, s: torch.Tensor, prior_logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(m, s^2) || N(0, exp(prior_logvar))) per row, summed over dimensions: m, s [B, D],
    prior_logvar [D] -> [B]."""
    return 0.5 * ((s.pow(2) + m.pow(2)) / prior_logvar.exp() - 1.0 - 2.0 * s.log() + prior_logvar).sum(1)


class VariationalMF(TorchRecommender):
    """``noise``: 'user_item' (a noise level per user and item around a global one) or
    'global'; ``noise_reg``: L2 per rating on the user and item noise offsets; ``init_std``:
    initial std of the factor means, and initial posterior std; ``samples``: reparameterized
    draws per rating per step; ``prior_std``: the prior's std of every factor and bias;
    ``learn_prior``: learn one prior variance per dimension instead (from ``prior_std``)."""

    capabilities = Capabilities(tasks={Task.RATING}, embeddings=True, onnx=True, uncertainty=True)
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "init_std": [Interval(float, 0, None, closed="neither")],
        "noise": [Options("user_item", "global")], "noise_reg": [Interval(float, 0, None)],
        "samples": [Interval(int, 1, None)], "prior_std": [Interval(float, 0, None, closed="neither")],
        "learn_prior": [bool],
    }

    def __init__(
        self,
        dim: int = 64,
        lr: float = 0.001,
        epochs: int = 200,
        batch_size: int = 1024,
        init_std: float = 0.01,
        noise: str = "user_item",
        noise_reg: float = 0.01,
        samples: int = 1,
        prior_std: float = 0.3,
        learn_prior: bool = False,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
    ):
        self.dim = dim
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.noise = noise
        self.noise_reg = noise_reg
        self.samples = samples
        self.prior_std = prior_std
        self.learn_prior = learn_prior
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        if train.rating is None:
            raise RecArenaError("variational-mf is a rating model: it needs explicit ratings.")
        return VariationalNet(train, int(self.dim), float(self.init_std), self.noise, float(self.prior_std),
                              bool(self.learn_prior))

    def loss(self, net, batch):
        u, i, r = batch["user"], batch["item"], batch["rating"]
        mu_u, s_u, mu_i, s_i = net.posterior(u, i)
        k = int(self.samples)
        # [k, B, 1 + dim] draws; column 0 is the bias
        zu = mu_u + s_u * torch.randn((k, *mu_u.shape), device=mu_u.device)
        zi = mu_i + s_i * torch.randn((k, *mu_i.shape), device=mu_i.device)
        pred = net.mean.mu + zu[..., 0] + zi[..., 0] + (zu[..., 1:] * zi[..., 1:]).sum(-1)  # [k, B]
        var = net.noise_var(u, i)
        nll = 0.5 * (var.log() + ((r - pred).pow(2).mean(0)) / var)
        kl = (gaussian_kl(mu_u, s_u, net.user_prior) / net.user_count[u]
              + gaussian_kl(mu_i, s_i, net.item_prior) / net.item_count[i])
        out = nll + kl
        if net.noise == "user_item" and self.noise_reg:
            out = out + self.noise_reg * (net.user_noise(u).pow(2) + net.item_noise(i).pow(2)).squeeze(-1)
        return out.mean()

    def predict_pairs(self, net, users, items):
        return net(users, items)

    def _predict_variance(self, users, items):
        with torch.no_grad():
            return self.network_.variance(users.to(self.device), items.to(self.device))

    def _embeddings(self):
        return {"user": self.network_.mean.user_emb.weight.detach().cpu().numpy(),
                "item": self.network_.mean.item_emb.weight.detach().cpu().numpy()}
