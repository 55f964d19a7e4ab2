"""Splits. Each returns a :class:`Split` whose parts share the full data's id maps.

All randomness comes from ``numpy.random.default_rng(seed)``: the same seed gives the same
split. Every split partitions the rows it is given (property-tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recarena.data.interactions import Interactions
from recarena.errors import RecArenaError


@dataclass
class Split:
    train: Interactions
    valid: Interactions | None
    test: Interactions
    #: strong generalization: the fold-in rows of held-out users (never trained on)
    extra: dict[str, Interactions] = field(default_factory=dict)

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.valid) if self.valid is not None else 0, len(self.test)


def _permutation(n: int, seed: int, rng: str) -> np.ndarray:
    """A seeded permutation of range(n), int64 [n]. ``rng='torch'`` draws it the way RecBole
    1.2.1 shuffles its interactions (``torch.manual_seed(seed); torch.randperm(n)``), so a
    protocol copied from RecBole gets RecBole's very split, not just one like it."""
    if rng == "numpy":
        return np.random.default_rng(seed).permutation(n)
    if rng == "torch":
        import torch

        return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    raise RecArenaError(f"split rng must be 'numpy' or 'torch', got {rng!r}")


def _group_order(data: Interactions, rng: np.random.Generator | np.ndarray | None, by_time: bool) -> np.ndarray:
    """Row positions grouped by user; within a user shuffled (rng, or a given permutation of
    the rows) or by time (stable)."""
    if by_time:
        if data.timestamp is None:
            raise RecArenaError(f"{data.name} has no timestamps: a temporal split is impossible.")
        return np.lexsort((data.timestamp, data.user))
    if isinstance(rng, np.ndarray):
        perm = rng
    else:
        perm = rng.permutation(len(data)) if rng is not None else np.arange(len(data))
    return perm[np.argsort(data.user[perm], kind="stable")]


