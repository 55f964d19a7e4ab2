"""The model-plugin interface.

A plugin subclasses :class:`Recommender` (or :class:`recarena.torch.TorchRecommender`),
declares :attr:`Recommender.capabilities` as data, stores its hyperparameters in
``__init__`` and implements the few methods only it can (``_fit`` and ``_score`` and/or
``_predict``). The base class does the rest: argument checks, batching, rating-scale
clipping, exclude-seen, top-K, save/load.

Plugins only ever see internal integer ids (``0..n_users-1``, ``0..n_items-1``, int64);
:class:`recarena.data.interactions.IdMap` maps raw ids both ways.
"""

from __future__ import annotations

import importlib
import inspect
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from recarena.data.interactions import Interactions
from recarena.errors import NotFittedError, RecArenaError


class Task(StrEnum):
    RATING = "rating"
    RANKING = "ranking"
    CTR = "ctr"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True)
class Capabilities:
    """What a plugin can do; the conformance kit derives its checks from this."""

    tasks: frozenset[Task]
    onnx: bool = False
    side_features: bool = False
    embeddings: bool = False
    #: scores a user from items given at scoring time (``_score_history``), so users it never
    #: trained on can be folded in (strong generalization); per-user-embedding models cannot
    fold_in: bool = False
    #: scores a user it trained on from a history given at scoring time (``_score_history``): the
    #: items that came after training, such as a leave-one-out validation item at test time
    #: (``eval: {context: true}`` protocols, s3rec-loo). Implied by ``fold_in``; a sequential
    #: model reads the history in time order
    context: bool = False
    #: predicts a variance beside each rating (``_predict_variance``): the rating evaluator then
    #: also reports interval_coverage@90 and confident_rmse@20 / confident_ratio@20
    uncertainty: bool = False
    #: predicts from when each rating is made (``_predict_at``): the rating evaluator passes the
    #: target rows' timestamps; without them the model predicts as of each user's last training row
    timestamps: bool = False

    def __post_init__(self):
        object.__setattr__(self, "tasks", frozenset(Task(t) for t in self.tasks))
        if self.fold_in:  # scoring a stranger from a history includes scoring a known user from one
            object.__setattr__(self, "context", True)

    def supports(self, task: Task | str) -> bool:
        return Task(task) in self.tasks

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": sorted(t.value for t in self.tasks),
            "onnx": self.onnx,
            "side_features": self.side_features,
            "embeddings": self.embeddings,
            "fold_in": self.fold_in,
            "context": self.context,
            "uncertainty": self.uncertainty,
            "timestamps": self.timestamps,
        }


class ParamCapabilities:
    """Capabilities that narrow with an instance's parameters (scikit-learn's tags are
    likewise per instance). Read on the class: everything the plugin can do under some
    parameters (what ``recarena plugins`` lists); read on an instance:
    ``narrow(instance, full)``, what it can do under its own. The conformance kit asks the
    instance, so a variant is checked for what it claims.
    """

    def __init__(self, full: Capabilities, narrow: Callable[[Any, Capabilities], Capabilities]):
        self.full = full
        self.narrow = narrow

    def __get__(self, obj, owner=None) -> Capabilities:
        return self.full if obj is None else self.narrow(obj, self.full)


@dataclass
class Monitor:
    """Validation during training: ``evaluate(model) -> {metric: value}`` and which one selects.

    Built by the runner from the protocol; torch plugins early-stop and checkpoint on it.
    """

    metric: str
    mode: str  # "max" or "min"
    evaluate: Callable[[Recommender], dict[str, float]]
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PL_GLOBAL_SEED"] = str(seed)


_ARTIFACT_FORMAT = 1


