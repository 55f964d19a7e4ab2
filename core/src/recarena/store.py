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
        #: why the store can only be read (a full disk, a read-only folder), or None
        self.read_only: str | None = None
        try:
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
        except sqlite3.OperationalError as e:
            if not self.path.exists() or self.path.stat().st_size == 0:
                raise
            # reading needs no space: leaderboards and reports keep working on a full disk
            self.read_only = str(e)

    def _connect(self) -> sqlite3.Connection:
        if self.read_only is not None:
            # immutable: no -shm/-wal to create; a closed WAL database holds every committed run
            con = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, timeout=60)
            con.row_factory = sqlite3.Row
            return con
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.row_factory = sqlite3.Row
        return con

    def check_writable(self) -> None:
        """Raise before any work when a run could not be recorded."""
        if self.read_only is not None:
            from recarena.errors import RecArenaError

            raise RecArenaError(f"The results store {self.path} can be read but not written ({self.read_only}): "
                                "a full disk or a read-only folder. Nothing was run.")

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


def orphan_run_dirs(store: ResultsStore, min_age: float = 60.0) -> list[Path]:
    """Run folders under ``RECARENA_HOME/runs`` that no record points to and whose training
    process is gone (a run killed by SIGKILL, which cannot clean up after itself).

    A folder is kept while its ``owner.json`` names a live process on this host (a run in
    flight, of this machine or of a sweep), or another host (this machine cannot tell), or
    while it is younger than ``min_age`` seconds."""
    import socket

    import psutil

    runs_dir = store.path.parent / "runs"
    if not runs_dir.is_dir():
        return []
    recorded = {r["run_id"] for r in store.runs(status=None)}
    now, host, out = time.time(), socket.gethostname(), []
    for d in sorted(runs_dir.iterdir()):
        if not d.is_dir() or d.name in recorded or now - d.stat().st_mtime < min_age:
            continue
        owner = d / "owner.json"
        if owner.exists():
            try:
                o = json.loads(owner.read_text())
            except (OSError, ValueError):
                o = {}
            if o.get("host") != host:
                continue
            try:
                p = psutil.Process(int(o["pid"]))
                if abs(p.create_time() - float(o["created"])) < 1.0:
                    continue  # the run is still going
            except (psutil.Error, KeyError, ValueError, TypeError):
                pass
        out.append(d)
    return out
