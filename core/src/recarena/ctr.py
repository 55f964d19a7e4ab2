"""Base for CTR plugins: rows are (user, item) with side-feature fields, labels in
``rating`` (0/1), trained with binary cross-entropy; ``predict`` returns probabilities.

A plugin implements ``build_ctr_network(fields, train) -> nn.Module`` and
``logits(network, feats [B, F] int64) -> [B] float32``. Its network keeps the field
embeddings as ``v`` (an ``nn.Embedding`` over feature ids, as :class:`recarena.nn.FMPart`
does): the id fields' rows are the user and item embeddings. The base adds to the network
the field tables (buffers ``user_fields``, ``item_fields``) and ``field_names``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recarena import features
from recarena.errors import RecArenaError
from recarena.torch_model import TorchRecommender


class CTRRecommender(TorchRecommender):
    use_side: bool

    def build_ctr_network(self, fields: features.Fields, train) -> nn.Module:
        raise NotImplementedError

    def logits(self, network: nn.Module, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def build_network(self, train):
        if train.rating is None:
            raise RecArenaError(f"{type(self).__name__} needs labels (0/1) or ratings in the training data.")
        fields = features.encode(train, use_side=bool(self.use_side))
        net = self.build_ctr_network(fields, train)
        # the field tables travel with the network so a saved model predicts on its own
        net.register_buffer("user_fields", fields.user)
        net.register_buffer("item_fields", fields.item)
        net.field_names = list(fields.names)
        return net

    @staticmethod
    def _feats(net, users, items):
        return torch.cat([net.user_fields[users], net.item_fields[items]], 1)

    def loss(self, net, batch):
        y = batch["rating"]
        if ((y != 0) & (y != 1)).any():
            raise RecArenaError("CTR labels must be 0 or 1: use a protocol with ctr_threshold.")
        feats = self._feats(net, batch["user"], batch["item"])
        return F.binary_cross_entropy_with_logits(self.logits(net, feats), y) + self.penalty(net, feats)

    def penalty(self, net: nn.Module, feats: torch.Tensor) -> torch.Tensor | float:
        """A regularization term added to the loss, from the batch's feature ids ``feats``
        int64 [B, F] (none by default; see ``recarena.nn.embedding_l2``)."""
        return 0.0

    def predict_pairs(self, net, users, items):
        return torch.sigmoid(self.logits(net, self._feats(net, users, items)))

    def _embeddings(self):
        # the id fields' embeddings (column 0 of each table) are the user and item vectors
        v = self.network_.v.weight.detach()
        return {"user": v[self.network_.user_fields[:, 0]].numpy(), "item": v[self.network_.item_fields[:, 0]].numpy()}
