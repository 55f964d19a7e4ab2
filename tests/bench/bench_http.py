"""bench-http: the HTTP service's sustained recommend throughput and latency.

EASE trained on recbole-ml1m (seed 0), exported, deployed; `recarena serve http` in front of
the database; Debian's `wrk` (a C client, closed loop, keep-alive connections) asks for the
top-10 of random known users. Database, service and client share this machine's cores.
Prints p50/p99 at paced rates (100, 500 requests/s: wrk's per-connection delay) and at
saturation, the same for the Python API without HTTP (the floor), and ends with one line
``bench-http: <json>`` for the sustained run.

    python tests/bench/bench_http.py --data-dir ../shared/data [--seconds 30] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLI = str(Path(sys.executable).with_name("recarena"))

# wrk's summary as one JSON line (shared by both scripts)
DONE = r"""done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"errors\": %d, \"status_errors\": %d, \"timeouts\": %d, " ..
    "\"duration_us\": %d, \"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d}\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write, summary.errors.status,
    summary.errors.timeout, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end"""

LUA = r"""
local users = {}
for line in io.lines("%(users)s") do users[#users + 1] = line end
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", "/v1/endpoints/%(name)s/recommend?k=10&user=" .. users[math.random(#users)])
end
%(delay)s
%(done)s"""

FEEDBACK_LUA = r"""
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
%(done)s"""


def run_wrk(script_text: str, url: str, seconds: int, connections: int) -> dict:
    """Runs wrk with a Lua script ending in DONE; returns rps, p50/p99/max ms, errors, requests."""
    script = Path(tempfile.mkdtemp()) / "bench.lua"
    script.write_text(script_text)
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "2s", "-s", str(script), url],
                         capture_output=True, text=True, check=True)
    r = json.loads(re.search(r"^JSON (.*)$", out.stdout, re.M).group(1))
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000, "errors": r["errors"] + r["status_errors"] + r["timeouts"], "requests": r["requests"]}


def wrk(url: str, name: str, users_file: Path, seconds: int, connections: int, rate: float | None, seed: int = 0) -> dict:
    """Recommend GETs for random users: closed loop, or paced to ``rate`` by wrk's delay()."""
    delay = "" if rate is None else f"delay = function() return {1000.0 * connections / rate:.3f} end"
    return run_wrk(LUA % {"users": users_file, "seed": seed, "name": name, "delay": delay, "done": DONE}, url, seconds, connections)


def wrk_feedback(url: str, name: str, body: str, seconds: int, connections: int) -> dict:
    """The same click POSTed over and over (counted once, logged every time)."""
    r = run_wrk(FEEDBACK_LUA % {"body": body, "done": DONE}, f"{url}/v1/endpoints/{name}/feedback", seconds, connections)
    return {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of processes (and their threads) so far"""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (FileNotFoundError, IndexError):
            pass
    return total


def family(pid: int) -> list[int]:
    """pid and its descendants (uvicorn's workers)"""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def python_floor(ssdb: str, name: str, users: list[str], n: int = 5000, rate: float | None = None) -> dict:
    """`serving.Service.recommend` in a loop, one client: as fast as it goes, or paced."""
    from recarena_serve import serving

    svc = serving.Service(ssdb, name)
    rng = np.random.default_rng(0)
    for u in rng.choice(users, 200):
        svc.recommend(str(u), 10)
    lat = []
    t0 = time.perf_counter()
    for j, u in enumerate(rng.choice(users, n)):
        if rate is not None:
            wait = t0 + j / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        t = time.perf_counter()
        svc.recommend(str(u), 10)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    svc.close()
    lat_ms = np.array(lat) * 1000
    return {"rps": n / total, "p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--model", default="ease")
    ap.add_argument("--protocol", default="recbole-ml1m")
    ap.add_argument("--aof", action="store_true", help="database with appendonly + appendfsync always (durable feedback)")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench-http: wrk is not installed (just setup installs Debian's wrk)")
    from recarena_serve import db, serving

    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    env = {**os.environ, "RECARENA_HOME": str(work / "home"), "OMP_NUM_THREADS": "2"}
    os.environ["RECARENA_HOME"] = env["RECARENA_HOME"]
    subprocess.run([CLI, "train", a.model, "--protocol", a.protocol, "--data-dir", a.data_dir, "--no-progress"], check=True, env=env)
    subprocess.run([CLI, "serve", "export", "--protocol", a.protocol, "--out", str(work / "bundles")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    bundle = next((work / "bundles").iterdir())
    d = db.start(work / "db", extra_config=db.DURABLE if a.aof else None)
    ssdb = d.nodes[0].address
    svc_proc = None
    try:
        serving.deploy([bundle], ssdb, name="bench", progress=False)
        users = [str(u) for u in json.loads((bundle / "ids.json").read_text())["users"]]
        users_file = work / "users.txt"
        users_file.write_text("\n".join(users) + "\n")
        floor = python_floor(ssdb, "bench", users)
        print(f"python API (no HTTP, one client): {floor['rps']:.0f} req/s, p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms")
        for rate in (100, 500):
            floor[f"paced_{rate}"] = python_floor(ssdb, "bench", users, n=rate * 10, rate=rate)
            print(f"python API paced {rate} req/s: p50 {floor[f'paced_{rate}']['p50_ms']:.2f} ms, "
                  f"p99 {floor[f'paced_{rate}']['p99_ms']:.2f} ms")
        port = db.free_port()
        svc_proc = subprocess.Popen([CLI, "serve", "http", "--ssdb", ssdb, "--port", str(port), "--workers", str(a.workers)],
                                    start_new_session=True, env=env)
        url = f"http://127.0.0.1:{port}"
        import httpx

        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        wrk(url, "bench", users_file, 3, a.connections, None)  # warm-up: caches, id maps
        rows = {}
        one = wrk(url, "bench", users_file, 5, 1, None)
        print(f"one connection: {one['rps']:.0f} req/s, p50 {one['p50_ms']:.2f} ms, p99 {one['p99_ms']:.2f} ms")
        for rate in (100, 500):
            rows[rate] = wrk(url, "bench", users_file, 10, a.connections, rate)
            print(f"paced {rate} req/s: got {rows[rate]['rps']:.0f}, p50 {rows[rate]['p50_ms']:.2f} ms, "
                  f"p99 {rows[rate]['p99_ms']:.2f} ms, errors {rows[rate]['errors']}")
        svc_pids, db_pids = family(svc_proc.pid), [d.nodes[0].pid]
        c0 = (cpu_seconds(svc_pids), cpu_seconds(db_pids), os.times())
        sat = wrk(url, "bench", users_file, a.seconds, a.connections, None)
        t1 = os.times()
        cpu = {"service_us": (cpu_seconds(svc_pids) - c0[0]) / sat["requests"] * 1e6,
               "database_us": (cpu_seconds(db_pids) - c0[1]) / sat["requests"] * 1e6,
               "client_us": (t1.children_user + t1.children_system - c0[2].children_user - c0[2].children_system)
               / sat["requests"] * 1e6}
        print("CPU per request: " + ", ".join(f"{k[:-3]} {v:.0f} us" for k, v in cpu.items()))
        print(f"saturated ({a.connections} connections, {a.seconds} s): {sat['rps']:.0f} req/s, p50 {sat['p50_ms']:.2f} ms, "
              f"p99 {sat['p99_ms']:.2f} ms, max {sat['max_ms']:.1f} ms, errors {sat['errors']}")
        rec = httpx.get(f"{url}/v1/endpoints/bench/recommend", params={"user": users[0]}).json()
        fb = wrk_feedback(url, "bench", json.dumps({"request_id": rec["request_id"], "item": str(rec["items"][0]["item"]),
                                                     "event": "click"}), 10, a.connections)
        print(f"feedback ({'AOF, fsync before reply' if a.aof else 'no AOF'}): {fb['rps']:.0f} req/s, "
              f"p50 {fb['p50_ms']:.2f} ms, p99 {fb['p99_ms']:.2f} ms, errors {fb['errors']}")
        out = {"model": a.model, "protocol": a.protocol, "seconds": a.seconds, "connections": a.connections,
               "client": "wrk 4.1.0 (Debian), closed loop, keep-alive", "workers": a.workers, "aof": a.aof,
               "rps": round(sat["rps"], 1), "p50_ms": round(sat["p50_ms"], 3), "p99_ms": round(sat["p99_ms"], 3),
               "errors": sat["errors"], "paced": {str(k): {x: round(v, 3) for x, v in r.items()} for k, r in rows.items()},
               "python_api": {x: (round(v, 3) if not isinstance(v, dict) else {y: round(w, 3) for y, w in v.items()})
                              for x, v in floor.items()}, "cores": os.cpu_count(),
               "cpu_per_request_us": {k: round(v) for k, v in cpu.items()},
               "feedback": {x: round(v, 3) for x, v in fb.items()}}
        print("bench-http: " + json.dumps(out))
    finally:
        if svc_proc is not None:
            os.killpg(svc_proc.pid, signal.SIGTERM)
            svc_proc.wait(timeout=30)
        d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
