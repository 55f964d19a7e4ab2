"""The recarena CLI end to end, with the pop and biased-mf plugins, on synthetic data."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "recarena.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def store_rows():
    db = Path(os.environ["RECARENA_HOME"]) / "results.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


FAST = ["--set", "epochs=3", "--set", "dim=8", "--set", "trainer.logger=none"]


def test_train_json_and_leaderboard(capsys):
    # the first run through a real interpreter (the entry point, exit code, stdout as a user
    # sees it); the rest in this process (each interpreter start costs seconds)
    r = cli("train", "pop", "--protocol", "synthetic-rank", "--dataset", "synthetic-5000", "--json", "--seed", "1")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("model", "dataset", "protocol", "seed", "metrics", "fit_seconds", "run_id"):
        assert key in out
    assert out["model"] == "pop" and out["seed"] == 1 and 0 <= out["metrics"]["ndcg@10"] <= 1
    for seed in (1, 2):
        r = inproc(capsys, "train", "biased-mf", "--protocol", "synthetic-rank", "--dataset", "synthetic-5000", "--seed", str(seed), *FAST)
        assert r.returncode == 0, r.stderr
    assert store_rows() == 3
    r = cli("leaderboard", "--protocol", "synthetic-rank", "--format", "json")
    (board,) = json.loads(r.stdout)
    assert (board["protocol"], board["dataset"], board["current"]) == ("synthetic-rank", "synthetic-5000", True)
    models = {row["model"]: row for row in board["rows"]}
    assert set(models) == {"pop", "biased-mf"} and models["biased-mf"]["n"] == 2
    ndcg = [row["metrics"]["ndcg@10"]["mean"] for row in board["rows"]]
    assert ndcg == sorted(ndcg, reverse=True)
    for fmt in ("table", "md", "csv"):
        r = inproc(capsys, "leaderboard", "--protocol", "synthetic-rank", "--format", fmt)
        assert r.returncode == 0 and "biased-mf" in r.stdout


def test_saved_config_reruns_as_is(capsys):
    r = cli("train", "biased-mf", "--protocol", "synthetic-rating", "--dataset", "synthetic-3000", "--json", *FAST, "--set", "lr=0.02")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.strip().splitlines()[-1])
    cfg = Path(first["artifact"]).parent / "config.yaml"
    r = inproc(capsys, "train", "biased-mf", "--protocol", "synthetic-rating", "--config", str(cfg), "--json")
    assert r.returncode == 0, r.stderr
    second = json.loads(r.stdout.strip().splitlines()[-1])
    assert second["config_hash"] == first["config_hash"]
    assert second["metrics"]["rmse"] == pytest.approx(first["metrics"]["rmse"], abs=1e-6)
    # a config recorded under an older version of the protocol is refused, not silently re-run
    stale = cfg.parent / "stale.yaml"
    stale.write_text(cfg.read_text().replace("protocol_version: 1", "protocol_version: 0"))
    r = inproc(capsys, "train", "biased-mf", "--protocol", "synthetic-rating", "--config", str(stale))
    assert r.returncode == 2 and "recorded under version 0 of protocol 'synthetic-rating', which is now at version 1" in r.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "nosuchmodel", "--protocol", "synthetic-rank", "--dataset", "synthetic-1000"], "Unknown model 'nosuchmodel'"),
        (["train", "pop", "--protocol", "nosuchproto", "--dataset", "synthetic-1000"], "Unknown protocol 'nosuchproto'"),
        (["train", "pop", "--protocol", "synthetic-rank", "--dataset", "nosuchdata"], "Unknown dataset 'nosuchdata'"),
        (["train", "biased-mf", "--protocol", "synthetic-rank", "--dataset", "synthetic-1000", "--set", "dimm=8"], "Unknown params key 'dimm'"),
        (["train", "biased-mf", "--protocol", "synthetic-rank", "--dataset", "synthetic-1000", "--set", "trainer.patiense=3"], "Unknown trainer key 'patiense'"),
        (["train", "pop", "--protocol", "ml100k-u1"], "does not support the rating task"),
        # a parameter that narrows what the plugin can do is checked too, before any data is read
        (["train", "biased-mf", "--protocol", "synthetic-rank", "--dataset", "synthetic-1000", "--set", "solver=mcmc"], "does not support the ranking task"),
        (["train", "biased-mf", "--protocol", "ml100k-u1", "--data-dir", "/nonexistent"], "u.data, u.item not found"),
    ],
)
def test_bad_inputs_exit_2_without_traceback_or_store_writes(args, needle):
    r = cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in " ".join(r.stderr.split()), r.stderr
    assert "Traceback" not in r.stderr
    assert store_rows() == 0


def test_malformed_ratings_line_exit_2(tmp_path):
    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "u.data").write_text("1\t10\t4\t881250949\n1\t20\t4\n")
    (d / "u.item").write_text("10|A|x||u|" + "|".join("0" * 19) + "\n")
    r = cli("train", "biased-mf", "--protocol", "ml100k-u1", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "u.data:2" in r.stderr and "Traceback" not in r.stderr
    assert store_rows() == 0


def test_plugins_json(capsys):
    r = cli("plugins", "--json")
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["biased-mf"]["distribution"] == "recarena-biased-mf"
    assert rows["biased-mf"]["capabilities"]["tasks"] == ["ranking", "rating"]
    assert rows["pop"]["version"]
    r = inproc(capsys, "plugins")
    assert "recarena-pop" in r.stdout


def test_protocols_and_datasets_list():
    r = cli("protocols")
    for p in ("recbole-ml1m", "ml1m-ctr", "ml100k-u1", "ml1m-rating-90-10", "ncf-loo", "ml100k-seq-loo"):
        assert p in r.stdout
    assert "ml-1m" in cli("datasets").stdout


def inproc(capsys, *args):
    """The CLI in this process (no interpreter start-up per call): (exit code, stdout, stderr)."""
    from recarena.cli import main

    rc = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


@pytest.mark.parametrize("model, setting, allowed", [
    ("bpr", "optimizer=nosuch", "Allowed: one of 'adam', 'adamw', 'lbfgs', 'rprop', 'sgd', 'sparse_adam'"),
    ("itemknn", "k=abc", "Allowed: an integer in [1, inf]"),
    ("bpr", "n_neg=-1", "Allowed: an integer in [1, inf]"),
])
def test_bad_parameter_value_exits_2_before_reading_data(model, setting, allowed, tmp_path, capsys):
    before = store_rows()
    r = inproc(capsys, "train", model, "--protocol", "recbole-ml1m", "--data-dir", str(tmp_path / "does-not-exist"), "--set", setting)
    assert r.returncode == 2, r.stderr
    name, _, value = setting.partition("=")
    msg = " ".join(r.stderr.split())
    assert f"parameter '{name}' of {model}" in msg and value in msg and "(set in --set)" in msg and allowed in msg
    assert "Traceback" not in r.stderr and store_rows() == before


def test_bad_value_in_a_config_file_names_the_file(tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text("params: {lr: -1e-3}\n")  # YAML 1.2 number: a float, refused by its range
    r = inproc(capsys, "train", "bpr", "--protocol", "recbole-ml1m", "--config", str(exp), "--data-dir", str(tmp_path / "none"))
    assert r.returncode == 2 and f"-0.001 (set in {exp})" in " ".join(r.stderr.split()), r.stderr


def test_adamw_trains_and_scientific_notation_is_a_number(capsys):
    r = inproc(capsys, "train", "biased-mf", "--protocol", "synthetic-rank", "--dataset", "synthetic-2000", *FAST,
            "--set", "optimizer=adamw", "--set", "weight_decay=1e-4", "--set", "lr=5e-3", "--json")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout.strip().splitlines()[-1])
    assert cfg["metrics"]["ndcg@10"] > 0


def test_sweep_dry_run_checks_every_value(tmp_path, capsys):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text("name: bad\nseeds: [0]\nruns:\n  - {model: bpr, protocols: [synthetic-rank], sets: [n_neg=0]}\n")
    r = inproc(capsys, "sweep", str(sweep), "--dry-run")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "parameter 'n_neg' of bpr: 0" in " ".join(r.stderr.split())


def test_config_prints_each_value_with_its_layer(capsys):
    r = inproc(capsys, "config", "ncf", "--protocol", "recbole-ml1m", "--set", "dim_gmf=16", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["key"]: (x["value"], x["from"]) for x in json.loads(r.stdout)}
    assert rows["dim_gmf"] == (16, "--set")
    assert rows["neumf_lr"][0] == 0.0001 and rows["neumf_lr"][1].startswith("protocol recbole-ml1m")
    assert rows["gmf_epochs"] == (30, "plugin defaults")
    assert rows["trainer.patience"][1].startswith("protocol recbole-ml1m")
    assert rows["trainer.precision"] == ("32-true", "recarena's trainer default")


def test_a_protocols_model_block_may_set_that_models_trainer(tmp_path, capsys):
    """models.<name>.trainer overrides the protocol's trainer block for that model only; a
    misspelt setting there is refused like anywhere else."""
    base = (Path(__file__).parents[1] / "configs/protocols/synthetic-rank.yaml").read_text()
    proto = tmp_path / "p.yaml"
    proto.write_text(base.replace("name: synthetic-rank", "name: p") + "\ntrainer: {patience: 10}\n"
                     "models: {bpr: {dim: 8, trainer: {patience: 3}}}\n")
    rows = {}
    for model in ("bpr", "mf"):
        r = inproc(capsys, "config", model, "--protocol", str(proto), "--json")
        assert r.returncode == 0, r.stderr
        rows[model] = {x["key"]: x["value"] for x in json.loads(r.stdout)}
    assert rows["bpr"]["trainer.patience"] == 3 and rows["bpr"]["dim"] == 8
    assert rows["mf"]["trainer.patience"] == 10
    proto.write_text(proto.read_text().replace("{patience: 3}", "{patiense: 3}"))
    r = inproc(capsys, "config", "bpr", "--protocol", str(proto))
    assert r.returncode == 2 and "patiense" in r.stderr, r.stderr


@pytest.mark.parametrize("line, flags, needle", [
    ("protocol: recbole-ml1m", ["--protocol", "synthetic-rank"],
     "names protocol 'recbole-ml1m' but the command line says 'synthetic-rank'"),
    ("dataset: synthetic-3000", ["--protocol", "synthetic-rank", "--dataset", "synthetic-2000"],
     "names dataset 'synthetic-3000' but the command line says 'synthetic-2000'"),
])
def test_a_config_file_disagreeing_with_the_command_line_is_an_error(line, flags, needle, tmp_path, capsys):
    exp = tmp_path / "exp.yaml"
    exp.write_text(line + "\n")
    r = inproc(capsys, "train", "pop", *flags, "--config", str(exp))
    assert r.returncode == 2 and needle in " ".join(r.stderr.split()), r.stderr
    assert store_rows() == 0


def test_leaderboard_names_protocols_it_no_longer_knows_without_failing(capsys):
    from recarena.store import ResultsStore

    s = ResultsStore()
    for rid, proto in (("a", "synthetic-rank"), ("b", "synthetic-refit-gone")):
        s.record({"run_id": rid, "model": "pop", "dataset": "synthetic-2000", "protocol": proto, "seed": 0,
                  "status": "ok", "config": {}, "config_hash": "h", "run_hash": rid, "fit_seconds": 1.0,
                  "test_metrics": {"ndcg@10": 0.1}, "valid_metrics": {"ndcg@10": 0.1}})
    r = inproc(capsys, "leaderboard")
    assert r.returncode == 0, r.stderr
    assert "Leaderboard: synthetic-rank" in r.stdout and "synthetic-refit-gone" in r.stderr
    assert inproc(capsys, "leaderboard", "--protocol", "synthetic-refit-gone").returncode == 2


def test_a_model_that_cannot_fold_in_is_refused_by_a_strong_generalization_protocol(tmp_path, capsys):
    r = inproc(capsys, "train", "bpr", "--protocol", "ml1m-strong", "--data-dir", str(tmp_path / "none"))
    assert r.returncode == 2 and "cannot fold in" in r.stderr and store_rows() == 0
