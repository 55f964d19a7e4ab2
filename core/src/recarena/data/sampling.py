"""Negative sampling, vectorized with rejection of each user's positives."""

from __future__ import annotations

import warnings

import numpy as np

from recarena.data.interactions import Interactions
from recarena.errors import RecArenaError


class NegativeSampler:
    """Samples items a user has not interacted with.

    ``strategy``: 'uniform' or 'popularity' (probability proportional to count**alpha).
    ``sample(users [N] int64, n) -> [N, n] int64``; never returns one of the user's positives
    in ``positives`` (users who have interacted with every item raise).
    """

    def __init__(self, positives: Interactions, strategy: str = "uniform", alpha: float = 0.75, seed: int = 0):
        if strategy not in ("uniform", "popularity"):
            raise RecArenaError(f"Unknown negative sampling strategy {strategy!r}: use 'uniform' or 'popularity'.")
        self.n_items = positives.n_items
        self.strategy = strategy
        self.rng = np.random.default_rng(seed)
        self.keys = np.unique(positives.user * self.n_items + positives.item)
        counts = np.bincount(self.keys // self.n_items, minlength=positives.n_users)  # distinct items
        self.full_users = np.flatnonzero(counts >= self.n_items)
        # where each user's keys start: a lookup searches the user's own row (a few cache lines),
        # not the whole array, whose binary search misses the cache at every level once it
        # outgrows it (1e7 interactions: 80 MB), which made a bpr epoch superlinear in interactions
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.steps = max(1, int(counts.max(initial=0)).bit_length())
        if strategy == "popularity":
            w = positives.item_counts().astype(np.float64) ** alpha
            self.cdf = np.cumsum(w / w.sum())
        else:
            self.cdf = None

    def _draw(self, size) -> np.ndarray:
        if self.cdf is None:
            return self.rng.integers(0, self.n_items, size=size, dtype=np.int64)
        return np.minimum(np.searchsorted(self.cdf, self.rng.random(size)), self.n_items - 1).astype(np.int64)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool [N]: is (users[n], items[n]) a positive? A binary search within each user's row."""
        k = users * self.n_items + items
        if not len(self.keys):
            return np.zeros(len(k), bool)
        lo, hi = self.indptr[users], self.indptr[users + 1]
        end = hi.copy()
        for _ in range(self.steps):  # ceil(log2(longest row + 1)) halvings find every key
            mid = (lo + hi) >> 1
            right = self.keys[np.minimum(mid, len(self.keys) - 1)] < k
            right &= mid < hi
            lo = np.where(right, mid + 1, lo)
            hi = np.where(right, hi, mid)
        return (lo < end) & (self.keys[np.minimum(lo, len(self.keys) - 1)] == k)

    def sample(self, users: np.ndarray, n: int = 1, max_rounds: int = 100) -> np.ndarray:
        users = np.asarray(users, np.int64)
        if len(self.full_users) and np.isin(users, self.full_users).any():
            raise RecArenaError("A user has interacted with every item: no negative exists for them.")
        u = np.repeat(users, n)
        out = self._draw(len(u))
        bad = self.is_positive(u, out)
        rounds = 0
        while bad.any():
            rounds += 1
            if rounds > max_rounds:
                # popularity sampling can starve for users holding all popular items
                idx = np.flatnonzero(bad)
                out[idx] = self.rng.integers(0, self.n_items, size=len(idx))
            else:
                idx = np.flatnonzero(bad)
                out[idx] = self._draw(len(idx))
            bad[idx] = self.is_positive(u[idx], out[idx])
        return out.reshape(len(users), n)


def sample_eval_negatives(
    known: Interactions, target: Interactions, n: int = 99, seed: int = 0
) -> np.ndarray:
    """Negatives for sampled evaluation, ``[len(target), n]`` int64, never a known positive.

    Only on explicit request: sampled metrics are not a faithful model comparison.
    """
    warnings.warn(
        "Sampling evaluation negatives: sampled metrics can reorder models; full ranking is the default.",
        UserWarning,
        stacklevel=2,
    )
    sampler = NegativeSampler(known.concat(target), "uniform", seed=seed)
    return sampler.sample(target.user, n)
