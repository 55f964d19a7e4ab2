"""``recarena sweep``: many training runs (plugins x protocols x configurations x seeds), each
in its own process with its own time and memory limit, recorded in the results store.

A sweep file (``configs/sweeps/<name>.yaml``)::

    name: smoke                 # defaults to the file name
    seeds: [0, 1]
    limits: {timeout_s: 600, memory_mb: 4000}     # per run; an entry may override
    estimate_s: 60              # planning guess for a run never timed before
    sets: [trainer.logger=none] # --set overrides for every run
    runs:
      - model: bpr
        protocols: [synthetic-rank]
        dataset: synthetic-4000  # optional: the protocol's dataset otherwise
        sets: [epochs=5]
        search:                  # optional: grid | random | tpe
          method: random
          trials: 4
          space:
            lr: [0.01, 0.05]                      # a choice
            dim: {low: 8, high: 64, log: true, int: true}

Order: every (model, protocol) gets its first configuration and seed before any gets a
second, so a time budget (``--max-hours``) cuts breadth last. A run whose expected duration
(the median of earlier runs of that model and protocol, else ``estimate_s``) would end past
the budget is not launched.

Resume: a run is identified by its configuration hash with the seed (``run_hash``, as the
store records it); runs already complete are skipped, failed ones are retried only with
``--retry-failed``. A sweep killed with SIGKILL takes its runs in flight with it (each child
dies with its parent) and loses nothing recorded.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recarena.errors import RecArenaError, UnknownNameError
from recarena.eval.evaluator import metric_mode

TOP_KEYS = {"name", "description", "seeds", "limits", "estimate_s", "sets", "runs", "search_seed", "nights"}
RUN_KEYS = {"model", "protocols", "protocol", "dataset", "sets", "search", "limits", "seeds"}
SEARCH_KEYS = {"method", "trials", "space", "seed", "pruner"}
LIMIT_KEYS = {"timeout_s", "memory_mb"}


# ------------------------------------------------------------------ the sweep file
def find_sweep(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    from recarena.config import find_config

    found = find_config("sweeps", name_or_path)
    if found is None:
        from recarena.paths import config_dirs

        names = sorted({q.stem for d in config_dirs() for q in (d / "sweeps").glob("*.yaml")})
        raise UnknownNameError("sweep", name_or_path, names)
    return found


def _check_keys(where: str, d: dict, allowed: set) -> None:
    if not isinstance(d, dict):
        raise RecArenaError(f"{where}: expected a mapping, got {type(d).__name__}.")
    bad = sorted(set(d) - allowed)
    if bad:
        import difflib

        hints = [f"{k!r} (did you mean {difflib.get_close_matches(k, allowed, 1)[0]!r}?)" if difflib.get_close_matches(k, allowed, 1)
                 else repr(k) for k in bad]
        raise RecArenaError(f"{where}: unknown key(s) {', '.join(hints)}; allowed: {', '.join(sorted(allowed))}.")


def load_sweep(path: str | Path) -> dict:
    import yaml

    from recarena.config import load_yaml

    path = Path(path)
    try:
        doc = load_yaml(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RecArenaError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)}).") from None
    _check_keys(str(path), doc or {}, TOP_KEYS)
    doc = dict(doc)
    doc.setdefault("name", path.stem)
    if not doc.get("runs"):
        raise RecArenaError(f"{path}: 'runs' is empty: name at least one model and protocol.")
    for i, r in enumerate(doc["runs"]):
        where = f"{path}: runs[{i}]"
        _check_keys(where, r, RUN_KEYS)
        if "model" not in r or not (r.get("protocols") or r.get("protocol")):
            raise RecArenaError(f"{where}: needs 'model' and 'protocols'.")
        if "search" in r:
            _check_keys(f"{where}.search", r["search"], SEARCH_KEYS)
            if r["search"].get("method", "grid") not in ("grid", "random", "tpe"):
                raise RecArenaError(f"{where}.search.method: expected grid, random or tpe, got {r['search']['method']!r}.")
        for lim in (r.get("limits") or {}, doc.get("limits") or {}):
            _check_keys(f"{where}.limits", lim, LIMIT_KEYS)
    for i, night in enumerate(doc.get("nights") or []):
        if not isinstance(night, dict) or set(night) - {"seeds", "description"} or not night.get("seeds"):
            raise RecArenaError(f"{path}: nights[{i}]: expected {{seeds: [...], description: ...}}, got {night!r}.")
    return doc


# ------------------------------------------------------------------ expansion
@dataclass
class Run:
    """One training run of a sweep, before or after it ran."""

    model: str
    protocol: str
    dataset: str | None
    seed: int
    sets: list[str]
    params: dict
    entry: int
    trial: int
    limits: dict
    run_hash: str = ""
    tpe: Any = None  # the optuna trial of a TPE search, asked at launch
    run_id: str = ""
    status: str = "pending"  # pending | skipped | running | ok | failed | not-launched
    error: str = ""
    started: float = 0.0
    seconds: float = 0.0
    metric: float | None = None
    peak_mb: float = 0.0
    reused: str = ""  # the recorded run a skipped run stands for

    @property
    def label(self) -> str:
        ps = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.model}/{self.protocol} seed {self.seed}" + (f" [{ps}]" if ps else "")


def _space_value(spec, rng: random.Random):
    if isinstance(spec, list):
        return rng.choice(spec)
    if isinstance(spec, dict):
        lo, hi = spec["low"], spec["high"]
        if spec.get("log"):
            import math

            v = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            v = rng.uniform(lo, hi)
        return int(round(v)) if spec.get("int") else float(f"{v:.6g}")
    return spec


def _fmt(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def configurations(search: dict | None, sweep_seed: int = 0) -> list[dict] | int:
    """The parameter sets of a search: a list for grid/random; for TPE, the trial count."""
    if not search:
        return [{}]
    method, space = search.get("method", "grid"), search.get("space") or {}
    if method == "grid":
        for k, v in space.items():
            if not isinstance(v, list):
                raise RecArenaError(f"search.space.{k}: a grid needs a list of values, got {v!r}.")
        keys = list(space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]
    trials = int(search.get("trials", 10))
    if method == "random":
        rng = random.Random(search.get("seed", sweep_seed))
        return [{k: _space_value(v, rng) for k, v in space.items()} for _ in range(trials)]
    return trials


def expand(doc: dict) -> list[Run]:
    """Every run of the sweep in launch order: configuration rank and seed rank first, so
    each (model, protocol) gets its first run before any gets a second."""
    runs = []
    base_sets = list(doc.get("sets") or [])
    for e, r in enumerate(doc["runs"]):
        protocols = r.get("protocols") or [r["protocol"]]
        protocols = [protocols] if isinstance(protocols, str) else protocols
        seeds = r.get("seeds", doc.get("seeds", [0]))
        limits = {**(doc.get("limits") or {}), **(r.get("limits") or {})}
        confs = configurations(r.get("search"), doc.get("search_seed", 0))
        n = confs if isinstance(confs, int) else len(confs)
        for p in protocols:
            for t in range(n):
                params = {} if isinstance(confs, int) else confs[t]
                for si, seed in enumerate(seeds):
                    sets = base_sets + list(r.get("sets") or []) + [f"{k}={_fmt(v)}" for k, v in params.items()]
                    run = Run(r["model"], p, r.get("dataset"), int(seed), sets, dict(params), e, t, limits)
                    run.rank = (si if not isinstance(confs, int) else 0, t, si, e)  # type: ignore[attr-defined]
                    run.tpe = confs if isinstance(confs, int) else None  # marks a TPE slot
                    runs.append(run)
    runs.sort(key=lambda x: x.rank)  # type: ignore[attr-defined]
    return runs


_PROTOCOLS: dict[str, dict] = {}


def _cached_protocol(name: str, load) -> dict:
    if name not in _PROTOCOLS:
        _PROTOCOLS[name] = load(name)
    return _PROTOCOLS[name]


def _hashes_of(record: dict) -> list[str]:
    """The run hashes a recorded run answers to: its own and, for a run recorded before
    protocols were hashed, the hash it has under the content its version stands for (so a
    sweep resumed across that change still finds it while the protocol is unchanged)."""
    from recarena.config import config_hash
    from recarena.errors import RecArenaError
    from recarena.protocols import load_protocol, run_protocol_hash

    cfg = record.get("config") or {}
    out = [record["run_hash"]]
    if cfg and not cfg.get("protocol_hash"):
        try:
            h = run_protocol_hash(record, _cached_protocol(record["protocol"], load_protocol))
        except RecArenaError:
            return out
        if not h.startswith("legacy"):
            out.append(config_hash({**cfg, "protocol_hash": h}, with_seed=True))
    return out


def run_hash(run: Run) -> str:
    from recarena import plugins
    from recarena.config import config_hash, resolve
    from recarena.protocols import load_protocol

    proto = load_protocol(run.protocol)
    cfg = resolve(plugins.get(run.model), run.model, proto, run.dataset or proto["dataset"], run.seed, None, run.sets)
    return config_hash(cfg, with_seed=True)


# ------------------------------------------------------------------ processes
def _die_with_parent() -> None:
    os.setsid()
    # the sweep blocks SIGINT while it starts a run; the run itself must not inherit the block
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:  # Linux: the child gets SIGKILL when the sweep dies, however it dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tree_rss_mb(pid: int) -> float:
    """RSS of a process and its descendants (MiB)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _kill_group(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Sweep:
    doc: dict
    jobs: int = 1
    max_hours: float | None = None
    retry_failed: bool = False
    data_dir: str | None = None
    wandb: str = "offline"
    progress: bool = True
    log: Any = print
    runs: list[Run] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.doc["name"]

    def _estimate(self, run: Run, store) -> float:
        done = [r.seconds for r in self.runs if r.status == "ok" and (r.model, r.protocol) == (run.model, run.protocol)]
        if not done:
            past = store.runs(protocol=run.protocol, model=run.model)
            done = [(r["finished_at"] or 0) - (r["started_at"] or 0) for r in past if r.get("finished_at")]
        return statistics.median(done) if done else float(self.doc.get("estimate_s", 60))

    def _gpus(self) -> list[str]:
        if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            return []
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU")]

    def command(self, run: Run) -> list[str]:
        cmd = [sys.executable, "-m", "recarena.cli", "train", run.model, "--protocol", run.protocol, "--seed", str(run.seed),
               "--sweep", self.name, "--json", "--no-progress"]
        if run.dataset:
            cmd += ["--dataset", run.dataset]
        if self.data_dir:
            cmd += ["--data-dir", str(self.data_dir)]
        for s in run.sets:
            cmd += ["--set", s]
        return cmd

    def plan(self, store) -> list[Run]:
        """Expands the sweep and marks runs already recorded (by run_hash)."""
        self.runs = expand(self.doc)
        recorded: dict[str, str] = {}
        recorded_id: dict[str, str] = {}
        for r in store.runs(status=None):
            for h in _hashes_of(r):
                if r["status"] == "ok" or h not in recorded:
                    recorded[h] = r["status"]
                    recorded_id[h] = r["run_id"]
        self._study = {}
        self._shared: dict = {}  # (entry, protocol) -> trials wanted, for studies in PostgreSQL
        for run in self.runs:
            if run.tpe is not None:
                continue  # hashed when its parameters are asked
            run.run_hash = run_hash(run)
            st = recorded.get(run.run_hash)
            if st == "ok" or (st == "failed" and not self.retry_failed):
                run.status = "skipped" if st == "ok" else "skipped-failed"
                run.reused = recorded_id[run.run_hash]
        self._tpe_setup(store)
        return self.runs

    # ---- TPE (optuna ask/tell; finished trials of an earlier attempt are told again)
    def _tpe_setup(self, store) -> None:
        tpe_runs = [r for r in self.runs if r.tpe is not None]
        if not tpe_runs:
            return
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from recarena.protocols import load_protocol

        self._store = store
        for key in sorted({(r.entry, r.protocol) for r in tpe_runs}):
            entry = self.doc["runs"][key[0]]
            proto = load_protocol(key[1])
            direction = "minimize" if metric_mode(proto["select"]) == "min" else "maximize"
            space = entry["search"].get("space") or {}
            dists = {k: _distribution(v) for k, v in space.items()}
            sampler = optuna.samplers.TPESampler(seed=entry["search"].get("seed", 0))
            if getattr(store, "url", None):
                # one study in the store's PostgreSQL, shared by every sweep process (hosts,
                # SLURM tasks): trials another process finished or is running count here.
                # Each process samples from its own seed: with one seed, processes starting
                # together would draw the same random start-up trials (which trials run where
                # depends on timing, so a shared search is not reproducible anyway)
                sampler = optuna.samplers.TPESampler(seed=None)
                import warnings

                # Optuna creates its tables (and enum types) on first use, which two processes
                # starting at once would both try: one at a time, under the store's lock
                con = store._connect()
                try:
                    with con.transaction(), warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        con.execute("SELECT pg_advisory_xact_lock(hashtext('recarena:optuna-schema'))")
                        storage = optuna.storages.RDBStorage(rdb_url(store.url), heartbeat_interval=HEARTBEAT_S,
                                                             grace_period=3 * HEARTBEAT_S)
                        study = optuna.create_study(storage=storage, study_name=f"recarena:{self.name}:{key[0]}:{key[1]}",
                                                    direction=direction, sampler=sampler, load_if_exists=True,
                                                    pruner=_pruner(entry["search"].get("pruner")))
                finally:
                    con.close()
                optuna.storages.fail_stale_trials(study)  # trials of a process that died
                done = len(study.get_trials(deepcopy=False, states=_finished()))
                slots = [r for r in tpe_runs if (r.entry, r.protocol) == key]
                for r in slots[:done]:
                    r.status = "skipped"
                self._study[key] = (study, dists, proto["select"])
                self._shared[key] = len(slots)
                continue
            study = optuna.create_study(direction=direction, sampler=sampler, pruner=_pruner(entry["search"].get("pruner")))
            done = 0
            for r in store.runs(protocol=key[1], model=entry["model"], sweep=self.name):
                if not r["run_id"].endswith(f"-tpe{key[0]}"):
                    continue  # only this search's own trials (not a grid entry's runs of the model)
                params = {k: r["config"]["params"].get(k) for k in space}
                value = (r.get("valid_metrics") or {}).get(proto["select"])
                if value is not None and all(v is not None for v in params.values()):
                    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
                    done += 1
            slots = [r for r in tpe_runs if (r.entry, r.protocol) == key]
            for r in slots[:done]:
                r.status = "skipped"
            self._study[key] = (study, dists, proto["select"])

    def _ask(self, run: Run) -> bool:
        """Asks the study for the run's parameters; False when a shared study already has all its
        trials (finished or running in other processes): the run is then not needed."""
        key = (run.entry, run.protocol)
        study, dists, _ = self._study[key]
        if key in self._shared:
            import optuna

            # count and ask under one lock, so processes asking at once never overshoot
            con = self._store._connect()
            try:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (study.study_name,))
                    optuna.storages.fail_stale_trials(study)
                    taken = len(study.get_trials(deepcopy=False, states=_finished() + (optuna.trial.TrialState.RUNNING,)))
                    if taken >= self._shared[key]:
                        return False
                    trial = study.ask(dists)
            finally:
                con.close()
        else:
            trial = study.ask(dists)
        run.tpe = trial
        run.params = dict(trial.params)
        run.sets = run.sets + [f"{k}={_fmt(v)}" for k, v in run.params.items()]
        run.run_hash = run_hash(run)
        run.beat = time.time()  # type: ignore[attr-defined]
        return True

    def _heartbeat(self, run: Run) -> None:
        """Tells a shared study this process still runs the trial (a dead process's trials
        are failed after the grace period, and their slots asked again)."""
        if (run.entry, run.protocol) in self._shared and time.time() - getattr(run, "beat", 0) > HEARTBEAT_S / 2:
            study = self._study[(run.entry, run.protocol)][0]
            study._storage.record_heartbeat(run.tpe._trial_id)
            run.beat = time.time()  # type: ignore[attr-defined]

    def _tell(self, run: Run, value: float | None, pruned: bool = False) -> None:
        import optuna

        if run.tpe is None or isinstance(run.tpe, int):
            return
        study, _, _ = self._study[(run.entry, run.protocol)]
        if pruned:
            study.tell(run.tpe, state=optuna.trial.TrialState.PRUNED)
            return
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        study.tell(run.tpe, value if value is not None else None, state=state)

    def _prune_check(self, run: Run, log: Path) -> str | None:
        """Reports the run's new per-epoch validation values to its trial; a reason when the
        study's pruner stops it."""
        _, _, select = self._study[(run.entry, run.protocol)]
        try:
            with open(log, "rb") as f:
                f.seek(run.log_offset)  # type: ignore[attr-defined]
                chunk = f.read()
        except OSError:
            return None
        end = chunk.rfind(b"\n") + 1
        run.log_offset += end  # type: ignore[attr-defined]
        for line in chunk[:end].decode(errors="replace").splitlines():
            if not line.startswith("RECARENA_EPOCH "):
                continue
            rec = json.loads(line[len("RECARENA_EPOCH "):])
            if select in rec:
                run.tpe.report(rec[select], rec["epoch"])
                if run.tpe.should_prune():
                    return f"pruned by the TPE study's pruner at epoch {rec['epoch']} (valid {select} {rec[select]:.4f})"
        return None

    # ---- the loop
    def execute(self, store) -> dict:
        if not self.runs:
            self.plan(store)
        # the runs recorded earlier that this sweep counts as done are part of it (its report)
        store.add_to_sweep(self.name, [r.reused for r in self.runs if r.status == "skipped" and r.reused])
        pending = [r for r in self.runs if r.status == "pending"]
        deadline = time.time() + self.max_hours * 3600 if self.max_hours else None
        gpus = self._gpus()
        free_gpus = list(gpus)
        running: dict[int, tuple[Run, subprocess.Popen, Any, str | None]] = {}
        logs = Path(os.environ.get("RECARENA_HOME") or Path.home() / ".recarena") / "sweeps" / self.name
        logs.mkdir(parents=True, exist_ok=True)
        t_start = time.time()
        interrupted = False
        last_view = 0.0

        def launch(run: Run) -> None:
            if isinstance(run.tpe, int) and not self._ask(run):
                run.status = "skipped"  # the shared study has all its trials
                return
            # a TPE trial's id names its search entry, so a resumed study counts its own trials only
            run.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6] + (f"-tpe{run.entry}" if run.tpe is not None else "")
            env = {**os.environ, "RECARENA_RUN_ID": run.run_id, "WANDB_MODE": self.wandb, "PYTHONUNBUFFERED": "1"}
            if run.tpe is not None:
                env["RECARENA_EPOCH_REPORT"] = "1"
            run.log_offset = 0  # type: ignore[attr-defined]
            gpu = free_gpus.pop(0) if free_gpus else None
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = gpu or ""
            else:
                env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.jobs)))
            # Ctrl-C waits until the run is registered: an interrupt between the start of the
            # process and its registration would leave it unkilled and unwaited
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                out = open(logs / f"{run.run_id}.log", "wb")
                p = subprocess.Popen(self.command(run), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, preexec_fn=_die_with_parent)
                run.status, run.started = "running", time.time()
                running[p.pid] = (run, p, out, gpu)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)

        def finish(run: Run, p: subprocess.Popen, out, gpu, reason: str | None) -> None:
            out.close()
            if gpu is not None:
                free_gpus.append(gpu)
            run.seconds = time.time() - run.started
            rec = store.get(run.run_id)
            tail = _tail(logs / f"{run.run_id}.log")
            if rec is not None and rec["status"] == "ok" and reason is None:
                run.status = "ok"
                from recarena.protocols import load_protocol

                sel = load_protocol(run.protocol)["select"]
                run.metric = (rec.get("test_metrics") or {}).get(sel)
                run.peak_mb = rec.get("peak_memory_mb") or 0.0
                self._tell(run, (rec.get("valid_metrics") or {}).get(sel))
                return
            run.status = "failed"
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
            run.error = reason or (rec or {}).get("error") or f"exit code {p.returncode}: {last.strip()}"
            self._tell(run, None, pruned=bool(reason and reason.startswith("pruned")))
            self._record_failure(store, run, tail)

        try:
            while pending or running:
                # launch
                while pending and len(running) < self.jobs:
                    run = pending[0]
                    if deadline is not None and time.time() + self._estimate(run, store) > deadline:
                        for r in pending:
                            r.status = "not-launched"
                        pending = []
                        break
                    pending.pop(0)
                    launch(run)
                # watch
                time.sleep(0.05)
                for pid, (run, p, out, gpu) in list(running.items()):
                    reason = None
                    rc = p.poll()
                    if rc is None:
                        lim = run.limits
                        if lim.get("timeout_s") and time.time() - run.started > lim["timeout_s"]:
                            reason = f"timeout: still running after {lim['timeout_s']} s (killed)"
                        elif lim.get("memory_mb"):
                            rss = _tree_rss_mb(pid)
                            run.peak_mb = max(run.peak_mb, rss)
                            if rss > lim["memory_mb"]:
                                reason = f"memory limit: {rss:.0f} MiB resident > {lim['memory_mb']} MiB (killed)"
                        if reason is None and run.tpe is not None:
                            self._heartbeat(run)
                            reason = self._prune_check(run, logs / f"{run.run_id}.log")
                        if reason is None:
                            continue
                        _kill_group(p)
                        p.wait()
                    elif rc != 0 and rc < 0:
                        reason = f"killed by signal {-rc} ({signal.Signals(-rc).name})"
                    del running[pid]
                    finish(run, p, out, gpu, reason)
                if self.progress and time.time() - last_view > 1.0:
                    self._view(t_start, len(running))
                    last_view = time.time()
        except KeyboardInterrupt:
            interrupted = True
            for _run, p, _out, _gpu in running.values():
                _kill_group(p, signal.SIGTERM)
            for run, p, out, _gpu in running.values():
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    _kill_group(p)
                    p.wait()
                out.close()
                run.status = "interrupted"
        summary = self.summary(t_start)
        summary["interrupted"] = interrupted
        return summary

    def _record_failure(self, store, run: Run, tail: str) -> None:
        rec = store.get(run.run_id)
        if rec is not None:  # the run recorded its own failure (a Python exception): add the log
            rec.update(error=f"{run.error}\n--- log tail ---\n{tail}")
            store.record(rec)
            return
        from recarena import plugins
        from recarena.config import config_hash, resolve
        from recarena.protocols import load_protocol

        proto = load_protocol(run.protocol)
        cfg = resolve(plugins.get(run.model), run.model, proto, run.dataset or proto["dataset"], run.seed, None, run.sets)
        store.record({
            "run_id": run.run_id, "model": run.model, "dataset": cfg["dataset"], "protocol": proto["name"], "seed": run.seed,
            "status": "failed", "config": cfg, "config_hash": config_hash(cfg), "run_hash": config_hash(cfg, with_seed=True),
            "protocol_hash": cfg["protocol_hash"], "started_at": run.started, "finished_at": time.time(), "sweep": self.name,
            "peak_memory_mb": run.peak_mb or None, "error": f"{run.error}\n--- log tail ---\n{tail}",
        })

    def _counts(self) -> dict:
        c: dict[str, int] = {}
        for r in self.runs:
            c[r.status] = c.get(r.status, 0) + 1
        return c

    def best(self) -> dict:
        from recarena.protocols import load_protocol

        out = {}
        for r in self.runs:
            if r.status != "ok" or r.metric is None:
                continue
            proto = load_protocol(r.protocol)
            lower = metric_mode(proto["select"]) == "min"
            cur = out.get(r.protocol)
            if cur is None or (r.metric < cur[1] if lower else r.metric > cur[1]):
                out[r.protocol] = (r.model, r.metric, proto["select"])
        return out

    def _view(self, t_start: float, n_running: int) -> None:
        c = self._counts()
        done = [r for r in self.runs if r.status in ("ok", "failed")]
        left = [r for r in self.runs if r.status in ("pending", "running")]
        eta = ""
        if done and left:
            per = statistics.mean(r.seconds for r in done)
            eta = f", ETA {_hms(per * len(left) / max(1, self.jobs))}"
        best = "; ".join(f"{p}: {m} {k} {v:.4f}" for p, (m, v, k) in self.best().items())
        line = (f"sweep {self.name}: {c.get('ok', 0)} done, {c.get('failed', 0)} failed, {n_running} running, "
                f"{c.get('pending', 0)} waiting, {c.get('skipped', 0)} already recorded{eta}" + (f" | best {best}" if best else ""))
        if sys.stderr.isatty():
            print("\r" + line[:200].ljust(200), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def summary(self, t_start: float) -> dict:
        c = self._counts()
        return {"sweep": self.name, "runs": len(self.runs), "counts": c, "wall_seconds": round(time.time() - t_start, 1),
                "best": {p: {"model": m, k: v} for p, (m, v, k) in self.best().items()},
                "failed": [{"run": r.label, "run_id": r.run_id, "error": r.error} for r in self.runs if r.status == "failed"],
                "timings": _timings(self.runs)}


def _pruner(spec: dict | None):
    """``{type: median, warmup: 2, startup: 2}`` (default) | ``{type: threshold, lower: x, upper: y}`` | ``{type: none}``"""
    import optuna

    spec = dict(spec or {})
    kind = spec.pop("type", "median")
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "threshold":
        return optuna.pruners.ThresholdPruner(lower=spec.get("lower"), upper=spec.get("upper"), n_warmup_steps=spec.get("warmup", 0))
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.get("startup", 2), n_warmup_steps=spec.get("warmup", 2))
    raise RecArenaError(f"search.pruner.type: expected median, threshold or none, got {kind!r}.")


