"""Config layering and validation.

Precedence, lowest first: plugin defaults < configs/models/<name>.yaml < the protocol's
``trainer`` block < its ``models.<name>`` block (parameters, and trainer settings under
``models.<name>.trainer``) < an experiment file < ``--set key=value``.
A resolved config is plain data::

    {model, dataset, protocol, seed, params: {...}, trainer: {...}}

and is saved with every run, so ``recarena train --config resolved.yaml`` re-runs it as is.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from recarena.data.files import DATA_CONSTRAINTS
from recarena.errors import RecArenaError, UnknownNameError
from recarena.paths import config_dirs

TOP_KEYS = {"model", "dataset", "protocol", "seed", "params", "trainer", "data", "protocol_version", "protocol_hash"}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers: ``1e-3`` is a float (YAML 1.1, which
    PyYAML follows, needs a dot in the mantissa and reads it as a string)."""


# copy the resolver lists: add_implicit_resolver would append to SafeLoader's own
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats (``1e-3``); every config file is read with it."""
    return yaml.load(text, Loader=_Loader)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecArenaError(f"Config file {path} does not exist.") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecArenaError(f"{where}: invalid YAML ({getattr(e, 'problem', e)}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecArenaError(f"{path}: expected a mapping at the top level, got {type(data).__name__}.")
    return data


def find_config(kind: str, name: str) -> Path | None:
    for d in config_dirs():
        p = d / kind / f"{name}.yaml"
        if p.exists():
            return p
    return None


def list_configs(kind: str) -> list[str]:
    names = set()
    for d in config_dirs():
        names |= {p.stem for p in (d / kind).glob("*.yaml")}
    return sorted(names)


def parse_value(text: str) -> Any:
    """``--set`` values are YAML scalars: 0.01, true, [1, 2], null, 'str'."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``["lr=0.01", "trainer.patience=3"]`` -> ``{"params": {"lr": 0.01}, "trainer": {...}}``."""
    out: dict[str, Any] = {}
    for s in sets:
        key, eq, value = s.partition("=")
        if not eq or not key:
            raise RecArenaError(f"--set expects key=value, got {s!r}.")
        key = key.strip()
        if key in ("protocol", "dataset", "model"):
            flag = {"protocol": "--protocol", "dataset": "--dataset", "model": "the model argument"}[key]
            raise RecArenaError(f"--set {s}: the {key} is chosen with {flag}, not with --set.")
        section, dot, sub = key.partition(".")
        if not dot:
            section, sub = ("params", key) if key not in TOP_KEYS else (key, None)
        if sub is None:
            out[section] = parse_value(value)
        else:
            out.setdefault(section, {})[sub] = parse_value(value)
    return out


def _check_section(layer: dict, section: str, allowed: set[str], where: str):
    block = layer.get(section)
    if block is None:
        return
    if not isinstance(block, dict):
        raise RecArenaError(f"{where}: {section!r} must be a mapping, got {type(block).__name__}.")
    for k in block:
        if k not in allowed:
            raise UnknownNameError(f"{section} key", k, allowed, where=where)


def resolve(*args, **kwargs) -> dict[str, Any]:
    """The run's configuration, every value checked against the plugin's declared
    constraints before anything is loaded: ``resolve_with_sources(...)[0]``."""
    return resolve_with_sources(*args, **kwargs)[0]


