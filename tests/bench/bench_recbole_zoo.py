"""The RecBole zoo, smoke-swept: every RecBole model on a small protocol of its task, a few
epochs, then ONNX export with parity (1e-4 at batch 1/7/256) and serving through the database.

Runs in .venv-recbole (`just bench-recbole-zoo`). Each model runs in its own process (a crash,
a hang or a memory blow-up is that model's row, not the sweep's end), under a time limit.
Writes .recarena/bench/recbole-zoo.{json,md} and prints the table.

    python tests/bench/bench_recbole_zoo.py [--models BPR,SASRec] [--epochs 2] [--timeout 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = {"ranking": "ml100k-rank", "sequential": "ml100k-seq-loo", "ctr": "ml1m-ctr"}
METRIC = {"ranking": "ndcg@10", "sequential": "ndcg@10", "ctr": "auc"}
#: settings that keep a smoke run small where a model's defaults are slow on two cores
SMALL = {"ctr": {"train_batch_size": 8192}}
#: a model's own settings that assume a large dataset (NCL's 1,000 k-means clusters of users on
#: ML-100K's 943 users)
SMALL_MODEL = {"NCL": {"num_clusters": 100}}


def _reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return text[:220]


def one(model: str, epochs: int, data_dir: str, ssdb: str | None) -> dict:
    """Train, export and serve one model (in this process); a dict for the table."""
    import numpy as np

    from recarena import onnx_export as ox
    from recarena.base import Recommender
    from recarena.runner import train
    from recarena.store import ResultsStore
    from recarena_recbole import zoo

    name = f"recbole/{model}"
    kind = zoo.MODEL_TYPE[model]
    task = zoo.TASK_OF[kind]
    row = {"model": model, "type": kind, "protocol": PROTOCOL[task], "run": "no", "export": "no", "serve": "no"}
    if model in zoo.UNRUNNABLE:
        row["reason"] = zoo.UNRUNNABLE[model]
        return row
    sets = {"epochs": epochs, **SMALL.get(task, {}), **SMALL_MODEL.get(model, {})}
    if kind == "sequential":
        sets["MAX_ITEM_LIST_LENGTH"] = 20
    t0 = time.perf_counter()
    try:
        out = train(name, PROTOCOL[task], data_dir=data_dir, sets=[f"{k}={v}" for k, v in {**sets, "trainer.logger": "none"}.items()],
                    progress=False, log=lambda *a, **k: None,
                    store=ResultsStore(Path(os.environ["RECARENA_HOME"]) / "store.db"))
    except BaseException as e:  # noqa: BLE001 - every failure is a row of the table
        row.update(reason=_reason(e), seconds=round(time.perf_counter() - t0, 1))
        return row
    row.update(run="yes", metric=METRIC[task], value=round(out["metrics"][METRIC[task]], 4),
               seconds=round(time.perf_counter() - t0, 1))
    model_obj = Recommender.load(out["artifact"])
    folder = Path(tempfile.mkdtemp(prefix="zoo-export-"))
    try:
        graphs = model_obj._export_onnx(folder, 10)["graphs"]
        diff = max(ox.parity(model_obj, folder, graphs).values())
    except BaseException as e:  # noqa: BLE001
        row["reason"] = "export: " + _reason(e)
        return row
    row["parity"] = float(diff)
    if not diff <= 1e-4:
        row["reason"] = f"export: the ONNX graph differs from the model by {diff:.3g} (> 1e-4)"
        return row
    row["export"] = "yes"
    if not ssdb:
        return row
    try:
        from recarena_serve import serving
        from recarena_serve.export import write_bundle

        type(model_obj).capabilities = type(model_obj).capabilities.__class__(
            **{**type(model_obj).capabilities.to_dict(), "onnx": True})
        bundle = write_bundle(model_obj, folder / "bundle", {"model": name, "run_id": out["run_id"], "dataset": "zoo"})
        tag = model.lower().replace("_", "-")
        serving.deploy([bundle], ssdb, name=tag, progress=False)
        svc = serving.Service(ssdb, tag)
        users = [model_obj.user_ids_.raw[i] for i in np.linspace(0, model_obj.n_users_ - 1, 5).round().astype(int)]
        for u in users:
            if task == "ctr":
                items = [model_obj.item_ids_.raw[i] for i in range(0, model_obj.n_items_, 97)]
                got = [p["score"] for p in svc.predict(u, items)["predictions"]]
                want = model_obj.predict_raw([u] * len(items), items)
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
            else:
                got = svc.recommend(u, 10)
                want_items, want_scores = model_obj.recommend_raw([u], 10)
                np.testing.assert_allclose([it["score"] for it in got["items"]], want_scores[0], rtol=1e-4, atol=1e-4)
        row["serve"] = "yes"
    except BaseException as e:  # noqa: BLE001
        row["reason"] = "serve: " + _reason(e)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated RecBole names (default: all)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per model")
    ap.add_argument("--data-dir", default=str(ROOT / "../shared/data"))
    ap.add_argument("--out", default=str(ROOT / ".recarena/bench"))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ssdb", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        try:
            row = one(args.one, args.epochs, args.data_dir, args.ssdb)
        except BaseException as e:  # noqa: BLE001
            row = {"model": args.one, "run": "no", "export": "no", "serve": "no", "reason": _reason(e),
                   "trace": traceback.format_exc()[-2000:]}
        print("ZOO-ROW " + json.dumps(row))
        return

    from recarena_recbole import zoo
    from recarena_serve import db

    names = args.models.split(",") if args.models else sorted(zoo.MODEL_TYPE, key=lambda m: (zoo.MODEL_TYPE[m], m))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="recbole-zoo-") as tmp:
        env = {**os.environ, "RECARENA_HOME": str(Path(tmp) / "home"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
               "SR_LOG_LEVEL": "QUIET", "SR_SOCKET_TIMEOUT": "120000", "RECARENA_NATIVE_DIR": str(Path(tmp) / "native")}
        os.environ.update({k: env[k] for k in ("RECARENA_NATIVE_DIR",)})
        database = db.start(Path(tmp) / "db", port=db.free_port())
        import signal

        signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # so `finally` stops the database
        try:
            for k, m in enumerate(names, 1):
                cmd = [sys.executable, __file__, "--one", m, "--epochs", str(args.epochs), "--data-dir", args.data_dir,
                       "--ssdb", database.nodes[0].address]
                t0 = time.perf_counter()
                try:
                    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
                    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("ZOO-ROW ")]
                    row = json.loads(lines[-1][8:]) if lines else {
                        "model": m, "run": "no", "export": "no", "serve": "no",
                        "reason": f"process ended ({p.returncode}): " + (p.stderr.strip().splitlines() or ["?"])[-1][:200]}
                except subprocess.TimeoutExpired:
                    row = {"model": m, "run": "no", "export": "no", "serve": "no", "reason": f"over the {args.timeout} s limit"}
                row.setdefault("type", zoo.MODEL_TYPE[m])
                row["wall"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                print(f"[{k}/{len(names)}] {m}: run {row['run']}, export {row['export']}, serve {row['serve']}"
                      f"{'  ' + str(row.get('metric')) + ' ' + str(row.get('value')) if row.get('value') is not None else ''}"
                      f"{'  (' + row['reason'] + ')' if row.get('reason') else ''}", flush=True)
                (out / "recbole-zoo.json").write_text(json.dumps(rows, indent=1))
        finally:
            database.stop()
    lines = ["| model | type | protocol | runs | test metric (smoke) | exports (parity) | serves | why not |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        metric = f"{r['metric']} {r['value']:.4f}" if r.get("value") is not None else ""
        par = f"yes ({r['parity']:.1e})" if r["export"] == "yes" else "no"
        lines.append(f"| {r['model']} | {r['type']} | {r.get('protocol', '')} | {r['run']} | {metric} | {par} | {r['serve']} | "
                     f"{r.get('reason', '')} |")
    (out / "recbole-zoo.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    n = len(rows)
    print(f"recbole zoo: {sum(r['run'] == 'yes' for r in rows)}/{n} run end to end, "
          f"{sum(r['export'] == 'yes' for r in rows)} export with parity, {sum(r['serve'] == 'yes' for r in rows)} serve "
          f"({args.epochs} epochs each); table in {out / 'recbole-zoo.md'}")


if __name__ == "__main__":
    main()
