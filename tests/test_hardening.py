"""Adversarial but fair inputs: every probe is one row of a table (input, expected exit code,
a phrase the message must contain, whether the results store may change), run through the real
``recarena`` entry point in this process, against a fresh ``RECARENA_HOME``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from recarena import cli
from recarena.store import ResultsStore, orphan_run_dirs

ROOT = Path(__file__).resolve().parents[1]
RATINGS = "userId,movieId,rating,timestamp\n" + "".join(
    f"{u},{i},{1 + (u * 7 + i * 3) % 5},{964980000 + u * 100 + i}\n" for u in range(1, 31) for i in range(1, 31) if (u + i) % 3)


def _files(d: Path) -> dict[str, Path]:
    """One bad file per row of the table; built fresh in each test's folder."""
    w = {
        "inf.csv": "user,item,rating\n1,1,5\n1,2,inf\n2,1,3\n",
        "inf_neg.csv": "user,item,rating\n1,1,5\n1,2,-inf\n",
        "header_only.csv": "user,item,rating\n",
        "blank.csv": "\n\n",
        "ragged.csv": "user,item,rating\n1,2,3\n4,5\n",
        "too_many.csv": "user,item,rating\n1,2,3\n4,5,6,7\n",
        "nan_user.csv": "user,item,rating\n1,1,5\n,2,4\n",
        "nan_word.csv": "user,item,rating\n1,1,5\nNaN,2,4\n",
        "ratings.csv": RATINGS,
        "dups.csv": "user,item,rating\n1,1,5\n1,1,3\n2,1,4\n",
    }
    out = {}
    for name, text in w.items():
        (d / name).write_text(text)
        out[name] = d / name
    (d / "empty.csv").write_bytes(b"")
    (d / "latin1.csv").write_bytes("user,item,rating\n1,1,5\n1,caf\xe9,3\n".encode("latin-1"))
    (d / "empty.parquet").write_bytes(b"")
    (d / "broken.parquet").write_bytes(b"PAR1 not really")
    import pandas as pd

    pd.DataFrame({"user": [1.0, None, 3.0], "item": [1, 2, 3], "rating": [1.0, 2.0, 3.0]}).to_parquet(d / "nan.parquet")
    for n in ("empty.csv", "latin1.csv", "empty.parquet", "broken.parquet", "nan.parquet"):
        out[n] = d / n
    return out


TRAIN = ["train", "biased-mf", "--protocol", "synthetic-rating", "--no-progress", "--set", "epochs=1"]
MAP = ["--set", "data.user=userId", "--set", "data.item=movieId"]

