"""Base for CTR plugins: rows are (user, item) with side-feature fields, labels in
``rating`` (0/1), trained with binary cross-entropy; ``predict`` returns probabilities.

A plugin implements ``build_ctr_network(fields, train) -> nn.Module`` and
``logits(network, feats [B, F] int64) -> [B] float32``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recarena import features
from recarena.errors import RecArenaError
from recarena.torch_model import TorchRecommender


def fm_logit(w0: torch.Tensor, w: nn.Embedding, v: nn.Embedding, feats: torch.Tensor) -> torch.Tensor:
    """FM over feature ids ``feats [B, F]``: w0 + sum w_f + 1/2 sum_d ((sum_f v_fd)^2 - sum_f v_fd^2),
    the O(k n) form; returns float32 ``[B]``. Padding id 0 has zero weight and embedding."""
    e = v(feats)  # [B, F, d]
    return w0 + w(feats).squeeze(-1).sum(1) + 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)


def embedding_l2(reg: float, net: nn.Module, feats: torch.Tensor) -> torch.Tensor | float:
    """``reg`` x the squared norm of the embeddings ``net.v`` the batch's rows use (``feats``
    int64 [B, F]), summed over fields, mean over rows: L2 on the rows a batch touches, so a rare
    feature is shrunk as often as it is seen (Adam's weight_decay would shrink every row every step)."""
    return reg * net.v(feats).pow(2).sum((1, 2)).mean() if reg else 0.0


class CTRRecommender(TorchRecommender):
    use_side: bool = True

    def build_ctr_network(self, fields: features.Fields, train) -> nn.Module:
        raise NotImplementedError

    def logits(self, network: nn.Module, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def build_network(self, train):
        if train.rating is None:
            raise RecArenaError(f"{type(self).__name__} needs labels (0/1) or ratings in the training data.")
        fields = features.encode(train, use_side=bool(getattr(self, "use_side", True)))
        net = self.build_ctr_network(fields, train)
        # the field tables travel with the network so a saved model predicts on its own
        net.register_buffer("user_fields", fields.user)
        net.register_buffer("item_fields", fields.item)
        self.field_names_ = fields.names
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
        int64 [B, F] (none by default; see ``embedding_l2``)."""
        return 0.0

    def predict_pairs(self, net, users, items):
        return torch.sigmoid(self.logits(net, self._feats(net, users, items)))

    def _embeddings(self):
        # the id fields' embeddings (column 0 of each table) are the user and item vectors
        v = self.network_.v.weight.detach()
        return {"user": v[self.network_.user_fields[:, 0]].numpy(), "item": v[self.network_.item_fields[:, 0]].numpy()}
