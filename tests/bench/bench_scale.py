"""bench-scale: how cost grows with the work, on synthetic data (just bench-scale).

Curves, each point measured in a fresh subprocess (so peak memory is that point's own):

- training: seconds of one epoch's training pass (the second epoch; the first carries warm-up)
  for bpr and biased-mf with ``optimizer=sparse_adam`` (lazy Adam: a step touches the batch's
  embedding rows only): 1e6 to 1e7 interactions over a fixed catalogue (200,000 users x 12,649
  items: the bar's curve, interactions alone grow), and 1e5 to 1e7 with synthetic's growing
  one (about 50 interactions a user, 4 sqrt(n) items: tables outgrow the CPU caches, so a step
  costs more as they grow); and, up to 3e6, at their default dense Adam, whose every step
  updates every row, so with a growing catalogue the epoch grows about quadratically (a 1e7
  biased-mf epoch would take about half an hour here);
- full-ranking evaluation: RankingEvaluator over 2,000 test users, dimension 64, 1e3 to 1e6
  items (chunked: its default 256 MiB score budget), seconds and the process's peak RSS
  (everything in it: Python, torch, the factors, the data);
- export (write_bundle: ONNX graphs, parity check, probe answers) and the database: bpr
  (dimension 64) at 1e3 to 1e6 items, deployed into a fresh database, recommend p50/p99 over
  300 requests through serving.Service (one client, nothing else running), and the recommend
  graph's time split by operator from onnxruntime's profiler (same graph, one intra-op thread
  like the database): scoring (Gather + MatMul), exclusion (the seen-item mask), top-k;
- serving many users: database bytes per user beyond the seen items at 1e6 users
  (bench_serve_users' measurement).

Each curve's exponent is the slope of log(cost) on log(size) over its upper decade (fixed costs
flatten the lower one). Writes bench-scale.png, .md and .json to --out and ends with one line
``bench-scale: <json>``.

    python tests/bench/bench_scale.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXED_USERS, FIXED_ITEMS = 200_000, 12_649  # synthetic(1e7)'s own sizes


def _result(obj: dict) -> None:
    obj["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print("RESULT " + json.dumps(obj), flush=True)


# ------------------------------------------------------------------ one point each (subprocess)
def one_train(model: str, optimizer: str, n: int, catalogue: str = "growing") -> None:
    import dataclasses

    from recarena import plugins
    from recarena.data.synthetic import synthetic

    # "fixed": the users and items of the largest point (synthetic(1e7)'s 200,000 x 12,649), so
    # only the interactions grow; "growing": synthetic's own sizes (n / 50 users, 4 sqrt(n) items)
    sizes = {"n_users": FIXED_USERS, "n_items": FIXED_ITEMS} if catalogue == "fixed" else {}
    data = synthetic(n, seed=0, side_features=False, timestamps=False, **sizes)
    if model == "bpr":
        data = dataclasses.replace(data, rating=None, rating_scale=None)  # implicit feedback
    m = plugins.get(model)(epochs=2, optimizer=optimizer).fit(data, seed=0, trainer={"progress_bar": False, "logger": "none"})
    _result({"model": model, "optimizer": optimizer, "catalogue": catalogue, "interactions": len(data), "users": data.n_users, "items": data.n_items,
             "batch_size": m.batch_size, "epoch_s": m.epoch_seconds_[1], "first_epoch_s": m.epoch_seconds_[0]})


def one_eval(n_items: int, n_users: int = 2000) -> None:
    import numpy as np

    sys.path.insert(0, str(HERE))
    from bench_eval import DotModel

    from recarena.data.interactions import IdMap, Interactions
    from recarena.eval.evaluator import RankingEvaluator

    rng = np.random.default_rng(0)
    users, items = IdMap(np.arange(n_users)), IdMap(np.arange(n_items))
    u = np.repeat(np.arange(n_users), 20)
    train = Interactions(u, rng.integers(0, n_items, len(u)), users, items)
    ut = np.repeat(np.arange(n_users), 2)
    test = Interactions(ut, rng.integers(0, n_items, len(ut)), users, items)
    model = DotModel(64).fit(train)
    ev = RankingEvaluator(test, [train], ["ndcg@10", "recall@10"])
    t = time.perf_counter()
    ev.evaluate(model)  # the first pass builds the chunks' masks
    first = time.perf_counter() - t
    t = time.perf_counter()
    ev.evaluate(model)
    _result({"items": n_items, "users": n_users, "eval_s": time.perf_counter() - t, "first_eval_s": first,
             "chunk_users": ev.chunk})


def _profile_split(graph: Path, user: int, seen, runs: int = 100) -> dict:
    """ms per run of the recommend graph's operators, by role, from onnxruntime's profiler."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as the database runs it (INTRA_OP_PARALLELISM 1)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(graph.parent / "profile")
    s = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
    feeds = dict(zip([i.name for i in s.get_inputs()], [np.array([user], np.int64), seen]))
    for _ in range(runs):
        s.run(None, feeds)
    events = json.loads(Path(s.end_profiling()).read_text())
    roles = {"scoring": ("Gather", "MatMul", "Gemm", "Add", "Mul", "Unsqueeze", "Squeeze", "Reshape"),
             "top-k": ("TopK",)}
    out = {"scoring": 0.0, "top-k": 0.0, "exclusion and other": 0.0}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "")
        role = next((r for r, ops in roles.items() if op in ops), "exclusion and other")
        out[role] += e["dur"] / 1000 / runs
    return out


