"""What sequential plugins share: cutting time-ordered histories into fixed-length windows.

Histories come as CSR rows in time order (``Interactions.sequences``, or what an evaluator
passes to ``_score_history``); windows are left-padded with ``pad`` (plugins use their
catalogue size, the id after the last item) so the newest item is always in the last column.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recarena.base import Capabilities, Task
from recarena.errors import RecArenaError
from recarena.params import Interval, Options
from recarena.torch_model import Batch, TorchRecommender


def _windows(start: np.ndarray, end: np.ndarray, indices: np.ndarray, length: int, pad: int) -> np.ndarray:
    """Row b: ``indices[max(start, end - length) : end]``, left-padded to ``length``."""
    idx = end[:, None] - length + np.arange(length)[None, :]
    inside = idx >= start[:, None]
    if len(indices) == 0:
        return np.full(idx.shape, pad, np.int64)
    return np.where(inside, indices[np.clip(idx, 0, len(indices) - 1)], pad).astype(np.int64)


def last_items(users, indptr: np.ndarray, indices: np.ndarray, length: int, pad: int) -> torch.Tensor:
    """Each user's last ``length`` items: users int64 [B] (tensor or array), CSR
    ``(indptr [n_users + 1], indices)`` in time order -> int64 [B, length], left-padded with ``pad``."""
    u = users.cpu().numpy() if torch.is_tensor(users) else np.asarray(users, np.int64)
    indptr, indices = np.asarray(indptr, np.int64), np.asarray(indices, np.int64)
    return torch.from_numpy(_windows(indptr[u], indptr[u + 1], indices, length, pad))


def training_windows(indptr: np.ndarray, indices: np.ndarray, length: int, pad: int, every: bool = False,
                     step: int | None = None, horizon: int = 1):
    """SASRec's and GRU4Rec's training rows: per user with at least two items, the input window
    (the ``length`` items before the last one) and its targets (each position's next item;
    ``pad`` where the input is padding). With ``every``, a longer history gives further windows,
    each ending ``step`` items (default ``length``: windows that do not overlap) before the
    next; every item after the first is a target exactly once: a window other than a user's
    earliest keeps only its last ``step`` targets (the others are ``pad``), so with
    ``step < length`` each of them is predicted from at least ``length - step`` items before it
    instead of from the few at the start of a window. With ``horizon`` k > 1 each position's
    targets are the next k items of the user's training sequence (SVAE's multi-step targets),
    read from the whole sequence, so a window's last positions keep the items that follow it;
    ``pad`` past the sequence's end and wherever the first target is ``pad``.
    -> (users int64 [R], inputs int64 [R, length], targets int64 [R, length], or [R, length, k]
    with ``horizon`` k > 1: ``targets[..., 0]`` is the next item)."""
    indptr, indices = np.asarray(indptr, np.int64), np.asarray(indices, np.int64)
    step = length if step is None else int(step)
    if not 1 <= step <= length:
        raise ValueError(f"step must be in [1, length={length}], got {step}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    users = np.flatnonzero(np.diff(indptr) >= 2).astype(np.int64)
    start, end = indptr[users], indptr[users + 1]
    # one row per window: window j of a user ends its targets j * step items before the last;
    # the earliest window reaches the user's second item
    n_win = 1 + np.maximum(0, -(-(end - start - 1 - length) // step)) if every else np.ones(len(users), np.int64)
    row_user = np.repeat(np.arange(len(users)), n_win)
    j = np.arange(len(row_user)) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    start, stop = start[row_user], end[row_user] - j * step  # targets end at stop, inputs one before
    inputs = _windows(start, stop - 1, indices, length, pad)
    targets = _windows(start + 1, stop, indices, length, pad)
    if step < length:
        # targets a later window (nearer the end) already has: all but the last `step` columns,
        # except in a user's earliest window
        earliest = j == n_win[row_user] - 1
        targets[~earliest, : length - step] = pad
    if horizon > 1:
        # column t's first target sits at stop - length + t; the j-th after it at that + j,
        # up to the user's last training item
        first = stop[:, None, None] - length + np.arange(length)[None, :, None]
        pos = first + np.arange(horizon)[None, None, :]
        inside = (pos < end[row_user][:, None, None]) & (targets[:, :, None] != pad)
        if len(indices):
            targets = np.where(inside, indices[np.clip(pos, 0, len(indices) - 1)], pad).astype(np.int64)
        else:
            targets = np.full(pos.shape, pad, np.int64)
    return torch.from_numpy(users[row_user]), torch.from_numpy(inputs), torch.from_numpy(targets)


# ---- the base of next-item models ----------------------------------------------------------

#: next-item losses: ce = softmax cross-entropy over the whole catalogue at every position
#: (RecBole's default for SASRec/GRU4Rec); bce = binary cross-entropy of the next item against
#: ``n_neg`` items drawn per position (SASRec's and S3-Rec's original training)
SEQUENCE_LOSSES = ("ce", "bce")


class SequentialRecommender(TorchRecommender):
    """Base of next-item models that read a user as the sequence of their last ``max_len``
    items (SASRec, GRU4Rec, SVAE). The base does the rest:

    - training rows: per user, the training sequence's last ``max_len`` items before the final
      one as input and the item after each position as target (``training_windows``;
      ``train_windows="last"``, as SASRec and S3-Rec train), or with ``"all"`` the whole
      history cut into such windows, so a long history (ML-100K's: 106 items on average) is
      trained on in full, or with ``"overlap"`` in windows every ``max_len // 2`` items, each
      target once, so every target past the first window is predicted from at least
      ``max_len - max_len // 2`` items before it (twice the rows of ``"all"``);
    - the loss at every non-padding position (``loss_type``: ``ce`` or ``bce``, ``n_neg``);
    - scoring: the state after a user's last item against every item; from training (the
      network's ``last_seq`` buffer) or from a history given at scoring time (``context``:
      the leave-one-out validation item at test time, a serving session's items).

    A plugin implements ``build_encoder(n_items) -> nn.Module`` with an ``item_emb``
    ``nn.Embedding(n_items + 1, dim, padding_idx=n_items)`` (row ``n_items`` pads) and
    ``encode(network, seq int64 [B, T]) -> float32 [B, T, dim]``, each position's state after
    reading the items up to it (T <= max_len: training batches drop the columns that are all
    padding, so column j is position ``max_len - T + j``); item scores are that state's dot product with ``item_emb``
    (``output`` to change it). Its ``__init__`` takes ``max_len``, ``train_windows``, ``loss_type``, ``n_neg`` and ``neg_sampling``
    besides the training parameters every torch plugin takes.
    """

    capabilities = Capabilities(tasks={Task.SEQUENTIAL, Task.RANKING}, embeddings=True, onnx=True, context=True)
    #: ``n_neg`` / ``neg_sampling`` matter for ``loss_type="bce"``: negatives per position, never
    #: one of the user's training items (as S3-Rec samples)
    negatives = True
    #: the recommend graph reads a user only from `exclude`: sessions without a user are served
    session_input = True
    _parameter_constraints = {
        "max_len": [Interval(int, 1, None)],
        "loss_type": [Options(*SEQUENCE_LOSSES)],
        "train_windows": [Options("last", "all", "overlap")],
    }
    max_len: int
    loss_type: str
    train_windows: str
    n_neg: int

    # ---- what a plugin implements --------------------------------------------------------
    def build_encoder(self, n_items: int) -> nn.Module:
        raise NotImplementedError

    def encode(self, network: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output(self, network: nn.Module, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores from states ``h`` float32 [..., dim]: of every item -> [..., n_items], or of
        ``items`` int64 [..., m] -> [..., m]."""
        if items is None:
            return h @ network.item_emb.weight[:-1].T
        return (network.item_emb(items) * h.unsqueeze(-2)).sum(-1)

    def target_horizon(self) -> int:
        """How many upcoming items each position is trained to predict (1: the next item; k > 1
        needs ``loss_type="ce"``: a multinomial over the next k items, SVAE's ``next_k``)."""
        return 1

    # ---- the base's part -----------------------------------------------------------------
    def build_network(self, train):
        net = self.build_encoder(train.n_items)
        indptr, indices = train.sequences()
        # each user's last max_len training items [n_users, max_len]: what recommending from
        # training reads, kept in the network so saved and exported models carry it
        net.register_buffer("last_seq", last_items(np.arange(train.n_users), indptr, indices, int(self.max_len), train.n_items))
        return net

    def training_tensors(self, train, network):
        L = int(self.max_len)
        if self.target_horizon() > 1 and self.loss_type != "ce":
            raise RecArenaError(f"{type(self).__name__}: targets over the next {self.target_horizon()} items train with "
                                f'loss_type "ce" only, got "{self.loss_type}"')
        users, inputs, targets = training_windows(*train.sequences(), L, train.n_items, every=self.train_windows != "last",
                                                  step=max(1, L // 2) if self.train_windows == "overlap" else None,
                                                  horizon=self.target_horizon())
        return {"user": users, "seq": inputs, "target": targets}

    def batch_maker(self, train, tensors, seed):
        if self.loss_type != "bce":
            return None
        from recarena.data.sampling import NegativeSampler

        sampler = NegativeSampler(train, self.neg_sampling, seed=seed)
        k = int(self.n_neg)

        def make(idx):
            b = {key: v[idx] for key, v in tensors.items()}
            B, L = b["seq"].shape
            b["neg"] = torch.from_numpy(sampler.sample(np.repeat(b["user"].numpy(), L), k).reshape(B, L, k))
            return b

        return make

    def batch_lengths(self, tensors):
        return (tensors["seq"] < self.n_items_).sum(1)

    def has_target(self, target: torch.Tensor) -> torch.Tensor:
        """bool [B, L]: the positions that have a next item (``target`` int64 [B, L] or [B, L, k])."""
        return (target[..., 0] if target.dim() == 3 else target) < self.n_items_

    def next_item_loss(self, network, h, batch):
        """The ``loss_type`` loss at the positions that have a next item: ``h`` float32 [B, L, dim],
        ``batch["target"]`` int64 [B, L] (or [B, L, k]: the next k items, ``pad`` where none;
        their mean cross-entropy, each position weighted once)."""
        target = batch["target"]
        real = self.has_target(target)
        if target.dim() == 3:
            logp = F.log_softmax(self.output(network, h[real]), -1)  # [M, n_items]
            t = target[real]  # [M, k]
            known = t < self.n_items_
            picked = logp.gather(1, t.clamp(max=self.n_items_ - 1)) * known
            return -(picked.sum(1) / known.sum(1)).mean()
        h, t = h[real], target[real]  # [M, dim], [M]
        if self.loss_type == "ce":
            return F.cross_entropy(self.output(network, h), t)
        pos = self.output(network, h, t.unsqueeze(1)).squeeze(1)
        neg = self.output(network, h, batch["neg"][real])
        return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + F.binary_cross_entropy_with_logits(
            neg, torch.zeros_like(neg)) * neg.shape[1]

    def trim(self, batch):
        """``batch`` without the columns that are padding in every row: sequences are
        left-padded, so it keeps its last T columns (encoders place positions from the right)."""
        T = max(1, int((batch["seq"] < self.n_items_).sum(1).max()))
        return Batch({k: (v[:, -T:] if k in ("seq", "target", "neg") else v) for k, v in batch.items()})

    def loss(self, network, batch):
        batch = self.trim(batch)
        return self.next_item_loss(network, self.encode(network, batch["seq"]), batch)

    def score_sequences(self, network, seq: torch.Tensor) -> torch.Tensor:
        """Every item's score after ``seq`` int64 [B, max_len] (left-padded) -> float32 [B, n_items]."""
        return self.output(network, self.encode(network, seq)[:, -1])

    def score_users(self, network, users):
        return self.score_sequences(network, network.last_seq[users])

    def _score_history(self, users, indptr, indices):
        seq = last_items(users, indptr, indices, int(self.max_len), self.n_items_).to(self.device)
        return self.score_sequences(self.network_, seq)

    def _fit(self, train, valid, monitor):
        # what serving stores per user: the training sequence in time order, repeats kept
        self.sequences_ = train.sequences()
        super()._fit(train, valid, monitor)

    def serving_history(self):
        return self.sequences_

    def onnx_score_users(self, network, users, exclude):
        # the database feeds the user's history (or a session's items) as `exclude`, in time
        # order and padded with -1 at the end: its last max_len items are the window
        L, pad = int(self.max_len), self.n_items_
        n = (exclude >= 0).sum(1, keepdim=True)  # [B, 1]
        idx = n - L + torch.arange(L, device=exclude.device).view(1, -1)
        window = exclude.gather(1, idx.clamp(min=0, max=exclude.shape[1] - 1))
        return self.score_sequences(network, torch.where(idx >= 0, window, torch.full_like(window, pad)))

    def _embeddings(self):
        return {"item": self.network_.item_emb.weight.detach()[:-1].cpu().numpy()}
