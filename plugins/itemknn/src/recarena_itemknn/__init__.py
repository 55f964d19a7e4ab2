"""Item-based kNN: cosine similarity between items' user vectors, each item keeping its
``k`` most similar neighbours; a user's score for item j sums the similarities between j and
the items the user has (RecBole's ItemKNN)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recarena import Capabilities, Recommender, Task
from recarena.base import history_rows
from recarena.params import Interval


class ItemKNN(Recommender):
    capabilities = Capabilities(tasks={Task.RANKING}, fold_in=True)
    _parameter_constraints = {"k": [Interval(int, 1, None)], "shrink": [Interval(float, 0, None)],
                              "block": [Interval(int, 1, None)]}

    def __init__(self, k: int = 250, shrink: float = 0.0, block: int = 1024):
        self.k = k
        self.shrink = shrink
        self.block = block

    def _fit(self, train, valid, monitor):
        X = train.csr()
        X.data[:] = 1.0
        Xc = X.tocsc().astype(np.float32)
        norms = np.sqrt(np.asarray(Xc.multiply(Xc).sum(0)).ravel())
        n = X.shape[1]
        rows, cols, vals = [], [], []
        XtX = (Xc.T @ Xc).tocsr()
        k = min(int(self.k), n - 1)
        for s in range(0, n, self.block):  # blocks of items bound the dense temporaries
            e = min(n, s + self.block)
            block = XtX[s:e].toarray()
            block /= norms[s:e, None] * norms[None, :] + self.shrink + 1e-6
            block[np.arange(e - s), np.arange(s, e)] = 0.0
            top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((e - s, 0), int)
            v = np.take_along_axis(block, top, 1)
            keep = v > 0
            rows.append(np.repeat(np.arange(s, e), k)[keep.ravel()])
            cols.append(top.ravel()[keep.ravel()])
            vals.append(v.ravel()[keep.ravel()])
        # block row j holds j's top-k neighbours i; stored transposed, W_[i, j] = sim(i, j)
        # for i among j's neighbours, so score(u, j) = sum_i X[u, i] W_[i, j] = (X @ W_)[u, j]
        W = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        self.W_ = W.T.tocsr().astype(np.float32)
        self.X_ = X.astype(np.float32)

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        return self._score_rows(self.X_[users.cpu().numpy()])

    def _score_history(self, users, indptr, indices):
        # item-based: a user unseen in training is scored from the items given at scoring time
        return self._score_rows(history_rows(users, indptr, indices, self.n_items_))

    def _score_rows(self, rows) -> torch.Tensor:
        """rows: scipy CSR [B, n_items] of histories -> float32 [B, n_items]."""
        return torch.from_numpy(np.asarray((rows @ self.W_).todense(), dtype=np.float32))
