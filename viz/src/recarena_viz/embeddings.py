"""UMAP maps of a trained model's embeddings: items coloured by genre (or popularity), users
by an attribute (or activity). PNG for reports, a self-contained HTML (inline SVG, hover
shows titles) for exploring. Deterministic for a seed."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from recarena.errors import RecArenaError

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD",
           "#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#E6AB02", "#A6761D", "#666666"]


def project(vectors: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """UMAP to 2-D: float32 [n, d] -> float32 [n, 2] (cosine metric; same seed, same map)."""
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by setting random_state": that is the point
        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(vectors) - 1), metric="cosine",
                            random_state=seed, n_jobs=1)
        return reducer.fit_transform(np.asarray(vectors, np.float32)).astype(np.float32)


def labels_for(model, run: dict | None, what: str, color_by: str, data_dir=None) -> tuple[list[str], list[str] | None, str]:
    """(a category or value per point, titles or None, what the colour means)."""
    ids = model.item_ids_ if what == "item" else model.user_ids_
    n = len(ids.raw)
    feats = None
    if run is not None and color_by != "popularity":
        try:
            from recarena.data.datasets import load_any

            data = load_any(run["dataset"], data_dir)
            table = data.item_features if what == "item" else data.user_features
            if table is not None:
                keys = data.items.raw if what == "item" else data.users.raw
                feats = table.assign(_id=[str(k) for k in keys]).set_index("_id").reindex([str(r) for r in ids.raw])
        except Exception:  # no data on disk: colour by popularity instead
            feats = None
    titles = None
    if feats is not None and "title" in feats:
        titles = [str(t) for t in feats["title"].fillna("")]
    if feats is not None:
        col = {"genre": "genres", "gender": "gender", "age": "age", "occupation": "occupation"}.get(color_by, color_by)
        if col == "genres" and col in feats:
            return [str(g).split("|")[0] if isinstance(g, str) and g else "unknown" for g in feats[col]], titles, "first genre"
        if col in feats:
            return [str(v) for v in feats[col].fillna("unknown")], titles, col
    # popularity (items) / activity (users) from the training interactions the model saw
    if what == "item":
        counts = np.bincount(model.seen_indices_, minlength=n)
    else:
        counts = np.diff(model.seen_indptr_)
    edges = np.quantile(counts, [0.5, 0.8, 0.95])
    names = ["bottom 50%", "50-80%", "80-95%", "top 5%"]
    return [names[int(np.searchsorted(edges, c, side="right"))] for c in counts], titles, (
        "popularity (training interactions)" if what == "item" else "activity (training interactions)")


def draw_png(xy: np.ndarray, labels: list[str], path: Path, title: str, legend_title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = _categories(labels)
    fig, ax = plt.subplots(figsize=(8, 7))
    for i, c in enumerate(cats):
        m = np.array([lab == c for lab in labels])
        ax.scatter(xy[m, 0], xy[m, 1], s=5, alpha=0.7, color=PALETTE[i % len(PALETTE)], label=f"{c} ({m.sum()})")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(title=legend_title, fontsize=7, markerscale=2.5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _categories(labels: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    return sorted(counts, key=lambda c: -counts[c])


def draw_html(xy: np.ndarray, labels: list[str], titles: list[str] | None, ids, path: Path, title: str, legend_title: str) -> Path:
    cats = _categories(labels)
    color = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(cats)}
    lo, hi = xy.min(0), xy.max(0)
    scale = 760 / np.maximum(hi - lo, 1e-9)
    pts = []
    for k, (x, y) in enumerate(xy):
        px, py = 20 + (x - lo[0]) * scale[0], 20 + (hi[1] - y) * scale[1]
        name = titles[k] if titles and titles[k] else str(ids[k])
        pts.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3' fill='{color[labels[k]]}'><title>{html.escape(name)} — "
                   f"{html.escape(labels[k])}</title></circle>")
    legend = "".join(f"<li><span style='background:{color[c]}'></span>{html.escape(c)}</li>" for c in cats)
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            "<link rel=icon href='data:,'><style>body{font-family:system-ui,sans-serif;display:flex;gap:1em}"
            "circle{opacity:.75}circle:hover{opacity:1;stroke:#000}ul{list-style:none;padding:0}"
            "li span{display:inline-block;width:.8em;height:.8em;margin-right:.4em}</style></head><body>"
            f"<svg width=800 height=800 viewBox='0 0 800 800'>{''.join(pts)}</svg>"
            f"<div><h3>{html.escape(title)}</h3><p>colour: {html.escape(legend_title)}; hover a point for its name</p>"
            f"<ul>{legend}</ul></div></body></html>")
    path.write_text(page)
    return path


def embedding_map(run_id: str, out: str | Path, what: str = "item", color_by: str | None = None, seed: int = 0,
                  data_dir=None, store=None) -> Path:
    from recarena.base import Recommender
    from recarena.store import ResultsStore

    store = store or ResultsStore()
    run = store.get(run_id)
    if run is None:
        raise RecArenaError(f"No run {run_id!r} in {store.path}.")
    model = Recommender.load(run["artifact_path"])
    if not model.capabilities.embeddings:
        raise RecArenaError(f"{run['model']} has no embeddings to map (capabilities: {model.capabilities.to_dict()}).")
    emb = model.embeddings()
    if what not in emb:
        raise RecArenaError(f"{run['model']} has no {what} embeddings (it has: {', '.join(emb)}).")
    color_by = color_by or ("genre" if what == "item" else "gender")
    labels, titles, legend = labels_for(model, run, what, color_by, data_dir)
    xy = project(emb[what], seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{run['model']} {what} embeddings ({run['dataset']}, run {run_id}), UMAP seed {seed}"
    ids = (model.item_ids_ if what == "item" else model.user_ids_).raw
    if out.suffix == ".html":
        return draw_html(xy, labels, titles, ids, out, title, legend)
    if out.suffix == ".png":
        return draw_png(xy, labels, out, title, legend)
    raise RecArenaError(f"--out {out}: expected a .png or .html file.")
