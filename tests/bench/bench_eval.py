"""Full-ranking evaluation speed and memory (just bench-eval).

1. recbole-ml1m, all 6,033 users, dimension 64: our RankingEvaluator (scores, training-item
   masking, top-10, all metrics) vs a bare-torch reference (matmul + mask + top-k + NDCG)
   timed in the same run.
2. A synthetic 10,000-user x 100,000-item catalogue, evaluated in chunks: time and the extra
   peak memory (RSS above the start).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np
import psutil
import torch

from recarena.base import Capabilities, Recommender, Task
from recarena.data.interactions import IdMap, Interactions
from recarena.eval.evaluator import RankingEvaluator


class DotModel(Recommender):
    """Fixed random user/item factors; scores = U[users] @ V.T (what an MF model does)."""

    capabilities = Capabilities(tasks={Task.RANKING})

    def __init__(self, dim: int = 64, device: str = "cpu"):
        self.dim = dim
        self.device_name = device

    def _fit(self, train, valid, monitor):
        g = torch.Generator().manual_seed(0)
        self.U_ = torch.randn(train.n_users, self.dim, generator=g).to(self.device_name)
        self.V_ = torch.randn(train.n_items, self.dim, generator=g).to(self.device_name)

    @property
    def device(self):
        return torch.device(self.device_name)

    def _score(self, users):
        return self.U_[users] @ self.V_.T


def bare_reference(U, V, train_rows, train_cols, test_dense, k=10, chunk=None):
    """The floor: matmul, mask training items, top-k, NDCG. Nothing else."""
    n_users = U.shape[0]
    chunk = chunk or n_users
    disc = 1.0 / torch.log2(torch.arange(2, k + 2, device=U.device, dtype=torch.float32))
    total = 0.0
    for s in range(0, n_users, chunk):
        e = min(n_users, s + chunk)
        scores = U[s:e] @ V.T
        sel = (train_rows >= s) & (train_rows < e)
        scores[train_rows[sel] - s, train_cols[sel]] = -torch.inf
        top = torch.topk(scores, k, dim=1).indices
        hits = test_dense[s:e].gather(1, top).float()
        total += float((hits * disc).sum())
    return total


def timeit(fn, repeat=5, sync=None):
    fn()  # warm-up (and one-time preparation)
    times = []
    for _ in range(repeat):
        if sync:
            sync()
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


class PeakRSS:
    def __enter__(self):
        self.p = psutil.Process()
        self.start = self.peak = self.p.memory_info().rss
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
        return self

    def run(self):
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, self.p.memory_info().rss)

    def __exit__(self, *a):
        self.stop.set()
        self.t.join()
        self.extra_gib = (self.peak - self.start) / 2**30


def recbole_ml1m(data_dir, device):
    from recarena.protocols import load_protocol, prepare

    prep = prepare(load_protocol("recbole-ml1m"), data_dir=data_dir)
    s = prep.split
    metrics = ["recall@10", "mrr@10", "ndcg@10", "hit@10", "precision@10", "map@10"]
    model = DotModel(64, device).fit(s.train)
    ev = RankingEvaluator(s.test, [s.train, s.valid], metrics)
    sync = torch.cuda.synchronize if device == "cuda" else None
    ours_min, ours_med = timeit(lambda: ev.evaluate(model), sync=sync)
    masked = s.train.concat(s.valid)
    rows = torch.from_numpy(masked.user).to(device)
    cols = torch.from_numpy(masked.item).to(device)
    test_dense = torch.zeros(s.test.n_users, s.test.n_items, dtype=torch.bool, device=device)
    test_dense[torch.from_numpy(s.test.user).to(device), torch.from_numpy(s.test.item).to(device)] = True
    bare_min, bare_med = timeit(lambda: bare_reference(model.U_, model.V_, rows, cols, test_dense), sync=sync)
    print(
        f"recbole-ml1m full ranking, {len(ev.users):,} users x {s.train.n_items:,} items, dim 64, {device}: "
        f"RecArena {ours_min * 1e3:.1f} ms (median {ours_med * 1e3:.1f}), bare torch {bare_min * 1e3:.1f} ms "
        f"-> ratio {ours_min / bare_min:.2f}x"
    )
    return ours_min


def big_catalogue(device, n_users=10_000, n_items=100_000, per_user=50):
    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(n_users), per_user)
    i = rng.integers(0, n_items, len(u))
    users, items = IdMap(np.arange(n_users)), IdMap(np.arange(n_items))
    train = Interactions(u, i, users, items)
    ut = np.repeat(np.arange(n_users), 5)
    test = Interactions(ut, rng.integers(0, n_items, len(ut)), users, items)
    model = DotModel(64, device).fit(train)
    ev = RankingEvaluator(test, [train], ["ndcg@10", "recall@10"], memory_budget=256 << 20)
    ev._prepare()
    sync = torch.cuda.synchronize if device == "cuda" else None
    with PeakRSS() as mem:
        if sync:
            sync()
        t = time.perf_counter()
        out = ev.evaluate(model)
        if sync:
            sync()
        took = time.perf_counter() - t
    masked_rows = torch.from_numpy(u).to(device)
    masked_cols = torch.from_numpy(i).to(device)
    test_dense = torch.zeros(n_users, n_items, dtype=torch.bool, device=device)
    test_dense[torch.from_numpy(ut).to(device), torch.from_numpy(test.item).to(device)] = True
    t = time.perf_counter()
    bare_reference(model.U_, model.V_, masked_rows, masked_cols, test_dense, chunk=1024)
    if sync:
        sync()
    bare = time.perf_counter() - t
    gpu = f", GPU peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device == "cuda" else ""
    print(
        f"synthetic {n_users:,} users x {n_items:,} items, dim 64, {device}: RecArena {took:.2f} s in chunks of "
        f"{ev.chunk} users, extra peak RSS {mem.extra_gib:.2f} GiB{gpu}; bare torch (chunks of 1,024) {bare:.2f} s "
        f"-> ratio {took / bare:.2f}x (ndcg@10 {out['ndcg@10']:.4f})"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("RECARENA_DATA_DIR"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-big", action="store_true")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}")
    took = recbole_ml1m(a.data_dir or None, a.device)
    if not a.skip_big:
        big_catalogue(a.device)
    bar = 0.3 if a.device == "cpu" else 0.010
    print(f"summary: recbole-ml1m eval {took * 1e3:.1f} ms (bar {bar * 1e3:.0f} ms: {'met' if took <= bar else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
