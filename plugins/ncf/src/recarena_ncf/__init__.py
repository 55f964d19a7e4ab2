"""Neural Collaborative Filtering (He et al., WWW 2017).

``variant``: 'gmf' (element-wise product of embeddings, then a linear output), 'mlp'
(concatenated embeddings through a tower), or 'neumf' (both, concatenated before the output).
NeuMF with ``pretrain=True`` first trains GMF and MLP, then starts from their weights with
the output layer ``[0.5 h_gmf, 0.5 h_mlp]``, as in the paper. Trained pointwise with binary
cross-entropy on each positive and ``n_neg`` sampled negatives.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from recarena import Capabilities, Task
from recarena.torch_model import TorchRecommender


class _Net(nn.Module):
    def __init__(self, n_users, n_items, variant, dim_gmf, layers, dropout):
        super().__init__()
        self.variant = variant
        width = 0
        if variant in ("gmf", "neumf"):
            self.user_gmf = nn.Embedding(n_users, dim_gmf)
            self.item_gmf = nn.Embedding(n_items, dim_gmf)
            nn.init.normal_(self.user_gmf.weight, std=0.01)
            nn.init.normal_(self.item_gmf.weight, std=0.01)
            width += dim_gmf
        if variant in ("mlp", "neumf"):
            self.user_mlp = nn.Embedding(n_users, layers[0] // 2)
            self.item_mlp = nn.Embedding(n_items, layers[0] // 2)
            nn.init.normal_(self.user_mlp.weight, std=0.01)
            nn.init.normal_(self.item_mlp.weight, std=0.01)
            tower = []
            for a, b in zip(layers[:-1], layers[1:]):
                tower += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
            self.tower = nn.Sequential(*tower)
            width += layers[-1]
        self.out = nn.Linear(width, 1)

    def hidden(self, u_g, i_g, u_m, i_m):
        parts = []
        if self.variant in ("gmf", "neumf"):
            parts.append(u_g * i_g)
        if self.variant in ("mlp", "neumf"):
            parts.append(self.tower(torch.cat([u_m, i_m], -1)))
        return torch.cat(parts, -1)

    def pairs(self, users, items):
        """users, items: int64 [...] (same shape) -> logits float32 [...]"""
        g = self.variant in ("gmf", "neumf")
        m = self.variant in ("mlp", "neumf")
        h = self.hidden(
            self.user_gmf(users) if g else None, self.item_gmf(items) if g else None,
            self.user_mlp(users) if m else None, self.item_mlp(items) if m else None,
        )
        return self.out(h).squeeze(-1)


class NCF(TorchRecommender):
    capabilities = Capabilities(tasks={Task.RANKING}, embeddings=True, onnx=True)

    def __init__(self, variant: str = "neumf", dim_gmf: int = 32, layers: tuple = (64, 32, 16), dropout: float = 0.0,
                 lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 1024,
                 n_neg: int = 4, pretrain: bool = True, pretrain_epochs: int = 30, neumf_lr: float | None = None):
        self.variant = variant
        self.dim_gmf = dim_gmf
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_neg = n_neg
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.neumf_lr = neumf_lr

    @property
    def score_memory_factor(self) -> int:
        return 2 * (self.dim_gmf + sum(self.layers))

    def _fit(self, train, valid, monitor):
        if self.variant not in ("gmf", "mlp", "neumf"):
            from recarena.errors import RecArenaError

            raise RecArenaError(f"ncf variant must be gmf, mlp or neumf; got {self.variant!r}.")
        self._init_from = None
        if self.variant == "neumf" and self.pretrain:
            parts = {}
            for v in ("gmf", "mlp"):
                sub = NCF(**{**self.get_params(), "variant": v, "pretrain": False, "epochs": self.pretrain_epochs})
                parts[v] = self.fit_stage(sub, train, valid, monitor).network_
            self._init_from = parts
        super()._fit(train, valid, monitor)
        self._init_from = None

    def configure_optimizer(self, params):
        lr = self.neumf_lr if (self.variant == "neumf" and self.pretrain and self.neumf_lr) else self.lr
        return torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)

    def build_network(self, train):
        net = _Net(train.n_users, train.n_items, self.variant, int(self.dim_gmf), list(self.layers), float(self.dropout))
        init = getattr(self, "_init_from", None)
        if init:
            g, m = init["gmf"], init["mlp"]
            with torch.no_grad():
                net.user_gmf.weight.copy_(g.user_gmf.weight)
                net.item_gmf.weight.copy_(g.item_gmf.weight)
                net.user_mlp.weight.copy_(m.user_mlp.weight)
                net.item_mlp.weight.copy_(m.item_mlp.weight)
                net.tower.load_state_dict(m.tower.state_dict())
                # the paper's alpha = 0.5 trade-off between the two pre-trained outputs
                net.out.weight.copy_(0.5 * torch.cat([g.out.weight, m.out.weight], 1))
                net.out.bias.copy_(0.5 * (g.out.bias + m.out.bias))
        return net

    def loss(self, net, batch):
        u, i, j = batch["user"], batch["item"], batch["neg"]  # [B], [B], [B, n_neg]
        pos = net.pairs(u, i)
        neg = net.pairs(u.unsqueeze(1).expand_as(j), j)
        logits = torch.cat([pos.unsqueeze(1), neg], 1)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    def score_users(self, net, users):
        n_items = (net.item_gmf if hasattr(net, "item_gmf") else net.item_mlp).num_embeddings
        u = users.unsqueeze(1).expand(-1, n_items)  # [B, n_items]
        # broadcasting (not len(users)) keeps the batch dimension dynamic in ONNX traces
        i = torch.zeros_like(u) + torch.arange(n_items, device=users.device)
        return net.pairs(u, i)

    def predict_pairs(self, net, users, items):
        return net.pairs(users, items)

    def _embeddings(self):
        net = self.network_
        emb = net.user_gmf if hasattr(net, "user_gmf") else net.user_mlp
        iemb = net.item_gmf if hasattr(net, "item_gmf") else net.item_mlp
        return {"user": emb.weight.detach().numpy(), "item": iemb.weight.detach().numpy()}

    def __deepcopy__(self, memo):
        # pre-training state is transient; copy parameters and learned attributes only
        new = type(self)(**self.get_params())
        for k, v in vars(self).items():
            if k not in new.__dict__:
                setattr(new, k, copy.deepcopy(v, memo))
        return new
