"""Models that read a whole row of the interaction matrix: the autoencoders (CDAE, Mult-VAE,
Mult-DAE, RecVAE) and the rating autoencoders and Boltzmann machines (DeepRec, RBM).

A **user-row ranker** (:class:`UserRowRecommender`) scores a user from their row of items, a
multi-hot float32 ``[n_items]`` built from the user's history. Whatever history it is given:
the training items of a known user, the fold-in items of a held-out user (strong
generalization, ``score_history``), or, in the ONNX recommend graph, the ``exclude`` input,
which the inference database feeds from the user's ``seen`` key (their training items). The
graph rebuilds the row from that list, so serving needs no per-user state beyond what every
recommend graph already receives. A plugin implements:

- ``build_network(train) -> nn.Module``
- ``forward_rows(network, rows float32 [B, n_items], users int64 [B]) -> float32 [B, n_items]``:
  scores from rows, deterministic (the network is in eval mode when scoring)
- ``loss(network, batch)``: ``batch["user"]`` int64 ``[B]`` (users with a training item) and
  ``batch["row"]`` float32 ``[B, n_items]`` (their training rows, 0/1); ``batch_size`` counts users

A **rating-row model** keeps the training ratings in a :class:`RatingRows` block inside its
network, so a saved model or its predict graph reconstructs a row without the training data.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recarena.base import Capabilities, Task, history_rows
from recarena.torch_model import TorchRecommender


def rows_from_lists(items: torch.Tensor, n_items: int) -> torch.Tensor:
    """Multi-hot rows from padded item lists: int64 ``[B, S]`` (-1 pads) -> float32 ``[B, n_items]``.
    Traceable (ONNX ScatterElements): the recommend graph builds its input with it."""
    idx = torch.where(items < 0, torch.full_like(items, n_items), items)
    rows = torch.zeros(items.shape[0], n_items + 1, dtype=torch.float32)
    rows = rows.scatter(1, idx, torch.ones(idx.shape, dtype=torch.float32))
    return rows[:, :n_items]


def multinomial_nll(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mult-VAE's multinomial log-likelihood, negated: -sum_i x_i log softmax(logits)_i per row,
    averaged over the batch. logits, rows: float32 ``[B, n_items]`` -> scalar."""
    return -(torch.log_softmax(logits, 1) * rows).sum(1).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row: float32 ``[B, d]`` twice -> ``[B]``."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar).sum(1)


