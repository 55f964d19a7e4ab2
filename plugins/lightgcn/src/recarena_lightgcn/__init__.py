"""LightGCN (He et al., SIGIR 2020): user and item embeddings smoothed over the user-item graph.

The graph is the bipartite adjacency ``A = [[0, R], [R^T, 0]]`` over users then items,
normalized symmetrically, ``Â = D^-1/2 A D^-1/2``. Layer ``l + 1`` is ``Â E_l`` (no weights,
no non-linearity: the paper's point); the final embeddings are the mean of ``E_0 .. E_L``,
and a score is the dot product of a user's and an item's final embeddings. Trained with BPR
over sampled negatives, L2 on the layer-0 rows a batch uses (RecBole's ``reg_weight``).

With ``n_layers = 0`` it is BPR-MF exactly: same parameters, same initial weights, same loss
(a test checks that it gives ``bpr``'s predictions on the same seed).

Propagation is one CSR x dense product per layer (int32 indices, so torch hands it to MKL);
``Â`` is symmetric, so the backward pass is the same product on the gradient."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recarena import Capabilities, Task
from recarena.nn import BiasedDot, batch_l2, bpr_loss
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


def normalized_adjacency(R: sp.csr_matrix) -> sp.csr_matrix:
    """``D^-1/2 A D^-1/2`` for ``A = [[0, R], [R^T, 0]]``, R the binary [n_users, n_items]
    interaction matrix; float32 CSR [n_users + n_items, n_users + n_items]. A node without
    edges (a user or item absent from training) gets an all-zero row, not a NaN."""
    R = (R != 0).astype(np.float32)
    A = sp.bmat([[None, R], [R.T, None]], format="csr", dtype=np.float32)
    deg = np.asarray(A.sum(1)).ravel()
    inv = np.zeros_like(deg)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    D = sp.diags(inv.astype(np.float32))
    out = (D @ A @ D).tocsr().astype(np.float32)
    out.sort_indices()
    return out


class _SymmetricProduct(torch.autograd.Function):
    """``Â @ X`` for a symmetric sparse ``Â``: its gradient with respect to X is ``Â @ grad``."""

    @staticmethod
    def forward(ctx, adj, x):
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad):
        return None, ctx.adj @ grad.contiguous()


class LightGCNNet(nn.Module):
    """Layer-0 embeddings in ``ego`` (a bias-free :class:`~recarena.nn.BiasedDot`: ``user_emb``
    [n_users, dim], ``item_emb`` [n_items, dim], BPR-MF's parameters) and ``Â`` as three CSR
    buffers (crow int32 [n+1], col int32 [nnz], val float32 [nnz], n = n_users + n_items)."""

    def __init__(self, adj: sp.csr_matrix, n_users: int, n_items: int, dim: int, n_layers: int):
        super().__init__()
        self.ego = BiasedDot(n_users, n_items, dim, bias=False, init="xavier")
        self.n_users, self.n_layers = int(n_users), int(n_layers)
        self.register_buffer("crow", torch.from_numpy(adj.indptr.astype(np.int32)))
        self.register_buffer("col", torch.from_numpy(adj.indices.astype(np.int32)))
        self.register_buffer("val", torch.from_numpy(adj.data.astype(np.float32)))
        self._cache = None

    def adjacency(self) -> torch.Tensor:
        n = len(self.crow) - 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta": known, and what we want
            return torch.sparse_csr_tensor(self.crow, self.col, self.val, (n, n), check_invariants=False)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings: users float32 [n_users, dim], items float32 [n_items, dim].
        In eval mode they are computed once and kept until the next ``train()``."""
        if not self.training and self._cache is not None:
            return self._cache
        x = torch.cat([self.ego.user_emb.weight, self.ego.item_emb.weight])
        if self.n_layers:
            adj, total = self.adjacency(), x
            for _ in range(self.n_layers):
                x = _SymmetricProduct.apply(adj, x)
                total = total + x
            x = total / (self.n_layers + 1)
        out = (x[: self.n_users], x[self.n_users:])
        if not self.training:
            self._cache = out
        return out

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def __getstate__(self):
        # the cache is derived (and may hold inference-mode tensors): never saved or copied
        state = dict(self.__dict__)
        state["_cache"] = None
        return state


class LightGCN(TorchRecommender):
    """Defaults are RecBole 1.2.1's LightGCN: dim 64, 2 layers, reg 1e-5, lr 1e-3, batch 2048,
    one negative per positive.

    ``n_layers``: propagation steps (0 gives BPR-MF); ``reg``: L2 on the layer-0 embeddings of
    the batch's users, positives and negatives, summed, divided by the batch size."""

    capabilities = Capabilities(tasks={Task.RANKING}, embeddings=True, onnx=True)
    negatives = True
    _parameter_constraints = {"dim": [Interval(int, 1, None)], "n_layers": [Interval(int, 0, None)],
                              "reg": [Interval(float, 0, None)]}

    def __init__(
        self,
        dim: int = 64,
        n_layers: int = 2,
        reg: float = 1e-5,
        lr: float = 0.001,
        epochs: int = 300,
        batch_size: int = 2048,
        n_neg: int = 1,
        neg_sampling: str = "uniform",
        optimizer: str = "adam",
        weight_decay: float = 0.0,
    ):
        self.dim = dim
        self.n_layers = n_layers
        self.reg = reg
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        adj = normalized_adjacency(train.csr())
        return LightGCNNet(adj, train.n_users, train.n_items, int(self.dim), int(self.n_layers))

    def loss(self, net, batch):
        users, items = net.propagate()
        pu, qi, qj = users[batch["user"]], items[batch["item"]], items[batch["neg"]]  # [B, d], [B, d], [B, n, d]
        pos = (pu * qi).sum(-1, keepdim=True)
        neg = torch.einsum("bd,bnd->bn", pu, qj)
        e = net.ego
        return bpr_loss(pos, neg) + batch_l2(self.reg, e.user_emb(batch["user"]), e.item_emb(batch["item"]),
                                             e.item_emb(batch["neg"]))

    def score_users(self, net, users):
        """users int64 [B] -> float32 [B, n_items]: final user . final item embeddings."""
        u, i = net.propagate()
        return u[users] @ i.T

    def _export_onnx(self, path, k):
        # the propagated tables become constants of the graph: serving needs no sparse operator
        from recarena import onnx_export as ox

        emb = self._embeddings()
        holder = nn.Module()
        holder.register_buffer("U", torch.from_numpy(emb["user"]).clone())
        holder.register_buffer("V", torch.from_numpy(emb["item"]).clone())
        return ox.manifest([ox.export_recommend(lambda user, exclude: holder.U[user] @ holder.V.T, holder,
                                                self.n_items_, k, path / "recommend.onnx")])

    def _embeddings(self):
        net = copy.deepcopy(self.network_).eval()  # a copy: reading embeddings never changes the model
        with torch.no_grad():
            u, i = net.propagate()
        return {"user": u.cpu().numpy(), "item": i.cpu().numpy()}
