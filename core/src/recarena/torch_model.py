"""Lightning-based base class for torch plugins.

A plugin writes its network (``build_network``), its loss (``loss``) and how it scores
(``score_users`` / ``predict_pairs``). This class owns the rest: feeding whole batches by
index (no per-sample collation), the Lightning Trainer (devices, precision, strategy, DDP),
validation on the protocol's metric with early stopping and best-checkpoint restore,
seeding, a progress bar and loggers (wandb offline by default).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from recarena.base import Monitor, Recommender
from recarena.data.interactions import Interactions
from recarena.data.sampling import NegativeSampler
from recarena.errors import RecArenaError
from recarena.params import Interval, Options, validate_mapping
from recarena.trainer_settings import TRAINER_CONSTRAINTS, TRAINER_KEYS


@dataclass(frozen=True)
class OptimizerSpec:
    """An entry of the optimizer table: ``make(params, lr, weight_decay) -> torch.optim.Optimizer``.
    ``weight_decay``: whether the method takes one (the others refuse a non-zero value);
    ``full_batch``: a method meant for one step an epoch (set batch_size >= the rows)."""

    make: Callable[..., torch.optim.Optimizer]
    weight_decay: bool = True
    full_batch: bool = False


#: name -> optimizer; a plugin adds its own with a class attribute ``optimizers = {...}``
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec(lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd)),
    "adamw": OptimizerSpec(lambda p, lr, wd: torch.optim.AdamW(p, lr=lr, weight_decay=wd)),
    # lazy Adam over sparse=True embeddings: rows absent from a batch keep still
    "sparse_adam": OptimizerSpec(lambda p, lr, wd: torch.optim.SparseAdam(list(p), lr=lr), weight_decay=False),
    # plain SGD, as in Funk/Koren SVD: with a mean loss, lr ~ per-rating step x batch_size
    "sgd": OptimizerSpec(lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd)),
    "rprop": OptimizerSpec(lambda p, lr, wd: torch.optim.Rprop(p, lr=lr), weight_decay=False, full_batch=True),
    "lbfgs": OptimizerSpec(lambda p, lr, wd: torch.optim.LBFGS(p, lr=lr, max_iter=20, history_size=20,
                                                              line_search_fn="strong_wolfe"),
                           weight_decay=False, full_batch=True),
}

#: parameters every torch plugin's ``__init__`` takes; the base reads them, nothing else
TRAINING_PARAMS = ("epochs", "batch_size", "lr", "optimizer", "weight_decay")
#: parameters of a plugin that declares ``negatives = True``
NEGATIVE_PARAMS = ("n_neg", "neg_sampling")


@dataclass(frozen=True)
class Stage:
    """A pre-training stage a plugin declares in ``stages()``.

    ``name``: the key under which the fitted stage's network reaches ``init_from_stages``;
    ``epochs``: the plugin parameter holding the stage's epoch count (0 skips the stage);
    ``build(owner) -> TorchRecommender``: the stage's model, made from the owner's parameters
    (the base sets its ``epochs``). The base fits each stage in order with its own early
    stopping, and ``refit_params()`` gives every stage the epoch count it chose."""

    name: str
    epochs: str
    build: Callable[[Any], TorchRecommender]


class Batch(dict):
    """A training batch ``{field: Tensor[B, ...]}``; a missing field says which declaration
    would have put it there."""

    def __missing__(self, key):
        hint = {
            "neg": "negatives are drawn only for implicit data and only for a plugin that declares "
                   "`negatives = True` (and takes the n_neg and neg_sampling parameters)",
            "rating": "the training data is implicit (no rating column)",
        }.get(key, "the batch holds what training_tensors() returns (user, item, rating by default)")
        raise KeyError(f"batch has no field {key!r} (fields: {sorted(self)}): {hint}")


def _sparse_embeddings(network: nn.Module) -> dict[str, nn.Embedding]:
    """The network's embeddings with sparse gradients, by module name."""
    return {n: m for n, m in network.named_modules() if isinstance(m, nn.Embedding) and m.sparse}


