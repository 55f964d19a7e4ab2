"""``recarena report``: the leaderboard report as one static HTML file (plus its images, opens
from disk with no server) and the same content as Markdown.

Per protocol: the ranked table (mean ± std over seeds, published anchors beside ours), a
paired significance test of each model against the best, the leaderboard chart, quality vs
fit time, learning curves, each plugin's hyperparameter sensitivity, and failed runs."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path

import numpy as np

from recarena import leaderboard
from recarena.store import ResultsStore
from recarena_viz import plots


class _SweepView:
    """The results store restricted to one sweep's runs."""

    def __init__(self, store: ResultsStore, sweep: str | None):
        self.store, self.sweep = store, sweep
        self.path = store.path

    def runs(self, protocol=None, status="ok", model=None, sweep=None):
        return self.store.runs(protocol=protocol, status=status, model=model, sweep=sweep or self.sweep)

    def get(self, run_id):
        return self.store.get(run_id)


def paired_test(best_runs: list[dict], runs: list[dict], metric: str) -> dict:
    """Paired t-test over seeds (the seeds both have) of ``runs`` against ``best_runs``."""
    a = {r["seed"]: r["test_metrics"].get(metric) for r in best_runs}
    b = {r["seed"]: r["test_metrics"].get(metric) for r in runs}
    seeds = sorted(s for s in a if s in b and a[s] is not None and b[s] is not None)
    if len(seeds) < 2:
        return {"test": "paired t-test over seeds", "n": len(seeds), "p": None, "note": "needs >= 2 shared seeds"}
    from scipy import stats

    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    if np.allclose(x - y, 0):
        return {"test": "paired t-test over seeds", "n": len(seeds), "p": 1.0, "diff": 0.0}
    res = stats.ttest_rel(x, y)
    p = float(res.pvalue)
    return {"test": "paired t-test over seeds", "n": len(seeds), "p": None if math.isnan(p) else p,
            "diff": float(np.mean(y - x))}


def _fmt(m: dict | None) -> str:
    return f"{m['mean']:.4f} ± {m['std']:.4f}" if m else ""


def collect(store: ResultsStore, sweep: str | None = None) -> dict:
    view = _SweepView(store, sweep)
    protocols = sorted({r["protocol"] for r in view.runs(status=None)})
    sections = []
    from recarena.protocols import load_protocol, run_protocol_hash

    for proto in protocols:
        try:
            proto_doc = load_protocol(proto)
            boards = leaderboard.boards(view, proto) or [leaderboard.build(view, proto)]
        except Exception as e:  # a protocol file that is gone: still show its failures
            boards = [{"protocol": proto, "rows": [], "select": "", "mode": "max", "metrics": [], "anchors": [],
                       "error": str(e), "dataset": None, "protocol_hash": None, "current": True}]
        failed = view.runs(protocol=proto, status="failed")
        for board in boards:
            # each board holds the runs of one protocol content on one dataset, never mixed
            ok = [r for r in view.runs(protocol=proto) if r["dataset"] == board["dataset"]
                  and run_protocol_hash(r, proto_doc) == board["protocol_hash"]] if board["rows"] else []
            by_id = {r["run_id"]: r for r in ok}
            if board["rows"]:
                best_runs = [by_id[i] for i in board["rows"][0]["run_ids"] if i in by_id]
                for row in board["rows"]:
                    row["significance"] = None if row is board["rows"][0] else paired_test(
                        best_runs, [by_id[i] for i in row["run_ids"] if i in by_id], board["select"])
            sections.append({"board": board, "runs": ok, "failed": failed if board is boards[0] else []})
    return {"sweep": sweep, "store": str(store.path), "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "sections": sections}


def _images(section: dict, img: Path, slug: str) -> dict[str, str]:
    board, runs = section["board"], section["runs"]
    out = {}
    if not board["rows"]:
        return out
    out["leaderboard"] = plots.leaderboard_chart(board, img / f"{slug}-leaderboard.png").name
    out["time"] = plots.quality_vs_time(board, img / f"{slug}-quality-vs-time.png").name
    by_id = {r["run_id"]: r for r in runs}
    best = {row["model"]: by_id[row["run_ids"][0]] for row in board["rows"] if row["run_ids"][0] in by_id}
    p = plots.learning_curves(best, board["select"], img / f"{slug}-curves.png")
    if p:
        out["curves"] = p.name
    for model in sorted({r["model"] for r in runs}):
        p = plots.sensitivity([r for r in runs if r["model"] == model], board["select"], img / f"{slug}-sens-{model}.png")
        if p:
            out[f"sens:{model}"] = p.name
    return out


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in s)


def _sig(row: dict) -> str:
    s = row.get("significance")
    if s is None:
        return "best"
    if s.get("p") is None:
        return f"n/a ({s.get('note', '')})"
    mark = " *" if s["p"] < 0.05 else ""
    return f"p={s['p']:.3g}{mark} (n={s['n']})"


