"""bench-serve-users: what a deploy costs per user, at 1e4, 1e5 and 1e6 synthetic users.

A deploy packs every user's rows into a few tensors (``seen``, ``seen:indptr``, ``ids``; see
serving.py), so keys do not grow with users. For each size: bpr (dim 8, one epoch) on synthetic
data with about 5 interactions a user, exported and deployed into a fresh database; prints
deploy seconds, keys, the database's memory growth, the seen items' own bytes, the bytes per
user beyond them, and recommend p50/p99 through serving.Service (300 requests, one client).
Ends with ``bench-serve-users: <json>``.

    python tests/bench/bench_serve_users.py [--users 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def measure(n_users: int, n_items: int, work: Path) -> dict:
    """One size: train, export, deploy into a fresh database, measure; returns the row."""
    import numpy as np
    import redis

    from recarena import plugins
    from recarena.data.synthetic import synthetic
    from recarena_serve import db, serving
    from recarena_serve.export import write_bundle

    os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
    data = synthetic(5 * n_users, n_users=n_users, n_items=n_items, seed=0, side_features=False)
    data = dataclasses.replace(data, rating=None, rating_scale=None)  # implicit: bpr's data
    model = plugins.get("bpr")(dim=8, epochs=1, batch_size=65536).fit(data, seed=0, trainer={"progress_bar": False, "logger": "none"})
    n_users = model.n_users_  # users with at least one interaction
    t = time.perf_counter()
    bundle = write_bundle(model, work / f"b{n_users}", {"model": "bpr", "run_id": f"r{n_users}", "dataset": "synthetic"})
    export_s = time.perf_counter() - t
    d = db.start(work / f"db{n_users}")
    try:
        wire = redis.Redis(unix_socket_path=d.nodes[0].address[len("unix://"):])
        base = wire.info("memory")["used_memory"]
        t = time.perf_counter()
        serving.deploy([bundle], d.nodes[0].address, name="u", progress=False)
        deploy_s = time.perf_counter() - t
        mem = wire.info("memory")["used_memory"] - base
        keys = wire.dbsize()
        seen = int(model.seen_indptr_[-1])
        model_bytes = sum(f.stat().st_size for f in Path(bundle).glob("*.onnx"))
        svc = serving.Service(d.nodes[0].address, "u")
        ids = json.loads((Path(bundle) / "ids.json").read_text())["users"]
        lat = []
        for i, u in enumerate(np.random.default_rng(0).integers(0, len(ids), 320)):
            t = time.perf_counter()
            svc.recommend(ids[u], 10)
            if i >= 20:  # the first requests load the version's id maps
                lat.append(time.perf_counter() - t)
        svc.close()
    finally:
        d.stop()
    # what is left per user: the user's share of the id maps in the version's meta, its ids and
    # indptr entries (8 bytes each), and an empty row's -1
    per_user = (mem - 8 * seen - model_bytes) / n_users
    row = {"users": n_users, "interactions": len(data), "deploy_s": round(deploy_s, 1), "export_s": round(export_s, 1),
           "keys": keys, "db_bytes": mem, "seen_bytes": 8 * seen, "model_bytes": model_bytes,
           "bytes_per_user_beyond_seen": round(per_user, 1),
           "recommend_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
           "recommend_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3)}
    print(f"{n_users:>9,} users: deploy {deploy_s:7.1f} s, {keys:,} keys, database +{mem / 2**20:,.1f} MiB "
          f"(seen items {8 * seen / 2**20:,.1f} MiB, graph {model_bytes / 2**20:,.1f} MiB): "
          f"{per_user:,.0f} bytes a user beyond them; recommend p50 {row['recommend_p50_ms']:.2f} ms, "
          f"p99 {row['recommend_p99_ms']:.2f} ms", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", default="10000,100000,1000000")
    ap.add_argument("--items", type=int, default=5000)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-users-"))
    os.environ["RECARENA_HOME"] = str(work / "home")
    os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
    rows = []
    try:
        for n_users in [int(x) for x in a.users.split(",")]:
            rows.append(measure(n_users, a.items, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # 1e6 asked for: 951,877 users with at least one interaction
    print("bench-serve-users: " + json.dumps({"rows": rows, "db_bytes_per_user_1m_users": next(
        (r["bytes_per_user_beyond_seen"] for r in rows if r["users"] >= 900_000), None)}))


if __name__ == "__main__":
    main()