class _Shared:
    """Holds the recommender and its monitor for the LightningModule without making them part
    of it: Lightning's weight averaging deep-copies the module, and must not copy these."""

    def __init__(self, owner, monitor):
        self.owner, self.monitor = owner, monitor

    def __deepcopy__(self, memo):
        return self


def _quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (GPU/TPU availability, tips) and warnings that do
    not apply to whole-batch feeding out of a run's output."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for msg in (r".*IterableDataset. has .__len__. defined.*", r".*LeafSpec.*", r".*does not have many workers.*",
                r".*smaller than the logging interval.*", r".*defined a .validation_step. but have no .val_dataloader.*",
                # validation figures are rank 0's, broadcast: every rank logs the same value
                r".*It is recommended to use .self.log\('val/.*sync_dist=True.*"):
        warnings.filterwarnings("ignore", message=msg)


class IndexBatches(torch.utils.data.IterableDataset):
    """Yields whole batches ``{name: Tensor[B, ...]}`` by slicing pre-built tensors with a
    random permutation; a new permutation each epoch, seeded by (seed, epoch), so a resumed
    run sees the same order. Under DDP each rank takes every world_size-th batch.

    ``make_batch(index [B] int64) -> dict`` may add sampled fields (e.g. negatives).
    """

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int, make_batch=None, drop_last=False,
                 lengths: torch.Tensor | None = None):
        self.tensors = tensors
        # lengths [N]: rows of similar length go in one batch (so a sequence model pads each
        # batch only to its own longest row): the shuffled rows are cut into pools of 50
        # batches, each pool sorted by length, and the batches shuffled again
        self.lengths = lengths
        self.n = len(next(iter(tensors.values())))
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.make_batch = make_batch
        self.drop_last = drop_last

    def __len__(self):
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        n_batches = self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)
        return math.ceil(n_batches / world)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        self.epoch += 1
        perm = torch.randperm(self.n, generator=g)
        if self.lengths is not None:
            pool = 50 * self.batch_size
            parts = [p[torch.argsort(self.lengths[p], stable=True)] for p in perm.split(pool)]
            batches = torch.cat(parts).split(self.batch_size)
            order = torch.randperm(len(batches), generator=g)
            perm = torch.cat([batches[i] for i in order])
        rank, world = 0, 1
        if torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        stop = self.n - (self.n % self.batch_size if self.drop_last else 0)
        starts = list(range(0, stop, self.batch_size))
        # every rank must run the same number of steps or DDP's collectives hang: pad by
        # wrapping around to the first batches, as DistributedSampler does
        per_rank = math.ceil(len(starts) / world)
        for b in range(rank, per_rank * world, world):
            s = starts[b % len(starts)]
            idx = perm[s : s + self.batch_size]
            if self.make_batch is not None:
                yield Batch(self.make_batch(idx))
            else:
                yield Batch({k: v[idx] for k, v in self.tensors.items()})


