"""recarena sweep: isolation of failing runs, resume after SIGKILL, the time budget, TPE, slurm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from recarena.errors import RecArenaError
from recarena.store import ResultsStore
from recarena.sweep import expand, load_sweep, rdb_url

ROOT = Path(__file__).resolve().parents[1]

BAD_PLUGINS = '''
"""Plugins that misbehave, for the sweep's tests: registered through a real entry point (a
dist-info folder on PYTHONPATH), exactly as an installed distribution would be."""
import os
import time

import numpy as np
import torch

from recarena import Capabilities, Recommender, Task


class _Base(Recommender):
    capabilities = Capabilities(tasks={Task.RANKING})

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds

    def _score(self, users):
        return torch.zeros(len(users), self.n_items_)


class Crash(_Base):
    def _fit(self, train, valid, monitor):
        os.abort()  # a hard crash (SIGABRT), as a segfault in native code would be


class Hog(_Base):
    def _fit(self, train, valid, monitor):
        hoard = []
        while True:  # grows until something stops it
            hoard.append(np.ones(25_000_000 // 8))
            time.sleep(0.01)


class Hang(_Base):
    def _fit(self, train, valid, monitor):
        while True:
            time.sleep(1)


class Sleepy(_Base):
    """Takes ``seconds`` to fit, then ranks by popularity."""

    def _fit(self, train, valid, monitor):
        time.sleep(self.seconds)
        self.pop_ = torch.from_numpy(train.item_counts().astype(np.float32))

    def _score(self, users):
        return self.pop_.unsqueeze(0).expand(len(users), -1).clone()
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    """RECARENA_HOME for this test and the misbehaving plugins on PYTHONPATH, as entry points."""
    site = tmp_path / "site"
    (site / "sweep_bad_plugins-0.1.dist-info").mkdir(parents=True)
    (site / "sweep_bad_plugins.py").write_text(BAD_PLUGINS)
    (site / "sweep_bad_plugins-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: sweep-bad-plugins\nVersion: 0.1\n")
    (site / "sweep_bad_plugins-0.1.dist-info" / "entry_points.txt").write_text(
        "[recarena.models]\ncrash = sweep_bad_plugins:Crash\nhog = sweep_bad_plugins:Hog\n"
        "hang = sweep_bad_plugins:Hang\nsleepy = sweep_bad_plugins:Sleepy\n")
    e = {**os.environ, "RECARENA_HOME": str(tmp_path / "home"), "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
         "RECARENA_CONFIGS": str(ROOT / "configs")}
    monkeypatch.setenv("RECARENA_HOME", e["RECARENA_HOME"])
    monkeypatch.syspath_prepend(str(site))
    from recarena import plugins

    plugins.discover.cache_clear()
    yield e
    plugins.discover.cache_clear()


def sweep_file(tmp_path, body: str) -> Path:
    p = tmp_path / "sweeps" / "t.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(textwrap.dedent(body))
    return p


def run_sweep(env, path, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "recarena.cli", "sweep", str(path), "--json", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok_set(store: ResultsStore, sweep: str) -> list:
    return sorted((r["model"], r["protocol"], r["seed"], r["run_hash"]) for r in store.runs(status="ok", sweep=sweep))


SMOKE_PLUS_BAD = """
    name: t
    seeds: [0, 1]
    limits: {timeout_s: 120, memory_mb: 3000}
    sets: [trainer.logger=none]
    runs:
      - {model: pop, protocols: [synthetic-rank], dataset: synthetic-4000}
      - {model: biased-mf, protocols: [synthetic-rating], dataset: synthetic-4000, sets: [epochs=2, dim=8]}
      - {model: crash, protocols: [synthetic-rank], dataset: synthetic-4000, seeds: [0]}
      - {model: hog, protocols: [synthetic-rank], dataset: synthetic-4000, seeds: [0], limits: {memory_mb: 600}}
      - {model: hang, protocols: [synthetic-rank], dataset: synthetic-4000, seeds: [0], limits: {timeout_s: 8}}
