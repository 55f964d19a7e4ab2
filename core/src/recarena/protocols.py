"""Named, versioned protocols (``configs/protocols/<name>.yaml``): dataset + filtering + split
+ metrics + the model-selection metric. ``prepare`` turns one into train/valid/test."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recarena.base import Task
from recarena.config import find_config, list_configs, read_yaml
from recarena.data import datasets, filtering, splits
from recarena.data.interactions import Interactions
from recarena.errors import RecArenaError, UnknownNameError
from recarena.eval.evaluator import (
    CTREvaluator,
    RankingEvaluator,
    RatingEvaluator,
    SampledRankingEvaluator,
    parse_metric,
)

PROTOCOL_KEYS = {
    "name", "version", "description", "dataset", "task", "filter", "split", "metrics", "select",
    "anchors", "trainer", "models", "eval", "notes", "refit", "duplicates",
}
#: what a protocol does with repeated (user, item) rows (``duplicates:``); keep is the default
DUPLICATE_RULES = ("keep", "last", "mean", "error")
#: ``eval:`` keys: sampled (rank each target against ``negatives`` sampled items instead of the
#: catalogue), context (the validation items are given at test time as context, see
#: RankingEvaluator)
EVAL_KEYS = ("sampled", "negatives", "context")
SPLIT_METHODS = {"ratio_by_user", "global_random", "leave_one_out", "global_temporal", "user_holdout", "item_holdout", "predefined", "ncf_files"}


#: what defines a comparison: two protocols that agree on these are the same protocol, whatever
#: their name, version or notes say (anchors, model overrides and trainer settings are not part of it)
IDENTITY_KEYS = ("dataset", "task", "filter", "split", "metrics", "select", "eval", "refit")


def content_hash(proto: dict[str, Any]) -> str:
    """The protocol's identity, computed from what defines the comparison (IDENTITY_KEYS)."""
    import hashlib
    import json

    ident = {k: proto.get(k) for k in IDENTITY_KEYS}
    # `duplicates: keep` is what every protocol did before the key existed: same hash
    if proto.get("duplicates", "keep") != "keep":
        ident["duplicates"] = proto["duplicates"]
    blob = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_protocol_hash(run: dict[str, Any], proto: dict[str, Any]) -> str:
    """The protocol content a recorded run was measured under. Runs recorded before protocols
    were hashed carry only a version: they count as the current content when that version is
    the current one (the only identity they recorded), else as ``legacy-v<version>``."""
    cfg = run.get("config") or {}
    h = run.get("protocol_hash") or cfg.get("protocol_hash")
    if h:
        return h
    version = cfg.get("protocol_version", 1)
    return proto["_hash"] if version == proto.get("version", 1) else f"legacy-v{version}"


def load_protocol(name: str) -> dict[str, Any]:
    path = Path(name) if name.endswith((".yaml", ".yml")) else find_config("protocols", name)
    if path is None or not path.exists():
        raise UnknownNameError("protocol", name, list_configs("protocols"))
    p = read_yaml(path)
    for k in p:
        if k not in PROTOCOL_KEYS:
            raise UnknownNameError("protocol key", k, PROTOCOL_KEYS, where=str(path))
    p.setdefault("name", path.stem)
    p["_path"] = str(path)
    for req in ("dataset", "task", "split", "metrics", "select"):
        if req not in p:
            raise RecArenaError(f"{path}: protocol is missing the key {req!r}.")
    try:
        p["task"] = Task(p["task"]).value
    except ValueError:
        raise UnknownNameError("task", p["task"], [t.value for t in Task], where=str(path)) from None
    # metric names are case-insensitive everywhere: one spelling from here on
    p["metrics"] = [str(m).lower() for m in p["metrics"]]
    p["select"] = str(p["select"]).lower()
    for m in [*p["metrics"], p["select"]]:
        parse_metric(m)
    if p.get("duplicates", "keep") not in DUPLICATE_RULES:
        raise UnknownNameError("duplicates rule", str(p["duplicates"]), DUPLICATE_RULES, where=str(path))
    ev = p.get("eval") or {}
    for k in ev:
        if k not in EVAL_KEYS:
            raise UnknownNameError("eval key", str(k), EVAL_KEYS, where=str(path))
    if ev.get("context") and p.get("refit"):
        raise RecArenaError(f"{path}: eval.context gives the validation items as context at test time, never "
                            "trained on; refit: true would train on them. Set one of the two.")
    if ev.get("context") and p["task"] not in ("ranking", "sequential"):
        raise RecArenaError(f"{path}: eval.context is for ranking and sequential protocols, not {p['task']}.")
    method = p["split"].get("method")
    if method not in SPLIT_METHODS:
        raise UnknownNameError("split method", str(method), SPLIT_METHODS, where=str(path))
    p["_hash"] = content_hash(p)
    return p


