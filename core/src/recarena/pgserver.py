"""A throwaway PostgreSQL server for tests and local trials: ``initdb`` into a temporary folder,
listening on 127.0.0.1 at a free port, stopped by PID.

Uses Debian's ``postgresql`` package (``just setup`` installs it). PostgreSQL refuses to run as
root: as root the server runs as the ``postgres`` user the package creates, in a folder given to
that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def find_bin(name: str) -> str | None:
    """``initdb`` / ``postgres`` from PATH or Debian's versioned folder (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    return None


def available() -> bool:
    return find_bin("initdb") is not None and find_bin("postgres") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``with PostgresServer() as pg: pg.url``: a fresh cluster, trust auth on loopback only."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder or tempfile.mkdtemp(prefix="recarena-pg-"))
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        import pwd

        pw = pwd.getpwnam("postgres")  # created by Debian's package
        os.chown(self.folder, pw.pw_uid, pw.pw_gid)
        return ["runuser", "-u", "postgres", "--"]

    def start(self, timeout: float = 60.0) -> PostgresServer:
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        if not initdb or not postgres:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; just setup does)")
        self.folder.mkdir(parents=True, exist_ok=True)
        prefix = self._as_owner()
        data = self.folder / "data"
        subprocess.run(prefix + [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, text=True)
        log = open(self.folder / "server.log", "ab")
        self.proc = subprocess.Popen(
            prefix + [postgres, "-D", str(data), "-p", str(self.port), "-k", str(self.folder),
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                import psycopg

                psycopg.connect(self.url, connect_timeout=2).close()
                return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start:\n{tail}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