"""


@pytest.mark.slow
def test_failing_runs_fail_alone_with_their_reasons(env, tmp_path):
    out = run_sweep(env, sweep_file(tmp_path, SMOKE_PLUS_BAD), "--jobs", "2")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["counts"] == {"ok": 4, "failed": 3}
    errors = {f["run"].split("/")[0]: f["error"] for f in summary["failed"]}
    assert "SIGABRT" in errors["crash"]
    assert errors["hog"].startswith("memory limit:") and "> 600 MiB" in errors["hog"]
    assert errors["hang"].startswith("timeout: still running after 8 s")
    store = ResultsStore()
    failed = {r["model"]: r for r in store.runs(status="failed", sweep="t")}
    assert set(failed) == {"crash", "hog", "hang"}
    assert all("--- log tail ---" in r["error"] for r in failed.values())
    assert len(ok_set(store, "t")) == 4
    # re-running the same command skips everything recorded; failures only on request
    again = json.loads(run_sweep(env, tmp_path / "sweeps" / "t.yaml").stdout)
    assert again["counts"] == {"skipped": 4, "skipped-failed": 3}


RESUMABLE = """
    name: r
    seeds: [0, 1, 2]
    sets: [trainer.logger=none]
    runs:
      - {model: sleepy, protocols: [synthetic-rank], dataset: synthetic-4000, sets: [seconds=1.5]}
      - {model: pop, protocols: [synthetic-rank], dataset: synthetic-4000}
      - {model: biased-mf, protocols: [synthetic-rating], dataset: synthetic-4000, sets: [epochs=2, dim=8]}