class _Module(L.LightningModule):
    """The generic LightningModule: the plugin supplies the network and loss."""

    def __init__(self, owner: TorchRecommender, network: nn.Module, monitor: Monitor | None, gradient_clip: float = 0.0,
                 lr_halflife: float = 0.0):
        super().__init__()
        self.shared = _Shared(owner, monitor)
        self.gradient_clip = float(gradient_clip)
        self.lr_halflife = float(lr_halflife)
        self.network = network
        self._loss_sum = None
        self._loss_n = 0
        # Manual optimization: the automatic loop's closure and hook chain cost about 1 ms
        # per step, which is a third of a biased-MF step on CPU (see just bench-train).
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        if isinstance(opt.optimizer, torch.optim.LBFGS):
            # L-BFGS evaluates the objective several times per step (line search)
            def closure():
                opt.zero_grad(set_to_none=True)
                value = self.shared.owner.loss(self.network, batch)
                self.manual_backward(value)
                self._clip(opt)
                return value

            loss = opt.step(closure=closure)
        else:
            loss = self.shared.owner.loss(self.network, batch)
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self._clip(opt)
            opt.step()
        # accumulate without a host sync per step; logged once per epoch
        d = loss.detach()
        self._loss_sum = d if self._loss_sum is None else self._loss_sum + d
        self._loss_n += 1
        return loss

    def _clip(self, opt):
        if self.gradient_clip:
            # manual optimization: Lightning's Trainer(gradient_clip_val=) does not apply
            self.clip_gradients(opt, gradient_clip_val=self.gradient_clip, gradient_clip_algorithm="norm")

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # batches are flat dicts of tensors: skip Lightning's generic collection walk
        if device.type == "cpu" or not isinstance(batch, dict):
            return batch if device.type == "cpu" else super().transfer_batch_to_device(batch, device, dataloader_idx)
        return Batch({k: v.to(device, non_blocking=True) for k, v in batch.items()})

    def on_train_epoch_start(self):
        self._epoch_t0 = time.perf_counter()

    def _epoch_done(self):
        # the training pass only: validation (which runs before on_train_epoch_end) is not in it
        if getattr(self, "_epoch_t0", None) is not None:
            self.shared.owner.epoch_seconds_.append(time.perf_counter() - self._epoch_t0)
            self._epoch_t0 = None

    def on_validation_start(self):
        if not self.trainer.sanity_checking:
            self._epoch_done()

    def on_train_epoch_end(self):
        self._epoch_done()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            # manual optimization: Lightning leaves stepping the scheduler to the module
            scheduler.step()
        if self._loss_n:
            self.log("train/loss", self._loss_sum / self._loss_n, prog_bar=True, sync_dist=True)
        self._loss_sum, self._loss_n = None, 0

    def validation_step(self, batch, batch_idx):
        monitor = self.shared.monitor
        if monitor is None:
            return
        # the owner's network_ is this very network (set by _fit): evaluate scores through it.
        # Under DDP rank 0 evaluates (every rank holds the same weights) and the others take its
        # figures, so early stopping and checkpointing decide alike on every rank
        metrics = None
        if self.trainer.is_global_zero:
            self.network.eval()
            metrics = monitor.evaluate(self.shared.owner)
            self.network.train()
        if self.trainer.world_size > 1:
            metrics = self.trainer.strategy.broadcast(metrics, src=0)
        monitor.history.append({"epoch": self.current_epoch, **metrics})
        if os.environ.get("RECARENA_EPOCH_REPORT") and self.trainer.is_global_zero:
            # a sweep watching this run (TPE pruning) reads these lines from the run's log
            print("RECARENA_EPOCH " + json.dumps({"epoch": self.current_epoch, **{k: float(v) for k, v in metrics.items()}}),
                  file=sys.stderr, flush=True)
        for k, v in metrics.items():
            self.log(f"val/{k}", float(v), prog_bar=(k == monitor.metric), batch_size=1)

    def configure_optimizers(self):
        opt = self.shared.owner.configure_optimizer(self.network.parameters())
        if not self.lr_halflife:
            return opt
        # stepped once an epoch, so the refit's shorter run follows the selection run's rates
        decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5 ** (1.0 / self.lr_halflife))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": decay, "interval": "epoch"}}


