"""RecArena's split as RecBole benchmark atomic files (``<name>.<part>.inter``, ``.user``, ``.item``).

Tokens are RecArena's internal ids, so the maps back are ``field2token_id[field][str(id)]``.
The ``.user`` and ``.item`` files list the whole id space, so RecBole's ids cover every user
and item of the catalogue even where training never saw one (RecBole remaps the ids of every
file it loads). ``test`` repeats ``valid``: RecBole's loaders want three parts; RecArena's test
rows never reach RecBole.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recarena.features import SKIP, _year

NAME = "recarena"


def _col(name: str) -> str:
    return re.sub(r"\W+", "_", str(name)).strip("_") or "f"


def _tokens(values) -> np.ndarray:
    return pd.Series(values).astype(str).str.replace(r"\s+", "_", regex=True).to_numpy()


def _write(path: Path, columns: dict[str, np.ndarray]) -> None:
    pd.DataFrame({k: v for k, v in columns.items()}).to_csv(path, sep="\t", index=False)


def _features(frame: pd.DataFrame | None, id_name: str, n: int, item: bool) -> dict[str, np.ndarray]:
    """``id:token`` for every id, then each side column: single-valued as a token,
    '|'-separated as a token_seq (RecBole's separator is a space)."""
    cols = {f"{id_name}:token": np.arange(n).astype(str)}
    if frame is None:
        return cols
    frame = frame.reindex(range(n))
    if item and "title" in frame.columns:
        cols["year:token"] = _tokens(frame["title"].map(_year))
    for c in frame.columns:
        if c in SKIP:
            continue
        values = frame[c].fillna("").astype(str)
        if values.str.contains("|", regex=False).any():
            cols[f"{_col(c)}:token_seq"] = values.map(
                lambda s: " ".join(_tokens([g for g in s.split("|") if g]))).to_numpy()
        else:
            cols[f"{_col(c)}:token"] = _tokens(values.replace("", "?"))
    return cols


def _sequence_rows(indptr: np.ndarray, items: np.ndarray, max_len: int, targets=None):
    """(user, history, target) rows: every prefix of each training sequence (RecBole's
    augmentation), or, with ``targets`` (user -> item), one row per user ending in it."""
    users, hist, tgt = [], [], []
    for u in range(len(indptr) - 1):
        s = items[indptr[u] : indptr[u + 1]]
        if targets is None:
            for t in range(1, len(s)):
                users.append(u)
                hist.append(" ".join(map(str, s[max(0, t - max_len) : t])))
                tgt.append(s[t])
        elif u in targets and len(s):
            for item in targets[u]:
                users.append(u)
                hist.append(" ".join(map(str, s[-max_len:])))
                tgt.append(item)
    return {"user_id:token": np.asarray(users, np.int64).astype(str), "item_id_list:token_seq": np.asarray(hist, object),
            "item_id:token": np.asarray(tgt, np.int64).astype(str)}


def write(folder: Path, train, valid, kind: str, max_len: int = 50, item_features: bool = False) -> list[str]:
    """Write ``train`` and ``valid`` (Interactions over one id space) for a RecBole model of
    type ``kind`` ('general', 'sequential' or 'context'); side features for context models,
    and the items' for any model with ``item_features``. Returns the item feature fields written."""
    folder = Path(folder) / NAME
    folder.mkdir(parents=True, exist_ok=True)
    if valid is None or len(valid) == 0:
        valid = train.take(np.arange(min(len(train), 1)))  # RecBole wants the file; no monitor reads it
    if kind == "sequential":
        indptr, items = train.sequences()
        parts = {"train": _sequence_rows(indptr, items, max_len)}
        targets: dict[int, list[int]] = {}
        for u, i in zip(valid.user.tolist(), valid.item.tolist()):
            targets.setdefault(u, []).append(i)
        parts["valid"] = _sequence_rows(indptr, items, max_len, targets)
        if len(parts["valid"]["item_id:token"]) == 0:
            parts["valid"] = {k: v[:1] for k, v in parts["train"].items()}
    else:
        parts = {}
        for part, data in (("train", train), ("valid", valid)):
            cols = {"user_id:token": data.user.astype(str), "item_id:token": data.item.astype(str)}
            if kind == "context":
                cols["label:float"] = data.rating.astype(np.float32)
            parts[part] = cols
    parts["test"] = parts["valid"]
    for part, cols in parts.items():
        _write(folder / f"{NAME}.{part}.inter", cols)
    ctx = kind == "context"
    _write(folder / f"{NAME}.user", _features(train.user_features if ctx else None, "user_id", train.n_users, False))
    items = _features(train.item_features if (ctx or item_features) else None, "item_id", train.n_items, True)
    _write(folder / f"{NAME}.item", items)
    return [c.split(":")[0] for c in items if not c.startswith("item_id:")]
