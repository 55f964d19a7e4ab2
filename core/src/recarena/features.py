"""Side features as categorical fields, for CTR models (FM, DeepFM, ...).

Every (user, item) row becomes a fixed-width vector of global feature ids: the user's fields
(id, gender, age, occupation, ...), the item's single-valued fields (id, release year, ...)
and its multi-valued fields (genres) padded to a fixed width. Id 0 is the padding feature,
whose embedding models keep at zero (``padding_idx=0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from recarena.data.interactions import Interactions

#: columns never used as categorical features (free text, near-unique values)
SKIP = {"title", "url", "picture", "zip", "release", "video_release"}


@dataclass
class Fields:
    user: torch.Tensor  # int64 [n_users, Fu]
    item: torch.Tensor  # int64 [n_items, Fi]
    n_features: int  # including the padding id 0
    names: list[str]  # one per column of cat(user, item)

    @property
    def n_fields(self) -> int:
        return self.user.shape[1] + self.item.shape[1]

    def rows(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``[B]`` user and item ids -> ``[B, n_fields]`` feature ids."""
        return torch.cat([self.user[users], self.item[items]], 1)


def _year(title: str) -> str:
    m = re.search(r"\((\d{4})\)\s*$", str(title))
    return m.group(1) if m else "?"


def encode(data: Interactions, use_side: bool = True, max_multi: int = 6) -> Fields:
    """Build the field tables from ``data``'s id maps and side features."""
    next_id = [1]  # 0 is padding

    def block(values: np.ndarray) -> np.ndarray:
        codes, uniq = pd.factorize(pd.Series(values).astype(str), sort=True)
        out = codes + next_id[0]
        next_id[0] += len(uniq)
        return out.astype(np.int64)

    def multi_block(values) -> tuple[list[np.ndarray], int]:
        """A '|'-separated column -> up to ``max_multi`` padded columns of feature ids."""
        bags = pd.Series(values).fillna("").astype(str).str.split("|")
        vocab = sorted({g for b in bags for g in b if g})
        index = {g: k + next_id[0] for k, g in enumerate(vocab)}
        next_id[0] += len(vocab)
        width = min(max_multi, max(len(b) for b in bags))
        m = np.zeros((len(bags), width), np.int64)
        for r, b in enumerate(bags):
            ids = [index[g] for g in b if g][:width]
            m[r, : len(ids)] = ids
        return list(m.T), width

    def side(frame: pd.DataFrame | None, cols: list, names: list[str]) -> None:
        """Single-valued columns first, then every multi-valued ('|'-separated) one, in order."""
        if frame is None:
            return
        multi = []
        for c in frame.columns:
            if c in SKIP:
                continue
            if frame[c].astype(str).str.contains("|", regex=False).any():
                multi.append(c)
                continue
            cols.append(block(frame[c].to_numpy()))
            names.append(c)
        for c in multi:
            slots, width = multi_block(frame[c].to_numpy())
            cols += slots
            names += [f"{c}[{k}]" for k in range(width)]

    ucols, unames = [block(np.arange(data.n_users))], ["user_id"]
    icols, inames = [block(np.arange(data.n_items))], ["item_id"]
    if use_side:
        side(data.user_features, ucols, unames)
        f = data.item_features
        if f is not None and "title" in f.columns:
            icols.append(block(f["title"].map(_year).to_numpy()))
            inames.append("year")
        side(f, icols, inames)
    return Fields(
        torch.from_numpy(np.stack(ucols, 1)), torch.from_numpy(np.stack(icols, 1)), next_id[0], unames + inames
    )
