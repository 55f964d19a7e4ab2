"""Our plugins beside the libraries users would otherwise pick (just bench-peers): `ials`
against implicit 0.7.3's AlternatingLeastSquares on recbole-ml1m, the same training split,
the same settings (64 factors, 15 iterations, regularization 1, alpha 5, 2 threads), fit time
measured in one run, one after the other, best of ``--repeats``; NDCG@10 of both from our
evaluator on the same test split.

implicit is installed into the virtualenv by the recipe, for this benchmark only (no plugin
depends on it). Ends with one line ``bench-peers: <json>``.

    python tests/bench/bench_peers.py --data-dir ../shared/data [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time

SETTINGS = {"factors": 64, "iterations": 15, "reg": 1.0, "alpha": 5.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice: its own threads only
    import numpy as np
    import torch
    from implicit.cpu.als import AlternatingLeastSquares

    from recarena.protocols import load_protocol, prepare
    from recarena_ials import IALS

    torch.set_num_threads(a.threads)
    p = prepare(load_protocol("recbole-ml1m"), None, a.data_dir)
    train = p.split.train
    X = train.csr().astype(np.float32)
    X.data[:] = 1.0
    test = p.evaluator("test")

    ours, ours_s = None, []
    theirs, theirs_s = None, []
    for _ in range(a.repeats):
        t = time.perf_counter()
        ours = IALS(**SETTINGS).fit(train, seed=0)
        ours_s.append(time.perf_counter() - t)
        als = AlternatingLeastSquares(factors=SETTINGS["factors"], regularization=SETTINGS["reg"], alpha=SETTINGS["alpha"],
                                      iterations=SETTINGS["iterations"], num_threads=a.threads, random_state=0)
        t = time.perf_counter()
        als.fit(X, show_progress=False)
        theirs_s.append(time.perf_counter() - t)
        theirs = als
    # implicit's factors scored by our evaluator: the same x_u . y_i as ours
    peer = IALS(**SETTINGS).fit(train, seed=0)
    peer.user_factors_ = torch.from_numpy(np.ascontiguousarray(theirs.user_factors, dtype=np.float32))
    peer.item_factors_ = torch.from_numpy(np.ascontiguousarray(theirs.item_factors, dtype=np.float32))
    out = {
        "protocol": "recbole-ml1m", "threads": a.threads, "repeats": a.repeats, **SETTINGS,
        "ials_fit_s": round(min(ours_s), 3), "implicit_als_fit_s": round(min(theirs_s), 3),
        "ials_ndcg10": round(test.evaluate(ours)["ndcg@10"], 4), "implicit_als_ndcg10": round(test.evaluate(peer)["ndcg@10"], 4),
    }
    out["fit_ratio"] = round(out["ials_fit_s"] / out["implicit_als_fit_s"], 2)
    print(f"ials {out['ials_fit_s']} s, NDCG@10 {out['ials_ndcg10']}; implicit ALS {out['implicit_als_fit_s']} s, "
          f"NDCG@10 {out['implicit_als_ndcg10']} (ratio {out['fit_ratio']})")
    print("bench-peers: " + json.dumps(out))


if __name__ == "__main__":
    main()
