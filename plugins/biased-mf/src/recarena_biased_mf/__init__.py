"""Biased matrix factorization: r(u, i) = mu + b_u + b_i + p_u . q_i.

Two solvers:

- ``solver='gradient'`` (default). Explicit data: MSE with L2 on the factors and biases of
  each batch (as in Funk/Koren SVD); implicit data: BPR over sampled negatives, so the same
  model also ranks. Trained by the Lightning loop with ``optimizer``.
- ``solver='mcmc'``: Bayesian biased MF fitted by Gibbs sampling (as libFM's MCMC and
  BPMF), explicit ratings only. Gaussian noise with a Gamma prior on its precision;
  Gaussian priors on [bias, factors] of every user and item with per-dimension
  Normal-Gamma hyperpriors, so there is no regularization weight to tune. Each user's
  (and item's) bias and factors are drawn jointly from their Gaussian conditional. The
  prediction is the posterior mean over the kept samples, which is itself a biased MF:
  mean_s(b_u^s + b_i^s + p_u^s . q_i^s) = mean(b_u) + mean(b_i) + [p_u^1..p_u^S] . [q_i^1..q_i^S] / S,
  so the fitted network holds the S samples side by side (``dim * samples`` columns) and
  serves, exports and ranks like any biased MF.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from recarena import Capabilities, Task
from recarena.base import ParamCapabilities
from recarena.nn import BiasedDot
from recarena.params import Interval, Options
from recarena.torch_model import TorchRecommender

SOLVERS = ("gradient", "mcmc")


class BiasedMF(TorchRecommender):
    """Biased MF. ``dim`` factors; ``reg`` L2 weight on the batch's factors and biases.

    The defaults were tuned on ml100k-u1's validation rows (5% of u1.base): a small Adam step
    with per-rating L2 generalizes best (see the foundation issue's closing note)."""

    capabilities = ParamCapabilities(
        Capabilities(tasks={Task.RATING, Task.RANKING}, embeddings=True, onnx=True),
        # the Gibbs sampler models ratings; it ranks explicit data by predicted rating but
        # has no implicit-feedback (BPR) form
        lambda m, full: replace(full, tasks={Task.RATING}) if m.solver == "mcmc" else full,
    )
    negatives = True
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)], "bias_reg": [Interval(float, 0, None)],
        "init_std": [Interval(float, 0, None)], "solver": [Options(*SOLVERS)], "burn_in": [Interval(int, 0, None)],
        "samples": [Interval(int, 1, None)], "thin": [Interval(int, 1, None)],
    }

    def __init__(
        self,
        dim: int = 64,
        lr: float = 0.0005,
        reg: float = 0.1,
        bias_reg: float = 0.01,
        epochs: int = 200,
        batch_size: int = 256,
        init_std: float = 0.01,
        n_neg: int = 1,
        neg_sampling: str = "uniform",
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        solver: str = "gradient",
        burn_in: int = 50,
        samples: int = 100,
        thin: int = 1,
    ):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.bias_reg = bias_reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.init_std = init_std
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.solver = solver
        self.burn_in = burn_in
        self.samples = samples
        self.thin = thin

    def _fit(self, train, valid, monitor):
        if self.solver == "gradient":
            return super()._fit(train, valid, monitor)
        if train.rating is None:
            raise ValueError("BiasedMF(solver='mcmc') fits explicit ratings; this training set is implicit "
                             "(use solver='gradient', which trains BPR on implicit data).")
        settings = self.trainer_settings_
        acc = settings.get("accelerator", "auto")
        use_cuda = torch.cuda.is_available() and acc in ("auto", "gpu", "cuda")
        device = torch.device("cuda" if use_cuda else "cpu")
        mu, bu, bi, pu, qi, trace = _gibbs(
            train, int(self.dim), int(self.burn_in), int(self.samples), int(self.thin), device,
            progress=bool(settings.get("progress_bar", True)),
        )
        net = BiasedDot(train.n_users, train.n_items, pu.shape[1], mu, 0.0)
        with torch.no_grad():
            net.user_emb.weight.copy_(pu)
            net.item_emb.weight.copy_(qi)
            net.user_bias.weight.copy_(bu.view(-1, 1))
            net.item_bias.weight.copy_(bi.view(-1, 1))
        net.zero_unseen(train.user, train.item)  # not the prior's draws: the same answer as the gradient solver
        self.network_ = net.eval()
        self.epochs_trained_ = len(trace)
        # the sweep-by-sweep noise level and training RMSE of the running posterior mean
        self.history_ = trace
        self.best_epoch_ = None

    def _embeddings(self):
        out = super()._embeddings()
        if self.solver == "mcmc":
            # the posterior mean of each factor vector (the network holds every sample)
            s = int(self.samples)
            out = {k: (v.reshape(v.shape[0], s, -1).mean(1) * math.sqrt(s)).astype(np.float32) for k, v in out.items()}
        return out

    def build_network(self, train):
        mu = float(train.rating.mean()) if train.rating is not None else 0.0
        # users and items without training rows answer mu + b_u / mu + b_i (README, Unseen users and items)
        return BiasedDot(train.n_users, train.n_items, int(self.dim), mu, float(self.init_std),
                         sparse=self.optimizer == "sparse_adam").zero_unseen(train.user, train.item)

    def loss(self, net: BiasedDot, batch):
        u, i = batch["user"], batch["item"]
        pu, qi = net.user_emb(u), net.item_emb(i)
        bu, bi = net.user_bias(u).squeeze(-1), net.item_bias(i).squeeze(-1)
        pred = net.mu + bu + bi + (pu * qi).sum(-1)
        if "rating" in batch:
            reg = self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1)) + self.bias_reg * (bu**2 + bi**2)
            return ((pred - batch["rating"]) ** 2 + reg).mean()
        j = batch["neg"]  # [B, n_neg]
        qj, bj = net.item_emb(j), net.item_bias(j).squeeze(-1)
        neg = net.mu + bu.unsqueeze(1) + bj + (pu.unsqueeze(1) * qj).sum(-1)
        reg = self.reg * ((pu**2).sum(-1) + (qi**2).sum(-1) + (qj**2).sum(-1).mean(1))
        return (-F.logsigmoid(pred.unsqueeze(1) - neg).mean(1) + reg).mean()

    def score_users(self, net: BiasedDot, users):
        return net.score(users)

    def predict_pairs(self, net: BiasedDot, users, items):
        return net(users, items)