def _within_rank(users_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For user ids grouped contiguously: each row's position in its group and the group size."""
    n = len(users_sorted)
    starts = np.flatnonzero(np.r_[True, users_sorted[1:] != users_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, sizes)
    return pos, np.repeat(sizes, sizes)


def ratio_by_user(
    data: Interactions, ratios=(0.8, 0.1, 0.1), seed: int = 0, order: str = "random", rng: str = "numpy"
) -> Split:
    """Per user with n rows: valid = floor(n * r_valid), test = floor(n * r_test), train = rest
    (RecBole's rule, including its bump of a zero-size part when 0 < r*n < 1 and train keeps
    more than one row). ``order``: 'random' (rows shuffled once, in their given order, by a
    permutation from ``rng``: see :func:`_permutation`) or 'time' (last rows go to test)."""
    if len(ratios) not in (2, 3) or abs(sum(ratios) - 1) > 1e-6:
        raise RecArenaError(f"split ratios must be 2 or 3 numbers summing to 1, got {list(ratios)}")
    perm = _permutation(len(data), seed, rng) if order != "time" else None
    idx = _group_order(data, perm, order == "time")
    pos, size = _within_rank(data.user[idx])
    r = list(ratios) if len(ratios) == 3 else [ratios[0], 0.0, ratios[1]]
    n_valid = np.floor(size * r[1] + 1e-9).astype(np.int64)
    n_test = np.floor(size * r[2] + 1e-9).astype(np.int64)
    n_train = size - n_valid - n_test
    # RecBole: a part with 0 < ratio*n < 1 gets one row, taken from train, while train > 1
    for n_part, ratio in ((n_test, r[2]), (n_valid, r[1])):
        bump = (n_train > 1) & (size * ratio > 0) & (size * ratio < 1)
        n_part += bump
        n_train -= bump
    part = np.where(pos < n_train, 0, np.where(pos < n_train + n_valid, 1, 2))
    return _parts(data, idx, part, has_valid=len(ratios) == 3)


def _parts(data, idx, part, has_valid=True) -> Split:
    train = data.take(np.sort(idx[part == 0]))
    valid = data.take(np.sort(idx[part == 1])) if has_valid else None
    test = data.take(np.sort(idx[part == 2]))
    for name, p in (("train", train), ("valid", valid), ("test", test)):
        if p is not None:
            p.name = f"{data.name}/{name}"
    return Split(train, valid, test)


def global_random(data: Interactions, ratios=(0.8, 0.1, 0.1), seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(data))
    r = list(ratios) if len(ratios) == 3 else [ratios[0], 0.0, ratios[1]]
    n = len(data)
    n_train = int(round(n * r[0]))
    n_valid = int(round(n * r[1]))
    part = np.zeros(n, np.int64)
    part[n_train : n_train + n_valid] = 1
    part[n_train + n_valid :] = 2
    return _parts(data, idx, part, has_valid=len(ratios) == 3)


def leave_one_out(data: Interactions, seed: int = 0, valid: bool = True, order: str = "auto") -> Split:
    """Each user's last row -> test, second-to-last -> valid (by time when the data has
    timestamps, else at random). Users with too few rows keep them all in train."""
    by_time = data.timestamp is not None if order == "auto" else order == "time"
    rng = np.random.default_rng(seed)
    idx = _group_order(data, rng, by_time)
    pos, size = _within_rank(data.user[idx])
    from_end = size - pos  # 1 = last
    need = 3 if valid else 2
    part = np.zeros(len(idx), np.int64)
    ok = size >= need
    part[ok & (from_end == 1)] = 2
    if valid:
        part[ok & (from_end == 2)] = 1
    return _parts(data, idx, part, has_valid=valid)


def global_temporal(data: Interactions, ratios=(0.8, 0.1, 0.1)) -> Split:
    if data.timestamp is None:
        raise RecArenaError(f"{data.name} has no timestamps: a temporal split is impossible.")
    idx = np.argsort(data.timestamp, kind="stable")
    r = list(ratios) if len(ratios) == 3 else [ratios[0], 0.0, ratios[1]]
    n = len(data)
    n_train, n_valid = int(round(n * r[0])), int(round(n * r[1]))
    part = np.zeros(n, np.int64)
    part[n_train : n_train + n_valid] = 1
    part[n_train + n_valid :] = 2
    return _parts(data, idx, part, has_valid=len(ratios) == 3)


def user_holdout(
    data: Interactions, n_valid_users: int, n_test_users: int, fold_in: float = 0.8, seed: int = 0,
    drop_unseen_items: bool = False,
) -> Split:
    """Strong generalization: held-out users never appear in train. For each held-out user,
    ``fold_in`` of their rows (chosen at random) go to ``extra['valid_fold_in'|'test_fold_in']``
    (given to the model at scoring time, never trained on) and the rest, ``n - ceil(fold_in n)``
    rows (int(0.2 n) for 0.8), are the targets. ``drop_unseen_items``: held-out users' rows of
    items no training user has are dropped first (as the Mult-VAE code does)."""
    rng = np.random.default_rng(seed)
    users = np.unique(data.user)
    if n_valid_users + n_test_users >= len(users):
        raise RecArenaError(
            f"user_holdout wants {n_valid_users}+{n_test_users} held-out users but the data has {len(users)}"
        )
    perm = rng.permutation(users)
    role = np.zeros(data.n_users, np.int64)
    role[perm[:n_valid_users]] = 1
    role[perm[n_valid_users : n_valid_users + n_test_users]] = 2
    if drop_unseen_items:
        seen = np.zeros(data.n_items, bool)
        seen[data.item[role[data.user] == 0]] = True
        data = data.take(np.flatnonzero(seen[data.item]))
    idx = _group_order(data, rng, False)
    pos, size = _within_rank(data.user[idx])
    r = role[data.user[idx]]
    n_fold = np.ceil(size * fold_in).astype(np.int64)
    is_fold = pos < n_fold
    part = np.where(r == 0, 0, np.where(r == 1, np.where(is_fold, 3, 1), np.where(is_fold, 4, 2)))
    s = _parts(data, idx, part)
    s.extra["valid_fold_in"] = data.take(np.sort(idx[part == 3]))
    s.extra["test_fold_in"] = data.take(np.sort(idx[part == 4]))
    return s


def item_holdout(data: Interactions, ratios=(0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Cold items: the items (not the rows) are split at random, round(n * r_valid) to
    validation, round(n * r_test) to test, the rest to train; every row of a validation
    (test) item is a validation (test) row, so no model sees those items in training and only
    side features can tell it anything about them. ``n`` counts the items that have rows."""
    if len(ratios) != 3 or abs(sum(ratios) - 1) > 1e-6:
        raise RecArenaError(f"item_holdout ratios must be 3 numbers summing to 1, got {list(ratios)}")
    items = np.unique(data.item)
    perm = np.random.default_rng(seed).permutation(items)
    n_valid, n_test = int(round(len(items) * ratios[1])), int(round(len(items) * ratios[2]))
    role = np.zeros(data.n_items, np.int64)
    role[perm[len(items) - n_valid - n_test : len(items) - n_test]] = 1
    role[perm[len(items) - n_test :]] = 2
    return _parts(data, np.arange(len(data)), role[data.item])


def holdout_valid(train: Interactions, ratio: float, seed: int) -> tuple[Interactions, Interactions]:
    """Carve a validation set out of a predefined training file (random rows within user)."""
    s = ratio_by_user(train, (1 - ratio, ratio), seed=seed)
    s.train.name, s.test.name = train.name, train.name.replace("train", "valid")
    return s.train, s.test