@dataclass
class Prepared:
    protocol: dict[str, Any]
    data: Interactions
    split: splits.Split
    negatives: np.ndarray | None = None  # sampled evaluation
    notes: list[str] = field(default_factory=list)  # what preparing the data did that a user should hear

    @property
    def select(self) -> str:
        return self.protocol["select"].lower()

    def evaluator(self, part: str, metrics=None):
        """Evaluator for 'valid' (masks train) or 'test' (masks train + valid)."""
        p, s = self.protocol, self.split
        metrics = [m.lower() for m in (metrics or p["metrics"])]
        target = s.valid if part == "valid" else s.test
        if target is None:
            raise RecArenaError(f"protocol {p['name']} has no {part} set")
        task = p["task"]
        if task == "rating":
            return RatingEvaluator(target, [m for m in metrics if parse_metric(m)[0] in ("rmse", "mae")])
        if task == "ctr":
            return CTREvaluator(target, [m for m in metrics if parse_metric(m)[0] in ("auc", "logloss")])
        if (p.get("eval") or {}).get("sampled") and part == "test":
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                return SampledRankingEvaluator(target, self.negatives, metrics)
        if p["split"]["method"] == "user_holdout":
            # strong generalization: held-out users are scored from their fold-in items, which
            # are context (never trained on) and masked like training items
            exclude = [s.train, s.extra[f"{part}_fold_in"]]
            return RankingEvaluator(target, exclude, metrics, item_popularity=s.train.item_counts(), fold_in=True)
        exclude = [s.train] if part == "valid" else [s.train] + ([s.valid] if s.valid is not None else [])
        context = None
        if (p.get("eval") or {}).get("context"):
            # the validation item is context at test time, never trained on (S3-Rec's protocol):
            # a model that declares `context` is scored from train (+ valid) in time order
            hist = exclude[0]
            for part_ in exclude[1:]:
                hist = hist.concat(part_)
            context = hist.sequences()
        return RankingEvaluator(target, exclude, metrics, item_popularity=s.train.item_counts(), context=context)


def prepare(protocol: dict[str, Any], dataset: str | None = None, data_dir=None, seed: int = 0,
            data_options: dict[str, Any] | None = None) -> Prepared:
    """Load, filter and split ``dataset`` (default: the protocol's) as the protocol says.
    ``data_options``: how to read the user's own file (the run's ``data`` section)."""
    ds = dataset or protocol["dataset"]
    if protocol["dataset"] not in ("any", ds):
        raise RecArenaError(
            f"Protocol {protocol['name']!r} is defined on dataset {protocol['dataset']!r}, not {ds!r}."
        )
    if ds == "any":
        raise RecArenaError(f"Protocol {protocol['name']!r} works on any dataset: name one with --dataset.")
    data = datasets.load_any(ds, data_dir, data_options)
    if len(data) == 0:
        raise RecArenaError(f"Dataset {ds!r} has no rows.")
    notes: list[str] = []
    rule = protocol.get("duplicates", "keep")
    data, n_dup = filtering.resolve_duplicates(data, rule)
    if n_dup:
        did = {"keep": "kept", "last": "dropped, the last of each kept", "mean": "merged into their mean rating",
               "error": ""}[rule]
        notes.append(f"{n_dup:,} repeated (user, item) row(s) {did} (protocol duplicates: {rule})")
    data = filtering.apply_filters(data, protocol.get("filter"))
    if len(data) == 0:
        raise RecArenaError(
            f"Dataset {ds!r}: no rows left after the filters of protocol {protocol['name']!r} ({protocol.get('filter')})."
        )
    sp = dict(protocol["split"])
    method = sp.pop("method")
    split_seed = int(sp.pop("seed", seed))
    valid_ratio = sp.pop("valid_ratio", None)
    negatives = None
    if method == "ratio_by_user":
        s = splits.ratio_by_user(data, sp.pop("ratios", (0.8, 0.1, 0.1)), seed=split_seed, order=sp.pop("order", "random"), rng=sp.pop("rng", "numpy"))
    elif method == "global_random":
        s = splits.global_random(data, sp.pop("ratios", (0.8, 0.1, 0.1)), seed=split_seed)
    elif method == "leave_one_out":
        s = splits.leave_one_out(data, seed=split_seed, valid=sp.pop("valid", True), order=sp.pop("order", "auto"))
    elif method == "global_temporal":
        s = splits.global_temporal(data, sp.pop("ratios", (0.8, 0.1, 0.1)))
    elif method == "user_holdout":
        s = splits.user_holdout(data, int(sp.pop("n_valid_users")), int(sp.pop("n_test_users")), sp.pop("fold_in", 0.8),
                                seed=split_seed, drop_unseen_items=bool(sp.pop("drop_unseen_items", False)))
    elif method == "item_holdout":
        s = splits.item_holdout(data, sp.pop("ratios", (0.8, 0.1, 0.1)), seed=split_seed)
    elif method == "predefined":
        s = _predefined(data, ds, data_dir, sp.pop("train"), sp.pop("test"))
    elif method == "ncf_files":
        s, negatives = _ncf_files(data, data_dir, sp.pop("folder", "ml-1m-ncf"))
    if sp:
        raise UnknownNameError("split key", sorted(sp)[0], ["ratios", "order", "rng", "seed", "valid_ratio", "valid", "train", "test"], where=protocol.get("_path", ""))
    if valid_ratio and (s.valid is None or len(s.valid) == 0):
        s.train, s.valid = splits.holdout_valid(s.train, float(valid_ratio), split_seed)
    if (protocol.get("eval") or {}).get("sampled") and negatives is None:
        from recarena.data.sampling import sample_eval_negatives

        negatives = sample_eval_negatives(data, s.test, int(protocol["eval"].get("negatives", 99)), seed=split_seed)
    if len(s.train) == 0:
        raise RecArenaError(f"Dataset {ds!r} under protocol {protocol['name']!r}: the training split is empty "
                            f"({len(data)} rows in all).")
    return Prepared(protocol, data, s, negatives, notes)


