"""Random AI.* argument vectors, for the module's fuzz test and the fuzz run of bench-db."""

from __future__ import annotations

import random

import redis

from recarena_serve import onnx_graphs

COMMANDS = ["AI.TENSORSET", "AI.TENSORGET", "AI.MODELSTORE", "AI.MODELGET", "AI.MODELDEL", "AI.MODELEXECUTE",
            "AI.MODELRUN", "AI._MODELSCAN", "AI.INFO", "AI.CONFIG", "AI.SCRIPTSET", "AI.SCRIPTRUN"]
WORDS = ["FLOAT", "DOUBLE", "INT8", "INT64", "UINT16", "BOOL", "BLOB", "VALUES", "META", "INPUTS", "OUTPUTS", "TIMEOUT",
         "ONNX", "CPU", "TAG", "BATCHSIZE", "MINBATCHSIZE", "MINBATCHTIMEOUT", "RESETSTAT", "GET", "MODEL_CHUNK_SIZE",
         "k", "m", "x", "s", "0", "1", "2", "3", "-1", "99999999999", "1e9", "", "\x00\xff"]


TEMPLATES = [
    ["AI.TENSORSET", "x", "FLOAT", "1", "3", "VALUES", "1", "2", "3"],
    ["AI.TENSORSET", "x", "FLOAT", "1", "3", "BLOB", b"\0" * 12],
    ["AI.TENSORGET", "x", "META", "BLOB"],
    ["AI.MODELEXECUTE", "m", "INPUTS", "1", "x", "OUTPUTS", "1", "y", "TIMEOUT", "1000"],
    ["AI.MODELRUN", "m", "INPUTS", "x", "OUTPUTS", "y"],
    ["AI.MODELGET", "m", "META", "BLOB"],
    ["AI.MODELSTORE", "m2", "ONNX", "CPU", "TAG", "t", "BATCHSIZE", "4", "MINBATCHSIZE", "1", "MINBATCHTIMEOUT", "1", "BLOB", "?"],
    ["AI.INFO", "m", "RESETSTAT"],
]


def _mutate(r: random.Random, args: list) -> list:
    args = list(args)
    for _ in range(r.randint(0, 3)):
        op, i = r.random(), r.randrange(len(args)) if args else 0
        if op < 0.3 and args:
            del args[i]
        elif op < 0.6 and args:
            args[i] = r.choice(WORDS)
        else:
            args.insert(i, r.choice(WORDS))
    return args


def fuzz_args(r: random.Random):
    if r.random() < 0.4:  # a valid command, mutated a little: reaches the deeper paths
        t = list(r.choice(TEMPLATES))
        if t[-1] == "?":
            t[-1] = onnx_graphs.relu(3)
        t = _mutate(r, t)
        return (t[0], t[1:]) if t and isinstance(t[0], str) and t[0].startswith("AI.") else ("AI.INFO", t)
    cmd = r.choice(COMMANDS)
    args = []
    for _ in range(r.randint(0, 12)):
        roll = r.random()
        if roll < 0.7:
            args.append(r.choice(WORDS))
        elif roll < 0.85:
            args.append(str(r.randint(-5, 70)))
        else:
            args.append(r.randbytes(r.randint(0, 40)))
    return cmd, args


def run_fuzz(r_client, n: int, seed: int = 0, pipeline: int = 1) -> dict:
    """Sends n random AI.* argument vectors through a redis-py client (``pipeline`` at a time)
    and counts the OK and error replies. Anything else (a dropped connection) raises."""
    r = random.Random(seed)
    r_client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", onnx_graphs.relu(3))
    r_client.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 3)
    r_client.set("s", "string")
    counts = {"ok": 0, "error": 0}
    sent = 0
    while sent < n:
        p = r_client.pipeline(transaction=False)
        k = 0
        while k < pipeline and sent < n:
            cmd, args = fuzz_args(r)
            sent += 1
            if cmd == "AI.CONFIG" and args[:1] and args[0] != "GET":
                continue  # keep the limits as they are
            p.execute_command(cmd, *args)
            k += 1
        for reply in p.execute(raise_on_error=False):
            counts["error" if isinstance(reply, redis.ResponseError) else "ok"] += 1
    return counts
