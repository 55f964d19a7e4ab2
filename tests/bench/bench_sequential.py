"""Seconds per training epoch and peak memory of the sequential models on S3-Rec's Beauty
(``s3rec-loo``'s training split: 22,363 users, 12,101 items, 153,776 training items), one
after the other in one run, CPU, ``--threads`` torch threads (just bench-sequential):
``caser`` (its defaults), ``sasrec``, ``gru4rec`` and ``svae`` with each loss (``ce``, the
full-catalogue softmax they are trained with, and ``bce``, one sampled negative per position,
S3-Rec's), plus one full-ranking evaluation of all users.

Each model trains ``--epochs`` epochs without validation; the figure is the fit time over the
epochs (so it includes building the network), the peak resident memory growth beside it.
Ends with one line ``bench-sequential: <json>``.

    python tests/bench/bench_sequential.py --data-dir ../shared/data [--epochs 1] [--threads 2] [--dataset s3rec-beauty]
"""

from __future__ import annotations

import argparse
import json
import time

RUNS = [
    ("caser", {}),
    ("sasrec", {}),
    ("sasrec", {"loss_type": "bce"}),
    ("gru4rec", {}),
    ("gru4rec", {"loss_type": "bce"}),
    ("svae", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--dataset", default="s3rec-beauty")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=None, help="comma-separated: only these models' rows")
    a = ap.parse_args()
    import torch

    from recarena import plugins
    from recarena.protocols import load_protocol, prepare
    from recarena.runner import PeakMemory

    torch.set_num_threads(a.threads)
    prepared = prepare(load_protocol("s3rec-loo"), a.dataset, a.data_dir)
    train = prepared.split.train
    ev = prepared.evaluator("test")
    out = {"dataset": a.dataset, "epochs": a.epochs, "threads": a.threads, "runs": []}
    for name, params in RUNS:
        if a.models and name not in a.models.split(","):
            continue
        model = plugins.get(name)(**{**params, "epochs": a.epochs})
        with PeakMemory() as peak:
            t = time.perf_counter()
            model.fit(train, seed=0, trainer={"logger": "none", "progress_bar": False})
            s = (time.perf_counter() - t) / a.epochs
        t = time.perf_counter()
        ev.evaluate(model)
        e = time.perf_counter() - t
        row = {"model": name, **params, "s_per_epoch": round(s, 2), "eval_s": round(e, 2), "peak_mib": round(peak.peak_mb)}
        out["runs"].append(row)
        print(f"{name:10s} {json.dumps(params):24s} {s:7.2f} s/epoch  eval {e:5.2f} s  +{peak.peak_mb:,.0f} MiB", flush=True)
    print("bench-sequential: " + json.dumps(out))


if __name__ == "__main__":
    main()
