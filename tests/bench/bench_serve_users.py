"""bench-serve-users: what a deploy costs per user, at 1e4, 1e5 and 1e6 synthetic users.

A deploy stores two keys per user (the graph's `user` input and the seen list). For each size:
bpr (dim 8, one epoch) on synthetic data with about 5 interactions a user, exported and
deployed into a fresh database; prints deploy seconds, keys, the database's memory growth, the
seen items' own bytes, and the bytes per user beyond them. Ends with ``bench-serve-users: <json>``.

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", default="10000,100000,1000000")
    ap.add_argument("--items", type=int, default=5000)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-users-"))
    os.environ["RECARENA_HOME"] = str(work / "home")
    os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
    import redis

    from recarena import plugins
    from recarena.data.synthetic import synthetic
    from recarena_serve import db, serving
    from recarena_serve.export import write_bundle

    rows = []
    try:
        for n_users in [int(x) for x in a.users.split(",")]:
            data = synthetic(5 * n_users, n_users=n_users, n_items=a.items, seed=0, side_features=False)
            data = dataclasses.replace(data, rating=None, rating_scale=None)  # implicit: bpr's data
            model = plugins.get("bpr")(dim=8, epochs=1, batch_size=65536).fit(data, seed=0, trainer={"progress_bar": False})
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
                # what is left per user: key names, the two tensors' headers, the dict entries, and
                # the user's share of the id maps in the version's meta
                per_user = (mem - 8 * seen - model_bytes) / n_users
                row = {"users": n_users, "interactions": len(data), "deploy_s": round(deploy_s, 1), "export_s": round(export_s, 1),
                       "keys": keys, "db_bytes": mem, "seen_bytes": 8 * seen, "model_bytes": model_bytes,
                       "bytes_per_user_beyond_seen": round(per_user, 1)}
                rows.append(row)
                print(f"{n_users:>9,} users: deploy {deploy_s:7.1f} s, {keys:,} keys, database +{mem / 2**20:,.1f} MiB "
                      f"(seen items {8 * seen / 2**20:,.1f} MiB, graph {model_bytes / 2**20:,.1f} MiB): "
                      f"{per_user:,.0f} bytes a user beyond them", flush=True)
            finally:
                d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("bench-serve-users: " + json.dumps({"rows": rows, "db_bytes_per_user_1m_users": next(
        (r["bytes_per_user_beyond_seen"] for r in rows if r["users"] == 1_000_000), None)}))


if __name__ == "__main__":
    main()
