"""bench-cluster: recommend throughput of the inference database standalone and as a Redis
Cluster of 1 and 3 shards, with 4 client processes (just bench-cluster).

bpr (dimension 64) on synthetic data (1e6 interactions: 20,000 users, 4,000 items), exported
and deployed once per database; each of the 4 processes runs serving.Service.recommend (k 10)
for random known users for --seconds, after a warm-up. Prints req/s and p50/p99 per setting and
ends with ``bench-cluster: <json>``.

On a cluster smartredis copies a model run's inputs to temporary keys on the shard that runs it
and copies the outputs back (its run_model, in cluster mode, always does), so one request is
about ten round trips instead of four: a 1-shard cluster shows that cost, 3 shards what
spreading users over shards buys back. Shards, clients and models share this machine's cores.

    python tests/bench/bench_cluster.py [--seconds 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path


def client(address: str, users: list, seconds: float, start_at: float, q) -> None:
    import numpy as np

    from recarena_serve import serving

    svc = serving.Service(address, "scale")
    rng = np.random.default_rng(os.getpid())
    for u in rng.choice(users, 20):  # warm-up: the version's id maps
        svc.recommend(u, 10)
    while time.time() < start_at:
        time.sleep(0.001)
    lat, end = [], start_at + seconds
    while time.time() < end:
        t = time.perf_counter()
        svc.recommend(users[rng.integers(len(users))], 10)
        lat.append(time.perf_counter() - t)
    svc.close()
    q.put(lat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--shards", default="0,1,3", help="0: standalone; N: a cluster of N primaries")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    os.environ["RECARENA_HOME"] = str(work / "home")
    os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
    import numpy as np

    from recarena import plugins
    from recarena.data.synthetic import synthetic
    from recarena_serve import db, serving
    from recarena_serve.export import write_bundle

    rows = []
    try:
        data = synthetic(1_000_000, n_users=20_000, n_items=4_000, seed=0, side_features=False, timestamps=False)
        data = dataclasses.replace(data, rating=None, rating_scale=None)
        model = plugins.get("bpr")(dim=64, epochs=1, batch_size=65536).fit(data, seed=0, trainer={"progress_bar": False, "logger": "none"})
        bundle = write_bundle(model, work / "bundle", {"model": "bpr", "run_id": "cluster", "dataset": "synthetic"})
        users = json.loads((Path(bundle) / "ids.json").read_text())["users"]
        ctx = mp.get_context("spawn")
        for shards in [int(x) for x in a.shards.split(",")]:
            d = db.start(work / f"db{shards}", cluster=shards)
            try:
                address = d.address
                os.environ["SR_DB_TYPE"] = "Clustered" if shards else "Standalone"
                serving.deploy([bundle], address, name="scale", progress=False)
                q = ctx.Queue()
                start_at = time.time() + 8
                procs = [ctx.Process(target=client, args=(address, users, a.seconds, start_at, q), daemon=True)
                         for _ in range(a.clients)]
                for p in procs:
                    p.start()
                lat = [x for _ in procs for x in q.get(timeout=a.seconds + 120)]
                for p in procs:
                    p.join()
            finally:
                d.stop()
            kind = f"cluster of {shards}" if shards else "standalone"
            row = {"database": kind, "shards": max(shards, 1), "clients": a.clients, "requests": len(lat),
                   "req_per_s": round(len(lat) / a.seconds, 1), "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
                   "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 2)}
            rows.append(row)
            print(f"{kind:<14} {a.clients} clients: {row['req_per_s']:8,.1f} req/s, p50 {row['p50_ms']:.2f} ms, "
                  f"p99 {row['p99_ms']:.2f} ms", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("bench-cluster: " + json.dumps({"rows": rows, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