def _distribution(spec):
    import optuna

    if isinstance(spec, list):
        return optuna.distributions.CategoricalDistribution(spec)
    if spec.get("int"):
        return optuna.distributions.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
    return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))


def _timings(runs: list[Run]) -> dict:
    out: dict[str, list[float]] = {}
    for r in runs:
        if r.status == "ok":
            out.setdefault(f"{r.model}/{r.protocol}", []).append(r.seconds)
    return {k: round(statistics.median(v), 1) for k, v in out.items()}


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


#: seconds between heartbeats of a running trial in a shared study
HEARTBEAT_S = 30


def rdb_url(url: str) -> str:
    """The store's postgresql:// URL as SQLAlchemy names the psycopg 3 driver."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def _finished():
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def emit_slurm(sweep: Sweep, runs: list[Run], out: Path, store=None) -> Path:
    """An sbatch array script: one task per run still to do, results into the same store,
    which must be a PostgreSQL one (``RECARENA_STORE``): array tasks on several nodes would all
    write one SQLite file over a network filesystem, where SQLite's locking is not safe."""
    if store is not None and not getattr(store, "url", None):
        raise RecArenaError(
            f"--emit slurm: the results store is the SQLite file {store.path}; the array's tasks would all write it, "
            "from several nodes, over a shared filesystem, where SQLite's locking is not safe. Put the store on "
            "PostgreSQL: RECARENA_STORE=postgresql://user@host/db (or recarena --store URL sweep ...).")
    todo = [r for r in runs if r.status == "pending" and r.tpe is None]
    import shlex

    # each task stops at its own entry's time limit; the array asks for the largest time and
    # memory any task needs (SLURM sets one --time/--mem for the whole array)
    def case(i, r):
        t = int(r.limits.get("timeout_s") or 3600)
        return f"  {i}) exec timeout --kill-after=30 {t} {' '.join(shlex.quote(a) for a in sweep.command(r))} ;;"

    cases = "\n".join(case(i, r) for i, r in enumerate(todo))
    minutes = max([1] + [int((r.limits.get("timeout_s") or 3600) / 60) + 5 for r in todo])
    mems = [int(r.limits["memory_mb"]) for r in todo if r.limits.get("memory_mb")]
    mem = f"#SBATCH --mem={max(mems)}M\n" if mems else ""
    script = f"""#!/bin/bash
# recarena sweep {sweep.name}: {len(todo)} runs (TPE searches are left out: run `recarena sweep` on several
# hosts against the same PostgreSQL store instead, and they share one Optuna study)
#SBATCH --job-name=recarena-{sweep.name}
#SBATCH --array=0-{max(0, len(todo) - 1)}
#SBATCH --time={minutes}
{mem}#SBATCH --output=recarena-{sweep.name}-%a.log
export RECARENA_HOME="${{RECARENA_HOME:-{os.environ.get('RECARENA_HOME', '$HOME/.recarena')}}}"
export WANDB_MODE="${{WANDB_MODE:-{sweep.wandb}}}"
{f'export RECARENA_STORE={shlex.quote(store.url)}' if store is not None else ''}
case "$SLURM_ARRAY_TASK_ID" in
{cases}
esac
"""
    out.write_text(script)
    # the store URL may hold a password: the script is its owner's only
    out.chmod(0o700 if store is not None and "@" in (store.url or "") and ":" in store.url.split("://", 1)[1].split("@")[0]
              else 0o755)
    return out


