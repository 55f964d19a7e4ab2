"""Wide & Deep (Cheng et al. 2016): a wide linear model over the sparse features and chosen
cross-product features, and a deep MLP over the field embeddings, trained jointly; the logit
is their sum.

``crosses`` names the cross products of the wide part as ``"a*b"`` over field names
(``recarena.features``: user_id, gender, age, occupation, item_id, year, genre, ...); the
slots of a multi-valued field cross one by one, so ``"gender*genre"`` gives a weight to every
(gender, genre) pair the item has. Cross ids are exact (no hashing): the fields here are small.

The embeddings and wide weights can start from a fitted FM (``pretrain_epochs``,
``recarena.ctr.FMPretraining``): the FM's ``w0``, ``w``, ``v`` are the wide part's bias and
weights and the deep part's embeddings.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, FMPretraining
from recarena.errors import RecArenaError
from recarena.nn import MLP, LinearPart, embedding_l2, field_embedding
from recarena.params import Constraint, Interval, IntSequence


class _Crosses(Constraint):
    """A list of ``"a*b"`` field-name pairs."""

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, list | tuple) and all(
            isinstance(c, str) and re.fullmatch(r"[^*\s]+\*[^*\s]+", c) for c in value)

    def invalid_example(self) -> Any:
        return ["gender-genre"]

    def __str__(self) -> str:
        return 'a list of "a*b" field-name pairs'


def _field_of(name: str) -> str:
    return re.sub(r"\[\d+\]$", "", name)


def cross_tables(fields, crosses) -> tuple[list[tuple[int, int, int, int, int, int]], int]:
    """For each cross ``a*b`` and each pair of their columns (i, j): ``(i, j, start_a, start_b,
    card_b, base)`` so that the cross id of a row is ``base + (x_i - start_a) * card_b + (x_j -
    start_b) + 1`` (0 when either slot is padding); and the number of cross ids plus one."""
    cols: dict[str, list[int]] = {}
    for k, n in enumerate(fields.names):
        cols.setdefault(_field_of(n), []).append(k)
    nu = fields.user.shape[1]

    def values(k):
        return fields.user[:, k] if k < nu else fields.item[:, k - nu]

    def span(name):
        v = torch.cat([values(k) for k in cols[name]])
        v = v[v != 0]
        return int(v.min()), int(v.max() - v.min() + 1)

    out, total = [], 1
    for c in crosses:
        a, b = c.split("*")
        for name in (a, b):
            if name not in cols:
                raise RecArenaError(f"wide-deep: cross {c!r} names the field {name!r}, which the data does not "
                                    f"have; fields: {', '.join(cols)}.")
        (sa, ca), (sb, cb) = span(a), span(b)
        for i in cols[a]:
            for j in cols[b]:
                out.append((i, j, sa, sb, cb, total - 1))
        total += ca * cb
    return out, total


class _Net(LinearPart):
    """The wide part (``w0``, ``w`` over features, ``w_cross`` over cross ids) and the deep part
    (embeddings ``v`` ``[n_features, dim]``, an MLP over the F field vectors side by side)."""

    def __init__(self, n_features: int, n_fields: int, dim: int, hidden, dropout: float, batch_norm: bool,
                 crosses: list[tuple[int, ...]], n_cross: int):
        super().__init__(n_features)
        self.v = field_embedding(n_features, dim)
        self.mlp = MLP(n_fields * dim, hidden, dropout, batch_norm, out_dim=1)
        self.w_cross = nn.Embedding(max(n_cross, 1), 1, padding_idx=0)
        nn.init.zeros_(self.w_cross.weight)
        spec = torch.tensor(crosses, dtype=torch.int64).reshape(-1, 6)
        self.register_buffer("cross_spec", spec)

    def cross_ids(self, feats: torch.Tensor) -> torch.Tensor:
        """feats int64 [B, F] -> cross ids int64 [B, C] (0 where a slot is padding)."""
        s = self.cross_spec
        xi, xj = feats[:, s[:, 0]], feats[:, s[:, 1]]
        ids = s[:, 5] + (xi - s[:, 2]) * s[:, 4] + (xj - s[:, 3]) + 1
        return torch.where((xi != 0) & (xj != 0), ids, torch.zeros_like(ids))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        wide = self.linear(feats)
        if self.cross_spec.shape[0]:
            wide = wide + self.w_cross(self.cross_ids(feats)).squeeze(-1).sum(1)
        return wide + self.mlp(self.v(feats).flatten(1)).squeeze(-1)


class WideDeep(FMPretraining, CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [IntSequence(1, None, min_len=0)],
        "dropout": [Interval(float, 0, 1, closed="left")], "batch_norm": [bool],
        "reg": [Interval(float, 0, None)], "crosses": [_Crosses()],
    }

    def __init__(self, dim: int = 16, hidden: tuple = (128, 128, 128), dropout: float = 0.2,
                 batch_norm: bool = True, crosses: tuple = (), lr: float = 0.001, weight_decay: float = 0.0,
                 epochs: int = 50, batch_size: int = 2048, use_side: bool = True, pretrain_epochs: int = 0,
                 pretrain_lr: float = 0.005, reg: float = 0.0, optimizer: str = "adam"):
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.crosses = crosses
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.reg = reg
        self.optimizer = optimizer

    def build_ctr_network(self, fields, train):
        spec, n_cross = cross_tables(fields, list(self.crosses))
        return _Net(fields.n_features, fields.n_fields, int(self.dim), list(self.hidden), float(self.dropout),
                    bool(self.batch_norm), spec, n_cross)

    def penalty(self, net, feats):
        # the cross weights a batch uses are shrunk like its embeddings: a pair seen once must
        # not memorize its one label
        crosses = embedding_l2(self.reg, net.w_cross, net.cross_ids(feats)) if net.cross_spec.shape[0] else 0.0
        return super().penalty(net, feats) + crosses
