"""The results store: SQLite in WAL mode under ``RECARENA_HOME`` by default, or PostgreSQL.

``ResultsStore(location)``: a path (SQLite), or a ``postgresql://`` URL; without one,
``$RECARENA_STORE``, else ``RECARENA_HOME/results.db``. Both backends share one schema, built
by the same numbered migrations (``MIGRATIONS``) and recorded in ``schema_version``: a store
opened by a newer RecArena is migrated forward in one transaction, under a lock (SQLite's
write lock, a PostgreSQL advisory lock), so processes opening it at once migrate it once.

A run is written in a single transaction when it ends, so a killed run leaves either its
complete row or nothing; readers never see half a run. On a cluster, use PostgreSQL: SQLite's
locking is not safe on a network filesystem.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recarena.paths import home

#: the schema, as numbered steps; ``{real}`` is REAL on SQLite, DOUBLE PRECISION on PostgreSQL
#: (PostgreSQL's REAL is 4 bytes: timestamps would lose their seconds)
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, ["""CREATE TABLE IF NOT EXISTS runs (
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
    started_at {real},
    finished_at {real},
    fit_seconds {real},
    eval_seconds {real},
    peak_memory_mb {real},
    environment_json TEXT,
    valid_metrics_json TEXT,
    test_metrics_json TEXT,
    history_json TEXT,
    artifact_path TEXT,
    sweep TEXT,
    error TEXT
)""",
         "CREATE INDEX IF NOT EXISTS runs_protocol ON runs(protocol, model, status)",
         # runs a sweep counted as done without running them (recorded earlier, by another sweep or none)
         "CREATE TABLE IF NOT EXISTS sweep_members (sweep TEXT NOT NULL, run_id TEXT NOT NULL, PRIMARY KEY (sweep, run_id))",
         "CREATE INDEX IF NOT EXISTS runs_hash ON runs(run_hash)"]),
    # the protocol's content hash (NULL: recorded before hashes); sha256 of the data files read
    (2, ["ALTER TABLE runs ADD COLUMN protocol_hash TEXT", "ALTER TABLE runs ADD COLUMN data_checksums_json TEXT"]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

JSON_COLS = ("config", "environment", "valid_metrics", "test_metrics", "history", "data_checksums")
RUN_COLUMNS = ("run_id", "model", "dataset", "protocol", "seed", "status", "config_json", "config_hash", "run_hash",
               "code_version", "started_at", "finished_at", "fit_seconds", "eval_seconds", "peak_memory_mb",
               "environment_json", "valid_metrics_json", "test_metrics_json", "history_json", "artifact_path", "sweep",
               "error", "protocol_hash", "data_checksums_json")


def is_url(location) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


class ResultsStore:
    def __init__(self, location: Path | str | None = None):
        location = location or os.environ.get("RECARENA_STORE") or None
        #: why the store can only be read (a full disk, a read-only folder), or None
        self.read_only: str | None = None
        if is_url(location):
            self.url: str | None = str(location)
            self.path: Path | None = None
            self.backend = "postgresql"
            self._ph = "%s"
            self._migrate()
            return
        self.url, self.backend, self._ph = None, "sqlite", "?"
        self.path = Path(location) if location else home() / "results.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._migrate()
        except sqlite3.OperationalError as e:
            if not self.path.exists() or self.path.stat().st_size == 0:
                raise
            # reading needs no space: leaderboards and reports keep working on a full disk
            self.read_only = str(e)

    def __repr__(self) -> str:
        return f"ResultsStore({self.where!r})"

    @property
    def where(self) -> str:
        """The store's location as a user wrote it, the password left out."""
        if self.url:
            from urllib.parse import urlsplit

            u = urlsplit(self.url)
            if "@" not in u.netloc:
                return self.url
            user, host = u.netloc.rsplit("@", 1)
            return u._replace(netloc=f"{user.split(':', 1)[0]}{':***' if ':' in user else ''}@{host}").geturl()
        return str(self.path)

    # ------------------------------------------------------------ connections
    def _connect(self):
        if self.url:
            try:
                import psycopg
                from psycopg.rows import dict_row
            except ImportError:
                from recarena.errors import RecArenaError

                raise RecArenaError("A PostgreSQL results store needs psycopg 3: pip install 'psycopg[binary]>=3.2,<4' "
                                    "(just setup installs it).") from None
            try:
                return psycopg.connect(self.url, row_factory=dict_row, connect_timeout=10)
            except psycopg.OperationalError as e:
                from recarena.errors import RecArenaError

                raise RecArenaError(f"Cannot reach the results store {self.where}: {str(e).strip().splitlines()[-1]}") from None
        if self.read_only is not None:
            # immutable: no -shm/-wal to create; a closed WAL database holds every committed run
            con = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, timeout=60)
            con.row_factory = sqlite3.Row
            return con
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)  # transactions are ours
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.row_factory = sqlite3.Row
        return con

    @contextmanager
    def _tx(self, lock: bool = False):
        """One transaction (committed on success, rolled back on error), then closed.
        ``lock``: take the store's write lock first (schema migrations)."""
        con = self._connect()
        try:
            if self.url:
                with con.transaction():
                    if lock:
                        con.execute("SELECT pg_advisory_xact_lock(734291)")  # RecArena's migration lock
                    yield con
            else:
                con.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        finally:
            con.close()

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._ph)

    def _read(self, sql: str, args=()) -> list[dict]:
        con = self._connect()
        try:
            return [dict(r) for r in con.execute(self._q(sql), args).fetchall()]
        finally:
            con.close()

    # ------------------------------------------------------------ schema
    def _columns(self, con) -> set[str]:
        if self.url:
            rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                               "AND table_name = 'runs'").fetchall()
            return {r["column_name"] for r in rows}
        return {r["name"] for r in con.execute("PRAGMA table_info(runs)")}

    def _migrate(self) -> None:
        real = "DOUBLE PRECISION" if self.url else "REAL"
        with self._tx(lock=True) as con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = con.execute("SELECT version FROM schema_version").fetchone()
            if row is not None:
                version = row["version"] if isinstance(row, dict) else row[0]
            else:
                # a store from before versions: what its runs table already has
                cols = self._columns(con)
                version = 0 if not cols else (2 if "protocol_hash" in cols else 1)
                con.execute(self._q("INSERT INTO schema_version (version) VALUES (?)"), (version,))
            if version > SCHEMA_VERSION:
                from recarena.errors import RecArenaError

                raise RecArenaError(f"The results store {self.where} has schema version {version}, newer than this "
                                    f"RecArena's {SCHEMA_VERSION}: upgrade RecArena to use it.")
            for number, steps in MIGRATIONS:
                if number > version:
                    for step in steps:
                        con.execute(step.format(real=real))
            if version < SCHEMA_VERSION:
                con.execute(self._q("UPDATE schema_version SET version = ?"), (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        return self._read("SELECT version FROM schema_version")[0]["version"]

    def check_writable(self) -> None:
        """Raise before any work when a run could not be recorded."""
        if self.read_only is not None:
            from recarena.errors import RecArenaError

            raise RecArenaError(f"The results store {self.path} can be read but not written ({self.read_only}): "
                                "a full disk or a read-only folder. Nothing was run.")

    # ------------------------------------------------------------ runs
    def record(self, run: dict[str, Any]) -> None:
        row = dict(run)
        for c in JSON_COLS:
            if c in row:
                row[f"{c}_json"] = json.dumps(row.pop(c), default=str)
        row.setdefault("finished_at", time.time())
        unknown = sorted(set(row) - set(RUN_COLUMNS))
        if unknown:
            from recarena.errors import RecArenaError

            raise RecArenaError(f"Cannot record run fields {unknown}: the store's columns are {list(RUN_COLUMNS)}.")
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        if self.url:
            update = ", ".join(f"{c} = EXCLUDED.{c}" for c in row if c != "run_id")
            sql = f"INSERT INTO runs ({cols}) VALUES ({marks}) ON CONFLICT (run_id) DO UPDATE SET {update}"
        else:
            sql = f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})"
        with self._tx() as con:
            con.execute(self._q(sql), list(row.values()))

    def runs(self, protocol: str | None = None, status: str | None = "ok", model: str | None = None, sweep: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM runs WHERE 1=1", []
        for col, val in (("protocol", protocol), ("status", status), ("model", model)):
            if val is not None:
                q += f" AND {col} = ?"
                args.append(val)
        if sweep is not None:  # its own runs and those it reused
            q += " AND (sweep = ? OR run_id IN (SELECT run_id FROM sweep_members WHERE sweep = ?))"
            args += [sweep, sweep]
        q += " ORDER BY finished_at, run_id"
        rows = self._read(q, args)
        for r in rows:
            for c in JSON_COLS:
                v = r.pop(f"{c}_json", None)
                r[c] = json.loads(v) if v else None
        return rows

    def add_to_sweep(self, sweep: str, run_ids: list[str]) -> None:
        """Count already-recorded runs as part of ``sweep`` (it reused them instead of running)."""
        if not run_ids:
            return
        sql = ("INSERT INTO sweep_members (sweep, run_id) VALUES (?, ?) ON CONFLICT DO NOTHING" if self.url
               else "INSERT OR IGNORE INTO sweep_members (sweep, run_id) VALUES (?, ?)")
        with self._tx() as con:
            if self.url:
                with con.cursor() as cur:
                    cur.executemany(self._q(sql), [(sweep, r) for r in run_ids])
            else:
                con.executemany(sql, [(sweep, r) for r in run_ids])

    def get(self, run_id: str) -> dict[str, Any] | None:
        like = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        row = self._read("SELECT run_id FROM runs WHERE run_id = ? OR run_id LIKE ? ESCAPE '\\'", (run_id, like))
        if len(row) != 1:
            exact = [r for r in row if r["run_id"] == run_id]
            if len(exact) != 1:
                return None
            row = exact
        return next(r for r in self.runs(status=None) if r["run_id"] == row[0]["run_id"])

    def count(self) -> int:
        return self._read("SELECT COUNT(*) AS n FROM runs")[0]["n"]


def orphan_run_dirs(store: ResultsStore, min_age: float = 60.0) -> list[Path]:
    """Run folders under ``RECARENA_HOME/runs`` that no record points to and whose training
    process is gone (a run killed by SIGKILL, which cannot clean up after itself).

    A folder is kept while its ``owner.json`` names a live process on this host (a run in
    flight, of this machine or of a sweep), or another host (this machine cannot tell), or
    while it is younger than ``min_age`` seconds."""
    import socket

    import psutil

    runs_dir = (store.path.parent if store.path is not None else home()) / "runs"
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