"""


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_result_set(env, tmp_path):
    path = sweep_file(tmp_path, RESUMABLE)
    # two runs at a time: resuming must also cope with two runs cut off at once
    p = subprocess.Popen([sys.executable, "-m", "recarena.cli", "sweep", str(path), "--json", "--jobs", "2"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = ResultsStore()
    deadline = time.time() + 300
    while len(store.runs(status="ok", sweep="r")) < 3 and time.time() < deadline:
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    n_before = len(store.runs(status="ok", sweep="r"))
    assert 3 <= n_before < 9
    time.sleep(1)  # a child that outlived its parent would record now; none must
    assert len(store.runs(status=None, sweep="r")) == n_before
    out = run_sweep(env, path, "--resume", "--jobs", "2")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["counts"] == {"skipped": n_before, "ok": 9 - n_before}
    got = ok_set(store, "r")
    assert len(got) == 9 and len({h for *_, h in got}) == 9  # every run once, none twice
    # the same set as an uninterrupted sweep (by configuration hash with the seed)
    from recarena.sweep import Sweep

    planned = Sweep(load_sweep(path)).plan(ResultsStore(Path(env["RECARENA_HOME"]) / "elsewhere.db"))
    assert sorted(r.run_hash for r in planned) == sorted(h for *_, h in got)


def test_launch_order_gives_every_pair_its_first_run_first(tmp_path):
    doc = load_sweep(sweep_file(tmp_path, """
        seeds: [0, 1]
        runs:
          - {model: pop, protocols: [synthetic-rank, ml100k-rank]}
          - {model: bpr, protocols: [synthetic-rank], search: {method: grid, space: {lr: [0.1, 0.2]}}}
    """))
    order = [(r.model, r.protocol, r.seed, r.params.get("lr")) for r in expand(doc)]
    first_seen = {}
    for i, (m, p, _s, _) in enumerate(order):
        first_seen.setdefault((m, p), i)
    assert max(first_seen.values()) < min(i for i, o in enumerate(order) if o[2] == 1)
    assert order[:3] == [("pop", "synthetic-rank", 0, None), ("pop", "ml100k-rank", 0, None), ("bpr", "synthetic-rank", 0, 0.1)]
    assert len(order) == 2 * 2 + 2 * 2


@pytest.mark.slow
def test_max_hours_stops_launching_what_would_not_fit(env, tmp_path):
    path = sweep_file(tmp_path, """
        name: b
        seeds: [0, 1, 2, 3, 4, 5]
        estimate_s: 6
        sets: [trainer.logger=none]
        runs:
          - {model: sleepy, protocols: [synthetic-rank], dataset: synthetic-4000, sets: [seconds=4]}
          - {model: pop, protocols: [synthetic-rank], dataset: synthetic-4000}
    """)
    # 6 x 4 s of sleep alone nearly fill the 25 s budget: on a fast quiet machine 4 x 3 s and
    # four pops all fitted, and nothing was left unlaunched
    t = time.time()
    out = run_sweep(env, path, "--max-hours", str(25 / 3600))
    wall = time.time() - t
    s = json.loads(out.stdout)
    assert s["counts"].get("not-launched", 0) > 0 and s["counts"]["ok"] >= 2
    assert wall < 25 + 15, f"the sweep ran {wall:.0f} s on a 25 s budget"
    done = {(r["model"], r["seed"]) for r in ResultsStore().runs(sweep="b")}
    # breadth first: nobody got seed 1 before everybody had seed 0
    assert ("sleepy", 0) in done and ("pop", 0) in done
    for m in ("sleepy", "pop"):
        seeds = sorted(sd for mm, sd in done if mm == m)
        assert seeds == list(range(len(seeds)))


@pytest.mark.slow
def test_tpe_search_records_trials_and_resumes(env, tmp_path):
    pytest.importorskip("optuna")
    plain = """
        name: tpe
        seeds: [0]
        sets: [trainer.logger=none, epochs=2]
        runs:
          - {model: bpr, protocols: [synthetic-rank], dataset: synthetic-4000, sets: [dim=4, lr=0.01]}
    """
    search = """
          - model: bpr
            protocols: [synthetic-rank]
            dataset: synthetic-4000
            search: {method: tpe, trials: 3, space: {lr: {low: 0.001, high: 0.1, log: true}, dim: [4, 8]}}
    """
    # first a plain run of the same model in the same sweep: the search added later must not
    # count it as one of its trials
    assert json.loads(run_sweep(env, sweep_file(tmp_path, plain)).stdout)["counts"] == {"ok": 1}
    path = sweep_file(tmp_path, plain + search)
    s = json.loads(run_sweep(env, path, "--jobs", "2").stdout)
    assert s["counts"] == {"ok": 3, "skipped": 1}
    runs = [r for r in ResultsStore().runs(sweep="tpe") if r["run_id"].endswith("-tpe1")]
    assert len({(r["config"]["params"]["lr"], r["config"]["params"]["dim"]) for r in runs}) == 3
    assert all(0.001 <= r["config"]["params"]["lr"] <= 0.1 for r in runs)
    s = json.loads(run_sweep(env, path).stdout)
    assert s["counts"] == {"skipped": 4}


@pytest.mark.postgres
def test_emit_slurm_writes_an_array_script(env, tmp_path, postgres_url):
    path = sweep_file(tmp_path, SMOKE_PLUS_BAD)
    cmd = [sys.executable, "-m", "recarena.cli", "sweep", str(path), "--emit", "slurm", "--out", str(tmp_path / "t.sbatch")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "SQLite's locking is not safe" in " ".join(out.stderr.split()) and not (tmp_path / "t.sbatch").exists()
    out = subprocess.run(cmd, env={**env, "RECARENA_STORE": postgres_url}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    script = (tmp_path / "t.sbatch").read_text()
    assert f"export RECARENA_STORE={postgres_url}\n" in script
    assert "#SBATCH --array=0-6" in script and script.count("recarena.cli train") == 7
    assert "--sweep t" in script and "--seed 1" in script
    # per-entry limits: hang stops at its own 15 s; the array asks for the largest time and memory
    hang = next(line for line in script.splitlines() if " hang " in line)
    assert "exec timeout --kill-after=30 8 " in hang and script.count("exec timeout --kill-after=30 120 ") == 6
    assert "#SBATCH --time=7\n" in script and "#SBATCH --mem=3000M" in script


@pytest.mark.slow
@pytest.mark.postgres
def test_two_sweep_processes_share_one_tpe_study_on_postgresql(env, tmp_path, postgres_url):
    """Two `recarena sweep` processes (as on two hosts) on one PostgreSQL store run one TPE
    search of 4 trials between them: 4 trials in all, all different, and a third run resumes
    with nothing left to do."""
    pytest.importorskip("optuna")
    path = sweep_file(tmp_path, """
        name: shared
        seeds: [0]
        sets: [trainer.logger=none, epochs=2]
        runs:
          - model: bpr
            protocols: [synthetic-rank]
            dataset: synthetic-4000
            search: {method: tpe, trials: 4, space: {lr: {low: 0.001, high: 0.1, log: true}, dim: [4, 8, 16]}}
    """)
    env = {**env, "RECARENA_STORE": postgres_url}
    procs = [subprocess.Popen([sys.executable, "-m", "recarena.cli", "sweep", str(path), "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    counts = [json.loads(o[0])["counts"] for o in outs]
    assert sum(c.get("ok", 0) for c in counts) == 4, counts
    runs = [r for r in ResultsStore(postgres_url).runs(sweep="shared") if r["run_id"].endswith("-tpe0")]
    assert len(runs) == 4 and len({(r["config"]["params"]["lr"], r["config"]["params"]["dim"]) for r in runs}) == 4
    import optuna

    study = optuna.load_study(study_name="recarena:shared:0:synthetic-rank", storage=rdb_url(postgres_url))
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 4
    again = json.loads(run_sweep(env, path).stdout)
    assert again["counts"] == {"skipped": 4}


def test_a_sweep_split_over_nights_runs_each_nights_seeds(env, tmp_path):
    path = sweep_file(tmp_path, """
        name: n
        seeds: [0, 1, 2]
        nights: [{seeds: [0]}, {seeds: [1, 2]}]
        runs:
          - {model: pop, protocols: [synthetic-rank], dataset: synthetic-4000}
    """)
    for night, seeds in ((1, ["seed 0"]), (2, ["seed 1", "seed 2"])):
        out = subprocess.run([sys.executable, "-m", "recarena.cli", "sweep", str(path), "--dry-run", "--night", str(night)],
                             env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert sorted(line.split("synthetic-rank ")[1] for line in out.stdout.splitlines() if "pop/" in line) == seeds
    out = subprocess.run([sys.executable, "-m", "recarena.cli", "sweep", str(path), "--dry-run", "--night", "3"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "declares 2 night(s); give 1..2" in out.stderr
    with pytest.raises(RecArenaError, match=r"nights\[0\]: expected"):
        load_sweep(sweep_file(tmp_path, "runs:\n  - {model: pop, protocols: [x]}\nnights: [{seed: [0]}]\n"))


def test_bad_sweep_files_say_where(tmp_path):
    with pytest.raises(RecArenaError, match=r"runs\[0\]: unknown key\(s\) 'protocls' \(did you mean 'protocols'\?\)"):
        load_sweep(sweep_file(tmp_path, "runs:\n  - {model: pop, protocls: [x]}\n"))
    with pytest.raises(RecArenaError, match=r"t.yaml:3: not valid YAML"):
        load_sweep(sweep_file(tmp_path, "runs:\n  - {model: pop\n  protocols: [x]\n"))
    with pytest.raises(RecArenaError, match="search.method: expected grid, random or tpe"):
        load_sweep(sweep_file(tmp_path, "runs:\n  - {model: pop, protocols: [x], search: {method: bayes}}\n"))


def test_ctrl_c_stops_cleanly(env, tmp_path):
    path = sweep_file(tmp_path, """
        name: c
        seeds: [0]
        runs:
          - {model: hang, protocols: [synthetic-rank], dataset: synthetic-4000}
          - {model: pop, protocols: [synthetic-rank], dataset: synthetic-4000}
    """)
    # SIGINT back to its default in the sweep: a suite started as a background job of a shell
    # without job control inherits SIGINT ignored, and Python keeps an inherited SIG_IGN
    p = subprocess.Popen([sys.executable, "-m", "recarena.cli", "sweep", str(path), "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        logs = Path(env["RECARENA_HOME"]) / "sweeps" / "c"
        deadline = time.time() + 60
        while not (logs.exists() and any(logs.iterdir())) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the hanging run is under way
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:  # a failed test leaves no sweep (nor its hanging run) behind
            p.kill()
            p.wait()
    assert p.returncode == 130
    summary = json.loads(out)
    assert summary["interrupted"] and summary["counts"].get("interrupted") == 1
    assert ResultsStore().runs(status=None, sweep="c") == []  # nothing half-recorded
    ps = subprocess.run(["pgrep", "-f", "--", "train hang"], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "the interrupted run's process is still alive"


@pytest.mark.slow
def test_tpe_pruner_stops_runs_from_their_epoch_reports(env, tmp_path):
    pytest.importorskip("optuna")
    # a threshold no epoch can reach: every trial is pruned at its first validation report
    path = sweep_file(tmp_path, """
        name: prune
        seeds: [0]
        sets: [trainer.logger=none, epochs=50, trainer.patience=50]
        runs:
          - model: bpr
            protocols: [synthetic-rank]
            dataset: synthetic-4000
            search: {method: tpe, trials: 2, space: {lr: {low: 0.001, high: 0.01, log: true}},
                     pruner: {type: threshold, lower: 0.99}}
    """)
    s = json.loads(run_sweep(env, path).stdout)
    assert s["counts"] == {"failed": 2}
    assert all(f["error"].startswith("pruned by the TPE study's pruner at epoch 0") for f in s["failed"])


def test_a_sweeps_report_includes_the_runs_it_reused(env, tmp_path):
    from recarena_viz.report import collect

    first = sweep_file(tmp_path, """
        name: first
        seeds: [0, 1]
        runs:
          - {model: pop, protocols: [synthetic-rank], dataset: synthetic-4000}
    """)
    assert json.loads(run_sweep(env, first).stdout)["counts"] == {"ok": 2}
    second = tmp_path / "sweeps" / "second.yaml"
    second.write_text(first.read_text().replace("name: first", "name: second").replace("[0, 1]", "[0, 1, 2]"))
    assert json.loads(run_sweep(env, second).stdout)["counts"] == {"skipped": 2, "ok": 1}
    (sec,) = collect(ResultsStore(), "second")["sections"]
    assert sorted(r["seed"] for r in sec["runs"]) == [0, 1, 2] and sec["board"]["rows"][0]["n"] == 3


def test_a_sweep_ranks_lower_is_better_metrics_as_the_evaluator_does(tmp_path, monkeypatch):
    """gini@10 (like rmse) is lower-is-better for the evaluator, and so for the sweep's best."""
    from recarena.sweep import Run, Sweep

    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "diverse.yaml").write_text(
        "name: diverse\ndataset: any\ntask: ranking\nsplit: {method: ratio_by_user, ratios: [0.8, 0.1, 0.1]}\n"
        "metrics: [GINI@10, ndcg@10]\nselect: GINI@10\n")
    monkeypatch.setenv("RECARENA_CONFIGS", str(tmp_path))
    sw = Sweep({"name": "d", "runs": []})
    sw.runs = [Run(m, "diverse", "synthetic-2000", 0, [], {}, 0, 0, {}, status="ok", metric=v)
               for m, v in (("pop", 0.95), ("ease", 0.60), ("bpr", 0.70))]
    assert sw.best() == {"diverse": ("ease", 0.60, "gini@10")}