class UserRowRecommender(TorchRecommender):
    """Base for user-row rankers (see the module docstring). Users are folded in from any
    history, so the capability ``fold_in`` comes with the base."""

    capabilities = Capabilities(tasks={Task.RANKING}, onnx=True, fold_in=True)

    # ---- the hook a plugin implements, besides build_network and loss ----------------------
    def forward_rows(self, network: nn.Module, rows: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} implements forward_rows(network, rows [B, n_items], users [B])")

    # ---- training data: one batch entry per user with a training item -----------------------
    def training_tensors(self, train, network):
        counts = train.user_counts()
        return {"user": torch.from_numpy(np.flatnonzero(counts > 0).astype(np.int64))}

    def batch_maker(self, train, tensors, seed):
        X = train.csr()
        X.data[:] = 1.0  # implicit: presence only, a repeated item counts once

        def make(idx):
            users = tensors["user"][idx]
            return {"user": users, "row": torch.from_numpy(X[users.numpy()].toarray())}

        return make

    # ---- scoring from a history ---------------------------------------------------------------
    def _rows(self, users: torch.Tensor, indptr: np.ndarray, indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(history_rows(users, indptr, indices, self.n_items_).toarray())

    def score_users(self, network, users):
        rows = self._rows(users, self.seen_indptr_, self.seen_indices_).to(users.device)
        return self.forward_rows(network, rows, users)

    def _score_history(self, users, indptr, indices):
        return self.forward_rows(self.network_, self._rows(users, indptr, indices).to(self.device), users)

    def onnx_score_users(self, network, users, exclude):
        # the database feeds the user's training items as `exclude`: they are the row
        return self.forward_rows(network, rows_from_lists(exclude, self.n_items_), users)


class RatingRows(nn.Module):
    """The training ratings as rows of the encoded entity (users, or items when item-based):
    ``R`` float32 ``[n_rows, n_cols]`` (0 where unrated), ``M`` its observed mask, the global
    mean ``mu``, ``known`` bool ``[n_rows + n_cols]`` (an entity with a training rating) and
    ``col_mean`` float32 ``[n_cols]`` (each column's mean training rating, ``mu`` where none).

    A row model cannot encode a row nobody filled in training (an all-zero input gives one
    constant for everyone): :meth:`fallback` answers the column's mean there, and ``mu`` when
    the column is unknown too."""

    def __init__(self, train, item_based: bool):
        super().__init__()
        users, items = torch.from_numpy(train.user), torch.from_numpy(train.item)
        rows, cols = (items, users) if item_based else (users, items)
        n_rows, n_cols = (train.n_items, train.n_users) if item_based else (train.n_users, train.n_items)
        self.item_based = item_based
        R = torch.zeros(n_rows, n_cols)
        R[rows, cols] = torch.from_numpy(train.rating)
        M = torch.zeros(n_rows, n_cols)
        M[rows, cols] = 1.0
        known = torch.zeros(n_rows + n_cols, dtype=torch.bool)
        known[rows] = True
        known[n_rows + cols] = True
        mu = float(train.rating.mean())
        n = M.sum(0)
        self.register_buffer("R", R)
        self.register_buffer("M", M)
        self.register_buffer("known", known)
        self.register_buffer("mu", torch.tensor(mu))
        self.register_buffer("col_mean", torch.where(n > 0, R.sum(0) / n.clamp(min=1), torch.tensor(mu)))

    @property
    def n_rows(self) -> int:
        return self.R.shape[0]

    def axes(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row ids, column ids) of user-item pairs."""
        return (items, users) if self.item_based else (users, items)

    def trained_rows(self) -> torch.Tensor:
        """int64 ids of the rows with a training rating: what a rating-row model trains on."""
        return torch.nonzero(self.M.sum(1) > 0).view(-1)

    def fallback(self, rows: torch.Tensor, cols: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        row_known = self.known[rows]
        col_known = self.known[self.n_rows + cols]
        return torch.where(row_known & col_known, out, torch.where(col_known, self.col_mean[cols], self.mu))


def predict_from_rows(reconstruct, rows_block: RatingRows, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Ratings of pairs from a row model: ``reconstruct(row ids int64 [b]) -> float32 [b, n_cols]``
    runs once per distinct row (in chunks of about 16M values), then :meth:`RatingRows.fallback`."""
    rows, cols = rows_block.axes(users, items)
    uniq, inv = torch.unique(rows, return_inverse=True)
    out = torch.empty(len(rows), device=rows.device)
    chunk = max(1, (1 << 24) // rows_block.R.shape[1])
    for s in range(0, len(uniq), chunk):
        sel = (inv >= s) & (inv < s + chunk)
        rec = reconstruct(uniq[s : s + chunk])
        out[sel] = rec[inv[sel] - s, cols[sel]]
    return rows_block.fallback(rows, cols, out)


def onnx_predict_from_rows(reconstruct, rows_block: RatingRows, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """:func:`predict_from_rows` for the predict graph: one reconstruction per pair
    (``torch.unique`` does not export)."""
    rows, cols = rows_block.axes(users, items)
    out = reconstruct(rows).gather(1, cols.view(-1, 1)).view(-1)
    return rows_block.fallback(rows, cols, out)


def tanh_tower(dims) -> nn.Sequential:
    """``Linear(dims[0], dims[1]), Tanh, ..., Linear(dims[-2], dims[-1])`` (no activation after the
    last): Mult-VAE's and Mult-DAE's encoder and decoder. Weights Xavier-normal and biases
    N(0, 0.001), as Liang et al.'s code initialises them."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(int(a), int(b))
        nn.init.xavier_normal_(lin.weight)
        nn.init.normal_(lin.bias, std=0.001)
        layers += [lin, nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def weight_l2(module: nn.Module) -> torch.Tensor:
    """Sum of squares of every Linear weight (not biases) in ``module``: a scalar."""
    return sum(m.weight.pow(2).sum() for m in module.modules() if isinstance(m, nn.Linear))
