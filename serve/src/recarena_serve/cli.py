"""``recarena serve ...`` (reached through the ``recarena.commands`` entry point)."""

from __future__ import annotations

import argparse
import json


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="recarena serve")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="bundle the leaderboard's best runs (ONNX + id maps + seen items)")
    e.add_argument("--protocol", "-p")
    e.add_argument("--top", type=int, default=1)
    e.add_argument("--run", action="append", dest="runs", metavar="RUN_ID")
    e.add_argument("--out", required=True)
    e.add_argument("-k", type=int, default=10)
    a = p.parse_args(argv)
    from recarena_serve.export import export

    paths = export(a.protocol, a.out, a.top, a.runs, a.k)
    for path in paths:
        m = json.loads((path / "manifest.json").read_text())
        parity = ", ".join(f"{f} {d:.1e}" for f, d in m["parity_max_abs_diff"].items()) or "top-N table"
        print(f"{path}: {m['model']} ({m['protocol']}, run {m['run_id']}), parity {parity}")
    return 0
