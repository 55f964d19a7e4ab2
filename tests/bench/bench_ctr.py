"""CTR family per-epoch cost (just bench-ctr): every CTR plugin on ml1m-ctr's training rows with
the protocol's chosen settings (no pre-training stage, no validation), one process per plugin
so each peak memory is its own; seconds per epoch side by side with deepfm's, in one run.

    python tests/bench/bench_ctr.py --data-dir ../shared/data [--epochs 2] [--device cpu|gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PLUGINS = ["deepfm", "fm", "ffm", "nfm", "wide-deep", "xdeepfm", "dcnv2"]


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(name: str, data_dir: str | None, epochs: int, device: str) -> dict:
    import torch

    from recarena import plugins
    from recarena.config import resolve
    from recarena.protocols import load_protocol, prepare

    proto = load_protocol("ml1m-ctr")
    cls = plugins.get(name)
    params = cls().get_params()
    # the model's own epochs only: no FM stage (and so no start from it)
    sets = [f"epochs={epochs}"] + [s for s, p in (("pretrain_epochs=0", "pretrain_epochs"),
                                                 ("fm_start=false", "fm_start")) if p in params]
    cfg = resolve(cls, name, proto, proto["dataset"], 0, sets=sets)
    train = prepare(proto, None, data_dir, seed=0).split.train
    model = cls(**cfg["params"])
    before = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, so the peak below is the fit's, not data preparation's
    t = time.perf_counter()
    model.fit(train, seed=0, trainer={"progress_bar": False, "logger": "none", "accelerator": device})
    fit_s = time.perf_counter() - t
    n_params = sum(p.numel() for p in model.network_.parameters())
    gpu = torch.cuda.max_memory_allocated() / 2**20 if device == "gpu" and torch.cuda.is_available() else None
    return {"model": name, "epoch_s": fit_s / epochs, "rows": len(train), "params": n_params,
            "peak_rss_mb": _rss_mb("VmHWM"), "fit_rss_mb": _rss_mb("VmHWM") - before, "gpu_peak_mb": gpu,
            "settings": {k: v for k, v in cfg["params"].items() if k not in ("epochs",)}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("RECARENA_DATA_DIR"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", default=PLUGINS)
    ap.add_argument("--one")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.data_dir, a.epochs, a.device)))
        return
    import torch

    print(f"ml1m-ctr train rows, {a.epochs} epochs each, {a.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; one process per plugin, run one after another")
    rows = []
    for name in a.only:
        cmd = [sys.executable, __file__, "--one", name, "--epochs", str(a.epochs), "--device", a.device]
        if a.data_dir:
            cmd += ["--data-dir", a.data_dir]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"  {name:10s} {r['epoch_s']:7.1f} s/epoch  peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
    base = next((r["epoch_s"] for r in rows if r["model"] == "deepfm"), None)
    print(f"\n{'plugin':10s} {'params':>10s} {'s/epoch':>8s} {'x deepfm':>8s} {'peak RSS MB':>11s} {'fit +MB':>8s}"
          + (" GPU peak MB" if a.device == "gpu" else ""))
    for r in rows:
        ratio = f"{r['epoch_s'] / base:8.2f}" if base else f"{'-':>8s}"
        gpu = f" {r['gpu_peak_mb']:11.0f}" if r["gpu_peak_mb"] is not None else ""
        print(f"{r['model']:10s} {r['params']:10,d} {r['epoch_s']:8.1f} {ratio} {r['peak_rss_mb']:11.0f} "
              f"{r['fit_rss_mb']:8.0f}{gpu}")
    print(f"bench-ctr: {len(rows)} plugins, {rows[0]['rows'] if rows else 0:,} rows per epoch")


if __name__ == "__main__":
    main()