def _predefined(data: Interactions, ds: str, data_dir, train_file: str, test_file: str) -> splits.Split:
    d = datasets.dataset_dir(ds, data_dir)
    parts = []
    for fname in (train_file, test_file):
        df = datasets.load_ml100k_file(d, fname)
        u = data.users.to_internal(df["user"].to_numpy())
        i = data.items.to_internal(df["item"].to_numpy())
        part = Interactions(u, i, data.users, data.items, df["rating"].to_numpy(np.float32), df["timestamp"].to_numpy(np.int64),
                            data.user_features, data.item_features, name=f"{ds}/{fname}", rating_scale=data.rating_scale)
        parts.append(part)
    return splits.Split(parts[0], None, parts[1])


def _ncf_files(data: Interactions, data_dir, folder: str):
    """NCF's published ML-1M leave-one-out test (``ml-1m.test.rating`` and 99 negatives per
    user in ``ml-1m.test.negative``). NCF numbered users as raw-1 and items in order of first
    appearance in ratings.dat; the training set is every other interaction of the user."""
    root = Path(data_dir) if data_dir is not None else datasets.default_data_dir()
    d = root / folder
    rating_f, neg_f = d / "ml-1m.test.rating", d / "ml-1m.test.negative"
    if not rating_f.exists() or not neg_f.exists():
        raise RecArenaError(f"ncf_files split needs {rating_f} and {neg_f} (NCF's published test files).")
    first_seen = data.meta.get("item_first_seen")
    if first_seen is None:
        raise RecArenaError("ncf_files needs ml-1m loaded in file order (item_first_seen).")
    test_rows, negs = [], []
    for line in rating_f.read_text().splitlines():
        u, i, *_ = line.split("\t")
        test_rows.append((int(u), int(i)))
    for line in neg_f.read_text().splitlines():
        parts = line.split("\t")
        negs.append([int(x) for x in parts[1:]])
    t = np.asarray(test_rows, np.int64)
    ncf_to_raw = first_seen  # ncf item id -> raw movie id
    u_int = data.users.to_internal(t[:, 0] + 1)
    i_int = data.items.to_internal(ncf_to_raw[t[:, 1]])
    neg_int = data.items.to_internal(ncf_to_raw[np.asarray(negs, np.int64)].ravel()).reshape(len(negs), -1)
    key_test = set(zip(u_int.tolist(), i_int.tolist()))
    is_test = np.fromiter(((a, b) in key_test for a, b in zip(data.user.tolist(), data.item.tolist())), bool, len(data))
    train = data.take(~is_test)
    test = Interactions(u_int, i_int, data.users, data.items, None, None, name=f"{data.name}/ncf-test")
    return splits.Split(train, None, test), neg_int
