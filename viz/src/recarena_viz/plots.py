"""Leaderboard charts, quality vs fit time, learning curves and hyperparameter sensitivity,
as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def leaderboard_chart(board: dict, path: Path) -> Path:
    """Horizontal bars of the selection metric (mean ± std over seeds) per model, published
    anchors as dashed lines."""
    plt = _plt()
    sel = board["select"]
    rows = [r for r in board["rows"] if sel in r["metrics"]]
    n_anchors = sum((a.get("metrics") or {}).get(sel) is not None for a in board.get("anchors", []))
    height = 0.45 * max(3, len(rows)) + 1.2 + 0.2 * n_anchors
    fig, ax = plt.subplots(figsize=(7, height))
    names = [r["model"] for r in rows][::-1]
    means = [r["metrics"][sel]["mean"] for r in rows][::-1]
    stds = [r["metrics"][sel]["std"] for r in rows][::-1]
    ax.barh(names, means, xerr=stds, color="#4C72B0", capsize=3)
    # anchors as lines named in a legend: labels written beside close lines would overprint
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1))]
    colors = ["#C44E52", "#8172B2", "#CCB974", "#64B5CD", "#55A868"]
    shown = 0
    for a in board.get("anchors", []):
        v = (a.get("metrics") or {}).get(sel)
        if v is not None:
            ax.axvline(v, ls=styles[shown % len(styles)], lw=1.2, color=colors[shown % len(colors)],
                       label=f"{a['model']} ({a.get('source', 'published')}): {v:.4f}")
            shown += 1
    if shown:
        fig.legend(fontsize=7, loc="lower center", frameon=False)
    ax.set_xlabel(f"test {sel} ({'lower' if board['mode'] == 'min' else 'higher'} is better)")
    ax.set_title(board["protocol"] + (f" on {board['dataset']}" if board.get("dataset") else ""))
    lo = min(means + [(a.get("metrics") or {}).get(sel, np.inf) for a in board.get("anchors", [])], default=0)
    if board["mode"] == "min" and lo > 0:
        ax.set_xlim(left=lo * 0.9)
    # room under the axes for the anchors' legend, one line each
    fig.tight_layout(rect=(0, (0.2 * shown + 0.1) / height if shown else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def quality_vs_time(board: dict, path: Path) -> Path:
    plt = _plt()
    sel = board["select"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in board["rows"]:
        if sel not in r["metrics"]:
            continue
        x = max(r["fit_seconds"], 1e-3)
        ax.errorbar(x, r["metrics"][sel]["mean"], yerr=r["metrics"][sel]["std"], fmt="o", capsize=3)
        ax.annotate(r["model"], (x, r["metrics"][sel]["mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("fit time per run (s, log scale)")
    ax.set_ylabel(f"test {sel}")
    ax.set_title(f"{board['protocol']}: quality vs fit time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curves(runs_by_model: dict[str, dict], select: str, path: Path) -> Path | None:
    """One validation curve per model (its best run's per-epoch history)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for model, run in runs_by_model.items():
        hist = run.get("history") or []
        ys = [h.get(select, h.get(f"val_{select}")) for h in hist if isinstance(h, dict)]
        ys = [y for y in ys if y is not None]
        if len(ys) >= 2:
            ax.plot(range(1, len(ys) + 1), ys, marker=".", label=model)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {select}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sensitivity(runs: list[dict], select: str, path: Path) -> Path | None:
    """Validation metric against each hyperparameter that varies across ``runs`` (one model)."""
    plt = _plt()
    params: dict[str, list] = {}
    for r in runs:
        for k, v in (r["config"].get("params") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                params.setdefault(k, []).append(v)
    varying = [k for k, vs in params.items() if len(set(vs)) > 1]
    if not varying:
        return None
    fig, axes = plt.subplots(1, len(varying), figsize=(3.2 * len(varying), 3), squeeze=False)
    for ax, k in zip(axes[0], varying):
        xs, ys = [], []
        for r in runs:
            v = (r.get("valid_metrics") or {}).get(select)
            if v is not None and k in r["config"]["params"]:
                xs.append(r["config"]["params"][k])
                ys.append(v)
        ax.scatter(xs, ys, s=18)
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(k)
        ax.set_ylabel(f"valid {select}")
        ax.grid(alpha=0.3)
    fig.suptitle(runs[0]["model"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
