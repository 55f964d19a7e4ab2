"""One Recommender class per RecBole model, trained on RecArena's split, judged by its evaluator.

How a fit runs (``RecBoleRecommender._fit``):

1. RecArena's training and validation rows are written as RecBole *benchmark* atomic files
   (``recarena.train.inter``, ``recarena.valid.inter``, ``recarena.test.inter``, plus ``.user``
   and ``.item`` files holding the whole id space and any side features) into a temporary
   folder. RecBole's ``benchmark_filename`` loads pre-split files without filtering or
   splitting, so the split judged is RecArena's. Tokens are RecArena's internal ids.
2. RecBole's own ``Config``, ``create_dataset``, ``data_preparation``, model class and trainer
   (``get_trainer``) do the training: its dataloaders feed each model what its
   ``calculate_loss`` expects (pairwise negatives, sequence prefixes, labelled rows), and its
   model-specific trainers (alternating updates, non-gradient fits, pre-training) stay theirs.
   Rebuilding those under Lightning would be rewriting RecBole.
3. Validation inside that loop is RecArena's: the trainer's ``_valid_epoch`` asks the run's
   monitor (the protocol's ``select`` metric, through RecArena's evaluator, on this adapter's
   ``score``), and RecBole's early stopping and best-checkpoint logic act on it.
4. Scoring goes through RecBole's ``full_sort_predict`` (``predict`` over all items where a
   model has none) and is mapped back to RecArena's item order.

Parameters are RecBole's own names and defaults (its ``overall.yaml``, the model type's
quick-start file and the model's yaml, merged in RecBole's order); only those set away from
their defaults are passed to RecBole, which then resolves the rest exactly as it would alone.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from recarena.base import Capabilities, Recommender, Task
from recarena.errors import RecArenaError
from recarena.params import Interval
from recarena_recbole import zoo

#: RecBole's training settings a contestant may set (the rest of ``overall.yaml`` is plumbing
#: the adapter owns: paths, devices, logging, evaluation)
TRAINING_KEYS = ("epochs", "train_batch_size", "learner", "learning_rate", "train_neg_sample_args",
                 "clip_grad_norm", "weight_decay", "eval_batch_size")
#: sequential models also take the length of the history they read
SEQUENTIAL_KEYS = ("MAX_ITEM_LIST_LENGTH",)
#: keys of a model's yaml that are data plumbing, set by the adapter
PLUMBING = {"load_col", "unload_col", "unused_col", "eval_args", "metrics", "topk", "valid_metric",
            "valid_metric_bigger", "repeatable", "neg_sampling", "data_path", "benchmark_filename",
            "numerical_features", "threshold", "alias_of_item_id", "alias_of_user_id", "selected_features",
            "pre_model_path", "mf_pretrain_path", "mlp_pretrain_path", "pretrain_path", "warm_up",
            "checkpoint_dir", "USER_ID_FIELD", "ITEM_ID_FIELD", "LABEL_FIELD", "RATING_FIELD", "TIME_FIELD"}
FLOATY = re.compile(r"(reg|weight|lr|rate|alpha|beta|lambda|temperature|temp|prob|eps|dropout|gamma|tau|"
                    r"margin|noise|anneal|decay|ratio|std|scale|lamb|mu|coef)", re.I)


def _recbole_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise RecArenaError("recbole is not installed here: the RecBole adapter runs in .venv-recbole "
                            "(`just setup-recbole`).")
    return Path(list(spec.submodule_search_locations)[0])


@cache
def _loader():
    """PyYAML's loader with RecBole's float rule (``1e-4`` is a float there, a string in YAML 1.1)."""
    import yaml

    loader = type("RecBoleLoader", (yaml.FullLoader,), {})
    loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return loader


@cache
def _yaml(path: Path) -> dict[str, Any]:
    """A RecBole property file, read as RecBole reads it (read once: a model's yaml gives both its
    parameters and whether it reads item features). Callers must not change the dict."""
    import yaml

    if not path.is_file():
        return {}
    return yaml.load(path.read_text(), Loader=_loader()) or {}


@cache
def recbole_defaults(model: str, kind: str) -> dict[str, Any]:
    """The contestant's parameters and defaults: RecBole's training keys and the model's own."""
    props = _recbole_dir() / "properties"
    overall = _yaml(props / "overall.yaml")
    quick = {"context": "context-aware.yaml", "decisiontree": "context-aware.yaml",
             "knowledge": "knowledge_base.yaml",
             "sequential": "sequential_DIN.yaml" if model in ("DIN", "DIEN") else
             "sequential_embedding_model.yaml" if model in ("GRU4RecKG", "KSR") else "sequential.yaml"}.get(kind)
    merged = {k: overall[k] for k in TRAINING_KEYS}
    if kind == "sequential":
        merged["MAX_ITEM_LIST_LENGTH"] = 50
    for src in ([_yaml(props / "quick_start_config" / quick)] if quick else []) + [_yaml(props / "model" / f"{model}.yaml")]:
        for k, v in src.items():
            if not k.isidentifier():  # DiffRec's `time-aware`: no keyword can name it; RecBole's default stands
                continue
            if k in merged or (k not in PLUMBING and k not in overall):
                merged[k] = v
    if kind == "sequential" and merged.get("loss_type") == "CE":
        merged["train_neg_sample_args"] = None  # RecBole's rule: CE over the catalogue samples nothing
    return merged


