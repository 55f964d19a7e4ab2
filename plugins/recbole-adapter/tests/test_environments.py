"""The adapter changes nothing in the workspace: .venv (without the adapter) and .venv-recbole
(with it) resolve the same versions of everything both hold, pandas excepted (RecBole 1.2.1
needs pandas 2; the workspace has pandas 3), and the workspace neither holds RecBole nor lists
its models."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MAIN = ROOT / ".venv" / "bin" / "python"
SHARED = ["torch", "numpy", "scipy", "lightning", "torchmetrics", "onnx", "onnxruntime", "onnxscript", "scikit-learn",
          "smartredis", "PyYAML", "tqdm"]

pytestmark = pytest.mark.skipif(not MAIN.exists(), reason="the workspace's .venv is not beside this one (just setup)")


def _main(code: str):
    return json.loads(subprocess.run([str(MAIN), "-c", code], capture_output=True, text=True, check=True).stdout)


def test_both_environments_resolve_the_same_versions_but_pandas():
    names = SHARED + ["pandas", "recbole", "recarena-recbole"]
    theirs = _main("import json; from importlib.metadata import version, PackageNotFoundError\n"
                   "def v(n):\n    try: return version(n)\n    except PackageNotFoundError: return None\n"
                   f"print(json.dumps({{n: v(n) for n in {names!r}}}))")
    ours = {n: version(n) for n in names}
    assert {n: theirs[n] for n in SHARED} == {n: ours[n] for n in SHARED}
    assert theirs["pandas"].split(".")[0] == "3" and ours["pandas"].split(".")[0] == "2"
    assert theirs["recbole"] is None and theirs["recarena-recbole"] is None
    assert ours["recbole"] == "1.2.1"


def test_the_workspace_lists_no_recbole_model():
    listed = _main("import json; from recarena import plugins; print(json.dumps(plugins.available()))")
    assert "bpr" in listed and not [n for n in listed if n.startswith("recbole/")]
    here = subprocess.run([sys.executable, "-c", "from recarena import plugins; print(len(plugins.available()))"],
                          capture_output=True, text=True, check=True).stdout
    assert int(here) >= 94
