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
from recarena.paths import file_digest
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
    ranked = [row for row in board["rows"] if row.get("ranked", True)]
    if not ranked:
        raise RecArenaError(f"No run of {protocol!r} has validation metrics to choose a configuration by; "
                            "export one with --run RUN_ID.")
    runs = []
    for row in ranked[:top]:
        # of the chosen configuration, the seed with the best validation score: the test set
        # chooses nothing (a seed picked by test score would overstate what serving gets)
        cands = [store.get(rid) for rid in row["run_ids"]]
        sel = board["select"]
        pick, worst = (max, float("-inf")) if board["mode"] == "max" else (min, float("inf"))
        runs.append(pick(cands, key=lambda r: (r.get("valid_metrics") or {}).get(sel, worst)))
    return runs


def _ids(idmap) -> list:
    return [x.item() if hasattr(x, "item") else x for x in idmap.raw]


def export_run(run: dict, out: Path, k: int = 10, tolerance: float = TOLERANCE, data_dir=None) -> Path:
    model = Recommender.load(run["artifact_path"])
    if getattr(model, "user_ids_", None) is None:
        raise RecArenaError(
            f"Run {run['run_id']} was saved by a RecArena without id maps in its artifacts; train it again to export it."
        )
    info = {"run_id": run["run_id"], "model": run["model"], "dataset": run["dataset"], "protocol": run["protocol"],
            "seed": run["seed"], "metrics": run["test_metrics"], "config_hash": run["config_hash"],
            "code_version": run["code_version"]}
    return write_bundle(model, out / run["run_id"], info, k, tolerance, titles=_titles(run["dataset"], data_dir))


def _titles(dataset: str, data_dir) -> dict | None:
    """raw item id -> title, when the dataset has titles and is on disk (else None)."""
    try:
        from recarena.data.datasets import load_any

        data = load_any(dataset, data_dir)
    except Exception:  # not available offline, or no such files: bundles work without titles
        return None
    f = data.item_features
    if f is None or "title" not in f:
        return None
    return {str(raw): str(t) for raw, t in zip(_ids(data.items), f["title"])}


def probe_users(n_users: int, n: int = 5) -> np.ndarray:
    """Users whose answers a bundle records and a deploy checks: spread over the id range."""
    return np.unique(np.linspace(0, n_users - 1, min(n, n_users)).round().astype(np.int64))


def write_bundle(model: Recommender, final: Path, info: dict, k: int = 10, tolerance: float = TOLERANCE,
                 titles: dict | None = None) -> Path:
    """Write one bundle for a fitted model to ``final`` (atomically: whole or not at all)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        graphs, parity, table = [], {}, None
        probe = {"users": probe_users(model.n_users_).tolist()}
        users = np.asarray(probe["users"])
        if model.capabilities.onnx:
            graphs = model.export_onnx(stage, k=k)["graphs"]
            parity = onnx_export.parity(model, stage, graphs)
            bad = {f: d for f, d in parity.items() if not d <= tolerance}
            if bad:
                worst = ", ".join(f"{f} by {d:.3g}" for f, d in bad.items())
                raise RecArenaError(
                    f"Refusing the bundle of run {info.get('run_id')} ({info.get('model')}): the ONNX graph differs from the "
                    f"plugin beyond {tolerance:g} ({worst}). Nothing was written."
                )
            for g in graphs:
                if g["kind"] == "recommend":
                    items, scores = model.recommend(users, k=g["k"])
                    probe["recommend"] = {"items": items.tolist(), "scores": scores.tolist()}
                else:
                    probe_items = np.arange(len(users)) % model.n_items_
                    probe["predict"] = {"items": probe_items.tolist(), "scores": model.predict(users, probe_items).tolist()}
        elif model.capabilities.supports(Task.RANKING):
            n_top = min(max(100, k), model.n_items_)
            items, scores = model.recommend(np.arange(model.n_users_), k=n_top)
            np.save(stage / "topn_items.npy", items)
            np.save(stage / "topn_scores.npy", scores.astype(np.float32))
            table = {"file": "topn_items.npy", "scores": "topn_scores.npy", "k": n_top}
            probe["recommend"] = {"items": items[users].tolist(), "scores": scores[users].astype(np.float32).tolist()}
        else:
            raise RecArenaError(f"Run {info.get('run_id')} ({info.get('model')}) neither exports ONNX nor ranks: nothing to serve.")
        # what the recommend graph is fed as `exclude`: a sequential model's history in time order
        indptr, indices = model.serving_history()
        np.save(stage / "seen_indptr.npy", np.asarray(indptr, np.int64))
        np.save(stage / "seen_indices.npy", np.asarray(indices, np.int64))
        ids = {"users": _ids(model.user_ids_), "items": _ids(model.item_ids_)}
        if titles:
            ids["titles"] = [titles.get(str(i)) for i in ids["items"]]
        (stage / "ids.json").write_text(json.dumps(ids))
        (stage / "probe.json").write_text(json.dumps(probe))
        import onnxruntime

        # every file's checksum: deploy refuses a bundle whose files are not the ones written here
        files = {f.name: file_digest(f) for f in sorted(stage.iterdir()) if f.is_file()}
        manifest = {
            **info, "opset": onnx_export.OPSET, "onnxruntime": onnxruntime.__version__, "files": files,
            "graphs": graphs, "parity_max_abs_diff": parity, "topn_table": table,
            "n_users": model.n_users_, "n_items": model.n_items_, "k": k,
            "capabilities": model.capabilities.to_dict(), "has_titles": bool(titles),
        }
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)  # the bundle appears whole or not at all
        return final
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def export(protocol: str | None = None, out: str | Path = "bundles", top: int = 1, run_ids: list[str] | None = None,
           k: int = 10, store: ResultsStore | None = None, data_dir=None) -> list[Path]:
    store = store or ResultsStore()
    return [export_run(r, Path(out), k, data_dir=data_dir) for r in pick_runs(store, protocol, top, run_ids)]