def _constraint(name: str, default: Any) -> list:
    if isinstance(default, bool):
        return [bool]
    if isinstance(default, int | float):
        lo = 0 if default >= 0 else None
        if isinstance(default, float) or FLOATY.search(name):
            return [Interval(float, lo, None)]
        return [Interval(int, lo, None)]
    if default is None:
        return [None, dict, list, str, Interval(float, None, None)]
    return [type(default)]


def make_class(model: str, kind: str, module: str) -> type:
    """The Recommender subclass for RecBole's ``model`` of type ``kind``: its ``__init__``
    takes RecBole's parameter names with RecBole's defaults (keyword-only), and declares
    constraints derived from them."""
    task = zoo.TASK_OF[kind]
    caps = Capabilities(tasks={Task(task)}, onnx=model in zoo.EXPORTS, context=kind == "sequential")
    defaults = recbole_defaults(model, kind) if model not in zoo.UNRUNNABLE else {}
    params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]

    def __init__(self, **kw):
        if model in zoo.UNRUNNABLE:  # refused where a run starts, before any data is read
            raise RecArenaError(f"recbole/{model} cannot run on RecArena's protocols: {zoo.UNRUNNABLE[model]}.")
        unknown = sorted(set(kw) - set(defaults))
        if unknown:
            raise TypeError(f"recbole/{model} has no parameter {unknown[0]!r} (RecBole's names: "
                            f"{', '.join(sorted(defaults))})")
        for k, v in defaults.items():
            setattr(self, k, kw.get(k, v))

    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])
    __init__.__qualname__ = f"{model}.__init__"
    cls = type(model, (RecBoleRecommender,), {
        "__init__": __init__, "__module__": module, "__qualname__": model,
        "__doc__": f"RecBole 1.2.1's {model} ({kind} model), as a RecArena contestant.",
        "recbole_model": model, "recbole_type": kind, "capabilities": caps,
        "item_features": kind == "context" or "selected_features" in _yaml(_recbole_dir() / "properties" / "model" / f"{model}.yaml"),
        "_parameter_constraints": {k: _constraint(k, v) for k, v in defaults.items()},
    })
    return cls


