"""`recarena serve export`: bundles of leaderboard winners, checked before they are written.

A bundle is a folder ``<out>/<run_id>/`` with the ONNX graph(s) (or, for models without
ONNX, a precomputed top-N table), the raw<->internal id maps, each user's seen items (for
exclusion) and ``manifest.json``. Parity with the plugin is measured in onnxruntime at batch
sizes 1, 7 and 256; a bundle that differs by more than the tolerance is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from recarena import leaderboard, onnx_export
from recarena.base import Recommender, Task
from recarena.errors import RecArenaError
from recarena.store import ResultsStore

TOLERANCE = 1e-4


def pick_runs(store: ResultsStore, protocol: str | None, top: int, run_ids: list[str] | None) -> list[dict]:
    if run_ids:
        runs = []
        for rid in run_ids:
            r = store.get(rid)
            if r is None or r["status"] != "ok":
                raise RecArenaError(f"No completed run {rid!r} in {store.path}.")
            runs.append(r)
        return runs
    if not protocol:
        raise RecArenaError("Name --protocol (to take the leaderboard's best) or --run RUN_ID.")
    board = leaderboard.build(store, protocol)
    if not board["rows"]:
        raise RecArenaError(f"The leaderboard of {protocol!r} has no runs to export.")
    runs = []
    for row in board["rows"][:top]:
        # the best seed of the best configuration
        cands = [store.get(rid) for rid in row["run_ids"]]
        sel = board["select"]
        pick = max if board["mode"] == "max" else min
        runs.append(pick(cands, key=lambda r: r["test_metrics"].get(sel, 0.0)))
    return runs


def _ids(idmap) -> list:
    return [x.item() if hasattr(x, "item") else x for x in idmap.raw]


def export_run(run: dict, out: Path, k: int = 10, tolerance: float = TOLERANCE) -> Path:
    model = Recommender.load(run["artifact_path"])
    if getattr(model, "user_ids_", None) is None:
        raise RecArenaError(
            f"Run {run['run_id']} was saved by a RecArena without id maps in its artifacts; train it again to export it."
        )
    final = out / run["run_id"]
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{run['run_id']}-", dir=out))
    try:
        graphs, parity, table = [], {}, None
        if model.capabilities.onnx:
            graphs = model.export_onnx(stage, k=k)["graphs"]
            parity = onnx_export.parity(model, stage, graphs)
            bad = {f: d for f, d in parity.items() if not d <= tolerance}
            if bad:
                worst = ", ".join(f"{f} by {d:.3g}" for f, d in bad.items())
                raise RecArenaError(
                    f"Refusing the bundle of run {run['run_id']} ({run['model']}): the ONNX graph differs from the "
                    f"plugin beyond {tolerance:g} ({worst}). Nothing was written."
                )
        elif model.capabilities.supports(Task.RANKING):
            n_top = min(max(100, k), model.n_items_)
            items, scores = model.recommend(np.arange(model.n_users_), k=n_top)
            np.save(stage / "topn_items.npy", items)
            np.save(stage / "topn_scores.npy", scores.astype(np.float32))
            table = {"file": "topn_items.npy", "scores": "topn_scores.npy", "k": n_top}
        else:
            raise RecArenaError(f"Run {run['run_id']} ({run['model']}) neither exports ONNX nor ranks: nothing to serve.")
        np.save(stage / "seen_indptr.npy", model.seen_indptr_)
        np.save(stage / "seen_indices.npy", model.seen_indices_)
        (stage / "ids.json").write_text(json.dumps({"users": _ids(model.user_ids_), "items": _ids(model.item_ids_)}))
        import onnxruntime

        manifest = {
            "run_id": run["run_id"], "model": run["model"], "dataset": run["dataset"], "protocol": run["protocol"],
            "seed": run["seed"], "metrics": run["test_metrics"], "config_hash": run["config_hash"],
            "code_version": run["code_version"], "opset": onnx_export.OPSET, "onnxruntime": onnxruntime.__version__,
            "graphs": graphs, "parity_max_abs_diff": parity, "topn_table": table,
            "n_users": model.n_users_, "n_items": model.n_items_, "k": k,
            "capabilities": model.capabilities.to_dict(),
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)  # the bundle appears whole or not at all
        return final
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def export(protocol: str | None = None, out: str | Path = "bundles", top: int = 1, run_ids: list[str] | None = None,
           k: int = 10, store: ResultsStore | None = None) -> list[Path]:
    store = store or ResultsStore()
    return [export_run(r, Path(out), k) for r in pick_runs(store, protocol, top, run_ids)]