class TorchRecommender(Recommender):
    """Base for torch plugins. A plugin's ``__init__`` takes the training fields every torch
    plugin accepts (``TRAINING_PARAMS``: epochs, batch_size, lr, optimizer, weight_decay), plus
    ``n_neg`` and ``neg_sampling`` when it declares ``negatives = True``, plus ``use_side``
    when its capabilities declare side features; the base reads exactly these, by these names.
    It implements:

    - ``build_network(train) -> nn.Module``: everything the model needs at scoring time lives
      in the network (as parameters, buffers or plain attributes), so it saves, loads and
      exports with it
    - ``loss(network, batch: Batch) -> Tensor`` (scalar)
    - ``score_users(network, users [B] int64) -> float32 [B, n_items]`` for ranking/sequential
    - ``predict_pairs(network, users [N], items [N]) -> float32 [N]`` for rating/CTR

    and optionally ``training_tensors(train, network)`` (what a batch holds: user, item,
    rating by default; implicit data gets ``neg [B, n_neg]`` when the plugin declares
    negatives), ``stages()`` + ``init_from_stages(network, fitted)`` for pre-training stages,
    and a class attribute ``optimizers = {name: OptimizerSpec}`` to add optimizers.
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    weight_decay: float

    #: draws negatives for implicit training data (the plugin takes n_neg and neg_sampling)
    negatives: ClassVar[bool] = False
    #: optimizers this plugin adds to (or overrides in) ``OPTIMIZERS``
    optimizers: ClassVar[dict[str, OptimizerSpec]] = {}

    _parameter_constraints = {
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "lr": [Interval(float, 0, None)],
        "optimizer": [Options(lambda cls: cls.optimizer_table())],
        "weight_decay": [Interval(float, 0, None)],
        "n_neg": [Interval(int, 1, None)],
        "neg_sampling": [Options("uniform", "popularity")],
        "use_side": [bool],
    }

    @classmethod
    def optimizer_table(cls) -> dict[str, OptimizerSpec]:
        table = dict(OPTIMIZERS)
        for klass in reversed(cls.__mro__):
            table.update(vars(klass).get("optimizers") or {})
        return table

    def _validate_params(self) -> None:
        names = set(self._param_names())
        need = [*TRAINING_PARAMS, *(NEGATIVE_PARAMS if self.negatives else ()),
                *(("use_side",) if self.capabilities.side_features else ())]
        missing = [n for n in need if n not in names]
        if missing:
            raise RecArenaError(
                f"{type(self).__name__}.__init__ lacks {missing}: every torch plugin takes {', '.join(TRAINING_PARAMS)}"
                + ("; one that declares negatives also n_neg and neg_sampling" if self.negatives else "")
                + " (the base reads them by these names; see README, Writing a plugin).")
        super()._validate_params()
        spec = self.optimizer_table()[self.optimizer]
        if self.weight_decay and not spec.weight_decay:
            from recarena.params import InvalidParameterError

            raise InvalidParameterError(
                getattr(self, "plugin_name", type(self).__name__), "weight_decay", self.weight_decay,
                f"0 with optimizer {self.optimizer!r}, which takes no weight decay "
                f"(those that do: {', '.join(n for n, o in self.optimizer_table().items() if o.weight_decay)})")

    # ---- hooks a plugin may override ------------------------------------------------------
    def build_network(self, train: Interactions) -> nn.Module:
        raise NotImplementedError

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def score_users(self, network: nn.Module, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} does not rank items: a ranking or sequential plugin implements "
            "score_users(network, users [B] int64) -> float32 [B, n_items]")

    def predict_pairs(self, network: nn.Module, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        s = self.score_users(network, users)
        return s.gather(1, items.view(-1, 1)).view(-1)

    def stages(self) -> list[Stage]:
        """Pre-training stages, fitted in order before the model itself (none by default)."""
        return []

    def init_from_stages(self, network: nn.Module, fitted: dict[str, nn.Module]) -> None:
        """Start ``network`` from the fitted stages' networks (``{stage name: network}``, only
        the stages that ran); called by the base right after ``build_network``."""
        raise NotImplementedError(f"{type(self).__name__} declares stages but no init_from_stages")

    def learning_rate(self) -> float:
        """The step of the main fit (``lr``; a plugin may use another after pre-training)."""
        return float(self.lr)

    def configure_optimizer(self, params):
        """The optimizer named by the ``optimizer`` parameter, from ``optimizer_table()``."""
        spec = self.optimizer_table()[self.optimizer]
        return spec.make(params, self.learning_rate(), float(self.weight_decay))

    def training_tensors(self, train: Interactions, network: nn.Module) -> dict[str, torch.Tensor]:
        """Row-aligned tensors ``{field: [N, ...]}`` that batches are sliced from."""
        t = {"user": torch.from_numpy(train.user), "item": torch.from_numpy(train.item)}
        if train.rating is not None:
            t["rating"] = torch.from_numpy(train.rating)
        return t

    def batch_maker(self, train: Interactions, tensors: dict[str, torch.Tensor], seed: int):
        """Implicit data for a plugin that declares negatives: ``neg [B, n_neg]`` drawn per batch."""
        if train.rating is not None or not self.negatives:
            return None
        sampler = NegativeSampler(train, self.neg_sampling, seed=seed)
        n_neg = int(self.n_neg)

        def make(idx):
            b = {k: v[idx] for k, v in tensors.items()}
            b["neg"] = torch.from_numpy(sampler.sample(b["user"].numpy(), n_neg))
            return b

        return make

    def batch_lengths(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Each training row's length (int64 [N]) for a plugin whose cost grows with it
        (padded sequences): batches then hold rows of similar length. None: plain shuffling."""
        return None

    # ---- the Recommender contract ---------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        net = getattr(self, "network_", None)
        if net is None:
            return torch.device("cpu")
        p = next(net.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        return self.score_users(self.network_, users.to(self.device))

    def _predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.predict_pairs(self.network_, users.to(self.device), items.to(self.device))

    def _after_load(self) -> None:
        self.network_.eval()

    def _fit(self, train: Interactions, valid: Interactions | None, monitor: Monitor | None):
        fitted: dict[str, nn.Module] = {}
        self.stage_best_epochs_: dict[str, int | None] = {}
        for stage in self.stages():
            n = int(getattr(self, stage.epochs))
            if n <= 0:
                continue
            sub = stage.build(self).set_params(epochs=n)
            self.fit_stage(sub, train, valid, monitor)
            fitted[stage.name] = sub.network_
            self.stage_best_epochs_[stage.name] = getattr(sub, "best_epoch_", None)
        network = self.build_network(train)
        if fitted:
            with torch.no_grad():
                self.init_from_stages(network, fitted)
        self._train_network(network, train, monitor)

    def _train_network(self, network: nn.Module, train: Interactions, monitor: Monitor | None):
        settings = {**TRAINER_KEYS, **self.trainer_defaults, **self.trainer_settings_}
        unknown = set(settings) - set(TRAINER_KEYS)
        if unknown:
            from recarena.errors import UnknownNameError

            raise UnknownNameError("trainer setting", sorted(unknown)[0], TRAINER_KEYS)
        _quiet_lightning()
        self.network_ = network
        # a config's trainer block was checked before the run; a direct fit(trainer=...) is here
        validate_mapping(TRAINER_CONSTRAINTS, settings, owner="the trainer settings")
        name = getattr(self, "plugin_name", type(self).__name__)
        sparse = _sparse_embeddings(network)
        if self.optimizer == "sparse_adam":
            # SparseAdam takes sparse gradients only: say so now, not at the first step
            ids = {id(m.weight) for m in sparse.values()}
            dense = [n for n, p in network.named_parameters() if p.requires_grad and id(p) not in ids]
            if dense:
                raise RecArenaError(
                    f"optimizer 'sparse_adam' needs every trained parameter to be an embedding with sparse gradients; "
                    f"{name}'s network has dense ones: {', '.join(dense[:5])}. Use optimizer 'adam'.")
        if settings["gradient_clip"] and sparse:
            # clip_grad_norm_ has no kernel for sparse gradients: say so now, not at the first step
            raise RecArenaError(
                f"trainer setting 'gradient_clip' needs dense gradients; {name}'s embeddings "
                f"{', '.join(list(sparse)[:5])} have sparse ones (sparse=True). "
                "Set gradient_clip to 0 or use dense embeddings.")
        tensors = self.training_tensors(train, network)
        data = IndexBatches(tensors, int(self.batch_size), self.seed_, self.batch_maker(train, tensors, self.seed_),
                            lengths=self.batch_lengths(tensors))
        loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=0)
        module = _Module(self, network, monitor, settings["gradient_clip"], settings["lr_halflife"])
        self.epoch_seconds_: list[float] = []  # wall seconds of each epoch's training pass

        callbacks: list[L.Callback] = []
        run_dir = Path(settings["run_dir"] or tempfile.mkdtemp(prefix="recarena-run-"))
        ckpt_dir = run_dir / "checkpoints"
        ckpt = None
        val_loader = None
        ema = float(settings["ema"])
        if monitor is not None:
            from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

            key = f"val/{monitor.metric}"
            callbacks.append(EarlyStopping(key, patience=int(settings["patience"]), mode=monitor.mode))
            ckpt = ModelCheckpoint(
                dirpath=ckpt_dir, monitor=key, mode=monitor.mode, save_top_k=1,
                # a weights-only checkpoint skips the callbacks' on_save_checkpoint, so under EMA it
                # would hold the raw weights instead of the averaged ones validation scored
                filename="best", enable_version_counter=False, save_weights_only=not ema,
            )
            callbacks.append(ckpt)
            # one dummy batch per validation pass: the evaluator does its own chunking
            val_loader = torch.utils.data.DataLoader([0], batch_size=None)
        if ema:
            from lightning.pytorch.callbacks import EMAWeightAveraging

            # buffers (training matrices, masks, counters) are not weights: not averaged; the average
            # model copies the live ones at each update, so validation, the best checkpoint and the
            # fitted model carry current buffers (tested)
            callbacks.append(EMAWeightAveraging(decay=ema, use_buffers=False))
        logger = self._make_logger(settings, run_dir / "logs")
        trainer = L.Trainer(
            max_epochs=int(self.epochs),
            accelerator=settings["accelerator"],
            devices=settings["devices"],
            strategy=settings["strategy"],
            precision=settings["precision"],
            num_nodes=int(settings["num_nodes"]),
            max_time=settings["max_time"],
            callbacks=callbacks,
            logger=logger,
            enable_checkpointing=ckpt is not None,
            enable_progress_bar=bool(settings["progress_bar"]),
            enable_model_summary=False,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=int(settings["check_val_every_n_epoch"]),
            deterministic=settings["deterministic"],
            default_root_dir=run_dir,
            log_every_n_steps=max(1, min(50, len(data))),
        )
        try:
            trainer.fit(module, loader, val_loader)
            if ckpt is not None and ckpt.best_model_path and Path(ckpt.best_model_path).exists():
                state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
                module.load_state_dict(state)
                self.best_epoch_ = self._best_epoch(monitor)
            self.epochs_trained_ = trainer.current_epoch
            self.history_ = list(monitor.history) if monitor is not None else []
        finally:
            # the best weights live in the model now; the run keeps its logs
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            if not settings["run_dir"]:
                shutil.rmtree(run_dir, ignore_errors=True)
        self._last_logger = logger
        self.network_ = network.cpu().eval()

    def fit_stage(self, stage: Recommender, train: Interactions, valid: Interactions | None,
                  monitor: Monitor | None) -> Recommender:
        """Fit a sub-model (a pre-training stage) from inside ``_fit``: this fit's seed and trainer
        settings, its own early stopping on the same validation metric. Returns ``stage`` fitted."""
        mon = Monitor(monitor.metric, monitor.mode, monitor.evaluate) if monitor else None
        return stage.fit(train, valid, seed=self.seed_, monitor=mon, trainer=self.trainer_settings_)

    def refit_params(self) -> dict[str, Any]:
        """Parameters that repeat this fit's model selection in a refit on train + valid, which
        has no validation rows to stop on: the epoch count early stopping chose, for the model
        and for every declared stage."""
        out = {}
        stages = {st.name: st for st in self.stages()}
        for name, best in (getattr(self, "stage_best_epochs_", None) or {}).items():
            if best is not None:
                out[stages[name].epochs] = best + 1
        best = getattr(self, "best_epoch_", None)
        if best is not None:
            out["epochs"] = best + 1
        return out

    @staticmethod
    def _best_epoch(monitor):
        if not monitor.history:
            return None
        pick = max if monitor.mode == "max" else min
        return pick(monitor.history, key=lambda h: h[monitor.metric])["epoch"]

    def _make_logger(self, settings, root: Path):
        kind = settings["logger"]
        if kind in (None, "none", False):
            return False
        root.mkdir(parents=True, exist_ok=True)
        if kind == "csv":
            from lightning.pytorch.loggers import CSVLogger

            return CSVLogger(root, name="logs")
        if kind == "wandb":
            mode = os.environ.get("WANDB_MODE") or settings["wandb_mode"]
            if mode == "disabled":
                return False
            os.environ.setdefault("WANDB_SILENT", "true")
            try:
                import wandb  # noqa: F401
                from lightning.pytorch.loggers import WandbLogger
            except ImportError:
                raise RecArenaError(
                    "trainer.logger=wandb but wandb is not installed: pip install wandb, "
                    "or set trainer.logger=csv / none."
                ) from None
            logger = WandbLogger(
                project=settings["wandb_project"], group=settings["wandb_group"], mode=mode,
                save_dir=str(root), log_model=False,
            )
            # Lightning passes anonymous=None to wandb.init, which warns on every run that the
            # setting has no effect: leave the key out (the run is created lazily from this dict)
            getattr(logger, "_wandb_init", {}).pop("anonymous", None)
            return logger
        raise RecArenaError(f"trainer.logger must be wandb, csv or none; got {kind!r}.")

    def log_final(self, metrics: dict[str, float], prefix: str = "test") -> None:
        """Send final metrics to the run's logger (if any) and close it."""
        logger = getattr(self, "_last_logger", None)
        if not logger:
            return
        logger.log_metrics({f"{prefix}/{k}": v for k, v in metrics.items()})
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()

    def onnx_score_users(self, network: nn.Module, users: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
        """What the recommend graph scores with (default ``score_users``); ``exclude`` holds
        each user's training items, padded with -1, for models that score from history."""
        return self.score_users(network, users)

    def onnx_predict_pairs(self, network: nn.Module, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """What the predict graph computes (default ``predict_pairs``), for plugins whose
        ``predict_pairs`` uses operations that do not trace."""
        return self.predict_pairs(network, users, items)

    def _export_onnx(self, path: Path, k: int) -> dict[str, Any]:
        from recarena import onnx_export as ox
        from recarena.base import Task

        # export traces a copy: exporting never changes the fitted model
        net = copy.deepcopy(self.network_).cpu().eval()
        graphs = []
        caps = self.capabilities
        if caps.supports(Task.RANKING) or caps.supports(Task.SEQUENTIAL):
            graphs.append(ox.export_recommend(lambda u, ex: self.onnx_score_users(net, u, ex), net, self.n_items_, k,
                                              path / "recommend.onnx", owner_model=self))
        if caps.supports(Task.RATING) or caps.supports(Task.CTR):
            clip = self.rating_scale_ if caps.supports(Task.RATING) else None
            graphs.append(ox.export_predict(lambda u, i: self.onnx_predict_pairs(net, u, i), net, clip, path / "predict.onnx"))
        return ox.manifest(graphs)

    def _embeddings(self) -> dict[str, np.ndarray]:
        out = {}
        for name, attr in (("user", "user_emb"), ("item", "item_emb")):
            emb = getattr(self.network_, attr, None)
            if isinstance(emb, nn.Embedding):
                out[name] = emb.weight.detach().cpu().numpy()
        return out
