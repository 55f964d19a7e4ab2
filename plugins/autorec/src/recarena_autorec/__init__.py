"""AutoRec (Sedhain et al., WWW 2015). I-AutoRec (default) encodes each item's column of
observed ratings over users, h = sigmoid(V r + mu), r' = W h + b, and is trained on the
observed entries only with L2 on W and V; U-AutoRec (``item_based=False``) swaps the roles.
A pair whose encoded entity (the item, for I-AutoRec) has no training rating gets the other
side's mean training rating (the user's mean): the network would see an all-zero input and
answer one constant for everyone. A pair with neither side known gets the training mean."""

from __future__ import annotations

import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


class _Net(nn.Module):
    def __init__(self, n_in: int, hidden: int, R: torch.Tensor, M: torch.Tensor, mu: float, known: torch.Tensor,
                 col_mean: torch.Tensor):
        super().__init__()
        self.enc = nn.Linear(n_in, hidden)
        self.dec = nn.Linear(hidden, n_in)
        # the training matrix (rows = the encoded entity) and its observed mask travel
        # with the network, so a saved model predicts without the training data
        self.register_buffer("R", R)
        self.register_buffer("M", M)
        self.register_buffer("known_cols", known)
        self.register_buffer("mu", torch.tensor(float(mu)))
        # mean training rating of each column entity (mu where it has none): the answer for
        # a row the network cannot encode
        self.register_buffer("col_mean", col_mean)

    def forward(self, rows: torch.Tensor, input_dropout: float = 0.0) -> torch.Tensor:
        """rows: int64 [B] -> reconstructed ratings float32 [B, n_in]. ``input_dropout`` (training
        only) hides that share of the observed inputs, which the loss still asks for."""
        x = self.R[rows]
        if input_dropout > 0:
            x = nn.functional.dropout(x, input_dropout, training=True)
        return self.dec(torch.sigmoid(self.enc(x)))


class AutoRec(TorchRecommender):
    """The defaults are I-AutoRec as the paper trains it: full batch (batch_size >= items) with
    RProp, L2 weight ``reg``. Chosen on validation rows: ml1m-rating-90-10 RProp lr .01 reg 100:
    valid .8385, test .8353 (Adam mini-batch, reg 100: .8552); ml100k-u1 RProp lr .01 reg 100:
    .9054 (best of a 20-point grid on validation; Adam: .9132)."""

    capabilities = Capabilities(tasks={Task.RATING}, onnx=True)
    trainer_defaults = {"patience": 20}
    _parameter_constraints = {
        "hidden": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)], "item_based": [bool],
        "input_dropout": [Interval(float, 0, 1, closed="left")], "encoder_reg": [None, Interval(float, 0, None)],
    }

    def __init__(self, hidden: int = 500, lr: float = 0.01, reg: float = 100.0, epochs: int = 500,
                 batch_size: int = 100000, item_based: bool = True, optimizer: str = "rprop",
                 input_dropout: float = 0.0, encoder_reg: float | None = None, weight_decay: float = 0.0):
        self.hidden = hidden
        self.lr = lr
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.item_based = item_based
        # The paper trains full-batch with RProp or L-BFGS (batch_size >= the number of rows
        # gives one step per epoch); Adam on mini-batches is the common re-implementation.
        self.optimizer = optimizer
        self.input_dropout = input_dropout
        # L2 on the encoder when it should differ from the decoder's (reg): the encoder reads
        # the corrupted input, the decoder's rows are per-user (I-AutoRec) predictors
        self.encoder_reg = encoder_reg
        self.weight_decay = weight_decay

    def _axes(self, users, items):
        return (items, users) if self.item_based else (users, items)

    def build_network(self, train):
        n_rows, n_cols = (train.n_items, train.n_users) if self.item_based else (train.n_users, train.n_items)
        rows, cols = self._axes(torch.from_numpy(train.user), torch.from_numpy(train.item))
        R = torch.zeros(n_rows, n_cols)
        R[rows, cols] = torch.from_numpy(train.rating)
        M = torch.zeros(n_rows, n_cols)
        M[rows, cols] = 1.0
        known = torch.zeros(n_rows + n_cols, dtype=torch.bool)
        known[rows] = True
        known[n_rows + cols] = True
        mu = float(train.rating.mean())
        n = M.sum(0)
        col_mean = torch.where(n > 0, R.sum(0) / n.clamp(min=1), torch.tensor(mu))
        return _Net(n_cols, int(self.hidden), R, M, mu, known, col_mean)

    def training_tensors(self, train, network):
        return {"row": torch.arange(network.R.shape[0])}

    def loss(self, net, batch):
        rows = batch["row"]
        out = net(rows, float(self.input_dropout))
        err = ((out - net.R[rows]) * net.M[rows]).pow(2).sum()
        enc_reg = self.reg if self.encoder_reg is None else self.encoder_reg
        reg = (enc_reg * net.enc.weight.pow(2).sum() + self.reg * net.dec.weight.pow(2).sum()) / 2
        # the paper's objective sums over all rows; scale the batch to it so reg keeps its weight
        return (err * (net.R.shape[0] / len(rows)) + reg) / net.M.sum()

    def predict_pairs(self, net, users, items):
        rows, cols = self._axes(users, items)
        uniq, inv = torch.unique(rows, return_inverse=True)
        out = torch.empty(len(rows), device=rows.device)
        chunk = max(1, (1 << 24) // net.R.shape[1])
        for s in range(0, len(uniq), chunk):  # one decoder pass per distinct row
            sel = (inv >= s) & (inv < s + chunk)
            rec = net(uniq[s : s + chunk])
            out[sel] = rec[inv[sel] - s, cols[sel]]
        return self._fallback(net, rows, cols, out)

    @staticmethod
    def _fallback(net, rows, cols, out):
        row_known = net.known_cols[rows]
        col_known = net.known_cols[net.R.shape[0] + cols]
        return torch.where(row_known & col_known, out, torch.where(col_known, net.col_mean[cols], net.mu))

    def onnx_predict_pairs(self, net, users, items):
        # the graph decodes one row per pair (no torch.unique, which does not export)
        rows, cols = self._axes(users, items)
        out = net(rows).gather(1, cols.view(-1, 1)).view(-1)
        return self._fallback(net, rows, cols, out)