def main(argv: list[str]) -> int:
    import argparse

    from recarena.store import ResultsStore

    ap = argparse.ArgumentParser(prog="recarena sweep")
    ap.add_argument("sweep", help="configs/sweeps/<name>.yaml or a sweep name")
    ap.add_argument("--jobs", "-j", type=int, default=1)
    ap.add_argument("--max-hours", type=float)
    ap.add_argument("--resume", action="store_true", help="skip runs already recorded (the default; kept for clarity)")
    ap.add_argument("--retry-failed", action="store_true", help="run again the runs that failed before")
    ap.add_argument("--data-dir")
    ap.add_argument("--wandb", choices=["offline", "online", "disabled"], default="offline")
    ap.add_argument("--emit", choices=["slurm"], help="write a scheduler script instead of running")
    ap.add_argument("--out", help="with --emit: where to write the script")
    ap.add_argument("--dry-run", action="store_true", help="list the runs with their expected durations, and the projection")
    ap.add_argument("--seeds", help="only these seeds (comma-separated): a reduced run of the same sweep")
    ap.add_argument("--night", type=int, help="only the seeds of the sweep file's nights[N-1] (a sweep too long for "
                                               "one night, split as its file says)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        raise RecArenaError(f"--jobs {a.jobs}: expected at least 1.")
    doc = load_sweep(find_sweep(a.sweep))
    if a.night is not None:
        nights = doc.get("nights") or []
        if not 1 <= a.night <= len(nights):
            raise RecArenaError(f"--night {a.night}: sweep {doc['name']!r} declares {len(nights)} night(s)"
                                + (f"; give 1..{len(nights)}." if nights else " (no 'nights' section)."))
        if a.seeds:
            raise RecArenaError("--night and --seeds both choose seeds: give one of them.")
        a.seeds = ",".join(str(x) for x in nights[a.night - 1]["seeds"])
    if a.seeds:
        keep = [int(x) for x in a.seeds.split(",")]
        doc["seeds"] = [sd for sd in doc.get("seeds", [0]) if sd in keep] or keep
        for r in doc["runs"]:
            if "seeds" in r:
                r["seeds"] = [sd for sd in r["seeds"] if sd in keep]
    store = ResultsStore()
    sw = Sweep(doc, jobs=a.jobs, max_hours=a.max_hours, retry_failed=a.retry_failed, data_dir=a.data_dir, wandb=a.wandb,
               progress=not a.json)
    runs = sw.plan(store)
    todo = [r for r in runs if r.status == "pending"]
    print(f"sweep {sw.name}: {len(runs)} runs, {len(todo)} to do, {len(runs) - len(todo)} already recorded", file=sys.stderr)
    if a.dry_run:
        total = 0.0
        per_pair: dict[str, float] = {}
        for r in runs:
            est = sw._estimate(r, store) if r.status == "pending" else 0.0
            total += est
            per_pair[f"{r.model}/{r.protocol}"] = sw._estimate(r, store)
            print(f"{r.status:<15} {_hms(est):>8}  {r.label}")
        print(f"projection: {_hms(total)} of run time, {_hms(total / a.jobs)} wall with --jobs {a.jobs} "
              f"(per run: the median of earlier runs of that model and protocol, else estimate_s={doc.get('estimate_s', 60)})")
        return 0
    if a.emit:
        path = emit_slurm(sw, runs, Path(a.out or f"{sw.name}.sbatch"), store)
        print(f"wrote {path}: sbatch {path}")
        return 0
    summary = sw.execute(store)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if a.json:
        print(json.dumps(summary))
    else:
        c = summary["counts"]
        best = "; ".join(f"{p}: {b['model']} " + ", ".join(f"{k} {v:.4f}" for k, v in b.items() if k != "model")
                         for p, b in summary["best"].items())
        print(f"sweep {sw.name}: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('not-launched', 0)} not launched "
              f"(budget), {c.get('skipped', 0)} already recorded, in {_hms(summary['wall_seconds'])}" + (f"; best {best}" if best else ""))
        for f in summary["failed"]:
            print(f"  FAILED {f['run']} ({f['run_id']}): {f['error'].splitlines()[0]}")
    # failed runs are results of the sweep (recorded with their reasons), not a failure of it
    return 130 if summary["interrupted"] else 0
