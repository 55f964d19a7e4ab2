"""Synthetic interactions: latent-factor ratings, power-law popularity and activity, timestamps.

Scales from 1e3 to 1e8 rows: generated in chunks with numpy, de-duplicated by (user, item).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recarena.data.interactions import IdMap, Interactions


def _zipf_weights(n: int, exponent: float, rng) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(w)  # popular ids are scattered, not 0..k
    return w / w.sum()


def synthetic(
    n_interactions: int = 10_000,
    n_users: int | None = None,
    n_items: int | None = None,
    dim: int = 8,
    seed: int = 0,
    popularity_exponent: float = 0.8,
    activity_exponent: float = 0.6,
    noise: float = 0.4,
    chunk: int = 5_000_000,
    timestamps: bool = True,
    side_features: bool = True,
) -> Interactions:
    """Synthetic explicit ratings (1-5) with power-law item popularity and user activity.

    Ratings come from ``mu + b_u + b_i + p_u . q_i + noise``, rounded and clipped, so a
    factor model can learn them. Timestamps increase with each user's sequence position.
    Returned data has exactly the distinct (user, item) pairs drawn (about n_interactions).
    """
    rng = np.random.default_rng(seed)
    n = int(n_interactions)
    # about 50 rows per user, and a catalogue that keeps the matrix sparse at every scale
    if n_users is None:
        n_users = max(20, n // 50)
    if n_items is None:
        n_items = max(50, int(4 * np.sqrt(n)))
    n_users, n_items = int(n_users), int(n_items)
    pu = _zipf_weights(n_users, activity_exponent, rng)
    pi = _zipf_weights(n_items, popularity_exponent, rng)
    P = rng.normal(0, 1 / np.sqrt(dim), (n_users, dim)).astype(np.float32)
    Q = rng.normal(0, 1 / np.sqrt(dim), (n_items, dim)).astype(np.float32)
    bu = rng.normal(0, 0.3, n_users).astype(np.float32)
    bi = rng.normal(0, 0.3, n_items).astype(np.float32)
    cu, ci = np.cumsum(pu), np.cumsum(pi)
    if n > n_users * n_items:
        raise ValueError(f"{n} interactions do not fit in {n_users} x {n_items}")
    # draw until n distinct (user, item) pairs exist: popular pairs repeat, so oversample
    # (a nearly full matrix may end a little short after the last round)
    key = np.zeros(0, np.int64)
    for _ in range(50):
        missing = n - len(key)
        if missing <= 0:
            break
        want = int(missing * 1.3) + 100
        parts = [key]
        for s in range(0, want, chunk):  # chunks bound the float temporaries
            m = min(chunk, want - s)
            u = np.minimum(np.searchsorted(cu, rng.random(m)), n_users - 1)
            i = np.minimum(np.searchsorted(ci, rng.random(m)), n_items - 1)
            parts.append(u.astype(np.int64) * n_items + i)
        key = np.unique(np.concatenate(parts))
    if len(key) > n:
        key = np.sort(rng.choice(key, n, replace=False))
    user, item = key // n_items, key % n_items
    rating = np.empty(len(key), np.float32)
    for s in range(0, len(key), chunk):
        u, i = user[s : s + chunk], item[s : s + chunk]
        r = 3.5 + bu[u] + bi[i] + 1.5 * np.einsum("nd,nd->n", P[u], Q[i]) * np.sqrt(dim)
        r += rng.normal(0, noise, len(u))
        rating[s : s + chunk] = np.clip(np.rint(r), 1, 5)
    ts = None
    if timestamps:
        ts = (1_000_000_000 + rng.integers(0, 10**8, len(key))).astype(np.int64)
    users = IdMap(np.arange(n_users, dtype=np.int64))
    items = IdMap(np.arange(n_items, dtype=np.int64))
    uf = itf = None
    if side_features:
        uf = pd.DataFrame({"group": rng.integers(0, 4, n_users)})
        genres = np.array(["Action", "Comedy", "Drama", "Horror", "Romance"])
        itf = pd.DataFrame(
            {"title": [f"Item {k}" for k in range(n_items)], "genres": genres[np.argmax(Q[:, :5], 1) % 5]}
        )
    from recarena.data.filtering import compact

    return compact(
        Interactions(
            user, item, users, items, rating, ts, uf, itf, name=f"synthetic-{n}", rating_scale=(1.0, 5.0)
        )
    )


def checkerboard(n_users: int = 40, n_items: int = 40, per_user: int = 10, seed: int = 0):
    """Known-answer ranking data: even users like only even items, odd users only odd ones.

    Returns ``(train, test)``; any ranker that learns anything must put the user's own
    parity class above the other one.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        own = np.arange(u % 2, n_items, 2)
        chosen = rng.choice(own, min(len(own), per_user + 2), replace=False)
        rows += [(u, int(i)) for i in chosen]
    arr = np.array(rows, np.int64)
    users = IdMap(np.arange(n_users, dtype=np.int64))
    items = IdMap(np.arange(n_items, dtype=np.int64))
    r = np.full(len(arr), 5.0, np.float32)
    full = Interactions(arr[:, 0], arr[:, 1], users, items, r, None, name="checkerboard", rating_scale=(1.0, 5.0))
    from recarena.data.splits import leave_one_out

    s = leave_one_out(full, seed=seed, valid=False)
    return s.train, s.test


def walks(n_users: int = 60, n_items: int = 12, length: int = 8) -> Interactions:
    """Sequences with a known next item: user u's t-th item is (u + t) mod n_items (timestamp t),
    so after any history the next item is the last one plus 1; implicit, no ratings."""
    t = np.tile(np.arange(length), n_users)
    u = np.repeat(np.arange(n_users), length)
    return Interactions(u, (u + t) % n_items, IdMap(range(n_users)), IdMap(range(n_items)), timestamp=t)
