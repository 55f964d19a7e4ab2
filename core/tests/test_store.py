"""The results store survives a writer killed mid-write (SIGKILL), and stays readable."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from recarena.store import ResultsStore

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


def test_sigkill_mid_write_leaves_a_consistent_store(tmp_path):
    db = tmp_path / "results.db"
    ResultsStore(db)
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = ResultsStore(db).runs()
    assert len(rows) >= 20
    for r in rows:  # every row is whole: its JSON parses and matches its seed
        assert r["config"]["k"] == r["seed"] and r["test_metrics"]["ndcg@10"] == r["seed"] / 1e6


def test_record_and_query(tmp_path):
    s = ResultsStore(tmp_path / "r.db")
    s.record({"run_id": "a1", "model": "m", "dataset": "d", "protocol": "p", "seed": 0, "status": "failed",
              "config": {}, "config_hash": "h", "run_hash": "h0", "error": "boom"})
    assert s.runs() == [] and s.runs(status="failed")[0]["error"] == "boom"
    assert s.get("a")["run_id"] == "a1"
    assert json.loads(json.dumps(s.get("a1")["config"])) == {}
