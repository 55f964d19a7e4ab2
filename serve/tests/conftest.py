import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test writes under its own RECARENA_HOME and never downloads."""
    monkeypatch.setenv("RECARENA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RECARENA_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", os.environ.get("RECARENA_TEST_WANDB", "disabled"))
    yield
