"""Filtering and conversion. Every function returns new Interactions with compacted id maps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recarena.data.interactions import IdMap, Interactions
from recarena.errors import RecArenaError


def compact(data: Interactions) -> Interactions:
    """Drop users/items with no interactions and renumber ids densely (order kept)."""
    used_u = np.unique(data.user)
    used_i = np.unique(data.item)
    if len(used_u) == data.n_users and len(used_i) == data.n_items:
        return data
    umap = np.full(data.n_users, -1, np.int64)
    umap[used_u] = np.arange(len(used_u))
    imap = np.full(data.n_items, -1, np.int64)
    imap[used_i] = np.arange(len(used_i))

    def sub_features(df: pd.DataFrame | None, used: np.ndarray):
        if df is None:
            return None
        out = df.reindex(used)
        out.index = pd.RangeIndex(len(used))
        return out

    out = data.take(np.arange(len(data)))
    out.user, out.item = umap[data.user], imap[data.item]
    out.users, out.items = IdMap(data.users.raw[used_u]), IdMap(data.items.raw[used_i])
    out.user_features = sub_features(data.user_features, used_u)
    out.item_features = sub_features(data.item_features, used_i)
    return out


def min_rating(data: Interactions, threshold: float) -> Interactions:
    """Keep rows with rating >= threshold."""
    if data.rating is None:
        raise RecArenaError(f"{data.name} has no ratings, so it cannot be filtered by rating.")
    return compact(data.take(data.rating >= threshold))


def drop_ratings(data: Interactions, values) -> Interactions:
    if data.rating is None:
        raise RecArenaError(f"{data.name} has no ratings to drop.")
    return compact(data.take(~np.isin(data.rating, np.asarray(values, np.float32))))


def k_core(data: Interactions, user_k: int = 0, item_k: int = 0) -> Interactions:
    """Repeat dropping users with < user_k and items with < item_k rows until nothing changes."""
    keep = np.ones(len(data), bool)
    while True:
        u, i = data.user[keep], data.item[keep]
        uc = np.bincount(u, minlength=data.n_users)
        ic = np.bincount(i, minlength=data.n_items)
        bad = np.zeros(len(data), bool)
        if user_k:
            bad |= uc[data.user] < user_k
        if item_k:
            bad |= ic[data.item] < item_k
        new_keep = keep & ~bad
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    return compact(data.take(keep))


def dedupe(data: Interactions, keep: str = "last") -> Interactions:
    """One row per (user, item); with timestamps the latest (or first) is kept."""
    order = np.argsort(data.timestamp, kind="stable") if data.timestamp is not None else np.arange(len(data))
    key = data.user[order] * data.n_items + data.item[order]
    s = pd.Series(key)
    mask = ~s.duplicated(keep=keep).to_numpy()
    return data.take(np.sort(order[mask]))


def resolve_duplicates(data: Interactions, rule: str = "keep") -> tuple[Interactions, int]:
    """Apply a protocol's ``duplicates:`` rule to repeated (user, item) rows; returns the data
    and how many rows repeated an earlier one.

    keep: leave them (sequences repeat items on purpose); last: the latest row (by timestamp,
    else file order); mean: one row with the mean rating and the latest timestamp; error: refuse."""
    key = pd.Series(data.user * max(1, data.n_items) + data.item)
    dup = key.duplicated().to_numpy()
    n = int(dup.sum())
    if n == 0 or rule == "keep":
        return data, n
    if rule == "error":
        r = int(np.flatnonzero(dup)[0])
        raise RecArenaError(
            f"{data.name}: {n:,} repeated (user, item) row(s), the first user {data.users.to_raw(data.user[r])!r}, "
            f"item {data.items.to_raw(data.item[r])!r}, and the protocol says duplicates: error."
        )
    if rule == "last":
        return dedupe(data, keep="last"), n
    first = ~dup
    out = data.take(np.flatnonzero(first))
    groups = pd.Series(np.arange(len(out)), index=key[first].to_numpy())[key.to_numpy()].to_numpy()
    if data.rating is not None:
        out.rating = (np.bincount(groups, data.rating, len(out)) / np.bincount(groups, minlength=len(out))).astype(np.float32)
    if data.timestamp is not None:
        ts = np.full(len(out), np.iinfo(np.int64).min)
        np.maximum.at(ts, groups, data.timestamp)
        out.timestamp = ts
    return out, n


def to_implicit(data: Interactions) -> Interactions:
    out = data.take(np.arange(len(data)))
    out.rating = None
    out.rating_scale = None
    return out


def binarize(data: Interactions, threshold: float) -> Interactions:
    """CTR labels: rating >= threshold -> 1.0 else 0.0 (kept in ``rating``)."""
    if data.rating is None:
        raise RecArenaError(f"{data.name} has no ratings to turn into labels.")
    out = data.take(np.arange(len(data)))
    out.rating = (data.rating >= threshold).astype(np.float32)
    out.rating_scale = (0.0, 1.0)
    return out


def apply_filters(data: Interactions, spec: dict | None) -> Interactions:
    """Apply a protocol's ``filter:`` block (keys: min_rating, drop_ratings, user_core,
    item_core, implicit, ctr_threshold), in that order (repeated rows: the protocol's
    ``duplicates:`` rule, :func:`resolve_duplicates`, applied before)."""
    spec = dict(spec or {})
    known = {"min_rating", "drop_ratings", "user_core", "item_core", "implicit", "ctr_threshold"}
    unknown = set(spec) - known
    if unknown:
        from recarena.errors import UnknownNameError

        raise UnknownNameError("filter key", sorted(unknown)[0], known)
    if "drop_ratings" in spec:
        data = drop_ratings(data, spec["drop_ratings"])
    if "min_rating" in spec:
        data = min_rating(data, float(spec["min_rating"]))
    if spec.get("user_core") or spec.get("item_core"):
        data = k_core(data, int(spec.get("user_core", 0)), int(spec.get("item_core", 0)))
    if "ctr_threshold" in spec:
        data = binarize(data, float(spec["ctr_threshold"]))
    if spec.get("implicit"):
        data = to_implicit(data)
    return compact(data)
