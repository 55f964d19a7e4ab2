"""The one in-memory form every loader produces and every split, model and metric consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recarena.errors import RecArenaError


class IdMap:
    """Raw ids <-> dense internal ids ``0..n-1`` (int64).

    ``raw[i]`` is the raw id of internal id ``i``. Raw ids keep their type (int or str).
    """

    __slots__ = ("raw", "_index")

    def __init__(self, raw: np.ndarray | list):
        self.raw = np.asarray(raw)
        self._index: pd.Index | None = None

    @classmethod
    def from_values(cls, values: np.ndarray) -> tuple[IdMap, np.ndarray]:
        """Build a map from raw values in first-seen-sorted order; return it and the codes."""
        codes, uniques = pd.factorize(pd.Series(values), sort=True)
        return cls(np.asarray(uniques)), codes.astype(np.int64)

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def index(self) -> pd.Index:
        if self._index is None:
            self._index = pd.Index(self.raw)
        return self._index

    def to_internal(self, raw_ids, missing: str = "error") -> np.ndarray:
        """Raw ids -> int64 internal ids. ``missing``: 'error' raises, 'mask' returns -1."""
        arr = np.atleast_1d(np.asarray(raw_ids))
        if arr.dtype.kind in "iuf" and self.raw.dtype.kind in "OUS":
            arr = arr.astype(str)
        elif arr.dtype.kind in "OUS" and self.raw.dtype.kind in "iu":
            try:
                arr = arr.astype(np.int64)
            except ValueError:
                pass
        codes = self.index.get_indexer(arr).astype(np.int64)
        if missing == "error" and (codes < 0).any():
            bad = arr[codes < 0][:5].tolist()
            raise RecArenaError(f"Unknown raw id(s) {bad}: not in the dataset's id map.")
        return codes

    def to_raw(self, internal) -> np.ndarray:
        return self.raw[np.asarray(internal, dtype=np.int64)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self.raw, other.raw)

    def __getstate__(self):
        return {"raw": self.raw}

    def __setstate__(self, state):
        self.raw, self._index = state["raw"], None


@dataclass
class Interactions:
    """A set of user-item interactions over a fixed id space.

    All arrays have shape ``[n]``: ``user``/``item`` int64 internal ids, ``rating`` float32
    (None for implicit data), ``timestamp`` int64 (None when the data has none; sequence
    files use the position in the sequence). Splits share ``users``/``items`` so ids mean
    the same thing in train, validation and test. ``user_features``/``item_features`` are
    DataFrames indexed by internal id (side features), or None.
    """

    user: np.ndarray
    item: np.ndarray
    users: IdMap
    items: IdMap
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    name: str = "data"
    rating_scale: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.user = np.ascontiguousarray(self.user, dtype=np.int64)
        self.item = np.ascontiguousarray(self.item, dtype=np.int64)
        n = len(self.user)
        if len(self.item) != n:
            raise ValueError(f"user has {n} rows but item has {len(self.item)}")
        if self.rating is not None:
            self.rating = np.ascontiguousarray(self.rating, dtype=np.float32)
            if len(self.rating) != n:
                raise ValueError(f"rating has {len(self.rating)} rows, expected {n}")
        if self.timestamp is not None:
            self.timestamp = np.ascontiguousarray(self.timestamp, dtype=np.int64)
            if len(self.timestamp) != n:
                raise ValueError(f"timestamp has {len(self.timestamp)} rows, expected {n}")

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        user: str = "user",
        item: str = "item",
        rating: str | None = "rating",
        timestamp: str | None = "timestamp",
        **kw,
    ) -> Interactions:
        """Build from a DataFrame of raw ids; internal ids are assigned in sorted raw order."""
        for col in (user, item):
            if col not in df.columns:
                raise RecArenaError(f"Column {col!r} not found; columns are {list(df.columns)}.")
        users, u = IdMap.from_values(df[user].to_numpy())
        items, i = IdMap.from_values(df[item].to_numpy())
        r = df[rating].to_numpy(np.float32) if rating and rating in df.columns else None
        t = df[timestamp].to_numpy(np.int64) if timestamp and timestamp in df.columns else None
        return cls(u, i, users, items, r, t, **kw)

    # ---- shape ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def is_explicit(self) -> bool:
        return self.rating is not None

    def __repr__(self) -> str:
        return (
            f"Interactions({self.name!r}, {len(self):,} rows, {self.n_users:,} users, "
            f"{self.n_items:,} items, ratings={'yes' if self.is_explicit else 'no'}, "
            f"timestamps={'yes' if self.timestamp is not None else 'no'})"
        )

    # ---- derived views ---------------------------------------------------------------
    def take(self, index: np.ndarray) -> Interactions:
        """Rows ``index`` (int positions or a boolean mask), sharing id maps and features."""
        index = np.asarray(index)
        return replace(
            self,
            user=self.user[index],
            item=self.item[index],
            rating=None if self.rating is None else self.rating[index],
            timestamp=None if self.timestamp is None else self.timestamp[index],
            meta=dict(self.meta),
        )

    def concat(self, other: Interactions) -> Interactions:
        if self.users is not other.users and self.users != other.users:
            raise ValueError("cannot concatenate interactions over different id maps")

        def cat(a, b):
            return None if a is None or b is None else np.concatenate([a, b])

        return replace(
            self,
            user=np.concatenate([self.user, other.user]),
            item=np.concatenate([self.item, other.item]),
            rating=cat(self.rating, other.rating),
            timestamp=cat(self.timestamp, other.timestamp),
            meta=dict(self.meta),
        )

    def csr(self, values: str | None = None) -> sp.csr_matrix:
        """``[n_users, n_items]`` CSR matrix; entries are 1.0 (or ratings), duplicates summed."""
        data = (
            self.rating
            if values == "rating" and self.rating is not None
            else np.ones(len(self), dtype=np.float32)
        )
        m = sp.csr_matrix((data, (self.user, self.item)), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        return m

    def user_item_sets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr [n_users+1], items [nnz])``: each user's distinct items, sorted, int64."""
        m = self.csr()
        return m.indptr.astype(np.int64), m.indices.astype(np.int64)

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr [n_users+1], items [len])``: each user's items in time order (row order
        where there are no timestamps, and between rows of one time), repeats kept, int64."""
        order = (np.lexsort((self.timestamp, self.user)) if self.timestamp is not None
                 else np.argsort(self.user, kind="stable"))
        indptr = np.zeros(self.n_users + 1, np.int64)
        np.cumsum(np.bincount(self.user, minlength=self.n_users), out=indptr[1:])
        return indptr, self.item[order].astype(np.int64)

    def item_counts(self) -> np.ndarray:
        """``[n_items]`` int64 number of interactions per item."""
        return np.bincount(self.item, minlength=self.n_items).astype(np.int64)

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.user, minlength=self.n_users).astype(np.int64)

    def to_frame(self, raw: bool = False) -> pd.DataFrame:
        cols = {
            "user": self.users.to_raw(self.user) if raw else self.user,
            "item": self.items.to_raw(self.item) if raw else self.item,
        }
        if self.rating is not None:
            cols["rating"] = self.rating
        if self.timestamp is not None:
            cols["timestamp"] = self.timestamp
        return pd.DataFrame(cols)

    def stats(self) -> dict[str, Any]:
        return {
            "interactions": len(self),
            "users": int((self.user_counts() > 0).sum()),
            "items": int((self.item_counts() > 0).sum()),
            "density": len(self) / max(1, self.n_users * self.n_items),
        }
