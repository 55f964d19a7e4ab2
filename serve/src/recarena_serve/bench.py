"""`recarena serve bench` / `just bench-serve`: end-to-end recommend latency (raw id in, raw ids
out, through smartredis, computed in the database) against the same model called in-process,
in PyTorch and in onnxruntime."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np


def _pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def _time(fn, users, warm: int = 50) -> list[float]:
    for u in users[:warm]:
        fn(u)
    out = []
    for u in users:
        t = time.perf_counter()
        fn(u)
        out.append(time.perf_counter() - t)
    return out


def bench_bundle(bundle, ssdb: str | None = None, n: int = 2000, model=None, label: str | None = None,
                 threads: int = 1) -> dict:
    """Deploys ``bundle`` on a scratch endpoint (starting a scratch database when ``ssdb`` is
    None), then times ``n`` recommend calls for random known users. ``model``: the fitted
    plugin for the in-process PyTorch figure (else looked up in the results store by run).
    ``threads``: intra-op threads of the in-process baselines (match the database's)."""
    import onnxruntime as ort

    from recarena_serve import db, serving

    bundle = Path(bundle)
    b = serving.Bundle.open(bundle)
    label = label or f"{b.model} on {b.manifest.get('dataset')} ({b.manifest['n_items']:,} items)"
    k = b.manifest.get("k", 10)
    scratch = None
    if ssdb is None:
        scratch = db.start(Path(tempfile.mkdtemp(prefix="recarena-bench-serve-")))
        ssdb = scratch.address
    try:
        name = f"bench-{uuid.uuid4().hex[:6]}"
        serving.deploy([bundle], ssdb, name, progress=False)
        svc = serving.Service(ssdb, name)
        rng = np.random.default_rng(0)
        raw_users = [b.ids["users"][i] for i in rng.integers(0, b.manifest["n_users"], n)]
        served = _time(lambda u: svc.recommend(u, k), raw_users)
        figures = {"label": label, "n": n, "db_p50_ms": _pct(served, 50), "db_p99_ms": _pct(served, 99)}

        # onnxruntime in-process, with the same id mapping and exclusion done in the process
        g = b.graph("recommend")
        if g:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(bundle / g["file"]), so, providers=["CPUExecutionProvider"])
            ip, ix = np.load(bundle / "seen_indptr.npy"), np.load(bundle / "seen_indices.npy")
            index = {str(u): i for i, u in enumerate(b.ids["users"])}
            items_raw = b.ids["items"]

            def onnx_call(raw):
                uid = index[str(raw)]
                seen = ix[ip[uid] : ip[uid + 1]].astype(np.int64).reshape(1, -1)
                items, _ = sess.run(None, {"user": np.array([uid], np.int64), "exclude": seen if seen.size else -np.ones((1, 1), np.int64)})
                return [items_raw[i] for i in items[0]]

            t = _time(onnx_call, raw_users)
            figures.update(onnx_p50_ms=_pct(t, 50), onnx_p99_ms=_pct(t, 99))
        if model is None:
            try:
                from recarena.base import Recommender
                from recarena.store import ResultsStore

                run = ResultsStore().get(b.manifest.get("run_id"))
                model = Recommender.load(run["artifact_path"]) if run else None
            except Exception:
                model = None
        if model is not None:
            import torch

            torch.set_num_threads(threads)
            t = _time(lambda u: model.recommend_raw([u], k), raw_users)
            figures.update(torch_p50_ms=_pct(t, 50), torch_p99_ms=_pct(t, 99))
        line = f"{label}: database p50 {figures['db_p50_ms']:.3f} ms, p99 {figures['db_p99_ms']:.3f} ms"
        for what in ("onnx", "torch"):
            if f"{what}_p50_ms" in figures:
                name_ = "onnxruntime" if what == "onnx" else "PyTorch"
                line += (f"; {name_} in-process p50 {figures[f'{what}_p50_ms']:.3f} ms "
                         f"(database/{name_} {figures['db_p50_ms'] / figures[f'{what}_p50_ms']:.2f}x)")
        print(line, flush=True)
        return figures
    finally:
        if scratch is not None:
            scratch.stop()


def main(argv=None) -> int:
    """bench-serve: the best ranking model on ml-1m (EASE on recbole-ml1m, trained here) and a
    synthetic 100,000-item catalogue at dimension 64."""
    import argparse
    import os

    ap = argparse.ArgumentParser(prog="bench-serve")
    ap.add_argument("--data-dir", default=os.environ.get("RECARENA_DATA_DIR"))
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--model", default="ease", help="plugin trained on recbole-ml1m for the ml-1m figure")
    ap.add_argument("--intra-op", type=int, default=2, help="ONNX Runtime threads per model run, in the database and in-process")
    a = ap.parse_args(argv)

    from recarena import plugins
    from recarena.data.synthetic import synthetic
    from recarena_serve.export import write_bundle

    work = Path(tempfile.mkdtemp(prefix="recarena-bench-serve-"))
    os.environ["RECARENA_HOME"] = str(work / "home")
    from recarena_serve import db

    d = db.start(work / "db", intra_op=a.intra_op)
    results = []
    try:
        if a.data_dir and Path(a.data_dir, "ml-1m", "ratings.dat").exists():
            from recarena.runner import train

            summary = train(a.model, protocol="recbole-ml1m", data_dir=a.data_dir, sets=["trainer.logger=none"], progress=False)
            from recarena_serve.export import export

            (path,) = export(run_ids=[summary["run_id"]], out=work / "bundles", k=10, data_dir=a.data_dir)
            results.append(bench_bundle(path, d.address, a.n, threads=a.intra_op))
        else:
            print("bench-serve: ml-1m not found (give --data-dir); skipping the ml-1m figure")
        from recarena.data.filtering import to_implicit

        data = to_implicit(synthetic(400_000, n_users=10_000, n_items=100_000, seed=0, side_features=False))
        model = plugins.get("bpr")(dim=64, epochs=1, batch_size=4096)
        model.fit(data, trainer={"progress_bar": False, "logger": "none"})
        path = write_bundle(model, work / "bundles" / "synthetic-100k", {"model": "bpr", "dataset": "synthetic-100k", "run_id": "synthetic"}, k=10)
        results.append(bench_bundle(path, d.address, a.n, model=model, label="bpr on a synthetic catalogue (100,000 items, dim 64)",
                                    threads=a.intra_op))
    finally:
        d.stop()
    print("bench-serve: " + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
