"""The results store, on SQLite and on PostgreSQL (a real server the fixture starts): runs
survive a writer killed mid-write (SIGKILL), concurrent writers lose and duplicate nothing,
and the schema is migrated forward by numbered steps shared by both backends."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from recarena.errors import RecArenaError
from recarena.store import SCHEMA_VERSION, ResultsStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def location(request, tmp_path):
    """A fresh, empty store location on each backend (a new database per test on PostgreSQL)."""
    if request.param == "sqlite":
        return str(tmp_path / "results.db")
    return request.getfixturevalue("postgres_url")


WRITER = r"""
import sys, time
from recarena.store import ResultsStore
s = ResultsStore(sys.argv[1])
k = 0
while True:
    k += 1
    s.record({"run_id": f"r{k}", "model": "m", "dataset": "d", "protocol": "p", "seed": k, "status": "ok",
              "config": {"k": k, "pad": "x" * 20000}, "config_hash": "h", "run_hash": f"h{k}",
              "test_metrics": {"ndcg@10": k / 1e6}, "valid_metrics": {"ndcg@10": k / 1e6}})
    if k == 20:
        print("ready", flush=True)
"""


def test_sigkill_mid_write_leaves_a_consistent_store(location):
    ResultsStore(location)
    p = subprocess.Popen([sys.executable, "-c", WRITER, location], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    if not location.startswith("postgresql"):
        with sqlite3.connect(location) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = ResultsStore(location).runs()
    assert len(rows) >= 20
    for r in rows:  # every row is whole: its JSON parses and matches its seed
        assert r["config"]["k"] == r["seed"] and r["test_metrics"]["ndcg@10"] == r["seed"] / 1e6


def test_record_and_query(location):
    s = ResultsStore(location)
    s.record({"run_id": "a1", "model": "m", "dataset": "d", "protocol": "p", "seed": 0, "status": "failed",
              "config": {}, "config_hash": "h", "run_hash": "h0", "error": "boom"})
    assert s.runs() == [] and s.runs(status="failed")[0]["error"] == "boom"
    assert s.get("a")["run_id"] == "a1" and s.get("a_") is None  # a prefix; '_' is not a wildcard
    assert json.loads(json.dumps(s.get("a1")["config"])) == {}
    t = 1_796_000_000.123456  # a timestamp keeps its microseconds (8-byte floats on both)
    s.record({"run_id": "a1", "model": "m", "dataset": "d", "protocol": "p", "seed": 0, "status": "ok",
              "config": {"x": 1}, "config_hash": "h", "run_hash": "h0", "finished_at": t, "valid_metrics": {"ndcg@10": 0.5}})
    (row,) = s.runs()
    assert row["finished_at"] == t and row["config"] == {"x": 1} and s.count() == 1  # replaced, not added
    s.add_to_sweep("sw", ["a1"])
    s.add_to_sweep("sw", ["a1"])  # idempotent
    assert [r["run_id"] for r in s.runs(sweep="sw")] == ["a1"]
    with pytest.raises(RecArenaError, match="Cannot record run fields \\['bogus'\\]"):
        s.record({"run_id": "b", "model": "m", "dataset": "d", "protocol": "p", "seed": 0, "status": "ok",
                  "config": {}, "config_hash": "h", "run_hash": "h", "bogus": 1})
    assert s.schema_version() == SCHEMA_VERSION


CONCURRENT = r"""
import sys
from recarena.store import ResultsStore
loc, w, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = ResultsStore(loc)  # opened by all 8 at once: they race to create the schema
for k in range(n):
    s.record({"run_id": f"w{w}-{k}", "model": "m", "dataset": "d", "protocol": "p", "seed": k,
                              "status": "ok", "config": {"w": w, "k": k}, "config_hash": f"c{w}", "run_hash": f"h{w}-{k}",
                              "valid_metrics": {"ndcg@10": (w * 1000 + k) / 1e6}})
"""


@pytest.mark.slow
def test_eight_processes_record_fifty_runs_each_at_once(location):
    """8 processes x 50 runs into one new store at once (all opening it at once race to create
    the schema): 400 rows, none lost, none doubled, each whole."""
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, location, str(w), "50"], stderr=subprocess.PIPE, text=True)
             for w in range(8)]
    errors = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    rows = ResultsStore(location).runs()
    assert len(rows) == 400 and len({r["run_id"] for r in rows}) == 400
    for r in rows:
        w, k = map(int, r["run_id"][1:].split("-"))
        assert r["config"] == {"w": w, "k": k} and r["valid_metrics"]["ndcg@10"] == (w * 1000 + k) / 1e6


def test_a_store_from_before_versions_is_migrated_and_a_newer_one_refused(tmp_path):
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as con:  # the first schema, as RecArena wrote it before protocol hashes
        con.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, model TEXT NOT NULL, dataset TEXT NOT NULL, "
                    "protocol TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, config_json TEXT NOT NULL, "
                    "config_hash TEXT NOT NULL, run_hash TEXT NOT NULL, code_version TEXT, started_at REAL, "
                    "finished_at REAL, fit_seconds REAL, eval_seconds REAL, peak_memory_mb REAL, environment_json TEXT, "
                    "valid_metrics_json TEXT, test_metrics_json TEXT, history_json TEXT, artifact_path TEXT, sweep TEXT, "
                    "error TEXT)")
        con.execute("INSERT INTO runs (run_id, model, dataset, protocol, seed, status, config_json, config_hash, run_hash) "
                    "VALUES ('old1', 'm', 'd', 'p', 0, 'ok', '{}', 'h', 'h0')")
    s = ResultsStore(old)
    assert s.schema_version() == SCHEMA_VERSION
    assert s.runs()[0]["run_id"] == "old1" and s.runs()[0]["protocol_hash"] is None
    with sqlite3.connect(old) as con:
        con.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(RecArenaError, match="schema version 99, newer than this RecArena's"):
        ResultsStore(old)


@pytest.mark.postgres
def test_the_store_comes_from_recarena_store(postgres_url, monkeypatch, tmp_path):
    monkeypatch.setenv("RECARENA_STORE", postgres_url)
    s = ResultsStore()
    assert s.backend == "postgresql" and s.path is None and "127.0.0.1" in repr(s)
    monkeypatch.setenv("RECARENA_STORE", "postgresql://nobody:pw@127.0.0.1:1/none")
    with pytest.raises(RecArenaError, match="Cannot reach the results store postgresql://nobody:\\*\\*\\*@127.0.0.1:1/none"):
        ResultsStore()