class RecBoleRecommender(Recommender):
    """Base of every ``recbole/<Model>`` class (see the module docstring for how a fit runs)."""

    recbole_model: ClassVar[str] = ""
    recbole_type: ClassVar[str] = ""
    #: the model reads the items' side features (context-aware models; FDSA, SASRecF, GRU4RecF
    #: through RecBole's ``selected_features``, which the adapter sets to every item feature)
    item_features: ClassVar[bool] = False
    #: RecBole's own ``stopping_step``; the protocol's ``trainer: {patience}`` sets it
    trainer_defaults: ClassVar[dict[str, Any]] = {"patience": 10}

    # ---- fitting -----------------------------------------------------------------------
    def _config_dict(self, folder: str, seed: int) -> dict[str, Any]:
        defaults = recbole_defaults(self.recbole_model, self.recbole_type)
        cfg = {k: v for k, v in self.get_params().items() if v != defaults[k]}
        # RecBole refuses its own overall default beside a CE loss: always say it
        cfg["train_neg_sample_args"] = self.get_params()["train_neg_sample_args"]
        cfg.update({
            "data_path": folder, "benchmark_filename": ["train", "valid", "test"], "load_col": None,
            "checkpoint_dir": os.path.join(folder, "saved"), "show_progress": False, "state": "ERROR",
            "seed": int(seed), "reproducibility": True, "use_gpu": torch.cuda.is_available(),
            "save_dataset": False, "save_dataloaders": False, "log_wandb": False, "worker": 0,
            "stopping_step": int(self.trainer_settings_.get("patience", 10)),
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
            "LABEL_FIELD": "label", "RATING_FIELD": "rating", "threshold": None,
        })
        if self.recbole_type == "sequential":
            cfg["alias_of_item_id"] = ["item_id_list"]
        if self.recbole_type == "context":
            cfg["eval_args"] = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"}
        else:  # RecBole checks these even though benchmark files bypass its splitting
            cfg["eval_args"] = {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO" if self.recbole_type == "sequential" else "RO",
                                "group_by": "user", "mode": "full"}
        return cfg

    def _fit(self, train, valid, monitor):
        from recarena_recbole import atomic, shims

        shims.apply()
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model, get_trainer, init_seed

        if self.recbole_type == "context" and train.rating is None:
            raise RecArenaError(f"recbole/{self.recbole_model} learns clicks: its training rows need 0/1 labels "
                                "(a protocol with ctr_threshold).")
        with tempfile.TemporaryDirectory(prefix="recarena-recbole-") as folder:
            L = int(getattr(self, "MAX_ITEM_LIST_LENGTH", 50))
            written = atomic.write(Path(folder), train, valid, self.recbole_type, max_len=L,
                                   item_features=self.item_features)
            cfg = self._config_dict(folder, self.seed_)
            if self.item_features and self.recbole_type == "sequential":
                if not written:
                    raise RecArenaError(f"recbole/{self.recbole_model} reads the items' side features, and "
                                        f"{train.name} has none.")
                cfg["selected_features"] = written
            config = shims.Config(model=self.recbole_model, dataset="recarena", config_dict=cfg)
            init_seed(config["seed"], config["reproducibility"])
            dataset = create_dataset(config)
            train_data, valid_data, _ = data_preparation(config, dataset)
            init_seed(config["seed"], config["reproducibility"])
            net = get_model(self.recbole_model)(config, train_data.dataset).to(config["device"])
            self._bind(dataset, config, train)
            self.model_ = net
            trainer = _judged(get_trainer(config["MODEL_TYPE"], self.recbole_model), self, monitor)(config, net)
            trainer.fit(train_data, valid_data if monitor is not None else None, saved=True,
                        show_progress=bool(self.trainer_settings_.get("progress_bar", False)))
            if os.path.isfile(trainer.saved_model_file):  # the best checkpoint on the monitor
                state = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
                net.load_state_dict(state["state_dict"])
                net.load_other_parameter(state.get("other_parameter"))
            self.epochs_trained_ = getattr(trainer, "epochs_seen", None)
            self.best_epoch_ = getattr(trainer, "best_epoch", None)
            self.model_ = net.cpu().eval()
            self._reset_caches()
        return self

    def _bind(self, dataset, config, train) -> None:
        """The id maps and fields scoring needs, kept with the model (so a saved model scores alone)."""
        uid, iid = dataset.uid_field, dataset.iid_field
        tok_u, tok_i = dataset.field2token_id[uid], dataset.field2token_id[iid]
        self.user_rb_ = torch.as_tensor([tok_u[str(u)] for u in range(train.n_users)], dtype=torch.int64)
        self.item_rb_ = torch.as_tensor([tok_i[str(i)] for i in range(train.n_items)], dtype=torch.int64)
        self.n_rb_items_ = int(dataset.item_num)
        self.fields_ = {"uid": uid, "iid": iid, "seq": getattr(dataset, "item_id_list_field", None),
                        "seq_len": getattr(dataset, "item_list_length_field", None)}
        self.max_len_ = int(config["MAX_ITEM_LIST_LENGTH"] or 50)
        if self.recbole_type == "context":
            uf, itf = dataset.get_user_feature(), dataset.get_item_feature()
            self.user_feat_ = {k: v for k, v in uf.interaction.items()}
            self.item_feat_ = {k: v for k, v in itf.interaction.items()}
        if self.recbole_type == "sequential":
            self.seq_indptr_, self.seq_items_ = train.sequences()

    def refit_params(self) -> dict[str, Any]:
        """A refit on train + valid (no rows to stop on) trains the epochs early stopping chose."""
        best = getattr(self, "best_epoch_", None)
        return {} if best is None else {"epochs": int(best) + 1}

    def serving_history(self):
        if self.recbole_type == "sequential":
            return self.seq_indptr_, self.seq_items_
        return super().serving_history()

    def _reset_caches(self) -> None:
        """Graph models cache propagated embeddings while evaluating (LightGCN's
        ``restore_user_e``): drop them whenever the weights change."""
        for attr in ("restore_user_e", "restore_item_e"):
            if hasattr(self.model_, attr):
                setattr(self.model_, attr, None)

    def _after_load(self) -> None:
        from recarena_recbole import shims

        shims.apply()
        self.model_.eval()

    # ---- scoring -----------------------------------------------------------------------
    def _interaction(self, data: dict[str, torch.Tensor]):
        """RecBole's batch object, on the device the network is on (a GPU while training there)."""
        from recbole.data.interaction import Interaction

        inter = Interaction(data)
        dev = next(iter(self.model_.parameters()), torch.zeros(0)).device
        return inter if dev.type == "cpu" else inter.to(dev)

    def _full_sort(self, inter, batch: int) -> torch.Tensor:
        """RecBole's scores of every RecBole item id (0 = padding included): [batch, n_rb_items]."""
        try:
            out = self.model_.full_sort_predict(inter)
        except NotImplementedError:
            # pairs through `predict`, a user at a time: a pair model's intermediates (ConvNCF's
            # outer products) would not fit for a whole batch of users times the catalogue
            n = self.n_rb_items_
            rows = []
            for b in range(batch):
                one = {k: v[b : b + 1].repeat_interleave(n, 0) for k, v in inter.interaction.items()}
                one[self.fields_["iid"]] = torch.arange(n, device=inter[self.fields_["uid"]].device)
                rows.append(self.model_.predict(self._interaction(one)).reshape(1, n).cpu())
            out = torch.cat(rows)
        return out.reshape(batch, -1).cpu()

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        if self.recbole_type == "sequential":
            return self._score_history(users, self.seq_indptr_, self.seq_items_)
        self.model_.eval()
        inter = self._interaction({self.fields_["uid"]: self.user_rb_[users]})
        return self._full_sort(inter, len(users)).float()[:, self.item_rb_]

    def _sequence_rows(self, users: torch.Tensor, indptr: np.ndarray, indices: np.ndarray):
        """The last ``max_len_`` items of each user's history, left-aligned and zero-padded in
        RecBole's ids ([B, L] int64), and their lengths ([B] int64, at least 1: RecBole's
        gather of the last position needs one)."""
        L = self.max_len_
        u = users.cpu().numpy()
        seq = np.zeros((len(u), L), np.int64)
        lens = np.ones(len(u), np.int64)
        rb = self.item_rb_.numpy()
        for r, user in enumerate(u):
            h = indices[indptr[user] : indptr[user + 1]][-L:]
            seq[r, : len(h)] = rb[h]
            lens[r] = max(1, len(h))
        return torch.from_numpy(seq), torch.from_numpy(lens)

    def _score_history(self, users, indptr, indices):
        self.model_.eval()
        seq, lens = self._sequence_rows(users, indptr, indices)
        inter = self._interaction({self.fields_["uid"]: self.user_rb_[users], self.fields_["seq"]: seq,
                                   self.fields_["seq_len"]: lens})
        return self._full_sort(inter, len(users)).float()[:, self.item_rb_]

    def _predict(self, users, items):
        if self.recbole_type != "context":
            return super()._predict(users, items)
        self.model_.eval()
        return self.model_.predict(self._pairs(self.user_rb_[users], self.item_rb_[items])).float().reshape(-1).cpu()

    def _pairs(self, u: torch.Tensor, i: torch.Tensor):
        """An Interaction of (user, item) rows with both sides' features joined (RecBole's
        ``Dataset.join``)."""
        data = {self.fields_["uid"]: u, self.fields_["iid"]: i}
        data.update({k: v[u] for k, v in self.user_feat_.items() if k != self.fields_["uid"]})
        data.update({k: v[i] for k, v in self.item_feat_.items() if k != self.fields_["iid"]})
        return self._interaction(data)


    # ---- export -----------------------------------------------------------------------
    def _export_onnx(self, path, k):
        """RecBole's own scoring code, traced: ``full_sort_predict`` (rankers, sequential models)
        or ``predict`` (CTR) between RecArena's id maps. Graph models' cached propagations
        (LightGCN's) are filled first and travel as constants."""
        from recarena import onnx_export as ox

        net = self.model_.eval()
        holder = torch.nn.Module()
        holder.net = net
        holder.register_buffer("user_rb", self.user_rb_.clone())
        holder.register_buffer("item_rb", self.item_rb_.clone())
        f = self.fields_
        if self.recbole_type == "context":
            for side, feats in (("u", self.user_feat_), ("i", self.item_feat_)):
                for name, v in feats.items():
                    holder.register_buffer(f"{side}_{name}", v.clone())

            def predict(user, item):
                u, i = holder.user_rb[user], holder.item_rb[item]
                data = {f["uid"]: u, f["iid"]: i}
                data.update({n: getattr(holder, f"u_{n}")[u] for n in self.user_feat_ if n != f["uid"]})
                data.update({n: getattr(holder, f"i_{n}")[i] for n in self.item_feat_ if n != f["iid"]})
                return net.predict(self._interaction(data)).reshape(-1)

            return ox.manifest([ox.export_predict(predict, holder, None, path / "predict.onnx")])
        with torch.no_grad():
            self._score(torch.arange(min(2, self.n_users_)))  # fills the caches the graph reads
        holder.register_buffer("item_rb_pad", torch.cat([self.item_rb_, torch.zeros(1, dtype=torch.int64)]))
        L = self.max_len_
        sequential = self.recbole_type == "sequential"
        from recbole.model.abstract_recommender import AbstractRecommender

        # a model without its own full_sort_predict (NeuMF) scores every (user, item) pair
        pairwise = type(net).full_sort_predict is AbstractRecommender.full_sort_predict
        n_rb = self.n_rb_items_

        def score(user, exclude):
            data = {f["uid"]: holder.user_rb[user]}
            if sequential:
                # the last L items of the history (time order, -1 padded at the end), left-aligned
                lens = (exclude >= 0).sum(1)
                pos = (lens - L).clamp(min=0).unsqueeze(1) + torch.arange(L).unsqueeze(0)
                live = pos < lens.unsqueeze(1)
                got = exclude.gather(1, torch.minimum(pos, torch.full_like(pos, exclude.shape[1] - 1)))
                got = torch.where(live & (got >= 0), got, torch.full_like(got, self.n_items_))
                data[f["seq"]] = holder.item_rb_pad[got]
                data[f["seq_len"]] = lens.clamp(min=1, max=L)
            if pairwise:
                every = torch.arange(n_rb).unsqueeze(0) + 0 * user.unsqueeze(1)  # [B, n_rb]
                pairs = {k: v.unsqueeze(1).expand(-1, n_rb, *v.shape[1:]).reshape(-1, *v.shape[1:]) for k, v in data.items()}
                pairs[f["iid"]] = every.reshape(-1)
                out = net.predict(self._interaction(pairs)).reshape(-1, n_rb)
            else:
                out = net.full_sort_predict(self._interaction(data)).reshape(user.shape[0], -1)
            return out[:, holder.item_rb]

        return ox.manifest([ox.export_recommend(score, holder, self.n_items_, k, path / "recommend.onnx", owner_model=self)])


