"""Building blocks shared by the model plugins (RecBole's ``model/layers.py`` idea): each
block exists once and every plugin that needs it imports it from here, never from another
plugin. Each block's parameters are created in a fixed order, so a plugin built from them
draws the same initial weights for the same seed.

- :class:`MLP`: the tower of NCF, RecommenderNet and DeepFM
- :func:`field_embedding`: a CTR network's feature embeddings ``v``
- :class:`LinearPart`: ``w0 + sum_f w_f`` over feature ids (Wide&Deep's wide part, every CTR
  model's first-order term)
- :class:`FMPart` and :func:`fm_logit`: a factorization machine's first- and second-order part;
  :func:`bi_interaction`: its pairwise term per dimension (NFM's pooling)
- :class:`CrossNetwork`: DCN-V2's cross layers (full rank, or a low-rank mixture of experts)
- :class:`CIN`: xDeepFM's compressed interaction network
- :class:`BiasedDot`: mu + b_u + b_i + p_u . q_i (MF, biased MF, BPR, pre-training stages)
- :func:`embedding_l2`: L2 on the embedding rows a batch uses
- :func:`bpr_loss` and :func:`batch_l2`: the pairwise loss of BPR-MF and the models trained
  like it (LightGCN, mixture of tastes), and their L2 on the rows a batch uses
- :class:`TransformerBlock` and :func:`causal_mask`: SASRec's self-attention layer over a
  left-padded sequence (written out, not ``nn.TransformerEncoderLayer``, whose fast path
  does not export to ONNX)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class MLP(nn.Sequential):
    """``[Dropout(input_dropout)] + [Linear, (BatchNorm1d), ReLU, Dropout] per hidden width
    [+ Linear(last, out_dim)]``: float32 ``[B, in_dim]`` -> ``[B, out_dim or hidden[-1]]``.

    A subclass of ``nn.Sequential``, so its parameters are named ``0.weight``, ``1.bias``..."""

    def __init__(self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0, batch_norm: bool = False,
                 out_dim: int | None = None, input_dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout else []
        width = int(in_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), *([nn.BatchNorm1d(int(h))] if batch_norm else []), nn.ReLU(),
                       nn.Dropout(dropout)]
            width = int(h)
        if out_dim is not None:
            layers.append(nn.Linear(width, int(out_dim)))
            width = int(out_dim)
        super().__init__(*layers)
        self.out_features = width


def bi_interaction(e: torch.Tensor) -> torch.Tensor:
    """Twice the pairwise interaction per dimension: ``(sum_f e_f)^2 - sum_f e_f^2`` over field
    vectors ``e`` float32 ``[B, F, d]`` -> ``[B, d]``. Halved it is NFM's bi-interaction pooling
    (sum over pairs f < g of e_f * e_g); summed over d and halved, the FM's second-order term."""
    return e.sum(1).pow(2) - e.pow(2).sum(1)


def fm_logit(w0: torch.Tensor, w: nn.Embedding, v: nn.Embedding, feats: torch.Tensor) -> torch.Tensor:
    """FM over feature ids ``feats`` int64 ``[B, F]``: w0 + sum_f w_f + 1/2 sum_d ((sum_f v_fd)^2 -
    sum_f v_fd^2), the O(k n) form; returns float32 ``[B]``. Padding id 0 has zero weight and embedding."""
    return w0 + w(feats).squeeze(-1).sum(1) + 0.5 * bi_interaction(v(feats)).sum(1)


def field_embedding(n_features: int, dim: int) -> nn.Embedding:
    """The field embeddings ``v`` ``[n_features, dim]`` of a CTR network: N(0, 0.01), with
    padding id 0 kept at zero (``padding_idx=0``)."""
    v = nn.Embedding(n_features, dim, padding_idx=0)
    nn.init.normal_(v.weight, std=0.01)
    with torch.no_grad():
        v.weight[0].zero_()
    return v


