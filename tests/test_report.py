"""recarena report (static HTML + Markdown, checked in headless Chromium) and the UMAP maps."""

from __future__ import annotations

import time

import numpy as np
import pytest

from recarena import runner
from recarena.store import ResultsStore
from recarena_viz.report import collect, paired_test, write

QUIET = dict(progress=False, log=lambda *a, **k: None)


@pytest.fixture
def store_with_runs():
    for seed in (0, 1):
        runner.train("pop", "synthetic-rank", dataset="synthetic-4000", seed=seed, sweep="rep", **QUIET)
        for lr in (0.01, 0.05):
            runner.train("bpr", "synthetic-rank", dataset="synthetic-4000", seed=seed, sweep="rep",
                         sets=["epochs=2", "dim=8", f"lr={lr}", "trainer.logger=none"], **QUIET)
    store = ResultsStore()
    store.record({"run_id": "failed-1", "model": "bpr", "dataset": "synthetic-4000", "protocol": "synthetic-rank", "seed": 5,
                  "status": "failed", "config": {"params": {}}, "config_hash": "x", "run_hash": "y", "started_at": time.time(),
                  "finished_at": time.time(), "sweep": "rep", "error": "memory limit: 700 MiB resident > 600 MiB (killed)\n--- log tail ---\n..."})
    runner.train("pop", "synthetic-rank", dataset="synthetic-4000", sweep="other", **QUIET)
    return store


def test_paired_test_by_hand():
    best = [{"seed": s, "test_metrics": {"m": v}} for s, v in [(0, 0.30), (1, 0.32), (2, 0.31)]]
    other = [{"seed": s, "test_metrics": {"m": v}} for s, v in [(0, 0.25), (1, 0.28), (2, 0.26)]]
    r = paired_test(best, other, "m")
    # differences 0.05, 0.04, 0.05: mean 0.04667, sd 0.005774, t = 14.0 with 2 df -> p = 0.00506
    assert r["n"] == 3 and r["p"] == pytest.approx(0.00506, rel=1e-2) and r["diff"] == pytest.approx(-0.04667, rel=1e-3)
    assert paired_test(best[:1], other[:1], "m")["p"] is None


def test_report_tables_significance_failures(store_with_runs, tmp_path):
    rep = collect(store_with_runs, "rep")
    assert [s["board"]["protocol"] for s in rep["sections"]] == ["synthetic-rank"]
    sec = rep["sections"][0]
    assert {r["model"] for r in sec["board"]["rows"]} == {"pop", "bpr"}
    assert len(sec["runs"]) == 6  # the other sweep's run is not in this report
    assert sec["board"]["rows"][1]["significance"]["test"] == "paired t-test over seeds"
    page = write(rep, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| dim=8, lr=0.0" in md and ", epochs=2 |" in md  # the winning configuration, as it differs from the defaults
    assert "| 1 | pop | 2 |" in md and "vs best" in md and "### Failed runs" in md and "memory limit: 700 MiB" in md
    assert "images/synthetic-rank-synthetic-4000-sens-bpr.png" in md  # lr varies across bpr's runs
    for img in ("leaderboard", "quality-vs-time", "curves", "sens-bpr"):
        assert (tmp_path / "report" / "images" / f"synthetic-rank-synthetic-4000-{img}.png").stat().st_size > 5000
    assert page.read_text().count("<table>") == 2


@pytest.mark.slow
def test_report_renders_in_headless_chromium(store_with_runs, tmp_path):
    pytest.importorskip("playwright")
    from recarena_viz.browser import check_page, find_chromium, is_blank

    if find_chromium() is None:
        pytest.skip("no Chromium installed (just setup installs Debian's chromium)")
    page = write(collect(store_with_runs, "rep"), tmp_path / "report")
    info = check_page(page, tmp_path / "shot.png")
    assert info["console_errors"] == [] and info["broken_images"] == []
    assert info["tables"] == 2 and len(info["images"]) >= 4
    assert not is_blank(tmp_path / "shot.png")


@pytest.mark.slow
def test_embedding_maps_png_and_html_deterministic(tmp_path):
    from recarena_viz.embeddings import embedding_map, project

    s = runner.train("bpr", "synthetic-rank", dataset="synthetic-4000", sets=["epochs=2", "dim=8", "trainer.logger=none"], **QUIET)
    png = embedding_map(s["run_id"], tmp_path / "items.png", seed=3)
    assert png.stat().st_size > 10_000
    a = embedding_map(s["run_id"], tmp_path / "a.html", seed=3).read_text()
    b = embedding_map(s["run_id"], tmp_path / "b.html", seed=3).read_text()
    assert a == b, "the same seed must draw the same map"
    assert "<title>Item 0 — " in a or "<title>Item " in a  # hover names are the dataset's titles
    assert "first genre" in a  # synthetic items carry genres
    pop = embedding_map(s["run_id"], tmp_path / "p.html", color_by="popularity", seed=3).read_text()
    assert "top 5%" in pop
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    assert np.array_equal(project(x, seed=1), project(x, seed=1))
