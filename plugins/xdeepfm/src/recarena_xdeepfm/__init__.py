"""xDeepFM (Lian et al. 2018): y = linear + CIN + DNN over shared field embeddings. The
compressed interaction network (``recarena.nn.CIN``) learns explicit vector-wise interactions
of bounded degree (one more per layer); the DNN the implicit, bit-wise ones.

The CIN's maps are linear in each layer's products (``cin_activation='identity'``, the paper's
formula) or pass a ReLU. The linear weights and embeddings can start from a fitted FM
(``pretrain_epochs``, ``recarena.ctr.FMPretraining``). ``fm_start`` goes further: a linear CIN
represents the FM's pairwise term exactly, so the model starts as the fitted FM: the first
layer's first map weighs every product of two different columns by 1/2 (its sum over d is
sum_{f<g} <v_f, v_g>), the CIN's output unit reads that map alone and the DNN's output starts at
zero; training moves on from the FM's solution as DeepFM's does from its pre-trained FM part.
"""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender, FMPretraining
from recarena.nn import CIN, MLP, LinearPart, field_embedding
from recarena.params import Interval, IntSequence, Options


class _Net(LinearPart):
    """``w0``, ``w`` (linear), embeddings ``v`` ``[n_features, dim]``, the CIN with its output
    unit ``cin_out``, and the MLP over the F field vectors side by side."""

    def __init__(self, n_features: int, n_fields: int, dim: int, hidden, dropout: float, batch_norm: bool,
                 cin_layers, split_half: bool, cin_relu: bool = False):
        super().__init__(n_features)
        self.n_fields = n_fields
        self.v = field_embedding(n_features, dim)
        self.cin = CIN(n_fields, cin_layers, split_half, activation=cin_relu)
        self.cin_out = nn.Linear(self.cin.out_features, 1)
        self.mlp = MLP(n_fields * dim, hidden, dropout, batch_norm, out_dim=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: int64 [B, F] -> logits float32 [B]"""
        e = self.v(feats)  # [B, F, d]
        out = self.linear(feats) + self.cin_out(self.cin(e)).squeeze(-1)
        return out + self.mlp(e.flatten(1)).squeeze(-1)

    def start_as_fm(self) -> None:
        """Set the CIN's first map, its output unit and the DNN's output so that the logit is the
        FM's (see the module)."""
        m = self.n_fields
        first = self.cin.convs[0]
        pairs = 0.5 * (1 - torch.eye(m)).flatten()  # channel i*m + j: column i times column j
        first.weight[0, :, 0] = pairs
        first.bias[0] = 0.0
        self.cin_out.weight.zero_()
        self.cin_out.weight[0, 0] = 1.0
        self.cin_out.bias.zero_()
        self.mlp[-1].weight.zero_()
        self.mlp[-1].bias.zero_()


class XDeepFM(FMPretraining, CTRRecommender):
    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True, embeddings=True, onnx=True)
    trainer_defaults = {"patience": 3}
    # the CIN holds [rows, H x fields, dim] per layer: 65,536 rows of a (64, 64) CIN over 12
    # fields would take 3.2 GB; 4,096 take 200 MB
    predict_batch_size = 4096
    _parameter_constraints = {
        "dim": [Interval(int, 1, None)], "hidden": [IntSequence(1, None, min_len=0)],
        "dropout": [Interval(float, 0, 1, closed="left")], "batch_norm": [bool],
        "cin_layers": [IntSequence(2, None, min_len=1)], "split_half": [bool],
        "cin_activation": [Options("identity", "relu")], "reg": [Interval(float, 0, None)], "fm_start": [bool],
    }

    def __init__(self, dim: int = 16, hidden: tuple = (128, 128, 128), dropout: float = 0.2,
                 batch_norm: bool = True, cin_layers: tuple = (100, 100, 100), split_half: bool = True,
                 cin_activation: str = "identity", fm_start: bool = False,
                 lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 2048,
                 use_side: bool = True, pretrain_epochs: int = 0, pretrain_lr: float = 0.005, reg: float = 0.0,
                 optimizer: str = "adam"):
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.cin_layers = cin_layers
        self.split_half = split_half
        self.cin_activation = cin_activation
        self.fm_start = fm_start
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
        return _Net(fields.n_features, fields.n_fields, int(self.dim), list(self.hidden), float(self.dropout),
                    bool(self.batch_norm), list(self.cin_layers), bool(self.split_half),
                    self.cin_activation == "relu")

    def fm_start_needs(self):
        # a linear CIN computes the FM's pairwise term; a ReLU one cannot (the term can be negative)
        return {"cin_activation='identity'": self.cin_activation == "identity"}
