"""RecBole 1.2.1 beside today's numpy and torch: the compatibility shims live here, nowhere else.

- ``np.long`` / ``np.float`` (removed in numpy 1.24; RecBole's context-aware base and its
  metrics use them): restored as the aliases they were (``np.int64``, ``float``).
- ``torch.load`` defaults to ``weights_only=True`` since torch 2.6; RecBole's checkpoints and
  pre-trained files hold whole dicts of non-tensor objects (its config). The RecBole modules
  that call it see a ``torch`` whose ``load`` defaults to ``weights_only=False`` (these files are
  the ones the run itself just wrote); the rest of the process keeps torch's default.
- ``scipy.sparse.dok_matrix._update`` (gone in scipy 1.15; RecBole's graph models build their
  normalized adjacency with it): restored as the bulk assignment it was.
- RecBole's ``Config`` reads ``--key=value`` words from ``sys.argv`` (here the recarena command
  line): :data:`Config` is RecBole's, reading nothing from it. RecBole models keep their config,
  so it lives at a module path a saved model can be unpickled from.
- RecBole's FutureWarnings are silenced (pandas 2 still performs what they announce).
- RecBole's trainer opens a TensorBoard ``SummaryWriter`` under ``./log_tensorboard`` in the
  current directory: a writer that writes nothing takes its place (runs log through RecArena).
"""

from __future__ import annotations

import importlib
import types
import warnings

import numpy as np

_applied = False

_LOADERS = ("recbole.trainer.trainer", "recbole.model.general_recommender.convncf",
            "recbole.model.general_recommender.nais", "recbole.model.general_recommender.ract",
            "recbole.model.general_recommender.neumf", "recbole.model.context_aware_recommender.kd_dagfm",
            "recbole.model.sequential_recommender.s3rec")


class _NullWriter:
    def __getattr__(self, name):
        return lambda *a, **k: None


def _torch_with_trusting_load():
    import torch

    proxy = types.ModuleType("torch")
    proxy.__dict__.update(torch.__dict__)

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)

    proxy.load = load
    return proxy


def _dok_update(self, data) -> None:
    if not data:
        return
    keys = np.asarray(list(data.keys()), dtype=np.int64).reshape(-1, 2)
    self[keys[:, 0], keys[:, 1]] = np.asarray(list(data.values()))


def __getattr__(name: str):
    if name == "Config":  # unpickling a saved model asks for it before anything else ran
        apply()
        return globals()["Config"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def apply() -> None:
    global _applied
    if _applied:
        return
    import scipy.sparse as sp
    from recbole.config import Config as RecBoleConfig

    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = _dok_update
    globals()["Config"] = type("Config", (RecBoleConfig,), {
        "_load_cmd_line": lambda self: {}, "__module__": __name__, "__qualname__": "Config"})
    for name, value in (("long", np.int64), ("float", float)):
        if name not in np.__dict__:
            setattr(np, name, value)
    trusting = _torch_with_trusting_load()
    for mod in _LOADERS:
        m = importlib.import_module(mod)
        m.torch = trusting
    trainer = importlib.import_module("recbole.trainer.trainer")
    trainer.get_tensorboard = lambda logger: _NullWriter()
    # RecBole's own deprecation noise (pandas' chained-assignment notices, torch.cuda.amp):
    # pandas 2 still performs those operations, so the warnings say nothing about the results
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole(\.|$)")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"recbole(\.|$)")
    _applied = True
