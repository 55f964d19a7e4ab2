"""iALS: implicit-feedback matrix factorisation by alternating least squares (Hu, Koren &
Volinsky, ICDM 2008), with the conjugate-gradient inner solver of Takács et al. (2011) as the
``implicit`` library uses it, and the tuning advice of Rendle et al. (2021).

Every (user, item) pair is in the loss: an observed pair with target 1 and weight ``alpha``,
every other pair with target 0 and weight 1,

    sum_observed alpha (1 - x_u . y_i)^2 + sum_unobserved (x_u . y_i)^2 + reg (|X|^2 + |Y|^2),

so a user's factor solves ``(Y^T Y + (alpha - 1) Y_u^T Y_u + reg I) x_u = alpha Y_u^T 1``, where
``Y_u`` holds the rows of the user's items (``implicit``'s convention: its confidence is
``alpha`` times the interaction value). The all-pairs term is the dense ``Y^T Y`` ([d, d]); the
observed part is sparse. All users are solved at once: ``cg_steps`` conjugate-gradient steps,
warm-started from the previous factors, each one a dense [n, d] x [d, d] product plus two sparse
products over the observed pairs (``torch.sparse.sampled_addmm`` for the dot products on them,
a CSR x dense product to gather them back). Then the items, symmetrically."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from recarena import Capabilities, Recommender, Task
from recarena.params import Interval


def _solve(pattern: torch.Tensor, Y: torch.Tensor, X: torch.Tensor, alpha: float, reg: float, steps: int) -> torch.Tensor:
    """``steps`` batched CG steps for every row ``x`` of X [n, d] (float32) towards
    ``(Y^T Y + (alpha - 1) Y_r^T Y_r + reg I) x = alpha Y_r^T 1``, warm-started from X.

    ``pattern``: float32 CSR [n, m] with a one on each observed pair; Y: float32 [m, d].
    Returns the new X [n, d]."""
    gram = Y.T @ Y + reg * torch.eye(Y.shape[1], dtype=Y.dtype)
    Yt = Y.T.contiguous()

    def apply(P: torch.Tensor) -> torch.Tensor:
        # (alpha - 1) p . y_i on the observed pairs only (a CSR with the pattern's indices),
        # summed back over each row's y_i
        weighted = torch.sparse.sampled_addmm(pattern, P, Yt, beta=0.0, alpha=alpha - 1.0)
        return torch.addmm(weighted @ Y, P, gram)

    R = (pattern @ Y).mul_(alpha).sub_(apply(X))
    P = R.clone()
    rs = (R * R).sum(1, keepdim=True)
    for _ in range(steps):
        AP = apply(P)
        step = rs / (P * AP).sum(1, keepdim=True).clamp_min_(1e-30)
        X = X.addcmul(step, P)
        R.addcmul_(step, AP, value=-1.0)
        rs_new = (R * R).sum(1, keepdim=True)
        P = P.mul_(rs_new / rs.clamp_min_(1e-30)).add_(R)
        rs = rs_new
    return X


def _csr(m) -> torch.Tensor:
    """scipy CSR -> torch float32 CSR of ones on its pattern. int32 indices: with them torch
    hands the products to MKL (5x faster on ML-1M than with int64 indices)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta": known, and what we want
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int32)), torch.from_numpy(m.indices.astype(np.int32)),
                                       torch.ones(m.nnz, dtype=torch.float32), m.shape, check_invariants=False)


class IALS(Recommender):
    """Defaults follow ``implicit`` 0.7's ``AlternatingLeastSquares`` as tuned for ML-1M on this
    machine: 64 factors, 15 iterations, regularization 1, alpha 5, 3 CG steps a solve.

    ``init_std``: factors start as N(0, init_std^2); ``cg_steps``: CG steps per solve (warm
    starts make 3 enough; a large number converges to the exact least-squares solution)."""

    capabilities = Capabilities(tasks={Task.RANKING}, embeddings=True, onnx=True)
    _parameter_constraints = {
        "factors": [Interval(int, 1, None)], "iterations": [Interval(int, 1, None)],
        "reg": [Interval(float, 0, None)], "alpha": [Interval(float, 0, None, closed="neither")],
        "cg_steps": [Interval(int, 1, None)], "init_std": [Interval(float, 0, None, closed="neither")],
    }

    def __init__(self, factors: int = 64, iterations: int = 15, reg: float = 1.0, alpha: float = 5.0,
                 cg_steps: int = 3, init_std: float = 0.01):
        self.factors = factors
        self.iterations = iterations
        self.reg = reg
        self.alpha = alpha
        self.cg_steps = cg_steps
        self.init_std = init_std

    def _fit(self, train, valid, monitor):
        X = train.csr()
        X.data[:] = 1.0  # implicit: presence only
        users, items = _csr(X), _csr(X.T.tocsr())
        g = torch.Generator().manual_seed(int(self.seed_))
        d = int(self.factors)
        U = torch.randn(self.n_users_, d, generator=g) * float(self.init_std)
        V = torch.randn(self.n_items_, d, generator=g) * float(self.init_std)
        a, r, k = float(self.alpha), float(self.reg), int(self.cg_steps)
        # a fixed number of sweeps, as implicit does: validation scores the result, it does not stop it
        for _ in range(int(self.iterations)):
            U = _solve(users, V, U, a, r, k)
            V = _solve(items, U, V, a, r, k)
        self.user_factors_ = U.contiguous()  # [n_users, factors] float32
        self.item_factors_ = V.contiguous()  # [n_items, factors] float32

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        """users int64 [B] -> float32 [B, n_items]: x_u . y_i."""
        return self.user_factors_[users] @ self.item_factors_.T

    def _embeddings(self):
        return {"user": self.user_factors_.numpy(), "item": self.item_factors_.numpy()}

    def _export_onnx(self, path, k):
        from recarena import onnx_export as ox

        holder = torch.nn.Module()
        holder.register_buffer("U", self.user_factors_.clone())
        holder.register_buffer("V", self.item_factors_.clone())
        return ox.manifest([ox.export_recommend(lambda user, exclude: holder.U[user] @ holder.V.T, holder,
                                                self.n_items_, k, path / "recommend.onnx")])
