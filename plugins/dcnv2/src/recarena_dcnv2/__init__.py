"""DCN-V2 (Wang et al. 2021): a cross network (``recarena.nn.CrossNetwork``: full-rank
``W_l``, or with ``rank`` set the low-rank mixture of ``n_experts`` experts) over the field
embeddings side by side, and a DNN, either ``stacked`` (cross, then DNN) or ``parallel``
(both on the embeddings, their outputs concatenated under one output unit).

``linear`` adds a first-order part ``w0 + sum_f w_f`` to the logit (as DeepCTR's DCN does).
The embeddings (and the linear part) can start from a fitted FM (``pretrain_epochs``,
``recarena.ctr.FMPretraining``). ``fm_start`` goes further: a full-rank cross network can
represent the FM's pairwise term exactly, so the model starts as the fitted FM: the first cross
layer's ``W`` is the field-pair pattern (``W[f*d+k, g*d+k] = 1`` for columns f != g), the second
subtracts ``x0`` (``W = 0``, ``b = -1``), later ones pass through, and the output unit reads
half the cross output and nothing of the DNN yet; training moves on from the FM's solution as
DeepFM's does from its pre-trained FM part.
"""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, FMPretraining
from recarena.nn import MLP, CrossNetwork, LinearPart, field_embedding
from recarena.params import Interval, IntSequence, Options


class _Net(LinearPart):
    """Embeddings ``v`` ``[n_features, dim]``, the cross network over ``x0`` ``[B, F*dim]``, the
    DNN, the output unit ``out`` and, when ``linear``, the first-order part (``w0``, ``w``; held
    but unused otherwise)."""

    def __init__(self, n_features: int, n_fields: int, dim: int, hidden, dropout: float, batch_norm: bool,
                 cross_layers: int, rank: int | None, n_experts: int, structure: str, linear: bool = False):
        super().__init__(n_features)
        self.with_linear = bool(linear)
        self.n_fields, self.dim = n_fields, dim
        width = n_fields * dim
        self.v = field_embedding(n_features, dim)
        self.cross = CrossNetwork(width, cross_layers, rank, n_experts)
        self.parallel = structure == "parallel"
        self.mlp = MLP(width, hidden, dropout, batch_norm)
        self.out = nn.Linear(self.mlp.out_features + (width if self.parallel else 0), 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        x0 = self.v(feats).flatten(1)
        if self.parallel:
            out = self.out(torch.cat([self.cross(x0), self.mlp(x0)], 1)).squeeze(-1)
        else:
            out = self.out(self.mlp(self.cross(x0))).squeeze(-1)
        return self.linear(feats) + out if self.with_linear else out

    def start_as_fm(self) -> None:
        """Set the cross network and output unit so that the logit is the FM's (see the module)."""
        width = self.n_fields * self.dim
        col = torch.arange(width) // self.dim
        k = torch.arange(width) % self.dim
        pattern = ((k[:, None] == k[None, :]) & (col[:, None] != col[None, :])).float()
        for layer, (w, b) in enumerate(zip(self.cross.w, self.cross.bias, strict=True)):
            w.copy_(pattern if layer == 0 else torch.zeros_like(w))
            b.fill_(-1.0 if layer == 1 else 0.0)
        self.out.weight.zero_()
        self.out.weight[0, :width] = 0.5
        self.out.bias.zero_()


class DCNV2(FMPretraining, CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [IntSequence(1, None, min_len=0)],
        "dropout": [Interval(float, 0, 1, closed="left")], "batch_norm": [bool],
        "cross_layers": [Interval(int, 1, None)], "rank": [None, Interval(int, 1, None)],
        "n_experts": [Interval(int, 1, None)], "structure": [Options("stacked", "parallel")],
        "reg": [Interval(float, 0, None)], "cross_reg": [Interval(float, 0, None)], "linear": [bool],
        "fm_start": [bool],
    }

    def __init__(self, dim: int = 16, hidden: tuple = (256, 256), dropout: float = 0.2, batch_norm: bool = True,
                 cross_layers: int = 2, rank: int | None = None, n_experts: int = 1, structure: str = "stacked",
                 lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 2048,
                 use_side: bool = True, pretrain_epochs: int = 0, pretrain_lr: float = 0.005, reg: float = 0.0,
                 cross_reg: float = 0.0, linear: bool = False, fm_start: bool = False, optimizer: str = "adam"):
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.cross_layers = cross_layers
        self.rank = rank
        self.n_experts = n_experts
        self.structure = structure
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.reg = reg
        self.cross_reg = cross_reg
        self.linear = linear
        self.fm_start = fm_start
        self.optimizer = optimizer

    def build_ctr_network(self, fields, train):
        return _Net(fields.n_features, fields.n_fields, int(self.dim), list(self.hidden), float(self.dropout),
                    bool(self.batch_norm), int(self.cross_layers), None if self.rank is None else int(self.rank),
                    int(self.n_experts), str(self.structure), bool(self.linear))

    def fm_start_needs(self):
        # the FM's first-order part, and a cross network that can compute its pairwise term
        return {"linear=True": bool(self.linear), "structure='parallel'": self.structure == "parallel",
                "rank=None (full rank)": self.rank is None, "cross_layers >= 2": self.cross_layers >= 2}

    def penalty(self, net, feats):
        # the paper's (and RecBole's) L2 on the cross layers' weights, beside the embedding L2
        if not self.cross_reg:
            return super().penalty(net, feats)
        return super().penalty(net, feats) + float(self.cross_reg) * net.cross.weight_norm()
