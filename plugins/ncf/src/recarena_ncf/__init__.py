"""Neural Collaborative Filtering (He et al., WWW 2017).

``variant``: 'gmf' (element-wise product of embeddings, then a linear output), 'mlp'
(concatenated embeddings through a tower), or 'neumf' (both, concatenated before the output).
NeuMF first trains GMF (``gmf_epochs``) and MLP (``mlp_epochs``) as declared stages, each with
its own early stopping, then starts from their weights with the output layer
``[0.5 h_gmf, 0.5 h_mlp]``, as in the paper, at ``neumf_lr`` when given (0 epochs for both:
NeuMF from scratch). Trained pointwise with binary cross-entropy on each positive and ``n_neg``
sampled negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recarena import Capabilities, Task
from recarena.nn import MLP
from recarena.params import Interval, IntSequence, Options
from recarena.torch_model import Stage, TorchRecommender


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
            self.tower = MLP(layers[0], layers[1:], dropout)
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
    negatives = True
    _parameter_constraints = {
        "variant": [Options("gmf", "mlp", "neumf")], "dim_gmf": [Interval(int, 1, None)],
        "layers": [IntSequence(2, None)], "dropout": [Interval(float, 0, 1, closed="left")],
        "gmf_epochs": [Interval(int, 0, None)], "mlp_epochs": [Interval(int, 0, None)],
        "neumf_lr": [None, Interval(float, 0, None, closed="neither")],
    }

    def __init__(self, variant: str = "neumf", dim_gmf: int = 32, layers: tuple = (64, 32, 16), dropout: float = 0.0,
                 lr: float = 0.001, weight_decay: float = 0.0, epochs: int = 50, batch_size: int = 1024,
                 n_neg: int = 4, gmf_epochs: int = 30, mlp_epochs: int = 30, neumf_lr: float | None = None,
                 neg_sampling: str = "uniform", optimizer: str = "adam"):
        self.variant = variant
        self.dim_gmf = dim_gmf
        self.layers = layers
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_neg = n_neg
        self.gmf_epochs = gmf_epochs
        self.mlp_epochs = mlp_epochs
        self.neumf_lr = neumf_lr
        self.neg_sampling = neg_sampling
        self.optimizer = optimizer

    @property
    def score_memory_factor(self) -> int:
        return 2 * (self.dim_gmf + sum(self.layers))

    def stages(self):
        if self.variant != "neumf":
            return []
        # each stage is this model in one variant, without stages of its own
        def part(v):
            return lambda m: NCF(**{**m.get_params(), "variant": v, "gmf_epochs": 0, "mlp_epochs": 0})
        return [Stage("gmf", "gmf_epochs", part("gmf")), Stage("mlp", "mlp_epochs", part("mlp"))]

    def learning_rate(self):
        pretrained = bool(getattr(self, "stage_best_epochs_", None))
        return float(self.neumf_lr) if (pretrained and self.neumf_lr) else float(self.lr)

    def build_network(self, train):
        return _Net(train.n_users, train.n_items, self.variant, int(self.dim_gmf), list(self.layers), float(self.dropout))

    def init_from_stages(self, net, fitted):
        g, m = fitted.get("gmf"), fitted.get("mlp")
        if g is not None:
            net.user_gmf.weight.copy_(g.user_gmf.weight)
            net.item_gmf.weight.copy_(g.item_gmf.weight)
        if m is not None:
            net.user_mlp.weight.copy_(m.user_mlp.weight)
            net.item_mlp.weight.copy_(m.item_mlp.weight)
            net.tower.load_state_dict(m.tower.state_dict())
        if g is not None and m is not None:
            # the paper's alpha = 0.5 trade-off between the two pre-trained outputs
            net.out.weight.copy_(0.5 * torch.cat([g.out.weight, m.out.weight], 1))
            net.out.bias.copy_(0.5 * (g.out.bias + m.out.bias))

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