def _gibbs(train, dim: int, burn_in: int, samples: int, thin: int, device: torch.device, progress: bool = True):
    """Gibbs sampler for Bayesian biased MF on ``train``'s ratings.

    Returns ``(mu, user_bias [n_users], item_bias [n_items], P [n_users, dim * samples],
    Q [n_items, dim * samples], trace)``, float32 on the CPU, where ``P @ Q.T`` plus the
    biases is the posterior mean of the kept samples, and ``trace`` a list of per-sweep
    dicts. Arithmetic in float64: the per-entity systems are solved by Cholesky.
    """
    from tqdm.auto import tqdm

    f64 = dict(dtype=torch.float64, device=device)
    u = torch.as_tensor(train.user, device=device)
    i = torch.as_tensor(train.item, device=device)
    r = torch.as_tensor(train.rating, **f64)
    n_u, n_i, n = train.n_users, train.n_items, len(r)
    mu = float(r.mean())
    rc = r - mu
    d = dim + 1  # [bias, factors]

    def side(rows, cols, n_rows, n_cols):
        # ratings in (row, col) order, so each sweep's COO matrices are built coalesced; a
        # repeated (user, item) pair is kept as two observations, which summing also does
        key = rows * n_cols + cols
        order = torch.argsort(key, stable=True)
        idx = torch.stack([rows[order], cols[order]])
        unique = bool((key[order][1:] != key[order][:-1]).all()) if n > 1 else True
        # the rating pattern does not change between sweeps: build its indicator matrix once
        ones = torch.sparse_coo_tensor(idx, torch.ones(n, **f64), (n_rows, n_cols), is_coalesced=unique, check_invariants=False)
        return order, idx, ones, unique

    sides = {"user": side(u, i, n_u, n_i), "item": side(i, u, n_i, n_u)}
    P = torch.cat([torch.zeros(n_u, 1, **f64), 0.1 * torch.randn(n_u, dim, **f64)], 1)
    Q = torch.cat([torch.zeros(n_i, 1, **f64), 0.1 * torch.randn(n_i, dim, **f64)], 1)
    hyper = {"user": torch.zeros(d, **f64), "item": torch.zeros(d, **f64)}

    def gamma(shape, rate):
        return torch.distributions.Gamma(torch.as_tensor(shape, **f64), torch.as_tensor(rate, **f64)).sample()

    def draw(which, own, other, alpha):
        order, idx, ones, unique = sides[which]
        n_rows = ones.shape[0]
        # Normal-Gamma hyperprior per dimension (mean 0, precision 1, one pseudo-observation)
        m_prev = hyper[which]
        k = own.shape[0]
        lam = gamma(1 + (k + 1) / 2, 1 + 0.5 * (((own - m_prev) ** 2).sum(0) + m_prev**2))
        m = own.sum(0) / (k + 1) + torch.randn(d, **f64) / torch.sqrt((k + 1) * lam)
        hyper[which] = m
        # design row per rating: [1, other's factors]; target: rating - mu - other's bias
        X = torch.cat([torch.ones(other.shape[0], 1, **f64), other[:, 1:]], 1)
        outer = (X[:, :, None] * X[:, None, :]).reshape(-1, d * d)
        y = rc[order] - other[idx[1], 0]
        ys = torch.sparse_coo_tensor(idx, y, (n_rows, other.shape[0]), is_coalesced=unique, check_invariants=False)
        prec = alpha * torch.sparse.mm(ones, outer).view(n_rows, d, d) + torch.diag(lam)
        rhs = alpha * torch.sparse.mm(ys, X) + lam * m
        L = torch.linalg.cholesky(prec)
        mean = torch.cholesky_solve(rhs.unsqueeze(-1), L).squeeze(-1)
        noise = torch.linalg.solve_triangular(L.transpose(1, 2), torch.randn(n_rows, d, 1, **f64), upper=True)
        return mean + noise.squeeze(-1)

    total = burn_in + (samples - 1) * thin + 1  # the last sweep is a kept one
    kept_p, kept_q, trace = [], [], []
    mean_pred = torch.zeros(n, **f64)
    bar = tqdm(range(total), desc="Gibbs sweeps", disable=not progress, leave=False)
    for sweep in bar:
        pred = P[u, 0] + Q[i, 0] + (P[u, 1:] * Q[i, 1:]).sum(1)
        sse = float(((rc - pred) ** 2).sum())
        alpha = float(gamma(1 + n / 2, 1 + 0.5 * sse))
        P = draw("user", P, Q, alpha)
        Q = draw("item", Q, P, alpha)
        entry = {"epoch": sweep, "noise_sd": 1 / math.sqrt(alpha), "train_rmse_sample": math.sqrt(sse / n)}
        if sweep >= burn_in and (sweep - burn_in) % thin == 0:
            kept_p.append(P.float().cpu())
            kept_q.append(Q.float().cpu())
            pred = P[u, 0] + Q[i, 0] + (P[u, 1:] * Q[i, 1:]).sum(1)
            mean_pred += (pred - mean_pred) / len(kept_p)
            entry["train_rmse_mean"] = float(((rc - mean_pred) ** 2).mean().sqrt())
        trace.append(entry)
        bar.set_postfix(noise_sd=f"{entry['noise_sd']:.3f}", kept=len(kept_p))
    bar.close()
    s = len(kept_p)
    bu = torch.stack([p[:, 0] for p in kept_p]).mean(0)
    bi = torch.stack([q[:, 0] for q in kept_q]).mean(0)
    scale = 1 / math.sqrt(s)
    pu = torch.cat([p[:, 1:] for p in kept_p], 1) * scale
    qi = torch.cat([q[:, 1:] for q in kept_q], 1) * scale
    return mu, bu, bi, pu, qi, trace
