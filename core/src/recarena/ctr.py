"""Base for CTR plugins: rows are (user, item) with side-feature fields, labels in
``rating`` (0/1), trained with binary cross-entropy; ``predict`` returns probabilities.

The same network also predicts ratings when the plugin declares ``Task.RATING``: on
training data that is not 0/1 the logit plus the mean rating (buffer ``offset``) is the
prediction, trained with squared error. The network's ``binary`` says which it learned.

A plugin implements ``build_ctr_network(fields, train) -> nn.Module``, a network whose forward
maps feature ids ``feats [B, F] int64`` to logits ``[B] float32`` (or overrides ``logits``). Its
network keeps the field embeddings as ``v`` (an ``nn.Embedding`` over feature ids, as
:class:`recarena.nn.FMPart` does): the id fields' rows are the user and item embeddings. The base
adds to the network the field tables (buffers ``user_fields``, ``item_fields``) and
``field_names``; a declared ``reg`` gives the per-batch embedding L2 (``penalty``).

:class:`FactorizationMachine` is the FM itself. :class:`FMPretraining` gives a plugin whose
network holds an FM's ``w0``, ``w``, ``v`` an FM pre-training stage (``pretrain_epochs``,
``pretrain_lr``): the FM, fitted and early-stopped alone, hands them to the model (as DeepFM and
NFM's authors start theirs), and with ``fm_start`` the network starts as that FM.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from recarena import features
from recarena.base import Capabilities, Task
from recarena.errors import RecArenaError
from recarena.nn import FMPart, embedding_l2
from recarena.params import Interval, declared
from recarena.torch_model import Stage, TorchRecommender


@functools.cache
def _takes(cls: type, param: str) -> bool:
    return param in declared(cls)


class CTRRecommender(TorchRecommender):
    use_side: bool

    def build_ctr_network(self, fields: features.Fields, train) -> nn.Module:
        raise NotImplementedError

    def build_network(self, train):
        if train.rating is None:
            raise RecArenaError(f"{type(self).__name__} needs labels (0/1) or ratings in the training data.")
        y = train.rating
        binary = bool(((y == 0) | (y == 1)).all())
        if not binary and not self.capabilities.supports(Task.RATING):
            raise RecArenaError(f"{type(self).__name__} predicts clicks: its training labels must be 0 or 1 "
                                f"(got values such as {float(y[(y != 0) & (y != 1)][0])}); use a protocol "
                                "with ctr_threshold.")
        fields = features.encode(train, use_side=bool(self.use_side))
        net = self.build_ctr_network(fields, train)
        # the field tables travel with the network so a saved model predicts on its own
        net.register_buffer("user_fields", fields.user)
        net.register_buffer("item_fields", fields.item)
        net.register_buffer("offset", torch.tensor(0.0 if binary else float(y.mean())))
        net.field_names = list(fields.names)
        net.binary = binary
        return net

    @staticmethod
    def _feats(net, users, items):
        return torch.cat([net.user_fields[users], net.item_fields[items]], 1)

    def loss(self, net, batch):
        feats = self._feats(net, batch["user"], batch["item"])
        out = self.logits(net, feats)
        if net.binary:
            fit = F.binary_cross_entropy_with_logits(out, batch["rating"])
        else:
            fit = F.mse_loss(out + net.offset, batch["rating"])
        return fit + self.penalty(net, feats)

    def logits(self, network: nn.Module, feats: torch.Tensor) -> torch.Tensor:
        """Feature ids ``feats`` int64 ``[B, F]`` -> logits float32 ``[B]``: the network's forward
        unless the plugin says otherwise."""
        return network(feats)

    def penalty(self, net: nn.Module, feats: torch.Tensor) -> torch.Tensor | float:
        """A regularization term added to the loss, from the batch's feature ids ``feats``
        int64 ``[B, F]``. A plugin that declares a ``reg`` parameter gets ``embedding_l2(reg,
        net.v, feats)`` (L2 on the embedding rows the batch uses), one that does not, none."""
        return embedding_l2(float(self.reg), net.v, feats) if _takes(type(self), "reg") else 0.0

    def predict_pairs(self, net, users, items):
        out = self.logits(net, self._feats(net, users, items))
        return torch.sigmoid(out) if net.binary else out + net.offset

    def _embeddings(self):
        # the id fields' embeddings (column 0 of each table) are the user and item vectors
        v = self.network_.v.weight.detach()
        return {"user": v[self.network_.user_fields[:, 0]].numpy(), "item": v[self.network_.item_fields[:, 0]].numpy()}


class FactorizationMachine(CTRRecommender):
    """An FM over the fields (``recarena.nn.FMPart``) with per-batch embedding L2 ``reg``: the
    ``fm`` plugin, and the pre-training stage of :class:`FMPretraining`."""

    capabilities = Capabilities(tasks={Task.CTR, Task.RATING}, side_features=True)
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)]}

    def __init__(self, dim: int = 16, lr: float = 0.005, reg: float = 0.0, weight_decay: float = 0.0,
                 epochs: int = 50, batch_size: int = 2048, use_side: bool = True, optimizer: str = "adam"):
        self.dim = dim
        self.lr = lr
        self.reg = reg
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.use_side = use_side
        self.optimizer = optimizer

    def build_ctr_network(self, fields, train):
        return FMPart(fields.n_features, int(self.dim))


class FMPretraining:
    """Mixin for a CTR plugin whose network has an FM's ``w0``, ``w``, ``v`` (an ``FMPart``, or
    a ``LinearPart`` with an embedding ``v``) and that takes ``dim``, ``reg``, ``pretrain_epochs``
    (0: no stage) and ``pretrain_lr``: declares the FM stage (same ``dim``, ``reg``,
    ``batch_size``, ``use_side``; FM converges best at a larger step than a deep part tolerates,
    hence its own lr) and starts the network's ``w0``, ``w``, ``v`` from it.

    A plugin whose network can compute the FM exactly may also declare ``fm_start``: its network
    implements ``start_as_fm()`` (called after the hand-over) and the plugin lists what that
    needs in ``fm_start_needs()``; an unmet need is refused before the FM stage trains."""

    _parameter_constraints = {"pretrain_epochs": [Interval(int, 0, None)],
                              "pretrain_lr": [Interval(float, 0, None, closed="neither")]}

    def fm_start_needs(self) -> dict[str, bool]:
        """``{condition: met}`` beyond an FM stage, for a plugin that declares ``fm_start``."""
        return {}

    def _starts_as_fm(self) -> bool:
        return _takes(type(self), "fm_start") and bool(self.fm_start)

    def stages(self):
        if self._starts_as_fm():
            need = {"pretrain_epochs > 0": self.pretrain_epochs > 0, **self.fm_start_needs()}
            missing = [k for k, ok in need.items() if not ok]
            if missing:
                raise RecArenaError(f"{type(self).__name__}: fm_start=True needs {', '.join(missing)} (the "
                                    "network starts as the FM only in the shape that can compute it, and "
                                    "only from an FM stage).")
        return [Stage("fm", "pretrain_epochs", lambda m: FactorizationMachine(
            dim=m.dim, lr=m.pretrain_lr, reg=m.reg, batch_size=m.batch_size, use_side=m.use_side))]

    def init_from_stages(self, net, fitted):
        # a network without a first-order part would take the embeddings alone
        own = dict(net.named_parameters())
        for name in ("w0", "w.weight", "v.weight"):
            if name in own:
                own[name].copy_(fitted["fm"].get_parameter(name))
        if self._starts_as_fm():
            net.start_as_fm()
