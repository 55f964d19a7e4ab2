"""``recarena new plugin NAME --kind KIND``: a new plugin distribution that works as written.

Writes ``plugins/NAME/`` with a pyproject declaring the entry point, the package with a
minimal model of that kind (its defaults in its ``__init__``, constraints declared), and a
test file that runs the conformance kit. ``just setup`` installs it.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from recarena.errors import RecArenaError

KINDS = ("torch-ranking", "torch-rating", "ctr", "sequential", "closed-form")

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "recarena-{name}"
version = "0.1.0"
description = "RecArena plugin: {title}"
requires-python = ">=3.11"
dependencies = ["recarena"]

[project.entry-points."recarena.models"]
{name} = "{module}:{cls}"

[tool.setuptools.packages.find]
where = ["src"]
'''

_TEST = '''\
from recarena.testing import parametrize_with_checks
from {module} import {cls}


# small settings: the kit trains on a few thousand synthetic rows per check
@parametrize_with_checks([{cls}({small})])
def test_conformance(model, check):
    check(model)
'''

_TORCH_RANKING = '''\
"""{cls}: user and item embeddings scored by their dot product, trained with the BPR loss
on ``n_neg`` sampled negatives per positive (a ranking plugin; start here and change it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recarena import Capabilities, Task
from recarena.nn import BiasedDot
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


class {cls}(TorchRecommender):
    capabilities = Capabilities(tasks={{Task.RANKING}}, embeddings=True, onnx=True)
    # implicit training batches get batch["neg"]: int64 [B, n_neg] items the user has not seen
    negatives = True
    _parameter_constraints = {{"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)]}}

    def __init__(self, dim: int = 64, reg: float = 0.0, epochs: int = 30, batch_size: int = 2048, lr: float = 0.001,
                 optimizer: str = "adam", weight_decay: float = 0.0, n_neg: int = 1, neg_sampling: str = "uniform"):
        self.dim = dim
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling

    def build_network(self, train):
        # user_emb / item_emb: the names embeddings() and the UMAP maps look for
        return BiasedDot(train.n_users, train.n_items, int(self.dim), bias=False, init="xavier")

    def loss(self, net, batch):
        """batch: user, item int64 [B] (positives), neg int64 [B, n_neg] -> scalar."""
        u = net.user_emb(batch["user"])  # [B, d]
        pos = (u * net.item_emb(batch["item"])).sum(-1, keepdim=True)  # [B, 1]
        neg = torch.einsum("bd,bnd->bn", u, net.item_emb(batch["neg"]))  # [B, n_neg]
        return -F.logsigmoid(pos - neg).mean() + self.reg * u.pow(2).sum(-1).mean()

    def score_users(self, net, users):
        """users int64 [B] -> float32 [B, n_items]: ranking scores every item."""
        return net.score(users)
'''

_TORCH_RATING = '''\
"""{cls}: biased matrix factorization, mu + b_u + b_i + p_u . q_i, fitted to the ratings by
mean squared error with L2 on the factors a batch uses (a rating plugin; start here)."""

from __future__ import annotations

from recarena import Capabilities, Task
from recarena.nn import BiasedDot
from recarena.params import Interval
from recarena.torch_model import TorchRecommender


class {cls}(TorchRecommender):
    capabilities = Capabilities(tasks={{Task.RATING}}, embeddings=True, onnx=True)
    _parameter_constraints = {{"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)]}}

    def __init__(self, dim: int = 32, reg: float = 0.05, epochs: int = 40, batch_size: int = 1024, lr: float = 0.005,
                 optimizer: str = "adam", weight_decay: float = 0.0):
        self.dim = dim
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_network(self, train):
        # the training mean is a buffer of the network: a saved model predicts on its own
        return BiasedDot(train.n_users, train.n_items, int(self.dim), mu=float(train.rating.mean()))

    def loss(self, net, batch):
        """batch: user, item int64 [B], rating float32 [B] -> scalar."""
        u, i = batch["user"], batch["item"]
        reg = self.reg * (net.user_emb(u).pow(2).sum(-1) + net.item_emb(i).pow(2).sum(-1))
        return ((net(u, i) - batch["rating"]) ** 2 + reg).mean()

    def predict_pairs(self, net, users, items):
        """users, items int64 [N] -> float32 [N] ratings (the base clips to the rating scale)."""
        return net(users, items)
'''

_CTR = '''\
"""{cls}: a factorization machine over the user, item and side-feature fields, trained on
0/1 labels with cross-entropy (a CTR plugin; start here)."""

from __future__ import annotations

from recarena import Capabilities, Task
from recarena.ctr import CTRRecommender
from recarena.nn import FMPart
from recarena.params import Interval


class {cls}(CTRRecommender):
    capabilities = Capabilities(tasks={{Task.CTR}}, side_features=True, embeddings=True, onnx=True)
    _parameter_constraints = {{"dim": [Interval(int, 1, None)], "reg": [Interval(float, 0, None)]}}

    def __init__(self, dim: int = 16, reg: float = 0.01, epochs: int = 20, batch_size: int = 2048, lr: float = 0.005,
                 optimizer: str = "adam", weight_decay: float = 0.0, use_side: bool = True):
        self.dim = dim
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.use_side = use_side

    def build_ctr_network(self, fields, train):
        # v: the field embeddings (the id fields' rows are the user and item embeddings). The
        # network's forward maps feature ids int64 [B, F] (0 = padding) to float32 [B] logits
        # (override logits(net, feats) otherwise); declaring `reg` gives L2 on the rows of v a
        # batch uses (override penalty(net, feats) for another regularizer)
        return FMPart(fields.n_features, int(self.dim))
'''

_SEQUENTIAL = '''\
"""{cls}: the next item from the one before it (a first-order Markov chain of embeddings),
built on recarena.sequences.SequentialRecommender: the base cuts each user's time-ordered
history into training positions, computes the loss at each (``loss_type``), scores from the
user's last item or from a history given at scoring time, and serves sessions. Replace
``encode`` with a model that reads the whole window (see the sasrec and gru4rec plugins)."""

from __future__ import annotations

from torch import nn

from recarena.params import Interval
from recarena.sequences import SequentialRecommender


class _Net(nn.Module):
    def __init__(self, n_items: int, dim: int):
        super().__init__()
        # id n_items pads a short history; item_emb scores the next item, prev_emb is an item as
        # the one before it
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.prev_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        nn.init.normal_(self.prev_emb.weight, std=0.05)
        self.item_emb.weight.data[n_items].zero_()
        self.prev_emb.weight.data[n_items].zero_()


class {cls}(SequentialRecommender):
    _parameter_constraints = {{"dim": [Interval(int, 1, None)]}}

    def __init__(self, dim: int = 64, max_len: int = 50, train_windows: str = "last", loss_type: str = "bce", n_neg: int = 1,
                 neg_sampling: str = "uniform", epochs: int = 30, batch_size: int = 256, lr: float = 0.001,
                 optimizer: str = "adam", weight_decay: float = 0.0):
        self.dim = dim
        self.max_len = max_len
        self.train_windows = train_windows
        self.loss_type = loss_type
        self.n_neg = n_neg
        self.neg_sampling = neg_sampling
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay

    def build_encoder(self, n_items):
        return _Net(n_items, int(self.dim))

    def encode(self, net, seq):
        """seq int64 [B, T] (left-padded) -> float32 [B, T, dim]: each position's state is its own item."""
        return net.prev_emb(seq)
'''

_CLOSED_FORM = '''\
"""{cls}: item-item cosine similarity (shrunk by ``shrink``) computed in closed form; a user's
score for item j sums j's similarity to the items the user has (a closed-form plugin)."""

from __future__ import annotations

import numpy as np
import torch

from recarena import Capabilities, Recommender, Task
from recarena.params import Interval


class {cls}(Recommender):
    capabilities = Capabilities(tasks={{Task.RANKING}})
    _parameter_constraints = {{"shrink": [Interval(float, 0, None)]}}

    def __init__(self, shrink: float = 10.0):
        self.shrink = shrink

    def _fit(self, train, valid, monitor):
        X = train.csr()
        X.data[:] = 1.0  # implicit: presence only
        co = (X.T @ X).toarray().astype(np.float32)  # [n_items, n_items] co-occurrence counts
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + float(self.shrink) + 1e-9)
        np.fill_diagonal(sim, 0.0)
        # learned attributes end in "_": save/load keeps exactly those
        self.similarity_ = torch.from_numpy(sim)
        self.interactions_ = X.astype(np.float32)  # [n_users, n_items] CSR

    def _score(self, users):
        """users int64 [B] -> float32 [B, n_items]."""
        rows = torch.from_numpy(self.interactions_[users.cpu().numpy()].toarray())
        return rows @ self.similarity_
'''

_TEMPLATES = {
    "torch-ranking": (_TORCH_RANKING, "a dot-product ranker trained with BPR", "dim=16, epochs=12, lr=0.05, batch_size=128"),
    "torch-rating": (_TORCH_RATING, "a biased MF rating model", "dim=4, epochs=5, lr=0.01, batch_size=256"),
    "ctr": (_CTR, "a factorization machine for CTR", "dim=4, epochs=3, lr=0.01"),
    "sequential": (_SEQUENTIAL, "a next-item model from the last item", "dim=16, epochs=12, lr=0.05, batch_size=128"),
    "closed-form": (_CLOSED_FORM, "item-item cosine similarity in closed form", "shrink=1.0"),
}


def new_plugin(name: str, kind: str, root: Path) -> Path:
    """Write ``root/<name>/`` for a plugin of ``kind``; returns that folder."""
    from recarena import plugins

    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise RecArenaError(f"Plugin name {name!r}: expected lowercase letters, digits and single dashes, "
                            "starting with a letter (e.g. my-model).")
    if kind not in KINDS:
        raise RecArenaError(f"Unknown plugin kind {kind!r}. Available: {', '.join(KINDS)}.")
    if name in plugins.discover():
        info = plugins.info(name)
        raise RecArenaError(f"A model plugin named {name!r} is already installed ({info.distribution}); choose another name.")
    folder = Path(root) / name
    if folder.exists():
        raise RecArenaError(f"{folder} already exists; choose another name or remove it.")
    module = "recarena_" + name.replace("-", "_")
    cls = "".join(p.capitalize() for p in name.split("-"))
    code, title, small = _TEMPLATES[kind]
    fields = dict(name=name, module=module, cls=cls, title=title, small=small)
    (folder / "src" / module).mkdir(parents=True)
    (folder / "tests").mkdir()
    (folder / "pyproject.toml").write_text(_PYPROJECT.format(**fields))
    (folder / "src" / module / "__init__.py").write_text(code.format(**fields))
    (folder / "tests" / f"test_{module.removeprefix('recarena_')}.py").write_text(_TEST.format(**fields))
    return folder


def next_steps(folder: Path, name: str, kind: str) -> str:
    proto = {"torch-ranking": "ml100k-rank", "torch-rating": "ml100k-u1", "ctr": "ml1m-ctr",
             "sequential": "ml100k-seq-loo", "closed-form": "ml100k-rank"}[kind]
    return textwrap.dedent(f"""\
        wrote {folder}/ (pyproject.toml with the entry point, src/, tests/)
        next:
          just setup                                   # installs it (editable) with the rest
          .venv/bin/python -m pytest {folder}          # the conformance kit
          .venv/bin/recarena train {name} --protocol {proto} --data-dir ../shared/data""")