def one_serve(n_items: int) -> None:
    import numpy as np

    from recarena import plugins
    from recarena.data.interactions import IdMap, Interactions
    from recarena_serve import db, serving
    from recarena_serve.export import write_bundle

    work = Path(tempfile.mkdtemp(prefix="bench-scale-serve-"))
    os.environ["RECARENA_HOME"] = str(work / "home")
    # the whole catalogue in training (each item at least once), 20,000 users
    rng = np.random.default_rng(0)
    n, n_users = max(200_000, 2 * n_items), 20_000
    items = np.concatenate([np.arange(n_items), rng.integers(0, n_items, n - n_items)])
    keys = np.unique(rng.integers(0, n_users, n).astype(np.int64) * n_items + items)
    data = Interactions(keys // n_items, keys % n_items, IdMap(np.arange(n_users)), IdMap(np.arange(n_items)))
    model = plugins.get("bpr")(dim=64, epochs=1, batch_size=65536).fit(data, seed=0, trainer={"progress_bar": False, "logger": "none"})
    t = time.perf_counter()
    bundle = write_bundle(model, work / "bundle", {"model": "bpr", "run_id": "scale", "dataset": "synthetic"})
    export_s = time.perf_counter() - t
    d = db.start(work / "db")
    try:
        t = time.perf_counter()
        serving.deploy([bundle], d.nodes[0].address, name="scale", progress=False)
        deploy_s = time.perf_counter() - t
        svc = serving.Service(d.nodes[0].address, "scale")
        rng = np.random.default_rng(0)
        ids = json.loads((Path(bundle) / "ids.json").read_text())["users"]
        raw = [ids[i] for i in rng.integers(0, len(ids), 320)]
        lat = []
        for i, u in enumerate(raw):
            t = time.perf_counter()
            out = svc.recommend(u, 10)
            if i >= 20:  # the first requests load the version's id maps
                lat.append(time.perf_counter() - t)
            assert len(out["items"]) == 10 and out["fallback"] is None
        svc.close()
    finally:
        d.stop()
    ip, ix = np.load(Path(bundle) / "seen_indptr.npy"), np.load(Path(bundle) / "seen_indices.npy")
    graph = next(Path(bundle).glob("recommend*.onnx"))
    split = _profile_split(graph, 0, ix[ip[0]:ip[1]].astype(np.int64).reshape(1, -1))
    _result({"items": data.n_items, "interactions": len(data), "export_s": export_s, "deploy_s": deploy_s,
             "recommend_p50_ms": float(np.percentile(lat, 50) * 1e3), "recommend_p99_ms": float(np.percentile(lat, 99) * 1e3),
             "graph_ms": split})


def one_users(n_users: int) -> None:
    sys.path.insert(0, str(HERE))
    from bench_serve_users import measure

    work = Path(tempfile.mkdtemp(prefix="bench-scale-users-"))
    os.environ["RECARENA_HOME"] = str(work / "home")
    _result(measure(n_users, 5000, work))


# ------------------------------------------------------------------ the driver
def point(args: list[str]) -> dict:
    env = {**os.environ, "SR_LOG_LEVEL": "QUIET"}
    p = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True, env=env)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if p.returncode or line is None:
        raise SystemExit(f"bench-scale: point {args} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def exponent(xs, ys, lo: float) -> float | None:
    """Slope of log y on log x over the points with x >= lo (the upper decade)."""
    import numpy as np

    pts = [(x, y) for x, y in zip(xs, ys) if x >= lo and y > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=".recarena/bench", help="folder for bench-scale.png/.md/.json")
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run of the harness)")
    a = ap.parse_args()
    if a.one:
        kind, *rest = a.one
        {"train": lambda: one_train(rest[0], rest[1], int(float(rest[2])), rest[3]), "eval": lambda: one_eval(int(float(rest[0]))),
         "serve": lambda: one_serve(int(float(rest[0]))), "users": lambda: one_users(int(float(rest[0])))}[kind]()
        return

    from tqdm import tqdm

    sizes = [1e5, 3e5, 1e6, 3e6, 1e7] if not a.quick else [2e4, 6e4, 2e5]
    items = [1e3, 3e3, 1e4, 1e5, 1e6] if not a.quick else [1e3, 3e3, 1e4]
    users_n = 1e6 if not a.quick else 1e4
    jobs = ([("train", m, "sparse_adam", str(n), "growing") for m in ("bpr", "biased-mf") for n in sizes]
            + [("train", m, "sparse_adam", str(n), "fixed") for m in ("bpr", "biased-mf") for n in sizes
               if max(sizes) / 10 <= n < max(sizes) and not a.quick]
            + [("train", m, "adam", str(n), "growing") for m in ("bpr", "biased-mf") for n in sizes if n <= 0.3 * max(sizes)]
            + [("eval", str(i)) for i in items]
            + [("serve", str(i)) for i in items] + [("users", str(users_n))])
    res: dict[str, list] = {"train": [], "eval": [], "serve": [], "users": []}
    started = time.perf_counter()
    for job in tqdm(jobs, desc="bench-scale", unit="point"):
        r = point(list(job))
        res[job[0]].append(r)
        tqdm.write(f"{' '.join(job):<24} {json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != 'graph_ms'})}")

    upper_n, upper_i = max(sizes) / 10, max(items) / 10

    def curve(m, opt, catalogue):
        rows = [r for r in res["train"] if r["model"] == m and r["optimizer"] == opt and r["catalogue"] == catalogue]
        if catalogue == "fixed":  # its largest point is the growing curve's (the same data)
            rows += [r for r in res["train"] if r["model"] == m and r["optimizer"] == opt and r["interactions"] >= max(sizes) * 0.9]
        return [r["interactions"] for r in rows], [r["epoch_s"] for r in rows]

    # the bar's figure: interactions grow, the catalogue does not (growing tables outgrow the
    # CPU caches, a cost of the table size, shown by the growing curve beside it)
    train_exp = {m: exponent(*curve(m, "sparse_adam", "fixed" if not a.quick else "growing"), upper_n * 0.9)
                 for m in ("bpr", "biased-mf")}
    grow_exp = {m: exponent(*curve(m, "sparse_adam", "growing"), upper_n * 0.9) for m in ("bpr", "biased-mf")}
    # the dense-Adam curves stop at 3e6: their upper decade is 3e5..3e6
    dense_exp = {m: exponent(*curve(m, "adam", "growing"), upper_n * 0.09) for m in ("bpr", "biased-mf")}
    ev, sv = res["eval"], res["serve"]
    exps = {"train_epoch": train_exp, "train_epoch_growing_catalogue": grow_exp, "train_epoch_dense_adam": dense_exp,
            "eval_time": exponent([r["items"] for r in ev], [r["eval_s"] for r in ev], upper_i * 0.9),
            "eval_peak_rss": exponent([r["items"] for r in ev], [r["peak_rss_gib"] for r in ev], upper_i * 0.9),
            "export_time": exponent([r["items"] for r in sv], [r["export_s"] for r in sv], upper_i * 0.9),
            "recommend_p50": exponent([r["items"] for r in sv], [r["recommend_p50_ms"] for r in sv], upper_i * 0.9)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    md = ["| model | optimizer | catalogue | interactions | users | items | batch | epoch s |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['optimizer']} | {r['catalogue']} | {r['interactions']:,} | {r['users']:,} | {r['items']:,} "
           f"| {r['batch_size']:,} | {r['epoch_s']:.2f} |" for r in res["train"]]
    md += ["", "| items | eval s (2,000 users) | eval peak RSS GiB | export s | deploy s | recommend p50 ms | p99 ms "
           "| graph: scoring ms | exclusion+other ms | top-k ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for e, s in zip(ev, sv):
        g = s["graph_ms"]
        md.append(f"| {s['items']:,} | {e['eval_s']:.2f} | {e['peak_rss_gib']:.2f} | {s['export_s']:.1f} | {s['deploy_s']:.1f} "
                  f"| {s['recommend_p50_ms']:.2f} | {s['recommend_p99_ms']:.2f} | {g['scoring']:.2f} "
                  f"| {g['exclusion and other']:.2f} | {g['top-k']:.2f} |")
    md += ["", "exponents over the upper decade: " + json.dumps(exps)]
    (out / "bench-scale.md").write_text("\n".join(md) + "\n")
    _plot(res, exps, out / "bench-scale.png")
    top = sv[-1]
    g = top["graph_ms"]
    total = sum(g.values())
    users = res["users"][0]
    summary = {
        "train_exponent": max(v for v in train_exp.values() if v is not None),
        "train_exponents": train_exp, "train_exponents_growing_catalogue": grow_exp, "train_exponents_dense_adam": dense_exp,
        "eval_peak_gib_1m_items": round(ev[-1]["peak_rss_gib"], 3),
        "eval_s_1m_items": round(ev[-1]["eval_s"], 2),
        "recommend_p50_ms_1m_items": round(top["recommend_p50_ms"], 2),
        "recommend_share_1m_items": {k: round(v / total, 3) for k, v in g.items()},
        "db_bytes_per_user_1m_users": users["bytes_per_user_beyond_seen"],
        "exponents": exps, "items_top": top["items"], "users_top": users["users"],
        "wall_s": round(time.perf_counter() - started),
    }
    (out / "bench-scale.json").write_text(json.dumps({"summary": summary, **res}, indent=1))
    print("\n".join(md))
    print(f"plot: {out / 'bench-scale.png'}")
    print("bench-scale: " + json.dumps(summary))


def _plot(res: dict, exps: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for m in ("bpr", "biased-mf"):
        for opt, cat, key, style in (("sparse_adam", "growing", "train_epoch_growing_catalogue", "o-"),
                                     ("sparse_adam", "fixed", "train_epoch", "s:"), ("adam", "growing", "train_epoch_dense_adam", "x--")):
            rows = [r for r in res["train"] if r["model"] == m and r["optimizer"] == opt
                    and (r["catalogue"] == cat or (cat == "fixed" and r["interactions"] >= 0.9 * max(x["interactions"] for x in res["train"])))]
            e = exps[key][m]
            if rows:
                ax[0, 0].loglog([r["interactions"] for r in rows], [r["epoch_s"] for r in rows], style,
                                label=f"{m}, {opt}, {cat} catalogue (exponent {e:.2f})" if e is not None else f"{m}, {opt}, {cat}")
    ax[0, 0].set(xlabel="interactions", ylabel="seconds per epoch", title="training epoch")
    ev, sv = res["eval"], res["serve"]
    x = [r["items"] for r in ev]
    ax[0, 1].loglog(x, [r["eval_s"] for r in ev], "o-", label="seconds (2,000 users)")
    ax[0, 1].loglog(x, [r["peak_rss_gib"] for r in ev], "s--", label="peak RSS GiB")
    ax[0, 1].axhline(4, color="grey", lw=0.8, ls=":")
    ax[0, 1].set(xlabel="items", title="full-ranking evaluation (chunked)")
    xs = [r["items"] for r in sv]
    ax[1, 0].loglog(xs, [r["export_s"] for r in sv], "o-", label="export s")
    ax[1, 0].loglog(xs, [r["deploy_s"] for r in sv], "s--", label="deploy s")
    ax[1, 0].set(xlabel="items", title="export and deploy (bpr, dim 64)")
    ax[1, 1].loglog(xs, [r["recommend_p50_ms"] for r in sv], "o-", label="recommend p50 (database)")
    for role, style in (("scoring", "s--"), ("top-k", "^--"), ("exclusion and other", "v:")):
        ax[1, 1].loglog(xs, [max(r["graph_ms"][role], 1e-3) for r in sv], style, label=f"graph: {role}")
    ax[1, 1].set(xlabel="items", ylabel="ms", title="recommend latency")
    for a in ax.flat:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
