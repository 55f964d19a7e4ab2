"""DeepRec, NVIDIA's deep autoencoder for ratings (Kuchaiev & Ginsburg 2017, "Training Deep
AutoEncoders for Collaborative Filtering"). A user's row of ratings (0 where unrated) passes
through a deep encoder and an unconstrained decoder of SELU layers, with heavy dropout on the
code; the loss is the masked MSE over the rated entries (MMSE). Dense re-feeding: the dense
output f(x) is a valid row too, so f(f(x)) is asked to reproduce it on every entry, an
augmentation that fills the sparse rows.

Unlike AutoRec (one sigmoid layer, L2) it is deep, SELU, dropout-regularised, and trains
on the re-fed dense rows as well. ``item_based`` encodes items' rows over users instead."""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.autoencoders import RatingRows, onnx_predict_from_rows, predict_from_rows
from recarena.params import Interval, IntSequence
from recarena.torch_model import TorchRecommender


def _selu_tower(dims, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(int(a), int(b))
        # Xavier-uniform weights and zero biases, as the reference code initialises them
        nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if k < len(dims) - 2 or last_activation:
            layers.append(nn.SELU())
    return nn.Sequential(*layers)


class _Net(nn.Module):
    def __init__(self, rows: RatingRows, layers, last_activation: bool):
        super().__init__()
        self.rows = rows
        n = rows.R.shape[1]
        self.encoder = _selu_tower([n, *layers], True)
        self.decoder = _selu_tower([*reversed(layers), n], last_activation)

    def forward(self, x: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """x float32 [B, n_cols] (ratings, 0 where unrated) -> float32 [B, n_cols]."""
        code = nn.functional.dropout(self.encoder(x), dropout, training=self.training)
        return self.decoder(code)

    def reconstruct(self, ids: torch.Tensor) -> torch.Tensor:
        return self(self.rows.R[ids])


class DeepRec(TorchRecommender):
    """Defaults: the paper's best Netflix architecture, n -> 512 -> 512 -> 1024 -> 512 -> 512 -> n,
    code dropout .8, SELU on every layer, dense re-feeding once, Adam 1e-3, batch 128 rows."""

    capabilities = Capabilities(tasks={Task.RATING}, onnx=True)
    _parameter_constraints = {
        "layers": [IntSequence(1, None)], "dropout": [Interval(float, 0, 1, closed="left")],
        "refeed": [Interval(int, 0, None)], "item_based": [bool], "last_activation": [bool],
    }

    def __init__(self, layers: tuple = (512, 512, 1024), dropout: float = 0.8, refeed: int = 1, item_based: bool = False,
                 last_activation: bool = True, epochs: int = 100, batch_size: int = 128, lr: float = 0.001,
                 optimizer: str = "adam", weight_decay: float = 0.0):
        self.layers = layers
        self.dropout = dropout
        # dense re-feeding passes per update; each adds its loss to the same optimizer step
        self.refeed = refeed
        self.item_based = item_based
        self.last_activation = last_activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        if train.rating is None:
            from recarena.errors import RecArenaError

            raise RecArenaError("deeprec is a rating model: it needs explicit ratings.")
        return _Net(RatingRows(train, bool(self.item_based)), [int(h) for h in self.layers], bool(self.last_activation))

    def training_tensors(self, train, network):
        return {"row": network.rows.trained_rows()}

    def loss(self, net, batch):
        x, m = net.rows.R[batch["row"]], net.rows.M[batch["row"]]
        out = net(x, float(self.dropout))
        loss = ((out - x) * m).pow(2).sum() / m.sum().clamp(min=1)
        for _ in range(int(self.refeed)):
            # the dense output is the target on every entry, and the next input
            x = out.detach()
            out = net(x, float(self.dropout))
            loss = loss + (out - x).pow(2).mean()
        return loss

    def predict_pairs(self, net, users, items):
        return predict_from_rows(net.reconstruct, net.rows, users, items)

    def onnx_predict_pairs(self, net, users, items):
        return onnx_predict_from_rows(net.reconstruct, net.rows, users, items)