class LinearPart(nn.Module):
    """A linear model over feature ids: bias ``w0`` and weights ``w`` ``[n_features, 1]`` (zeros;
    id 0 is padding). ``forward(feats int64 [B, F]) -> float32 [B]``: ``w0 + sum_f w[feats_f]``."""

    def __init__(self, n_features: int, bias: float = 0.0):
        super().__init__()
        self.w0 = nn.Parameter(torch.tensor(float(bias)))
        self.w = nn.Embedding(n_features, 1, padding_idx=0)
        nn.init.zeros_(self.w.weight)

    def linear(self, feats: torch.Tensor) -> torch.Tensor:
        return self.w0 + self.w(feats).squeeze(-1).sum(1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear(feats)


class FMPart(LinearPart):
    """A factorization machine's parameters: bias ``w0``, first-order weights ``w``
    ``[n_features, 1]`` (zeros) and factors ``v`` ``[n_features, dim]`` (N(0, 0.01)); feature id 0
    is padding (zero weight and factors). ``forward(feats int64 [B, F]) -> float32 [B]`` logits.
    Models that add a deep part on the same embeddings (DeepFM, NFM, xDeepFM...) subclass it;
    its parameters are the ones an FM pre-training stage hands over."""

    def __init__(self, n_features: int, dim: int, bias: float = 0.0):
        super().__init__(n_features, bias)
        self.v = field_embedding(n_features, dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return fm_logit(self.w0, self.w, self.v, feats)


class CrossNetwork(nn.Module):
    """DCN-V2's cross network (Wang et al. 2021) over ``x0`` float32 ``[B, D]`` -> ``[B, D]``:
    ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` for ``n_layers`` layers.

    ``rank=None``: full-rank ``W_l`` ``[D, D]``. ``rank=r``: the low-rank mixture (DCN-Mix),
    ``x_{l+1} = sum_e G_e(x_l) x0 * (U_e tanh(C_e tanh(V_e^T x_l)) + b_l) + x_l`` with
    ``n_experts`` experts of rank r and a softmax gate ``G`` over them (one expert: no gate)."""

    def __init__(self, dim: int, n_layers: int, rank: int | None = None, n_experts: int = 1):
        super().__init__()
        self.rank, self.n_experts = rank, int(n_experts)
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(dim)) for _ in range(n_layers)])
        if rank is None:
            self.w = nn.ParameterList([nn.Parameter(torch.empty(dim, dim)) for _ in range(n_layers)])
            for w in self.w:
                nn.init.xavier_normal_(w)
            return
        e, r = self.n_experts, int(rank)
        self.v = nn.ParameterList([nn.Parameter(torch.empty(e, dim, r)) for _ in range(n_layers)])
        self.c = nn.ParameterList([nn.Parameter(torch.empty(e, r, r)) for _ in range(n_layers)])
        self.u = nn.ParameterList([nn.Parameter(torch.empty(e, r, dim)) for _ in range(n_layers)])
        for group in (self.v, self.c, self.u):
            for w in group:
                nn.init.xavier_normal_(w)
        self.gate = nn.ModuleList([nn.Linear(dim, e, bias=False) for _ in range(n_layers)]) if e > 1 else None

    def weight_norm(self) -> torch.Tensor:
        """The squared L2 norm of the cross weights (W, or U, V, C; not biases nor gates)."""
        groups = [self.w] if self.rank is None else [self.v, self.c, self.u]
        return sum(w.pow(2).sum() for g in groups for w in g)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer, b in enumerate(self.bias):
            if self.rank is None:
                x = x0 * (x @ self.w[layer] + b) + x
                continue
            # [B, D] -> per expert [E, B, r] -> [E, B, r] -> [E, B, D]
            low = torch.tanh(torch.matmul(x.unsqueeze(0), self.v[layer]))
            low = torch.tanh(torch.matmul(low, self.c[layer]))
            experts = x0.unsqueeze(0) * (torch.matmul(low, self.u[layer]) + b)  # [E, B, D]
            if self.gate is None:
                mixed = experts[0]
            else:
                g = torch.softmax(self.gate[layer](x), -1)  # [B, E]
                mixed = (experts * g.T.unsqueeze(-1)).sum(0)
            x = mixed + x
        return x