def _judged(trainer_cls: type, owner: RecBoleRecommender, monitor) -> type:
    """RecBole's trainer, validating through RecArena's evaluator (the run's monitor)."""

    def _valid_epoch(self, valid_data, show_progress=False):
        owner.model_ = self.model
        self.model.eval()
        owner._reset_caches()
        try:
            with torch.no_grad():
                result = monitor.evaluate(owner)
        finally:
            owner._reset_caches()
            self.model.train()
        monitor.history.append(result)
        score = float(result[monitor.metric])
        # RecBole validates every eval_step (1) epochs; the adapter keeps which was best
        self.epochs_seen = getattr(self, "epochs_seen", 0) + 1
        better = (score > self.best_score_seen) if monitor.mode == "max" else (score < self.best_score_seen)
        if self.epochs_seen == 1 or better:
            self.best_score_seen, self.best_epoch = score, self.epochs_seen - 1
        return score, result

    attrs = {"_valid_epoch": _valid_epoch}
    if monitor is not None:
        def __init__(self, config, model):
            trainer_cls.__init__(self, config, model)
            self.best_score_seen = float("nan")
            self.valid_metric = monitor.metric
            self.valid_metric_bigger = monitor.mode == "max"

        attrs["__init__"] = __init__
    return type(f"Judged{trainer_cls.__name__}", (trainer_cls,), attrs)
