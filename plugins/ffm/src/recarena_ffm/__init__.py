"""Field-aware factorization machine (Juan et al. 2016):
y = w0 + sum_f w_f + sum_{f < g} <v_{f, field(g)}, v_{g, field(f)}>: each feature keeps one
factor vector per field it meets, so the user's vector toward genres is not the one toward
occupations.

Fields are the columns of ``recarena.features`` grouped by name: the slots of a multi-valued
column (``genre[0]``, ``genre[1]``...) are one field, as libffm's ``field:feature`` format would
write them. Padding slots (id 0) have zero factors, so they add nothing.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import FactorizationMachine
from recarena.nn import LinearPart


def field_groups(names: list[str]) -> list[int]:
    """Column names -> the field index of each column; ``x[k]`` slots share the field ``x``."""
    order: dict[str, int] = {}
    return [order.setdefault(re.sub(r"\[\d+\]$", "", n), len(order)) for n in names]


class _Net(LinearPart):
    """``w0``, ``w`` and the field-aware factors ``v`` ``[n_features, n_fields * dim]`` (the
    vector of feature x toward field f is ``v[x, f*dim:(f+1)*dim]``)."""

    def __init__(self, n_features: int, groups: list[int], dim: int):
        super().__init__(n_features)
        self.n_groups, self.dim = max(groups) + 1, int(dim)
        self.v = nn.Embedding(n_features, self.n_groups * self.dim, padding_idx=0)
        nn.init.normal_(self.v.weight, std=0.01)
        with torch.no_grad():
            self.v.weight[0].zero_()
        self.register_buffer("groups", torch.tensor(groups, dtype=torch.int64))
        n = len(groups)
        self.register_buffer("upper", torch.triu(torch.ones(n, n), diagonal=1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        b, n = feats.shape
        e = self.v(feats).view(b, n, self.n_groups, self.dim)
        toward = e[:, :, self.groups]  # [B, F, F, d]: column i's vector toward column j's field
        pair = (toward * toward.transpose(1, 2)).sum(-1)  # [B, F, F]: <v_{i, field(j)}, v_{j, field(i)}>
        return self.linear(feats) + (pair * self.upper).sum((1, 2))


class FFM(FactorizationMachine):
    """FFM with per-batch L2 ``reg`` on the factor rows a batch uses (the embedding L2 that
    took ``fm`` from .8954 to .9007 on ml1m-ctr); the parameters are the FM's
    (``recarena.ctr.FactorizationMachine``), ``dim`` being the size of each field-aware vector."""

    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, onnx=True)
    trainer_defaults = {"patience": 3}

    def build_ctr_network(self, fields, train):
        return _Net(fields.n_features, field_groups(fields.names), int(self.dim))
