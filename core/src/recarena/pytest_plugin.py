"""The conformance kit as a pytest plugin (entry point ``pytest11: recarena``), loaded by
pytest wherever recarena is installed.

Every test that :func:`recarena.testing.parametrize_with_checks` generates (marked
``recarena_kit``), and every test that asks for the ``recarena_home`` fixture, runs with
``RECARENA_HOME`` in its own temporary folder, downloads nothing and keeps wandb off: a
plugin's tests can never write into the user's home.
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "recarena_kit: a RecArena conformance-kit check (isolated RECARENA_HOME)")
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (the recarena_postgres fixture starts one)")


@pytest.fixture
def recarena_home(tmp_path, monkeypatch):
    """A fresh ``RECARENA_HOME`` under the test's temporary folder (returned as a Path)."""
    from recarena.testing import isolate_home

    home = tmp_path / "recarena-home"
    isolate_home(monkeypatch, home)
    return home


@pytest.fixture(autouse=True)
def _recarena_kit_isolation(request):
    if request.node.get_closest_marker("recarena_kit") is not None:
        request.getfixturevalue("recarena_home")
    yield


@pytest.fixture(scope="session")
def recarena_postgres():
    """A PostgreSQL server for the session (``recarena.pgserver``: initdb in a temporary
    folder, 127.0.0.1 at a free port, stopped by PID); skips when PostgreSQL is not installed."""
    from recarena import pgserver

    if not pgserver.available():
        pytest.skip("PostgreSQL is not installed (just setup installs Debian's postgresql)")
    pytest.importorskip("psycopg")
    server = pgserver.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(recarena_postgres):
    """The URL of a new, empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(recarena_postgres.url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    return recarena_postgres.url.rsplit("/", 1)[0] + "/" + name
