"""bench-db: the inference database under load, through the real smartredis client.

Prints: round-trip latency (put_tensor + run_model + get_tensor) of an MF top-10 model over
3,706 items at batch 1 and 256, with in-process onnxruntime as the reference; throughput with
4 client processes while a 5th measures PING latency; server RSS over 100,000 model runs; a
fuzz run of random AI.* commands; and (with --leaks) a valgrind run of every command."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
os.environ.setdefault("SR_SOCKET_TIMEOUT", "60000")

N_USERS, N_ITEMS, DIM, K = 6040, 3706, 64, 10


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def round_trips(address: str, batch: int, n: int, seed: int = 0) -> list[float]:
    from smartredis import Client

    c = Client(address=address, cluster=False)
    r = np.random.default_rng(seed)
    out = []
    key = f"u{seed}"
    for _i in range(n):
        users = r.integers(0, N_USERS, size=batch).astype(np.int64)
        t = time.perf_counter()
        c.put_tensor(key, users)
        c.run_model("rec", [key], [f"items{seed}", f"scores{seed}"])
        c.get_tensor(f"items{seed}")
        c.get_tensor(f"scores{seed}")
        out.append(time.perf_counter() - t)
    return out


def _load_worker(address, seed, seconds, q):
    from smartredis import Client

    c = Client(address=address, cluster=False)
    r = np.random.default_rng(seed)
    n, lat = 0, []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        c.put_tensor(f"w{seed}", r.integers(0, N_USERS, size=1).astype(np.int64))
        c.run_model("rec", [f"w{seed}"], [f"wi{seed}", f"ws{seed}"])
        c.get_tensor(f"wi{seed}")
        c.get_tensor(f"ws{seed}")
        lat.append(time.perf_counter() - t)
        n += 1
    q.put((n, lat))


def onnx_inprocess(blob: bytes, batch: int, n: int, threads: int = 1) -> list[float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads  # the same as the database's INTRA_OP_PARALLELISM
    s = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
    r = np.random.default_rng(0)
    out = []
    for _ in range(n):
        users = r.integers(0, N_USERS, size=batch).astype(np.int64)
        t = time.perf_counter()
        s.run(None, {"user": users})
        out.append(time.perf_counter() - t)
    return out


def leak_check(blob: bytes) -> str:
    """Runs a server under valgrind with the module, sends every command incl. error paths
    (and a fuzz burst), shuts it down, and reports definite leaks whose stack touches the module."""
    import redis

    from recarena_serve import db
    from recarena_serve.fuzz import run_fuzz

    if not shutil.which("valgrind"):
        return "valgrind not installed (apt-get install valgrind): leak check skipped"
    so = db.build_module()
    server = db.find_server()
    tmp = Path(tempfile.mkdtemp(prefix="recarena-vg-"))
    sock = tmp / "s.sock"
    log = tmp / "valgrind.log"
    cmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite", f"--log-file={log}", str(server), "--port", "0",
           "--unixsocket", str(sock), "--save", "", "--dir", str(tmp), "--loadmodule", str(so), "ORT_LIB", str(db.find_ort_lib())]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not db.ping(f"unix://{sock}"):
            if time.time() > deadline or p.poll() is not None:
                return "server under valgrind did not start: " + log.read_text()[-2000:]
            time.sleep(0.5)
        r = redis.Redis(unix_socket_path=str(sock))
        run_fuzz(r, 3000, seed=1, pipeline=100)
        r.execute_command("AI.MODELSTORE", "rec", "ONNX", "CPU", "BATCHSIZE", 8, "BLOB", blob)
        for i in range(200):
            r.execute_command("AI.TENSORSET", "u", "INT64", 2, "VALUES", i, i + 1)
            r.execute_command("AI.MODELEXECUTE", "rec", "INPUTS", 1, "u", "OUTPUTS", 2, "lk_i", "lk_s")
            r.execute_command("AI.TENSORGET", "lk_i", "META", "BLOB")
        for bad in (["AI.MODELEXECUTE", "rec", "INPUTS", 1, "nope", "OUTPUTS", 2, "i", "s"],
                    ["AI.TENSORSET", "f", "FLOAT", 1, 3], ["AI.MODELEXECUTE", "rec", "INPUTS", 1, "f", "OUTPUTS", 2, "i", "s"],
                    ["AI.MODELSTORE", "g", "ONNX", "CPU", "BLOB", "garbage"], ["AI.MODELDEL", "rec"], ["AI.MODELDEL", "rec"]):
            try:
                r.execute_command(*bad)
            except redis.ResponseError:
                pass
        r.execute_command("AI.MODELSTORE", "rec", "ONNX", "CPU", "BLOB", blob)
        r.execute_command("AI.INFO", "rec", "RESETSTAT")
        r.execute_command("AI._MODELSCAN")
        r.execute_command("AI.MODELGET", "rec", "META", "BLOB")
        r.flushall()
        try:
            r.shutdown(nosave=True)
        except (redis.ConnectionError, redis.ResponseError):
            pass
        p.wait(300)
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    definite = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    records = [b for b in text.split("\n==") if "definitely lost" in b and "recarena_ai" in b]
    ours = sum(int(re.search(r"([\d,]+) bytes", b).group(1).replace(",", "")) for b in records if re.search(r"([\d,]+) bytes", b))
    errors = re.search(r"ERROR SUMMARY: (\d+) errors", text)
    # memory errors (invalid reads/writes, uninitialised jumps) whose stack passes through the module
    blocks = re.split(r"\n==\d+== \n", text)
    module_errors = [b for b in blocks if "recarena_ai" in b and ("Invalid" in b or "uninitialised" in b or "Mismatched" in b)]
    summary = (f"valgrind: definitely lost in total {definite.group(1) if definite else 0} bytes; "
               f"from the module: {ours} bytes in {len(records)} records; memory errors in the module's frames: "
               f"{len(module_errors)} (all frames, server and ONNX Runtime included: {errors.group(1) if errors else '?'})")
    if module_errors:
        summary += "\nfirst module error:\n" + module_errors[0][:3000]
    keep = os.environ.get("RECARENA_KEEP_VALGRIND_LOG")
    if keep:
        shutil.copy(log, keep)
    shutil.rmtree(tmp, ignore_errors=True)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--leaks", action="store_true", help="also run the valgrind leak check (a few minutes)")
    ap.add_argument("--server", help="redis-server or valkey-server path")
    ap.add_argument("--intra-op", type=int, default=2, help="ONNX Runtime threads per model run (2 cores here)")
    a = ap.parse_args()
    import redis

    from recarena_serve import db, onnx_graphs
    from recarena_serve.fuzz import run_fuzz

    scale = 0.1 if a.quick else 1.0
    rng = np.random.default_rng(0)
    U = rng.normal(size=(N_USERS, DIM)).astype(np.float32) / 8
    V = rng.normal(size=(N_ITEMS, DIM)).astype(np.float32) / 8
    blob = onnx_graphs.mf_topk(U, V, K)
    data = Path(tempfile.mkdtemp(prefix="recarena-bench-db-"))
    d = db.start(data, server=a.server, intra_op=a.intra_op)
    print(f"bench-db: {Path(d.server).name} {d.server_version}, module {Path(d.module).name}, {a.intra_op} ONNX thread(s) per run, "
          f"SSDB={d.address}")
    try:
        addr = d.nodes[0].address
        wire = redis.Redis(unix_socket_path=addr[len("unix://"):])
        wire.execute_command("AI.MODELSTORE", "rec", "ONNX", "CPU", "BLOB", blob)
        print(f"model: MF top-{K} over {N_ITEMS:,} items, {N_USERS:,} users, dim {DIM} ({len(blob) / 1e6:.1f} MB ONNX)")
        round_trips(addr, 1, 200)  # warm-up
        for batch, n in ((1, int(5000 * scale)), (256, int(1000 * scale))):
            lat = round_trips(addr, batch, n)
            ref = onnx_inprocess(blob, batch, n, a.intra_op)
            print(f"round trip batch {batch:>3} ({n} runs): p50 {pct(lat, 50):.3f} ms, p99 {pct(lat, 99):.3f} ms; "
                  f"onnxruntime in-process p50 {pct(ref, 50):.3f} ms -> ratio {pct(lat, 50) / pct(ref, 50):.2f}x")

        seconds = 10 * max(scale, 0.3)
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=_load_worker, args=(addr, s, seconds, q)) for s in range(4)]
        for p in procs:
            p.start()
        time.sleep(1.0)  # let the load start
        pings = []
        end = time.perf_counter() + seconds - 2
        while time.perf_counter() < end:
            t = time.perf_counter()
            wire.ping()
            pings.append(time.perf_counter() - t)
            time.sleep(0.002)
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
        total = sum(n for n, _ in results)
        lat = [x for _, ls in results for x in ls]
        print(f"4 clients, {seconds:.0f} s: {total / seconds:,.0f} round trips/s (batch 1), client p50 {pct(lat, 50):.3f} ms "
              f"p99 {pct(lat, 99):.3f} ms; PING from a 5th client while they run: p50 {pct(pings, 50):.3f} ms, "
              f"p99 {pct(pings, 99):.3f} ms, max {pct(pings, 100):.3f} ms ({len(pings)} pings)")

        n_runs = int(100_000 * scale)
        wire.execute_command("AI.TENSORSET", "u", "INT64", 1, "VALUES", 42)
        rss0 = None
        t = time.perf_counter()
        done = 0
        while done < n_runs:
            p = wire.pipeline(transaction=False)
            for _ in range(500):
                p.execute_command("AI.MODELEXECUTE", "rec", "INPUTS", 1, "u", "OUTPUTS", 2, "i", "s")
            p.execute()
            done += 500
            if rss0 is None and done >= n_runs // 10:
                rss0 = rss_kib(d.nodes[0].pid)
        rss1 = rss_kib(d.nodes[0].pid)
        print(f"{n_runs:,} model runs in {time.perf_counter() - t:.1f} s: server RSS {rss0 / 1024:.1f} MiB after "
              f"{n_runs // 10:,}, {rss1 / 1024:.1f} MiB after {n_runs:,} (growth {(rss1 - rss0) / 1024:+.1f} MiB)")

        n_fuzz = int(100_000 * scale)
        t = time.perf_counter()
        counts = run_fuzz(wire, n_fuzz, seed=7, pipeline=200)
        up = wire.ping()
        print(f"fuzz: {n_fuzz:,} random AI.* commands in {time.perf_counter() - t:.1f} s "
              f"({counts['ok']:,} OK, {counts['error']:,} errors); server {'up and answering' if up else 'DOWN'}; "
              f"RSS {rss_kib(d.nodes[0].pid) / 1024:.1f} MiB")
    finally:
        d.stop()
        shutil.rmtree(data, ignore_errors=True)
    if a.leaks:
        print(leak_check(blob))
    return 0


if __name__ == "__main__":
    sys.exit(main())
