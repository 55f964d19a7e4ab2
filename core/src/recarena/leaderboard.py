"""Leaderboard: the best configuration of each model, mean ± std over seeds."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from typing import Any

import numpy as np

from recarena.eval.evaluator import metric_mode
from recarena.store import ResultsStore


def boards(store: ResultsStore, protocol: str) -> list[dict[str, Any]]:
    """One board per (protocol content hash, dataset) with runs: runs measured under other
    content of the protocol, or on another dataset, are never ranked together. Boards of the
    current content come first (``current: True``), then the others, labelled."""
    from recarena.protocols import load_protocol, run_protocol_hash

    proto = load_protocol(protocol)
    keyed: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in store.runs(protocol=protocol):
        if not _finite(r):
            continue  # recorded as ok before non-finite metrics were refused: never ranked
        keyed[(run_protocol_hash(r, proto), r["dataset"])].append(r)
    out = [_board(proto, h, ds, rs) for (h, ds), rs in keyed.items()]
    return sorted(out, key=lambda b: (not b["current"], b["dataset"], b["protocol_hash"]))


def _finite(run: dict[str, Any]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v)
               for part in ("valid_metrics", "test_metrics") for v in (run.get(part) or {}).values())


def build(store: ResultsStore, protocol: str, dataset: str | None = None) -> dict[str, Any]:
    """The board of the protocol's current content on ``dataset`` (when the protocol's runs
    are on one dataset it may be left out)."""
    from recarena.errors import RecArenaError
    from recarena.protocols import load_protocol

    current = [b for b in boards(store, protocol) if b["current"]]
    if dataset is not None:
        current = [b for b in current if b["dataset"] == dataset]
    if len(current) > 1:
        raise RecArenaError(f"Protocol {protocol!r} has runs on several datasets ({', '.join(b['dataset'] for b in current)}): "
                            "name one.")
    if current:
        return current[0]
    proto = load_protocol(protocol)
    return _board(proto, proto["_hash"], dataset or proto["dataset"], [])


def _board(proto: dict, protocol_hash: str, dataset: str, runs: list[dict]) -> dict[str, Any]:
    """Rows per model: the configuration with the best mean validation selection metric,
    reported with its test metrics (mean, std over seeds), sorted by the test selection metric.

    Selection never reads test metrics: a configuration without validation metrics cannot be
    chosen fairly, so it is listed after the ranked rows, unranked (``ranked: False``), one row
    per such configuration."""
    select = proto["select"].lower()
    mode = metric_mode(select)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        groups[(r["model"], r["config_hash"])].append(r)
    best: dict[str, dict] = {}
    unranked: list[dict] = []
    for (model, chash), rs in groups.items():
        val = [r["valid_metrics"].get(select) for r in rs if r.get("valid_metrics")]
        val = [v for v in val if v is not None]
        metrics = sorted({m for r in rs for m in r["test_metrics"]})
        stats = {}
        for m in metrics:
            vals = np.array([r["test_metrics"][m] for r in rs if m in r["test_metrics"]], float)
            stats[m] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
        row = {
            "model": model, "config_hash": chash, "seeds": sorted(r["seed"] for r in rs), "n": len(rs),
            "metrics": stats, "fit_seconds": float(np.mean([r["fit_seconds"] or 0 for r in rs])),
            "run_ids": [r["run_id"] for r in rs], "ranked": bool(val),
            "params": (rs[0].get("config") or {}).get("params", {}),
        }
        if not val:
            unranked.append(row)
            continue
        score = float(np.mean(val))
        row["valid"] = score
        key = score if mode == "max" else -score
        if model not in best or key > best[model]["_key"]:
            best[model] = {"_key": key, **row}
    rows = sorted(best.values(), key=lambda r: r["metrics"].get(select, {}).get("mean", np.nan), reverse=(mode == "max"))
    for r in rows:
        r.pop("_key")
    rows += sorted(unranked, key=lambda r: (r["model"], r["config_hash"]))
    anchors = [a for a in proto.get("anchors") or [] if a.get("dataset") in (None, dataset)]
    return {
        "protocol": proto["name"], "protocol_hash": protocol_hash, "dataset": dataset,
        "current": protocol_hash == proto["_hash"], "select": select, "mode": mode, "rows": rows,
        "metrics": proto["metrics"], "anchors": anchors,
    }


def _changed_params(row: dict) -> str:
    """``k=v`` for each recorded parameter that differs from the plugin's default."""
    from recarena import plugins

    try:
        defaults = plugins.get(row["model"]).default_params()
    except Exception:  # a plugin no longer installed: show everything recorded
        defaults = {}

    def same(a, b):
        return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b

    return ", ".join(f"{k}={v}" for k, v in (row.get("params") or {}).items() if k not in defaults or not same(defaults[k], v))


def render(board: dict[str, Any], fmt: str = "table") -> str:
    metrics = [m.lower() for m in board["metrics"]]
    if fmt == "json":
        return json.dumps(board, indent=2)
    header = ["#", "model", "seeds", *metrics, "fit s"]
    body = []
    for k, r in enumerate(board["rows"], 1):
        # an unranked row (no validation metrics to choose its configuration by) has no place
        cells = [str(k) if r.get("ranked", True) else "-",
                 r["model"] + ("" if r.get("ranked", True) else " (no validation: unranked)"), str(r["n"])]
        for m in metrics:
            s = r["metrics"].get(m)
            cells.append("" if s is None else (f"{s['mean']:.4f} ± {s['std']:.4f}" if r["n"] > 1 else f"{s['mean']:.4f}"))
        cells.append(f"{r['fit_seconds']:.1f}")
        body.append(cells)
    for a in board["anchors"]:
        cells = ["", f"{a['model']} (published: {a.get('source', '')})", ""]
        for m in metrics:
            v = (a.get("metrics") or {}).get(m)
            cells.append("" if v is None else f"{v:.4f}")
        cells.append("")
        body.append(cells)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(body)
        return buf.getvalue()
    if fmt == "md":
        # the parameters that differ from the plugin's defaults say which configuration won
        header = header + ["params"]
        for cells, r in zip(body, board["rows"]):
            cells.append(_changed_params(r))
        for cells in body[len(board["rows"]):]:
            cells.append("")
        other = "" if board.get("current", True) else f", other protocol content {board['protocol_hash']}: not comparable"
        lines = [f"### {board['protocol']} on {board.get('dataset', '?')} (sorted by {board['select']}{other})", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    label = "" if board.get("current", True) else (
        f" -- runs under OTHER content of this protocol (hash {board['protocol_hash']}), not comparable with current runs")
    out = [f"Leaderboard: {board['protocol']} on {board.get('dataset', '?')} (sorted by test {board['select']}, "
           f"best config per model by validation){label}"]
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    if not board["rows"]:
        out.append("(no runs recorded for this protocol yet)")
    return "\n".join(out)
