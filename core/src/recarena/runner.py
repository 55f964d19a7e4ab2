"""One training run: resolve, prepare data, fit with validation, test, save, record."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import torch
import yaml

from recarena import plugins
from recarena.base import Monitor, Task
from recarena.config import config_hash, resolve
from recarena.data.datasets import checksums
from recarena.errors import RecArenaError
from recarena.eval.evaluator import metric_mode
from recarena.paths import home
from recarena.protocols import load_protocol, prepare
from recarena.store import ResultsStore


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a run (a BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it; unlike it, Lightning does not turn it into
    ``sys.exit(1)``)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class NonFiniteMetrics(RecArenaError):
    """A run whose metrics are NaN or infinite: recorded as failed, never ranked."""


class PeakMemory:
    """Samples this process's RSS in a thread; ``peak_mb`` is the max above the start."""

    def __init__(self, interval: float = 0.05):
        self.proc = psutil.Process()
        self.interval = interval
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self):
        self.start_mb = self.proc.memory_info().rss / 2**20
        self.peak_abs = self.start_mb
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak_abs = max(self.peak_abs, self.proc.memory_info().rss / 2**20)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak_abs = max(self.peak_abs, self.proc.memory_info().rss / 2**20)
        self.peak_mb = self.peak_abs - self.start_mb
        self.gpu_peak_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def code_version(model_cls) -> str:
    import recarena

    parts = [f"recarena {recarena.__version__}"]
    info = plugins.discover().get(getattr(model_cls, "plugin_name", ""))
    if info:
        parts.append(f"{info.distribution} {info.version}")
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if sha:
            parts.append(f"git {sha}{'+dirty' if dirty else ''}")
    except (OSError, subprocess.SubprocessError):
        pass
    return "; ".join(parts)


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    env = {
        # the version from metadata: importing Lightning costs seconds a run that may not use it
        "python": platform.python_version(), "torch": torch.__version__, "lightning": version("lightning"),
        "platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return env


def make_monitor(prepared, task: str) -> Monitor | None:
    if prepared.split.valid is None or len(prepared.split.valid) == 0:
        return None
    select = prepared.select
    ev = prepared.evaluator("valid")
    return Monitor(select, metric_mode(select), ev.evaluate)


def ddp_helper() -> bool:
    """This process is a rank > 0 that Lightning's DDP launcher started (it trains, nothing else)."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def train(
    model: str,
    protocol: str,
    dataset: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    sets: list[str] | None = None,
    experiment: str | None = None,
    store: ResultsStore | None = None,
    sweep: str | None = None,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Train one model under one protocol; returns the run summary (as ``--json`` prints).

    Every input is checked before anything runs, and nothing reaches the store unless the
    run gets past data preparation: bad input leaves the store as it was.
    """
    proto = load_protocol(protocol)
    cls = plugins.get(model)
    task = proto["task"]
    ranks = {Task.RANKING.value, Task.SEQUENTIAL.value}

    def check_task(caps, what):
        if not caps.supports(task) and not (task in ranks and any(caps.supports(t) for t in ranks)):
            raise RecArenaError(
                f"Model {model!r}{what} does not support the {task} task of protocol {proto['name']!r} "
                f"(it declares {', '.join(sorted(t.value for t in caps.tasks))})."
            )

    check_task(cls.capabilities, "")
    if proto["split"]["method"] == "user_holdout" and not cls.capabilities.fold_in:
        raise RecArenaError(
            f"Protocol {proto['name']!r} holds users out of training and scores them from their fold-in items; "
            f"model {model!r} cannot fold in a user it did not train on (it learns per-user parameters). "
            "Models that can declare Capabilities(fold_in=True) and implement _score_history."
        )
    if (proto.get("eval") or {}).get("context") and not cls.capabilities.context:
        log(f"{proto['name']}: {model} declares no context, so it is scored from its training state "
            "(the validation item given at test time is masked but not used).")
    ds = dataset or proto["dataset"]
    cfg = resolve(cls, model, proto, ds, seed, Path(experiment) if experiment else None, sets,
                  dataset_explicit=dataset is not None)
    estimator = cls(**cfg["params"])
    # some parameters narrow what a plugin can do (biased-mf's MCMC solver fits ratings only)
    check_task(estimator.capabilities, f" with {cfg['params']}")
    t0 = time.time()
    prepared = prepare(proto, cfg["dataset"], data_dir, seed=cfg["seed"], data_options=cfg.get("data"))
    for note in prepared.notes:
        log(f"{proto['name']}: {note}")
    s = prepared.split
    n_train, n_valid, n_test = s.sizes()
    log(
        f"{proto['name']}: {len(prepared.data):,} interactions, {prepared.data.n_users:,} users, "
        f"{prepared.data.n_items:,} items; split {n_train:,} / {n_valid:,} / {n_test:,} "
        f"(prepared in {time.time() - t0:.1f}s)"
    )
    store = store or ResultsStore()
    store.check_writable()
    # a sweep names the run up front, so it can find the run's record after the process ends
    run_id = os.environ.get("RECARENA_RUN_ID") or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_dir = home() / "runs" / run_id
    trainer_cfg = dict(cfg["trainer"])
    trainer_cfg.setdefault("progress_bar", progress)
    trainer_cfg["run_dir"] = str(run_dir)
    trainer_cfg.setdefault("wandb_group", sweep or proto["name"])
    monitor = make_monitor(prepared, task)
    record: dict[str, Any] = {
        "run_id": run_id, "model": model, "dataset": cfg["dataset"], "protocol": proto["name"],
        "seed": cfg["seed"], "config": cfg, "config_hash": config_hash(cfg), "run_hash": config_hash(cfg, with_seed=True),
        "code_version": code_version(cls), "started_at": t0, "environment": environment(), "sweep": sweep,
        "protocol_hash": cfg["protocol_hash"],
        # what the figures were measured on, so the leaderboard never needs the data itself
        "data_checksums": checksums(cfg["dataset"], data_dir),
    }
    ddp = "ddp" in str(trainer_cfg.get("strategy") or "")
    if ddp and proto.get("refit"):
        raise RecArenaError(f"trainer.strategy={trainer_cfg['strategy']}: protocol {proto['name']!r} refits on train + "
                            "valid after selection, a second multi-process training that is not supported; use one "
                            "process for refit protocols.")
    if ddp:
        # Lightning starts the other ranks by running this same command again: they inherit the
        # run id (one run folder) and, being ranks > 0 (LOCAL_RANK set), only train
        os.environ["RECARENA_RUN_ID"] = run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    # who owns the folder until the run is recorded: `recarena gc` leaves it alone while this lives
    me = psutil.Process()
    if not ddp_helper():
        (run_dir / "owner.json").write_text(json.dumps({"pid": me.pid, "created": me.create_time(),
                                                        "host": platform.node()}))
    try:
        with PeakMemory() as mem:
            tf = time.perf_counter()
            estimator.fit(s.train, s.valid, seed=cfg["seed"], monitor=monitor, trainer=trainer_cfg)
            if ddp_helper():
                # a DDP rank > 0: its share of the training is done; rank 0 evaluates and records
                raise SystemExit(0)
            valid_metrics = prepared.evaluator("valid").evaluate(estimator) if monitor else {}
            history = getattr(estimator, "history_", None)
            if proto.get("refit") and s.valid is not None and len(s.valid):
                # model selection is done: train again on train + valid (GridSearchCV's refit;
                # torch models for the chosen number of epochs), so no labelled row is left
                # unused and sequence models see the validation item before the test one
                best = getattr(estimator, "best_epoch_", None)
                if hasattr(estimator, "log_final"):  # close the selection run's logger first
                    estimator.log_final({f"best_{k}": v for k, v in valid_metrics.items()}, prefix="valid")
                refit = estimator.refit_params() if hasattr(estimator, "refit_params") else {}
                estimator = cls(**cfg["params"])
                estimator.set_params(**refit)
                estimator.fit(s.train.concat(s.valid), None, seed=cfg["seed"], trainer=trainer_cfg)
                estimator.best_epoch_ = best
            fit_s = time.perf_counter() - tf
        te = time.perf_counter()
        test_metrics = prepared.evaluator("test").evaluate(estimator)
        eval_s = time.perf_counter() - te
        if hasattr(estimator, "log_final"):
            estimator.log_final(test_metrics)
        bad = {f"{part} {k}": v for part, ms in (("valid", valid_metrics), ("test", test_metrics))
               for k, v in ms.items() if not math.isfinite(v)}
        if bad:
            raise NonFiniteMetrics(
                f"{model} on {proto['name']}: the metrics are not finite ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                "the run is recorded as failed and never ranked. Check the data for extreme values and the "
                "training for divergence (a smaller lr)."
            )
        artifact = estimator.save(run_dir / "model.pt")
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    except (KeyboardInterrupt, Interrupted):
        # stopped by the user or the system: nothing half-written stays behind
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except Exception as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}", finished_at=time.time())
        store.record(record)
        raise
    record.update(
        status="ok", fit_seconds=fit_s, eval_seconds=eval_s, peak_memory_mb=mem.peak_mb,
        valid_metrics=valid_metrics, test_metrics=test_metrics, artifact_path=str(artifact),
        history=history, finished_at=time.time(),
    )
    store.record(record)
    summary = {
        "run_id": run_id, "model": model, "dataset": cfg["dataset"], "protocol": proto["name"], "seed": cfg["seed"],
        "metrics": test_metrics, "valid_metrics": valid_metrics, "fit_seconds": round(fit_s, 3),
        "eval_seconds": round(eval_s, 3), "peak_memory_mb": round(mem.peak_mb, 1),
        "gpu_peak_memory_mb": mem.gpu_peak_mb, "config_hash": record["config_hash"],
        "data": {"interactions": len(prepared.data), "users": prepared.data.n_users, "items": prepared.data.n_items,
                 "train": n_train, "valid": n_valid, "test": n_test},
        "artifact": str(artifact), "epochs": getattr(estimator, "epochs_trained_", None),
        "best_epoch": getattr(estimator, "best_epoch_", None),
    }
    return summary