def test_core_requires_the_lightning_that_has_weight_averaging():
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.version import Version

    (req,) = [Requirement(r) for r in requires("recarena") if Requirement(r).name == "lightning"]
    assert not req.specifier.contains(Version("2.5.9")) and req.specifier.contains(Version("2.6.0"))


def test_a_sweep_resumed_across_protocol_hashing_finds_runs_of_unchanged_protocols(tmp_path):
    """A run recorded before protocols were hashed (its config has a version, no hash) still
    counts as done while the protocol's version is the current one; under an older version it
    does not."""
    from recarena import plugins
    from recarena.config import config_hash, resolve
    from recarena.protocols import load_protocol
    from recarena.sweep import Sweep

    proto = load_protocol("synthetic-rank")
    store = ResultsStore(tmp_path / "r.db")
    for seed, version in ((0, proto.get("version", 1)), (1, 0)):
        cfg = resolve(plugins.get("pop"), "pop", proto, "synthetic-2000", seed)
        legacy = {k: v for k, v in cfg.items() if k != "protocol_hash"} | {"protocol_version": version}
        store.record({"run_id": f"old{seed}", "model": "pop", "dataset": "synthetic-2000", "protocol": "synthetic-rank",
                      "seed": seed, "status": "ok", "config": legacy, "config_hash": config_hash(legacy),
                      "run_hash": config_hash(legacy, with_seed=True), "test_metrics": {}, "valid_metrics": {}})
    sw = Sweep({"name": "resume", "seeds": [0, 1], "runs": [
        {"model": "pop", "protocols": ["synthetic-rank"], "dataset": "synthetic-2000"}]})
    assert sorted((r.seed, r.status) for r in sw.plan(store)) == [(0, "skipped"), (1, "pending")]
