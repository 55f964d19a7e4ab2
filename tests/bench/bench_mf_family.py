"""Seconds per training epoch of the MF family beside the model each extends (just
bench-mf-family), one after the other in one run, CPU, ``--threads`` torch threads:

- on recbole-ml1m: ``bpr`` against ``lightgcn`` (2 layers; batch 2048 as bpr, and the batch it
  is trained with) and ``mixture-of-tastes`` (K = 4), all at bpr's batch unless said;
- on ml1m-rating-90-10: ``biased-mf`` against ``mf-side`` and ``variational-mf``;
- on ml100k-temporal: ``biased-mf`` against ``mf-temporal``.

Each model trains ``--epochs`` epochs without validation; the figure is the fit time over the
epochs (so it includes building the network), the peak resident memory growth beside it.
Ends with one line ``bench-mf-family: <json>``.

    python tests/bench/bench_mf_family.py --data-dir ../shared/data [--epochs 2] [--threads 2] [--protocols recbole-ml1m]
"""

from __future__ import annotations

import argparse
import json
import time

RUNS = [
    ("recbole-ml1m", "bpr", {}),
    ("recbole-ml1m", "lightgcn", {}),
    ("recbole-ml1m", "lightgcn", {"batch_size": 16384, "lr": 0.005}),
    ("recbole-ml1m", "mixture-of-tastes", {"n_tastes": 4}),
    ("ml1m-rating-90-10", "biased-mf", {"reg": 0.03}),
    ("ml1m-rating-90-10", "mf-side", {"reg": 0.03}),
    ("ml1m-rating-90-10", "variational-mf", {}),
    ("ml100k-temporal", "biased-mf", {}),
    ("ml100k-temporal", "mf-temporal", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--protocols", default=None, help="comma-separated: only these protocols' rows")
    a = ap.parse_args()
    import torch

    from recarena import plugins
    from recarena.protocols import load_protocol, prepare
    from recarena.runner import PeakMemory

    torch.set_num_threads(a.threads)
    prepared = {}
    out = {"epochs": a.epochs, "threads": a.threads, "runs": []}
    for proto, name, params in RUNS:
        if a.protocols and proto not in a.protocols.split(","):
            continue
        if proto not in prepared:
            prepared[proto] = prepare(load_protocol(proto), None, a.data_dir).split.train
        train = prepared[proto]
        model = plugins.get(name)(**{**params, "epochs": a.epochs})
        with PeakMemory() as peak:
            t = time.perf_counter()
            model.fit(train, seed=0, trainer={"logger": "none", "progress_bar": False})
            s = (time.perf_counter() - t) / a.epochs
        row = {"protocol": proto, "model": name, **params, "s_per_epoch": round(s, 2), "peak_mib": round(peak.peak_mb)}
        out["runs"].append(row)
        print(f"{proto:18s} {name:18s} {json.dumps(params):40s} {s:7.2f} s/epoch  +{peak.peak_mb:,.0f} MiB", flush=True)
    print("bench-mf-family: " + json.dumps(out))


if __name__ == "__main__":
    main()