# (id, argv with {name} for a file from _files, exit code, phrase in stderr, store may change)
PROBES = [
    ("lr-scientific", TRAIN + ["-d", "synthetic-300", "--set", "lr=1e-3"], 0, "rmse=", True),
    ("epochs-word", TRAIN + ["-d", "synthetic-300", "--set", "epochs=ten"], 2, "'epochs' of biased-mf: 'ten'", False),
    ("batch-negative", TRAIN + ["-d", "synthetic-300", "--set", "batch_size=-5"], 2, "'batch_size'", False),
    ("dim-negative", TRAIN + ["-d", "synthetic-300", "--set", "dim=-3"], 2, "'dim'", False),
    ("patience-word", TRAIN + ["-d", "synthetic-300", "--set", "trainer.patience=x"], 2, "'patience'", False),
    ("seed-word", TRAIN + ["-d", "synthetic-300", "--set", "seed=abc"], 2, "'seed' of the run: 'abc'", False),
    ("protocol-in-set", TRAIN + ["-d", "synthetic-300", "--set", "protocol=ml100k-u1"], 2, "chosen with --protocol", False),
    ("dataset-in-set", TRAIN + ["--set", "dataset=ml-100k"], 2, "chosen with --dataset", False),
    ("inf-rating", TRAIN + ["-d", "{inf.csv}"], 2, "inf.csv:3: column 'rating'", False),
    ("minus-inf-rating", TRAIN + ["-d", "{inf_neg.csv}"], 2, "must be a finite number", False),
    ("empty-file", TRAIN + ["-d", "{empty.csv}"], 2, "empty.csv: the file is empty", False),
    ("blank-lines", TRAIN + ["-d", "{blank.csv}"], 2, "blank.csv: no columns", False),
    ("header-only", TRAIN + ["-d", "{header_only.csv}"], 2, "header_only.csv: no rows after the header", False),
    ("latin1", TRAIN + ["-d", "{latin1.csv}"], 2, "latin1.csv:3: not UTF-8", False),
    ("ragged-short", TRAIN + ["-d", "{ragged.csv}"], 2, "ragged.csv:3: column 'rating' (rating) is missing", False),
    ("ragged-long", TRAIN + ["-d", "{too_many.csv}"], 2, "too_many.csv:3: malformed line", False),
    ("empty-parquet", TRAIN + ["-d", "{empty.parquet}"], 2, "empty.parquet: the file is empty", False),
    ("broken-parquet", TRAIN + ["-d", "{broken.parquet}"], 2, "not a readable Parquet file", False),
    ("nan-user", TRAIN + ["-d", "{nan_user.csv}"], 2, "nan_user.csv:3: the user id is missing", False),
    ("nan-word-user", TRAIN + ["-d", "{nan_word.csv}"], 2, "nan_word.csv:3: the user id is missing", False),
    ("nan-parquet-ids", TRAIN + ["-d", "{nan.parquet}"], 2, "nan.parquet row 1: the user id is missing", False),
    ("unmapped-columns", TRAIN + ["-d", "{ratings.csv}"], 2, "no column 'user' for the user id", False),
    ("unknown-data-key", TRAIN + ["-d", "{ratings.csv}", "--set", "data.usr=userId"], 2, "Did you mean 'user'", False),
    ("bad-rating-scale", TRAIN + ["-d", "{ratings.csv}", *MAP, "--set", "data.rating_scale=[5,1]"], 2, "low < high", False),
    ("rating-off-scale", TRAIN + ["-d", "{ratings.csv}", *MAP, "--set", "data.rating_scale=[1,4]"], 2, "outside rating_scale", False),
    ("data-on-registered", TRAIN + ["-d", "synthetic-300", "--set", "data.user=userId"], 2, "your own file", False),
    ("own-data-trains", TRAIN + ["-d", "{ratings.csv}", *MAP], 0, "rmse=", True),
    ("dups-reported", TRAIN + ["-d", "{dups.csv}"], 0, "1 repeated (user, item) row(s) kept", True),
    ("inspect", ["data", "inspect", "{ratings.csv}", "--set", "user=userId", "--set", "item=movieId"], 0, "30 users", False),
    ("inspect-unmapped", ["data", "inspect", "{ratings.csv}"], 2, "--set data.user=COLUMN", False),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out + out.err


def _store_rows(home: Path) -> list[tuple]:
    db = home / "results.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        return con.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()


@pytest.mark.parametrize("name,argv,code,phrase,may_record", PROBES, ids=[p[0] for p in PROBES])
def test_probe(name, argv, code, phrase, may_record, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("RECARENA_HOME", str(home))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    files = _files(tmp_path)
    argv = [files[a[1:-1]].as_posix() if a.startswith("{") else a for a in argv]
    before = _store_rows(home)
    rc, text = _run(argv, capsys)
    assert rc == code, text
    assert phrase in " ".join(text.split()), text
    if code != 0:
        assert "Traceback" not in text
        assert _store_rows(home) == before, "a refused input changed the results store"
        assert not (home / "runs").exists() or not any((home / "runs").iterdir()), "a refused input left a run folder"
    elif not may_record:
        assert _store_rows(home) == before


def test_duplicates_rule_of_a_protocol(tmp_path, monkeypatch, capsys):
    """`duplicates: mean` merges repeated rows into one with their mean rating; `error` refuses."""
    from recarena.protocols import load_protocol, prepare

    files = _files(tmp_path)
    base = (ROOT / "configs/protocols/synthetic-rating.yaml").read_text()
    for rule in ("mean", "error", "last"):
        (tmp_path / f"p-{rule}.yaml").write_text(base.replace("name: synthetic-rating", f"name: p-{rule}") + f"duplicates: {rule}\n")
    p = prepare(load_protocol(str(tmp_path / "p-mean.yaml")), str(files["dups.csv"]))
    df = p.data.to_frame(raw=True)
    assert sorted(zip(df["user"], df["item"], df["rating"])) == [(1, 1, 4.0), (2, 1, 4.0)]
    assert p.notes == ["1 repeated (user, item) row(s) merged into their mean rating (protocol duplicates: mean)"]
    p = prepare(load_protocol(str(tmp_path / "p-last.yaml")), str(files["dups.csv"]))
    assert sorted(p.data.to_frame(raw=True)["rating"]) == [3.0, 4.0]
    from recarena.errors import RecArenaError

    with pytest.raises(RecArenaError, match="first user 1, item 1, and the protocol says duplicates: error"):
        prepare(load_protocol(str(tmp_path / "p-error.yaml")), str(files["dups.csv"]))
    # `keep`, the default, leaves the protocol's identity as it was before the key existed
    assert load_protocol("synthetic-rating")["_hash"] == "c5076f6da6c1cc7e"


def test_dataset_yaml_reads_a_users_file(tmp_path, monkeypatch, capsys):
    """A dataset YAML names the file and how to read it; --set data.* overrides it."""
    monkeypatch.setenv("RECARENA_HOME", str(tmp_path / "home"))
    files = _files(tmp_path)
    y = tmp_path / "mine.yaml"
    y.write_text("path: ratings.csv\nuser: userId\nitem: movieId\nrating_scale: [1, 5]\nimplicit_threshold: 4\n")
    from recarena.data.datasets import load_any

    data = load_any(str(y))
    assert data.rating is None and len(data) == sum(1 for ln in RATINGS.splitlines()[1:] if int(ln.split(",")[2]) >= 4)
    data = load_any(str(y), options={"implicit_threshold": None})
    assert data.rating is not None and data.rating_scale == (1.0, 5.0) and len(data) == len(RATINGS.splitlines()) - 1
    assert files["ratings.csv"].exists()
    y.write_text("path: ratings.csv\nuser: userId\nitem: movieId\ncolour: red\n")
    rc, text = _run(["data", "inspect", str(y)], capsys)
    assert rc == 2 and "Unknown dataset key 'colour'" in text


def test_non_finite_metrics_are_never_ok_nor_ranked(tmp_path, monkeypatch):
    """A run recorded as ok with rmse=inf (as older versions did) is left off the leaderboard."""
    from recarena import leaderboard

    monkeypatch.setenv("RECARENA_HOME", str(tmp_path))
    store = ResultsStore()
    for rid, rmse in (("a", float("inf")), ("b", 0.9)):
        store.record({"run_id": rid, "model": f"m{rid}", "dataset": "synthetic", "protocol": "synthetic-rating", "seed": 0,
                      "status": "ok", "config": {}, "config_hash": rid, "run_hash": rid, "fit_seconds": 1.0,
                      "valid_metrics": {"rmse": rmse}, "test_metrics": {"rmse": rmse, "mae": 0.5}})
    rows = [r["model"] for b in leaderboard.boards(store, "synthetic-rating") for r in b["rows"]]
    assert rows == ["mb"]


def test_onnxruntime_pin_is_the_modules_verified_range():
    from packaging.requirements import Requirement

    from recarena_serve.db import VERIFIED_ORT

    deps = tomllib.loads((ROOT / "serve/pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d).specifier for d in deps if Requirement(d).name == "onnxruntime")
    lo, hi = VERIFIED_ORT
    assert {str(s) for s in spec} == {f">=1.{lo}", f"<1.{hi + 1}"}
    assert f"1.{lo}.0" in spec and f"1.{hi}.9" in spec and f"1.{hi + 1}.0" not in spec
    import onnxruntime

    assert onnxruntime.__version__ in spec, "the installed onnxruntime is outside the verified range"


def _train_cmd(home: Path, *extra: str) -> tuple[list[str], dict]:
    env = {**os.environ, "RECARENA_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "recarena.cli", "train", "biased-mf", "--protocol", "synthetic-rating", "-d", "synthetic-20000",
           "--no-progress", "--set", "epochs=500", "--set", "trainer.patience=500", *extra]
    return cmd, env


@pytest.mark.slow
# SIGINT takes the same path (exit 130); one signal keeps the suite's time down
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143)])
def test_a_signal_during_training_records_nothing(sig, code, tmp_path):
    """SIGTERM / SIGINT well into training: exit 143 / 130 with one line, nothing recorded,
    no run folder left."""
    cmd, env = _train_cmd(tmp_path)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/owner.json")):
        time.sleep(0.2)
    time.sleep(10 if sig == signal.SIGTERM else 2)  # the bar: SIGTERM 10 s into the fit
    assert p.poll() is None, p.communicate()
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == code, err[-2000:]
    assert f"stopped by {signal.Signals(sig).name}; nothing recorded" in err
    assert "Traceback" not in err
    assert _store_rows(tmp_path) == []
    assert not any((tmp_path / "runs").iterdir())


def test_gc_removes_only_orphans(tmp_path, monkeypatch, capsys):
    """After a SIGKILL the run folder stays; gc removes it, but never a live run's folder, a
    recorded run's, or one owned by another host."""
    monkeypatch.setenv("RECARENA_HOME", str(tmp_path))
    store = ResultsStore()
    runs = tmp_path / "runs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import psutil

    me = psutil.Process()
    owners = {
        "killed": {"pid": dead.pid, "created": time.time() - 100, "host": os.uname().nodename},
        "live": {"pid": me.pid, "created": me.create_time(), "host": os.uname().nodename},
        "elsewhere": {"pid": 1, "created": 0, "host": "another-host"},
        "recorded": {"pid": dead.pid, "created": 0, "host": os.uname().nodename},
    }
    for name, o in owners.items():
        (runs / name).mkdir(parents=True)
        (runs / name / "owner.json").write_text(json.dumps(o))
    store.record({"run_id": "recorded", "model": "m", "dataset": "d", "protocol": "p", "seed": 0, "status": "failed",
                  "config": {}, "config_hash": "x", "run_hash": "x"})
    assert [d.name for d in orphan_run_dirs(store, min_age=0)] == ["killed"]
    rc, text = _run(["gc", "--min-age", "0"], capsys)
    assert rc == 0 and "1 orphaned run folder(s) removed" in text
    assert sorted(d.name for d in runs.iterdir()) == ["elsewhere", "live", "recorded"]


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_store_survives(tmp_path, capsys, monkeypatch):
    """RECARENA_HOME on a 3 MiB tmpfs, filled: training says so in one line (exit 2), the store
    keeps its runs, and the leaderboard still reads them."""
    home = tmp_path / "home"
    home.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(home)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        monkeypatch.setenv("RECARENA_HOME", str(home))
        rc, text = _run(TRAIN + ["-d", "synthetic-300", "--set", "dim=2"], capsys)
        assert rc == 0, text
        before = _store_rows(home)
        with open(home / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        rc, text = _run(TRAIN + ["-d", "synthetic-300", "--set", "dim=2"], capsys)
        assert rc == 2 and "Traceback" not in text, text
        assert any(p in text for p in ("not written", "could not be written", "no space left")), text
        rc, text = _run(["leaderboard"], capsys)
        assert rc == 0 and "biased-mf" in text, text
        (home / "filler").unlink()
        assert _store_rows(home) == before
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def test_bundle_paths_outside_the_folder_are_refused(tmp_path):
    """A manifest naming ../outside.onnx or /etc/passwd is refused before the database is
    contacted (the real-server version is in serve/tests/test_serving.py)."""
    from recarena.errors import RecArenaError
    from recarena_serve.serving import Bundle

    b = tmp_path / "b"
    b.mkdir()
    for f in ("ids.json", "probe.json"):
        (b / f).write_text("{}")
    for f in ("seen_indptr.npy", "seen_indices.npy"):
        (b / f).write_bytes(b"")
    base = {"model": "m", "n_users": 1, "n_items": 1, "files": {}}
    for target in ("../outside.onnx", "/etc/passwd"):
        (b / "manifest.json").write_text(json.dumps({**base, "graphs": [{"kind": "recommend", "k": 1, "file": target}]}))
        with pytest.raises(RecArenaError, match="points outside the bundle folder"):
            Bundle.open(b)
    (b / "manifest.json").write_text('{"model": "m",\n "n_users": }')
    with pytest.raises(RecArenaError, match=r"manifest.json:2: not valid JSON"):
        Bundle.open(b)
    (b / "manifest.json").write_text(json.dumps({**base, "n_users": -1, "graphs": []}))
    with pytest.raises(RecArenaError, match="'n_users' must be a non-negative integer"):
        Bundle.open(b)
    shutil.rmtree(b)
