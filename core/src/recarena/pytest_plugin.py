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