class CIN(nn.Module):
    """xDeepFM's compressed interaction network (Lian et al. 2018) over field vectors ``x0``
    float32 ``[B, m, d]`` -> ``[B, out_features]``: layer k forms every Hadamard product of its
    input's ``H_{k-1}`` vectors with the ``m`` field vectors (vector-wise interactions) and
    compresses them to ``H_k`` feature maps with a 1x1 convolution; each layer's maps are
    sum-pooled over d and concatenated. ``split_half``: all but the last layer pass half of
    their maps on and send the other half to the output (the paper's setting)."""

    def __init__(self, n_fields: int, layer_sizes, split_half: bool = True, activation: bool = True):
        super().__init__()
        sizes = [int(h) for h in layer_sizes]
        self.split_half, self.activation = bool(split_half), bool(activation)
        self.convs = nn.ModuleList()
        prev, out = n_fields, 0
        for k, h in enumerate(sizes):
            self.convs.append(nn.Conv1d(prev * n_fields, h, 1))
            keep = h // 2 if self.split_half and k < len(sizes) - 1 else h
            out += keep
            prev = h - keep if keep != h else h
        self.out_features = out

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        b, m, d = x0.shape
        x, pooled = x0, []
        last = len(self.convs) - 1
        for k, conv in enumerate(self.convs):
            z = conv((x.unsqueeze(2) * x0.unsqueeze(1)).reshape(b, -1, d))  # [B, H_k, d]
            if self.activation:
                z = torch.relu(z)
            if self.split_half and k < last:
                h = z.shape[1] // 2
                x, out = z[:, h:], z[:, :h]
            else:
                x, out = z, z
            pooled.append(out.sum(-1))
        return torch.cat(pooled, 1)


class BiasedDot(nn.Module):
    """``mu + b_u + b_i + p_u . q_i`` over ``user_emb [n_users, dim]``, ``item_emb [n_items, dim]``
    and, with ``bias``, ``user_bias`` / ``item_bias`` ``[n, 1]`` (zeros). ``mu`` (a buffer) is
    left out when None. ``init``: 'normal' (std ``init_std``) or 'xavier' for the factors.
    ``sparse``: sparse gradients (for the ``sparse_adam`` optimizer)."""

    def __init__(self, n_users: int, n_items: int, dim: int, mu: float | None = None, init_std: float = 0.01,
                 bias: bool = True, sparse: bool = False, init: str = "normal"):
        super().__init__()
        self.bias = bool(bias)
        self.user_emb = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_emb = nn.Embedding(n_items, dim, sparse=sparse)
        if self.bias:
            self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
            self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        self.has_mu = mu is not None
        if self.has_mu:
            self.register_buffer("mu", torch.tensor(float(mu)))
        for e in (self.user_emb, self.item_emb):
            if init == "xavier":
                nn.init.xavier_normal_(e.weight)
            else:
                nn.init.normal_(e.weight, std=init_std)
        if self.bias:
            for e in (self.user_bias, self.item_bias):
                nn.init.zeros_(e.weight)

    def zero_unseen(self, user: np.ndarray, item: np.ndarray) -> BiasedDot:
        """Zero the factor and bias rows of every user and item absent from the training rows
        ``user``, ``item`` (int64 [N]). Training never touches such a row (no gradient, so no
        optimizer step), so it stays zero: a pair with an unseen item scores ``mu + b_u``, with
        an unseen user ``mu + b_i``, with both ``mu``, instead of a random initial row's noise.
        Returns self."""
        with torch.no_grad():
            for ids, tables in ((user, ("user_emb", "user_bias")), (item, ("item_emb", "item_bias"))):
                for name in tables if self.bias else tables[:1]:
                    w = getattr(self, name).weight
                    unseen = torch.ones(len(w), dtype=torch.bool)
                    unseen[torch.as_tensor(ids)] = False
                    w[unseen] = 0.0
        return self

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """u, i: int64 [B] -> float32 [B]"""
        # summed left to right, mu first: the order fixes the float result
        dot = (self.user_emb(u) * self.item_emb(i)).sum(-1)
        if not self.bias:
            return self.mu + dot if self.has_mu else dot
        bu = self.user_bias(u).squeeze(-1)
        out = self.mu + bu if self.has_mu else bu
        return out + self.item_bias(i).squeeze(-1) + dot

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """users: int64 [B] -> float32 [B, n_items], every item's score."""
        if not self.bias:
            dot = self.user_emb(users) @ self.item_emb.weight.T
            return self.mu + dot if self.has_mu else dot
        bu = self.user_bias(users)
        out = self.mu + bu if self.has_mu else bu
        return out + self.item_bias.weight.view(1, -1) + self.user_emb(users) @ self.item_emb.weight.T