def resolve_with_sources(
    model_cls,
    model_name: str,
    protocol: dict[str, Any],
    dataset: str,
    seed: int,
    experiment: Path | None = None,
    sets: list[str] | None = None,
    dataset_explicit: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(cfg, sources)``: the resolved configuration and, for each ``params.<name>`` and
    ``trainer.<name>``, the layer its value came from. Raises
    :class:`recarena.params.InvalidParameterError` (naming value, allowed values and layer)
    for a value outside the plugin's constraints.

    A config file naming another protocol than the run's, or another dataset than one given
    on the command line (``dataset_explicit``), is an error naming both: the recorded run must
    be the run that was hashed. Without ``--dataset``, a file's dataset is taken (a saved
    ``config.yaml`` re-runs on its own dataset)."""
    from recarena import params as P
    from recarena.protocols import content_hash
    from recarena.trainer_settings import TRAINER_CONSTRAINTS, TRAINER_KEYS

    param_names = set(model_cls._param_names())
    trainer_names = set(TRAINER_KEYS)
    # the protocol's identity is its content, hashed, not its hand-kept version: an edited
    # protocol is a different one, and runs under it never match runs under the old content
    protocol_hash = protocol.get("_hash") or content_hash(protocol)
    layers: list[tuple[str, dict]] = [("plugin defaults", {
        "params": model_cls.default_params(), "trainer": dict(getattr(model_cls, "trainer_defaults", {}) or {})})]
    p = find_config("models", model_name)
    if p is not None:
        layers.append((str(p), read_yaml(p)))
    # a model's block holds its parameters, and under the reserved key `trainer` the trainer
    # settings it needs on this protocol (they override the protocol's own trainer block)
    model_block = dict((protocol.get("models") or {}).get(model_name) or {})
    model_trainer = model_block.pop("trainer", None) or {}
    proto_layer = {"trainer": {**(protocol.get("trainer", {}) or {}), **model_trainer}, "params": model_block}
    where = f"protocol {protocol['name']}" + (f" ({protocol['_path']})" if protocol.get("_path") else "")
    layers.append((where, proto_layer))
    if experiment is not None:
        layers.append((str(experiment), read_yaml(experiment)))
    if sets:
        layers.append(("--set", parse_sets(sets)))

    cfg: dict[str, Any] = {
        # the protocol's version is part of the configuration: a protocol that changes what it
        # measures (and bumps its version) must not match runs recorded under the old one
        "model": model_name, "dataset": dataset, "protocol": protocol["name"],
        "protocol_version": protocol.get("version", 1), "protocol_hash": protocol_hash, "seed": seed,
        "params": {}, "trainer": {},
    }
    sources: dict[str, str] = {}
    for where, layer in layers:
        for k in layer:
            if k not in TOP_KEYS:
                raise UnknownNameError("config key", k, TOP_KEYS, where=where)
        _check_section(layer, "params", param_names, f"{where} (parameters of {model_name})")
        _check_section(layer, "trainer", trainer_names, where)
        for k in ("model", "dataset", "protocol"):
            if k in layer and layer[k] is not None and where not in ("plugin defaults",):
                if k == "model" and layer[k] != model_name:
                    raise RecArenaError(f"{where}: model is {layer[k]!r} but the run is for {model_name!r}.")
                if k == "protocol" and layer[k] != protocol["name"]:
                    raise RecArenaError(f"{where} names protocol {layer[k]!r} but the command line says "
                                        f"{protocol['name']!r}: drop one of them.")
                if k == "dataset" and dataset_explicit and layer[k] != dataset:
                    raise RecArenaError(f"{where} names dataset {layer[k]!r} but the command line says "
                                        f"{dataset!r}: drop one of them.")
                cfg[k] = layer[k]
        pv = layer.get("protocol_version")
        if pv is not None and where not in ("plugin defaults",) and pv != cfg["protocol_version"]:
            raise RecArenaError(
                f"{where}: recorded under version {pv} of protocol {protocol['name']!r}, which is now at version "
                f"{cfg['protocol_version']}: its results would not be comparable."
            )
        ph = layer.get("protocol_hash")
        if ph is not None and where != "plugin defaults" and ph != protocol_hash:
            raise RecArenaError(
                f"{where}: recorded under other content of protocol {protocol['name']!r} (hash {ph}, now "
                f"{protocol_hash}): its results would not be comparable."
            )
        if "seed" in layer and layer["seed"] is not None:
            if isinstance(layer["seed"], bool) or not isinstance(layer["seed"], int) or layer["seed"] < 0:
                raise P.InvalidParameterError("the run", "seed", layer["seed"], "an integer in [0, inf]", where)
            cfg["seed"] = int(layer["seed"])
            sources["seed"] = where
        _check_section(layer, "data", set(DATA_CONSTRAINTS), f"{where} (data settings)")
        if layer.get("data") and where != "plugin defaults":
            cfg.setdefault("data", {}).update(layer["data"])
            sources.update({f"data.{k}": where for k in layer["data"]})
        for section in ("params", "trainer"):
            block = layer.get(section) or {}
            cfg[section].update(block)
            sources.update({f"{section}.{k}": where for k in block})
    P.validate(model_cls, cfg["params"], {k.partition(".")[2]: v for k, v in sources.items() if k.startswith("params.")},
               owner=model_name)
    P.validate_mapping(TRAINER_CONSTRAINTS, cfg["trainer"],
                       {k.partition(".")[2]: v for k, v in sources.items() if k.startswith("trainer.")},
                       owner="the trainer settings")
    if cfg.get("data"):
        from recarena.data.files import is_file_dataset, resolve_source

        P.validate_mapping(DATA_CONSTRAINTS, cfg["data"],
                           {k.partition(".")[2]: v for k, v in sources.items() if k.startswith("data.")},
                           owner="the data settings")
        if not is_file_dataset(cfg["dataset"]):
            raise RecArenaError(
                f"The data settings ({', '.join(sorted(cfg['data']))}) say how to read your own file; dataset "
                f"{cfg['dataset']!r} is a registered one, read by its own loader. Drop them, or name a "
                ".csv/.tsv/.parquet file or a dataset YAML with --dataset."
            )
        resolve_source(cfg["dataset"], cfg["data"])  # every value checked before any data is read
    return cfg, sources


def config_hash(cfg: dict[str, Any], with_seed: bool = False) -> str:
    """Stable hash of what defines a configuration (the seed excluded unless asked)."""
    keep = {k: v for k, v in cfg.items() if with_seed or k != "seed"}
    # where the run writes and how it shows progress do not change the result
    trainer = {k: v for k, v in (keep.get("trainer") or {}).items()
               if k not in ("progress_bar", "run_dir", "logger", "wandb_mode", "wandb_project", "wandb_group")}
    keep["trainer"] = trainer
    blob = json.dumps(keep, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
