"""Multi-process training through Lightning on CPU (gloo): `--set trainer.strategy=ddp
trainer.devices=2` runs two processes, rank 0 alone evaluates and records one run, and the
metric is within .005 of one process's on the same seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recarena.store import ResultsStore

CLI = str(Path(sys.executable).with_name("recarena"))


def train(home: Path, model: str, protocol: str, metric: str, *sets: str) -> tuple[float, str]:
    out = subprocess.run([CLI, "train", model, "--protocol", protocol, "--dataset", "synthetic-4000", "--json",
                          "--no-progress", "--set", "trainer.accelerator=cpu", *[a for s in sets for a in ("--set", s)]],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "RECARENA_HOME": str(home), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])["metrics"][metric], out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("model,protocol,metric,sets", [
    ("biased-mf", "synthetic-rating", "rmse", ["epochs=3", "dim=8"]),
    ("bpr", "synthetic-rank", "ndcg@10", ["epochs=6", "dim=8"]),  # converged: at 3 epochs the two still differ
])
def test_ddp_on_cpu_records_one_run_and_matches_one_process(tmp_path, model, protocol, metric, sets):
    one, _ = train(tmp_path / "one", model, protocol, metric, *sets)
    two, log = train(tmp_path / "two", model, protocol, metric, *sets, "trainer.strategy=ddp", "trainer.devices=2")
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # the second process ran
    assert log.count(f"{model} on {protocol}") == 1  # and only rank 0 evaluated and reported
    runs = ResultsStore(tmp_path / "two" / "results.db").runs(status=None)
    assert len(runs) == 1 and runs[0]["status"] == "ok"
    assert [p.name for p in (tmp_path / "two" / "runs").iterdir()] == [runs[0]["run_id"]]
    print(f"{model} {metric}: one process {one:.4f}, ddp x2 {two:.4f}")
    assert abs(two - one) <= 0.005, (one, two)


SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_ddp_is_refused_on_a_refit_protocol(tmp_path):
    if not (SHARED / "ml-100k").exists():
        pytest.skip("../shared/data/ml-100k is not here")
    out = subprocess.run([CLI, "train", "bpr", "--protocol", "ml100k-seq-loo", "--set", "trainer.strategy=ddp",
                          "--set", "trainer.devices=2", "--data-dir", str(SHARED)], capture_output=True, text=True,
                         env={**os.environ, "RECARENA_HOME": str(tmp_path / "h")})
    assert out.returncode == 2 and "refits on train + valid" in " ".join(out.stderr.split()), out.stderr[-2000:]
