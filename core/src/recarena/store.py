"""The results store: SQLite in WAL mode under ``RECARENA_HOME``.

A run is written in a single transaction when it ends, so a killed run leaves either its
complete row or nothing; readers never see half a run.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from recarena.paths import home

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,            -- ok | failed
    config_json TEXT NOT NULL,
    config_hash TEXT NOT NULL,       -- without the seed: groups seeds of one configuration
    run_hash TEXT NOT NULL,          -- with the seed
    code_version TEXT,
    started_at REAL,
    finished_at REAL,
    fit_seconds REAL,
    eval_seconds REAL,
    peak_memory_mb REAL,
    environment_json TEXT,
    valid_metrics_json TEXT,
    test_metrics_json TEXT,
    history_json TEXT,
    artifact_path TEXT,
    sweep TEXT,
    error TEXT,
    protocol_hash TEXT,              -- the protocol's content hash (NULL: recorded before hashes)
    data_checksums_json TEXT         -- sha256 of the data files the run read
);
CREATE INDEX IF NOT EXISTS runs_protocol ON runs(protocol, model, status);
-- runs a sweep counted as done without running them (recorded earlier, by another sweep or none)
CREATE TABLE IF NOT EXISTS sweep_members (sweep TEXT NOT NULL, run_id TEXT NOT NULL, PRIMARY KEY (sweep, run_id));
CREATE INDEX IF NOT EXISTS runs_hash ON runs(run_hash);
"""

JSON_COLS = ("config", "environment", "valid_metrics", "test_metrics", "history", "data_checksums")
#: columns added after the first schema: an older store gets them on open (NULL for old runs)
ADDED_COLUMNS = {"protocol_hash": "TEXT", "data_checksums_json": "TEXT"}


class ResultsStore:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else home() / "results.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._connect()
        try:
            with con:
                con.executescript(SCHEMA)
                have = {r["name"] for r in con.execute("PRAGMA table_info(runs)")}
                for col, kind in ADDED_COLUMNS.items():
                    if col not in have:
                        con.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
        finally:
            con.close()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.row_factory = sqlite3.Row
        return con

    def record(self, run: dict[str, Any]) -> None:
        row = dict(run)
        for c in JSON_COLS:
            if c in row:
                row[f"{c}_json"] = json.dumps(row.pop(c), default=str)
        row.setdefault("finished_at", time.time())
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        con = self._connect()
        try:
            with con:
                con.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", list(row.values()))
        finally:
            con.close()

    def runs(self, protocol: str | None = None, status: str | None = "ok", model: str | None = None, sweep: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM runs WHERE 1=1", []
        for col, val in (("protocol", protocol), ("status", status), ("model", model)):
            if val is not None:
                q += f" AND {col} = ?"
                args.append(val)
        if sweep is not None:  # its own runs and those it reused
            q += " AND (sweep = ? OR run_id IN (SELECT run_id FROM sweep_members WHERE sweep = ?))"
            args += [sweep, sweep]
        q += " ORDER BY finished_at"
        con = self._connect()
        try:
            rows = [dict(r) for r in con.execute(q, args)]
        finally:
            con.close()
        for r in rows:
            for c in JSON_COLS:
                v = r.pop(f"{c}_json", None)
                r[c] = json.loads(v) if v else None
        return rows

    def add_to_sweep(self, sweep: str, run_ids: list[str]) -> None:
        """Count already-recorded runs as part of ``sweep`` (it reused them instead of running)."""
        if not run_ids:
            return
        con = self._connect()
        try:
            with con:
                con.executemany("INSERT OR IGNORE INTO sweep_members (sweep, run_id) VALUES (?, ?)",
                                [(sweep, r) for r in run_ids])
        finally:
            con.close()

    def get(self, run_id: str) -> dict[str, Any] | None:
        con = self._connect()
        try:
            row = con.execute("SELECT run_id FROM runs WHERE run_id = ? OR run_id LIKE ?", (run_id, run_id + "%")).fetchall()
        finally:
            con.close()
        if len(row) != 1:
            return None
        return next(r for r in self.runs(status=None) if r["run_id"] == row[0]["run_id"])

    def count(self) -> int:
        con = self._connect()
        try:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            con.close()