def embedding_l2(reg: float, table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor | float:
    """``reg`` x the squared norm of the rows of ``table`` that ``ids`` (int64 ``[B, F]``) use,
    summed over fields, mean over rows: L2 on the rows a batch touches, so a rare feature is
    shrunk as often as it is seen (Adam's weight_decay would shrink every row every step)."""
    return reg * table(ids).pow(2).sum((1, 2)).mean() if reg else 0.0


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """BPR's ``-log sigmoid(pos - neg)``, mean over every (positive, negative) pair:
    ``pos`` float32 [B, 1] (or [B]), ``neg`` float32 [B, n_neg] -> scalar."""
    if pos.dim() == 1:
        pos = pos.unsqueeze(1)
    return -torch.nn.functional.logsigmoid(pos - neg).mean()


def batch_l2(reg: float, *rows: torch.Tensor) -> torch.Tensor | float:
    """``reg`` x the summed squares of every tensor in ``rows`` (embedding rows a batch uses,
    [B, d] or [B, n, d]) divided by the batch size B: BPR-MF's (and RecBole's ``EmbLoss``) L2."""
    return reg * sum(r.pow(2).sum() for r in rows) / len(rows[0]) if reg else 0.0


def init_item_gru(item_emb: nn.Embedding, gru: nn.GRU) -> None:
    """GRU4Rec's initialisation, in place: Xavier-normal item embeddings (small rows, so scores
    against them start small), Xavier-uniform input weights and orthogonal recurrent weights.
    The caller zeroes its padding row afterwards."""
    nn.init.xavier_normal_(item_emb.weight)
    for name, w in gru.named_parameters():
        nn.init.xavier_uniform_(w) if "weight_ih" in name else nn.init.orthogonal_(w)


def causal_mask(real: torch.Tensor) -> torch.Tensor:
    """Which keys each query may attend to: ``real`` bool [B, L] (False at padding) -> bool
    [B, L, L], True where key k <= query q and k is a real item. A padding query keeps its own
    position, so its softmax has a term (its output is never read)."""
    pos = torch.arange(real.shape[1], device=real.device)
    q, k = pos.view(-1, 1), pos.view(1, -1)  # comparisons, not tril/eye: they export to ONNX
    return ((k <= q).unsqueeze(0) & real.unsqueeze(1)) | (k == q).unsqueeze(0)


class TransformerBlock(nn.Module):
    """One post-norm Transformer layer (BERT's and SASRec's public implementations):
    multi-head self-attention, then a GELU feed-forward of width ``ffn_mult * dim``, each with
    dropout, a residual and LayerNorm. float32 [B, L, dim] with ``mask`` bool [B, L, L] (True =
    may attend, :func:`causal_mask`) -> float32 [B, L, dim]."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, ffn_mult: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.norm2 = nn.LayerNorm(dim, eps=1e-12)
        self.attn_drop = nn.Dropout(dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(B, L, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each [B, h, L, d/h]
        att = (q @ k.transpose(-1, -2)) / float(np.sqrt(d // h))
        # a large negative, not -inf: an all-masked row would give NaN
        att = att.masked_fill(~mask.unsqueeze(1), -1e9).softmax(-1)
        y = (self.attn_drop(att) @ v).transpose(1, 2).reshape(B, L, d)
        x = self.norm1(x + self.drop(self.out(y)))
        return self.norm2(x + self.drop(self.ffn(x)))
