"""DCN-V2 (Wang et al. 2021): a cross network (``recarena.nn.CrossNetwork``: full-rank
``W_l``, or with ``rank`` set the low-rank mixture of ``n_experts`` experts) over the field
embeddings side by side, and a DNN, either ``stacked`` (cross, then DNN) or ``parallel``
(both on the embeddings, their outputs concatenated under one output unit).

The embeddings can start from a fitted FM (``pretrain_epochs``, ``recarena.ctr.FMPretraining``:
DCN-V2 has no first-order part, so it takes the FM's ``v`` alone).
"""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, FMPretraining
from recarena.nn import MLP, CrossNetwork, field_embedding
from recarena.params import Interval, IntSequence, Options


class _Net(nn.Module):
    """Embeddings ``v`` ``[n_features, dim]``, the cross network over ``x0`` ``[B, F*dim]``, the
    DNN and the output unit ``out``."""

    def __init__(self, n_features: int, n_fields: int, dim: int, hidden, dropout: float, batch_norm: bool,
                 cross_layers: int, rank: int | None, n_experts: int, structure: str):
        super().__init__()
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
            return self.out(torch.cat([self.cross(x0), self.mlp(x0)], 1)).squeeze(-1)
        return self.out(self.mlp(self.cross(x0))).squeeze(-1)


class DCNV2(FMPretraining, CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [IntSequence(1, None, min_len=0)],
        "dropout": [Interval(float, 0, 1, closed="left")], "batch_norm": [bool],
        "cross_layers": [Interval(int, 1, None)], "rank": [None, Interval(int, 1, None)],
        "n_experts": [Interval(int, 1, None)], "structure": [Options("stacked", "parallel")],
        "reg": [Interval(float, 0, None)], "cross_reg": [Interval(float, 0, None)],
    }

    def __init__(self, dim: int = 16, hidden: tuple = (256, 256), dropout: float = 0.2, batch_norm: bool = True,
                 cross_layers: int = 2, rank: int | None = None, n_experts: int = 1, structure: str = "stacked",
                 lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 2048,
                 use_side: bool = True, pretrain_epochs: int = 0, pretrain_lr: float = 0.005, reg: float = 0.0,
                 cross_reg: float = 0.0, optimizer: str = "adam"):
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
        self.optimizer = optimizer

    def build_ctr_network(self, fields, train):
        return _Net(fields.n_features, fields.n_fields, int(self.dim), list(self.hidden), float(self.dropout),
                    bool(self.batch_norm), int(self.cross_layers), None if self.rank is None else int(self.rank),
                    int(self.n_experts), str(self.structure))

    def penalty(self, net, feats):
        # the paper's (and RecBole's) L2 on the cross layers' weights, beside the embedding L2
        if not self.cross_reg:
            return super().penalty(net, feats)
        return super().penalty(net, feats) + float(self.cross_reg) * net.cross.weight_norm()