def write(report: dict, out: str | Path) -> Path:
    out = Path(out)
    img = out / "images"
    img.mkdir(parents=True, exist_ok=True)
    md = [f"# RecArena report{' — sweep ' + report['sweep'] if report['sweep'] else ''}",
          f"Generated {report['generated']} from `{report['store']}`.", ""]
    h = [f"<h1>RecArena report{' — sweep ' + html.escape(report['sweep']) if report['sweep'] else ''}</h1>",
         f"<p class=meta>Generated {report['generated']} from <code>{html.escape(report['store'])}</code>. "
         "Significance: paired t-test over seeds of each model against the best (* p &lt; 0.05).</p>"]
    if not report["sections"]:
        md.append("No runs recorded.")
        h.append("<p>No runs recorded.</p>")
    for sec in report["sections"]:
        board = sec["board"]
        title = board["protocol"] + (f" on {board['dataset']}" if board.get("dataset") else "")
        if not board.get("current", True):
            title += f" (other protocol content {board['protocol_hash']}: not comparable with current runs)"
        slug = _slug(board["protocol"] + (f"-{board['dataset']}" if board.get("dataset") else "")
                     + ("" if board.get("current", True) else f"-{board['protocol_hash']}"))
        images = _images(sec, img, slug)
        metrics = [m.lower() for m in board["metrics"]]
        md += [f"## {title}", f"Selection metric: {board['select']} ({'higher' if board['mode'] == 'max' else 'lower'} is better).", ""]
        md.append("| # | model | seeds | " + " | ".join(metrics) + " | fit s | vs best | params |")
        md.append("|" + "---|" * (len(metrics) + 6))
        h.append(f"<h2 id='{slug}'>{html.escape(title)}</h2>")
        h.append(f"<p>Selection metric: <b>{html.escape(board['select'])}</b>.</p><table><tr><th>#</th><th>model</th><th>seeds</th>"
                 + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "<th>fit s</th><th>vs best</th><th>params (not defaults)</th></tr>")
        for i, row in enumerate(board["rows"], 1):
            cells = [_fmt(row["metrics"].get(m)) for m in metrics]
            rank = str(i) if row.get("ranked", True) else "-"
            params = leaderboard._changed_params(row) if "params" in row else ""
            md.append(f"| {rank} | {row['model']} | {row['n']} | " + " | ".join(cells)
                      + f" | {row['fit_seconds']:.1f} | {_sig(row)} | {params} |")
            h.append(f"<tr><td>{rank}</td><td>{html.escape(row['model'])}</td><td>{row['n']}</td>"
                     + "".join(f"<td>{c}</td>" for c in cells) + f"<td>{row['fit_seconds']:.1f}</td><td>{html.escape(_sig(row))}</td>"
                     + f"<td style='text-align:left'>{html.escape(params)}</td></tr>")
        for a in board.get("anchors", []):
            cells = [f"{a['metrics'][m]:.4f}" if m in (a.get("metrics") or {}) else "" for m in metrics]
            label = f"{a['model']} (published, {a.get('source', '')})"
            md.append(f"| — | {label} | | " + " | ".join(cells) + " | | | |")
            h.append(f"<tr class=anchor><td>—</td><td>{html.escape(label)}</td><td></td>" + "".join(f"<td>{c}</td>" for c in cells)
                     + "<td></td><td></td><td></td></tr>")
        h.append("</table>")
        md.append("")
        for key, title in (("leaderboard", "Leaderboard"), ("time", "Quality vs fit time"), ("curves", "Learning curves")):
            if key in images:
                md.append(f"![{title}](images/{images[key]})")
                h.append(f"<figure><img src='images/{images[key]}' alt='{title}'><figcaption>{title}</figcaption></figure>")
        sens = [(k.split(":", 1)[1], v) for k, v in images.items() if k.startswith("sens:")]
        if sens:
            md.append("\n### Hyperparameter sensitivity")
            h.append("<h3>Hyperparameter sensitivity</h3>")
            for model, name in sens:
                md.append(f"![{model}](images/{name})")
                h.append(f"<figure><img src='images/{name}' alt='sensitivity of {html.escape(model)}'></figure>")
        if sec["failed"]:
            md += ["", "### Failed runs", "| model | seed | run | error |", "|---|---|---|---|"]
            h.append("<h3>Failed runs</h3><table><tr><th>model</th><th>seed</th><th>run</th><th>error</th></tr>")
            for r in sec["failed"]:
                first = (r.get("error") or "").splitlines()[0] if r.get("error") else ""
                md.append(f"| {r['model']} | {r['seed']} | {r['run_id']} | {first.replace('|', '/')} |")
                h.append(f"<tr class=failed><td>{html.escape(r['model'])}</td><td>{r['seed']}</td><td>{r['run_id']}</td>"
                         f"<td><details><summary>{html.escape(first)}</summary><pre>{html.escape(r.get('error') or '')}</pre></details></td></tr>")
            h.append("</table>")
        md.append("")
    css = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0;display:block;max-width:100%;overflow-x:auto}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}"
           "td:nth-child(2),th:nth-child(2){text-align:left}tr.anchor{color:#a33;font-style:italic}"
           "tr.failed td{background:#fee}figure{display:inline-block;margin:.5em}img{max-width:100%}"
           ".meta{color:#666}pre{text-align:left;white-space:pre-wrap;max-width:700px}")
    page = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>RecArena report</title>"
            f"<link rel=icon href='data:,'><style>{css}</style></head><body>" + "\n".join(h) + "</body></html>")
    (out / "index.html").write_text(page)
    (out / "report.md").write_text("\n".join(md) + "\n")
    return out / "index.html"