class Recommender:
    """Base class of every model plugin.

    Subclasses implement:

    - ``_fit(train, valid, monitor)``: learn; set attributes ending in ``_``.
    - ``_score(users) -> Tensor [B, n_items] float32`` for ranking/sequential tasks.
    - ``_predict(users, items) -> Tensor [N] float32`` for rating/CTR tasks (the default
      gathers from ``_score``).
    - optionally ``_embeddings() -> {"user": [n_users, d], "item": [n_items, d]}`` and
      ``_export_onnx(path, k)``.
    """

    capabilities: ClassVar[Capabilities] = Capabilities(tasks=frozenset())
    #: ``{parameter: [constraint, ...]}`` for every ``__init__`` parameter (see recarena.params);
    #: merged over the class's bases, checked before any work
    _parameter_constraints: ClassVar[dict[str, list]] = {}
    #: trainer settings this plugin runs with unless a config says otherwise (``patience``...)
    trainer_defaults: ClassVar[dict[str, Any]] = {}
    #: rows per chunk in predict/recommend so memory stays bounded on large catalogues
    score_batch_elements: ClassVar[int] = 1 << 24

    #: the recommend graph reads a user only through ``exclude`` (their history, in the order
    #: ``serving_history`` gives): a caller can pass a session's items instead of a user id
    #: (``serve recommend --items``)
    session_input: ClassVar[bool] = False

    def serving_history(self) -> tuple[np.ndarray, np.ndarray]:
        """What the database stores per user and feeds the recommend graph as ``exclude``: CSR
        ``(indptr [n_users + 1], items)`` int64, by default each user's distinct training items."""
        return self.seen_indptr_, self.seen_indices_

    @property
    def score_memory_factor(self) -> int:
        """Floats held per (user, item) pair while scoring; 1 for a dot product. Models that
        build per-pair activations (NCF's MLP) return more, and evaluation chunks shrink."""
        return 1

    # ---- parameters (scikit-learn conventions) ----------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {
            n: sig.parameters[n].default
            for n in cls._param_names()
            if sig.parameters[n].default is not inspect.Parameter.empty
        }

    def get_params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self._param_names()}

    def set_params(self, **params) -> Recommender:
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                from recarena.errors import UnknownNameError

                raise UnknownNameError(f"parameter of {type(self).__name__}", k, valid)
            setattr(self, k, v)
        return self

    def _validate_params(self) -> None:
        """Check every parameter against its declared constraints (before any work)."""
        from recarena.params import validate

        validate(type(self), self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ---- fitting -----------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return getattr(self, "n_items_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet: call fit(train) before using it."
            )

    def fit(
        self,
        train: Interactions,
        valid: Interactions | None = None,
        *,
        seed: int = 0,
        monitor: Monitor | None = None,
        trainer: dict[str, Any] | None = None,
    ) -> Recommender:
        """Learn from ``train``; ``valid`` + ``monitor`` drive model selection. Returns self."""
        self._validate_params()
        if not isinstance(train, Interactions):
            raise TypeError(f"fit expects Interactions, got {type(train).__name__}")
        if len(train) == 0:
            raise RecArenaError("fit got an empty training set.")
        # a second fit starts from nothing the first one learned
        for k in list(self._learned_state()):
            delattr(self, k)
        seed_everything(seed)
        self.n_users_ = train.n_users
        self.n_items_ = train.n_items
        self.rating_scale_ = train.rating_scale
        indptr, indices = train.user_item_sets()
        self.seen_indptr_, self.seen_indices_ = indptr, indices
        # the raw <-> internal id maps travel with the model, so a loaded artifact answers
        # raw ids (recommend_raw) without the dataset
        self.user_ids_, self.item_ids_ = train.users, train.items
        self.seed_ = seed
        self.trainer_settings_ = dict(trainer or {})
        try:
            self._fit(train, valid, monitor)
        except BaseException:
            self.n_items_ = None  # a failed fit leaves the model unfitted, not half-fitted
            raise
        return self

    def _fit(self, train: Interactions, valid: Interactions | None, monitor: Monitor | None):
        raise NotImplementedError

    # ---- scoring -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _check_ids(self, ids: np.ndarray | torch.Tensor, n: int, what: str) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(ids) if not torch.is_tensor(ids) else ids)
        if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"{what} ids must be integers, got {t.dtype}")
        t = t.reshape(-1).to(torch.int64)
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= n):
            raise IndexError(f"{what} ids must be in [0, {n}); got range [{int(t.min())}, {int(t.max())}]")
        return t

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not rank items")

    def _score_history(self, users: torch.Tensor, indptr: np.ndarray, indices: np.ndarray) -> torch.Tensor:
        """Scores of every item for ``users`` int64 [B] given each user's history at scoring time:
        the CSR ``(indptr [n_users + 1], indices)`` of item ids (their training items and any given
        as context, e.g. a held-out user's fold-in items, or a leave-one-out validation item).
        Under a sequential protocol each row is in time order, repeats kept (``Interactions.
        sequences``); otherwise each row is the user's distinct items. float32 [B, n_items].
        Plugins that declare ``fold_in`` or ``context`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold in users from a history given at scoring time")

    def _predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        scores = self._score(users)
        return scores.gather(1, items.to(scores.device).view(-1, 1)).view(-1)

    @torch.no_grad()
    def score(self, users) -> torch.Tensor:
        """Scores of every item: users int64 ``[B]`` -> float32 ``[B, n_items]`` (on ``device``)."""
        self._check_fitted()
        u = self._check_ids(users, self.n_users_, "user")
        return check_output(self._score(u.to(self.device)), (len(u), self.n_items_), type(self).__name__, "_score").float()

    @torch.no_grad()
    def score_history(self, users, indptr: np.ndarray, indices: np.ndarray) -> torch.Tensor:
        """:meth:`score` from a history given at scoring time (see ``_score_history``)."""
        self._check_fitted()
        if not self.capabilities.context:
            raise NotImplementedError(f"{type(self).__name__} declares neither fold_in nor context: it scores users "
                                      "from training only")
        u = self._check_ids(users, self.n_users_, "user")
        return check_output(self._score_history(u.to(self.device), indptr, indices), (len(u), self.n_items_),
                            type(self).__name__, "_score_history").float()

    #: pairs per ``_predict`` call in ``predict``: a plugin whose network has wide intermediates
    #: per row (xDeepFM's CIN) lowers it to bound its peak memory
    predict_batch_size: int = 65536

    def _predict_at(self, users: torch.Tensor, items: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        """:meth:`_predict` for ratings made at ``timestamps`` (int64 [N], the data's unit);
        users, items int64 [N] -> float32 [N]. Plugins that declare ``timestamps`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not predict from time")

    @torch.no_grad()
    def predict(self, users, items, batch_size: int | None = None, timestamps=None) -> np.ndarray:
        """Predicted rating / probability / score of each pair: ``[N]`` ids -> float32 ``[N]``,
        ``batch_size`` pairs at a time (default ``predict_batch_size``). ``timestamps`` (int64
        ``[N]``): when each rating is made, for models that declare ``timestamps``.

        Rating models are clipped to the training data's rating scale.
        """
        batch_size = int(batch_size or self.predict_batch_size)
        self._check_fitted()
        u = self._check_ids(users, self.n_users_, "user")
        i = self._check_ids(items, self.n_items_, "item")
        if len(u) != len(i):
            raise ValueError(f"users has {len(u)} entries but items has {len(i)}")
        if timestamps is None:
            def one(s):
                return self._predict(u[s : s + batch_size].to(self.device), i[s : s + batch_size].to(self.device))
        else:
            if not self.capabilities.timestamps:
                raise NotImplementedError(f"{type(self).__name__} does not declare timestamps: it predicts without time")
            t = torch.as_tensor(np.asarray(timestamps, dtype=np.int64))
            if len(t) != len(u):
                raise ValueError(f"timestamps has {len(t)} entries but users has {len(u)}")

            def one(s):
                sl = slice(s, s + batch_size)
                return self._predict_at(u[sl].to(self.device), i[sl].to(self.device), t[sl].to(self.device))
        out = [
            check_output(one(s), (len(u[s : s + batch_size]),), type(self).__name__,
                         "_predict" if timestamps is None else "_predict_at").float().cpu()
            for s in range(0, len(u), batch_size)
        ]
        pred = torch.cat(out).numpy() if out else np.zeros(0, np.float32)
        if self.rating_scale_ is not None and self.capabilities.supports(Task.RATING):
            pred = np.clip(pred, *self.rating_scale_)
        return pred.astype(np.float32, copy=False)

    def _predict_variance(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predictive variance of each pair's rating (the model's own uncertainty plus the
        noise), users / items int64 [N] -> float32 [N] >= 0. Plugins that declare
        ``uncertainty`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} predicts no variance")

    @torch.no_grad()
    def predict_variance(self, users, items, batch_size: int | None = None) -> np.ndarray:
        """Predictive variance of each pair (see ``_predict_variance``): ``[N]`` ids -> float32 ``[N]``.
        With :meth:`predict`'s mean it gives a Gaussian predictive distribution per rating."""
        if not self.capabilities.uncertainty:
            raise NotImplementedError(f"{type(self).__name__} does not declare uncertainty: it predicts no variance")
        batch_size = int(batch_size or self.predict_batch_size)
        self._check_fitted()
        u = self._check_ids(users, self.n_users_, "user")
        i = self._check_ids(items, self.n_items_, "item")
        if len(u) != len(i):
            raise ValueError(f"users has {len(u)} entries but items has {len(i)}")
        out = [check_output(self._predict_variance(u[s : s + batch_size].to(self.device), i[s : s + batch_size].to(self.device)),
                            (len(u[s : s + batch_size]),), type(self).__name__, "_predict_variance").float().cpu()
               for s in range(0, len(u), batch_size)]
        return (torch.cat(out).numpy() if out else np.zeros(0, np.float32)).astype(np.float32, copy=False)

    def seen_mask_rows(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) index pairs of the training items of ``users`` (for masking)."""
        return csr_rows(self.seen_indptr_, self.seen_indices_, users)

    @torch.no_grad()
    def recommend(
        self, users, k: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per user.

        Returns ``(items int64 [B, k'], scores float32 [B, k'])`` with ``k' = min(k, n_items)``,
        best first. With ``exclude_seen`` the training items are never returned; where fewer
        than ``k'`` items remain the row is padded with item ``-1`` and score ``-inf``.
        """
        self._check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        u = self._check_ids(users, self.n_users_, "user")
        kk = min(k, self.n_items_)
        chunk = max(1, self.score_batch_elements // max(1, self.n_items_ * self.score_memory_factor))
        items_out, scores_out = [], []
        for s in range(0, len(u), chunk):
            uc = u[s : s + chunk]
            scores = self._score(uc.to(self.device)).float()
            if exclude_seen:
                rows, cols = self.seen_mask_rows(uc)
                scores[rows.to(scores.device), cols.to(scores.device)] = -torch.inf
            top_s, top_i = torch.topk(scores, kk, dim=1)
            top_i = torch.where(torch.isinf(top_s) & (top_s < 0), -1, top_i)
            items_out.append(top_i.cpu())
            scores_out.append(top_s.cpu())
        if not items_out:
            return np.zeros((0, kk), np.int64), np.zeros((0, kk), np.float32)
        return torch.cat(items_out).numpy(), torch.cat(scores_out).numpy()

    def recommend_raw(self, raw_users, k: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` in the dataset's own ids: raw user ids ``[B]`` -> raw item ids
        ``[B, k']`` (object/int as in the data; padding is None) and float32 scores."""
        self._check_fitted()
        items, scores = self.recommend(self.user_ids_.to_internal(raw_users), k, exclude_seen)
        raw = self.item_ids_.to_raw(np.where(items < 0, 0, items)).astype(object)
        raw[items < 0] = None
        return raw, scores

    def predict_raw(self, raw_users, raw_items) -> np.ndarray:
        """:meth:`predict` for raw user and item ids."""
        self._check_fitted()
        return self.predict(self.user_ids_.to_internal(raw_users), self.item_ids_.to_internal(raw_items))

    # ---- embeddings / export ---------------------------------------------------------------
    def embeddings(self) -> dict[str, np.ndarray]:
        """``{"user": float32 [n_users, d], "item": float32 [n_items, d]}`` (either may be absent)."""
        if not self.capabilities.embeddings:
            raise NotImplementedError(f"{type(self).__name__} does not expose embeddings")
        self._check_fitted()
        out = {k: np.asarray(v, dtype=np.float32) for k, v in self._embeddings().items()}
        if not out:
            raise NotImplementedError(
                f"{type(self).__name__} declares embeddings=True but found none: a torch plugin names its "
                "nn.Embedding modules user_emb / item_emb, or overrides _embeddings() -> "
                "{'user': [n_users, d], 'item': [n_items, d]}")
        return out

    def _embeddings(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def export_onnx(self, path: str | os.PathLike, k: int = 10) -> dict[str, Any]:
        """Write ONNX graph(s) under ``path``; returns a manifest of graphs and their I/O."""
        if not self.capabilities.onnx:
            raise NotImplementedError(f"{type(self).__name__} does not export ONNX")
        self._check_fitted()
        return self._export_onnx(Path(path), k)

    def _export_onnx(self, path: Path, k: int) -> dict[str, Any]:
        raise NotImplementedError

    # ---- persistence -------------------------------------------------------------------------
    def _learned_state(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to ``path`` (one file, written atomically)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cls = type(self)
        blob = {
            "format": _ARTIFACT_FORMAT,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "params": self.get_params(),
            "state": self._learned_state(),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommender:
        """Load a model written by :meth:`save` (artifacts are pickles: load only your own)."""
        path = Path(path)
        if not path.exists():
            raise RecArenaError(f"Model artifact {path} does not exist.")
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") != _ARTIFACT_FORMAT:
            raise RecArenaError(f"{path} is not a RecArena model artifact (format {_ARTIFACT_FORMAT}).")
        mod, _, qual = blob["class"].partition(":")
        try:
            klass = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            raise RecArenaError(
                f"{path} holds a {blob['class']} model, and its module {e.name!r} is not installed in this environment "
                f"({e}): load it where its plugin is installed (the RecBole adapter's models: .venv-recbole)."
            ) from e
        for part in qual.split("."):
            klass = getattr(klass, part)
        if cls is not Recommender and not issubclass(klass, cls):
            raise RecArenaError(f"{path} holds a {klass.__name__}, not a {cls.__name__}.")
        model = klass(**blob["params"])
        vars(model).update(blob["state"])
        model._after_load()
        return model

    def _after_load(self) -> None:
        """Hook for subclasses (e.g. put networks in eval mode)."""


def history_rows(users: torch.Tensor, indptr: np.ndarray, indices: np.ndarray, n_items: int):
    """The histories of ``users`` [B] from the CSR ``(indptr, indices)``, as a scipy CSR
    float32 ``[B, n_items]`` of ones (a repeated item counts once)."""
    import scipy.sparse as sp

    rows, cols = csr_rows(indptr, indices, users)
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows.numpy(), cols.numpy())), shape=(len(users), n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def check_output(out, shape: tuple[int, ...], owner: str, hook: str) -> torch.Tensor:
    """``out`` if it is a torch tensor of ``shape``; otherwise an error naming the hook."""
    if not torch.is_tensor(out):
        raise TypeError(f"{owner}.{hook} must return a torch.Tensor of shape {list(shape)}, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        what = "[B, n_items] (one score per item of the catalogue)" if hook == "_score" else "[N] (one value per pair)"
        raise ValueError(f"{owner}.{hook} must return shape {what} = {list(shape)}, got {list(out.shape)}")
    return out


def csr_rows(indptr: np.ndarray, indices: np.ndarray, users: torch.Tensor):
    """For CSR ``(indptr, indices)`` and row ids ``users [B]``, the ``(row_in_batch, col)``
    int64 pairs of all stored entries of those rows, vectorized."""
    u = users.cpu().numpy()
    starts, ends = indptr[u], indptr[u + 1]
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        z = torch.zeros(0, dtype=torch.int64)
        return z, z
    rows = np.repeat(np.arange(len(u), dtype=np.int64), lens)
    offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    cols = indices[np.repeat(starts, lens) + offs]
    return torch.from_numpy(rows), torch.from_numpy(cols)
