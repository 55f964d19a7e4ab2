"""``recarena report`` and ``recarena viz ...`` (reached through ``recarena.commands``)."""

from __future__ import annotations

import argparse


def report_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="recarena report")
    p.add_argument("--sweep", help="only the runs of this sweep (default: every run in the store)")
    p.add_argument("--out", required=True, help="folder for index.html, report.md and images/")
    a = p.parse_args(argv)
    from recarena.store import ResultsStore
    from recarena_viz.report import collect, write

    rep = collect(ResultsStore(), a.sweep)
    page = write(rep, a.out)
    n_runs = sum(len(s["runs"]) for s in rep["sections"])
    n_failed = sum(len(s["failed"]) for s in rep["sections"])
    print(f"report: {len(rep['sections'])} protocols, {n_runs} runs, {n_failed} failed -> {page} (and report.md)")
    return 0


def viz_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="recarena viz")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("embeddings", help="UMAP map of a run's item (or user) embeddings")
    e.add_argument("run_id")
    e.add_argument("--out", required=True, help="FILE.png or FILE.html")
    e.add_argument("--users", action="store_true", help="user embeddings instead of item embeddings")
    e.add_argument("--color-by", help="genre | popularity (items); gender | age | occupation | activity (users)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--data-dir", help="where the dataset lies (for genres, titles, user attributes)")
    a = p.parse_args(argv)
    from recarena_viz.embeddings import embedding_map

    path = embedding_map(a.run_id, a.out, "user" if a.users else "item", a.color_by, a.seed, a.data_dir)
    print(f"wrote {path}")
    return 0
