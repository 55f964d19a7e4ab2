"""User-row autoencoders' cost (just bench-autoencoders): each of cdae, mult-vae, mult-dae and
recvae on recbole-ml1m's training rows, with the protocol's settings; seconds per training
epoch (one pass over the users), seconds per full-ranking test evaluation (all 6,033 users,
every item scored, training and validation items masked) and the fit's peak memory, one
process per plugin, side by side in one run.

For comparison: RecBole 1.2.1's Mult-VAE took 1.61 s per training epoch and 1.03 s per test
evaluation on this machine kind (2 CPU threads, quiet). A RecBole epoch is a pass over the
training interactions (batches of 2,048 interactions, each row the rating vector of the
interaction's user), ours a pass over the users.

    python tests/bench/bench_autoencoders.py --data-dir ../shared/data [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PLUGINS = ["mult-vae", "mult-dae", "cdae", "recvae"]
PROTOCOL = "recbole-ml1m"


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(name: str, data_dir: str | None, epochs: int) -> dict:
    from recarena import plugins
    from recarena.config import resolve
    from recarena.eval.evaluator import RankingEvaluator
    from recarena.protocols import load_protocol, prepare

    proto = load_protocol(PROTOCOL)
    cls = plugins.get(name)
    cfg = resolve(cls, name, proto, proto["dataset"], 0, sets=[f"epochs={epochs}"])
    s = prepare(proto, None, data_dir, seed=0).split
    model = cls(**cfg["params"])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: the peak below is the fit's, not data preparation's
    before = _rss_mb("VmRSS")
    t = time.perf_counter()
    model.fit(s.train, seed=0, trainer={"progress_bar": False, "logger": "none", "accelerator": "cpu"})
    epoch_s = (time.perf_counter() - t) / epochs
    fit_mb = _rss_mb("VmHWM") - before
    ev = RankingEvaluator(s.test, [s.train, s.valid], proto["metrics"])
    ev.evaluate(model)  # warm-up
    times = []
    for _ in range(3):
        t = time.perf_counter()
        ev.evaluate(model)
        times.append(time.perf_counter() - t)
    return {"model": name, "epoch_s": epoch_s, "eval_s": min(times), "users": s.train.n_users,
            "items": s.train.n_items, "batch_size": cfg["params"]["batch_size"], "fit_rss_mb": fit_mb}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("RECARENA_DATA_DIR"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=PLUGINS)
    ap.add_argument("--one")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.data_dir, a.epochs)))
        return
    import torch

    print(f"{PROTOCOL}: {a.epochs} training epochs each, then 3 test evaluations (best shown); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; one process per plugin, one after another")
    rows = []
    for name in a.only:
        cmd = [sys.executable, __file__, "--one", name, "--epochs", str(a.epochs)]
        if a.data_dir:
            cmd += ["--data-dir", a.data_dir]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\n{'plugin':10s} {'batch':>6s} {'s/epoch':>8s} {'s/test eval':>11s} {'fit +MB':>8s}")
    for r in rows:
        print(f"{r['model']:10s} {r['batch_size']:6d} {r['epoch_s']:8.2f} {r['eval_s']:11.2f} {r['fit_rss_mb']:8.0f}")
    print(f"{'RecBole Mult-VAE (reference)':28s}  1.61 s/epoch, 1.03 s/test eval")
    print(f"bench-autoencoders: {len(rows)} plugins on {rows[0]['users'] if rows else 0:,} users x "
          f"{rows[0]['items'] if rows else 0:,} items")


if __name__ == "__main__":
    main()
