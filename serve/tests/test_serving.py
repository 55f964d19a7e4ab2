"""Serving bundles from the inference database: deploy (probe, atomic switch, A/B split),
recommend by raw user id, and parity with each plugin's own answers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from recarena import plugins
from recarena.base import Task
from recarena.errors import RecArenaError
from recarena.paths import file_digest
from recarena.testing import _fit
from recarena_serve import serving
from recarena_serve.export import write_bundle

pytest.importorskip("smartredis")

# the first wave with small settings (the conformance kit's data: 120 users x 80 items)
FIRST_WAVE = {
    "pop": {}, "itemknn": {"k": 20}, "ease": {"reg": 10.0},
    "bpr": {"dim": 8, "epochs": 3}, "biased-mf": {"dim": 8, "epochs": 3}, "mf": {"dim": 8, "epochs": 3},
    "ncf": {"epochs": 2, "gmf_epochs": 0, "mlp_epochs": 0}, "caser": {"dim": 8, "L": 3, "n_h": 4, "n_v": 2, "epochs": 2},
    "autorec": {"hidden": 16, "epochs": 3}, "recommender-net": {"dim": 8, "hidden": (16,), "epochs": 2},
    "fm": {"dim": 4, "epochs": 2}, "deepfm": {"dim": 4, "hidden": (16,), "epochs": 2},
}
# the CTR second wave
SECOND_WAVE = {
    "wide-deep": {"dim": 4, "hidden": (8,), "epochs": 2, "crosses": ["group*genres"]},
    "xdeepfm": {"dim": 4, "hidden": (8,), "cin_layers": (4, 4), "epochs": 2},
    "nfm": {"dim": 4, "hidden": (8,), "epochs": 2},
    "dcnv2": {"dim": 4, "hidden": (8,), "rank": 2, "n_experts": 2, "structure": "parallel", "epochs": 2},
    "ffm": {"dim": 4, "epochs": 2},
}
# the autoencoders and the RBM: a user-row ranker's recommend graph builds the user's row from
# the `seen` key the database feeds it as `exclude`
AUTOENCODERS = {
    "cdae": {"dim": 8, "epochs": 2}, "mult-vae": {"hidden": (16,), "latent": 4, "epochs": 2},
    "mult-dae": {"latent": 8, "epochs": 2}, "recvae": {"hidden": 8, "latent": 4, "epochs": 2},
    "deeprec": {"layers": (16, 8), "epochs": 2}, "rbm": {"hidden": 8, "epochs": 2},
}
# the MF family
MF_FAMILY = {
    "mean": {}, "ials": {"factors": 8, "iterations": 5}, "lightgcn": {"dim": 8, "epochs": 2},
    "mixture-of-tastes": {"dim": 8, "n_tastes": 3, "epochs": 2}, "mf-side": {"dim": 8, "epochs": 2},
    "variational-mf": {"dim": 8, "epochs": 2}, "mf-temporal": {"dim": 8, "epochs": 2, "drift_factors": True},
}
# the sequential models: the database stores each user's training sequence in time order and
# the recommend graph reads its last max_len items
SEQUENTIAL = {
    "sasrec": {"dim": 8, "n_layers": 1, "heads": 2, "max_len": 5, "epochs": 2},
    "gru4rec": {"dim": 8, "hidden": 8, "max_len": 5, "epochs": 2},
    "svae": {"dim": 8, "hidden": 8, "latent": 4, "max_len": 5, "epochs": 2},
}
SERVED = {**FIRST_WAVE, **SECOND_WAVE, **AUTOENCODERS, **MF_FAMILY, **SEQUENTIAL}


@pytest.fixture(scope="module")
def fitted():
    return {name: _fit(plugins.get(name)(**params)) for name, params in SERVED.items()}


@pytest.fixture(scope="module")
def bundles(fitted, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles")
    return {name: write_bundle(m, out / name, {"model": name, "run_id": f"run-{name}", "dataset": "kit"}, k=10)
            for name, m in fitted.items()}


@pytest.fixture
def ssdb(ai_db, wire):
    return ai_db.nodes[0].address


def raw_users(model, n=6):
    return [model.user_ids_.raw[i] for i in np.linspace(0, model.n_users_ - 1, n).round().astype(int)]


@pytest.mark.parametrize("name", sorted(SERVED))
def test_served_answers_equal_the_plugins(name, fitted, bundles, ssdb):
    """recommend (rankers) or predict (rating-only models) through the database returns
    what the plugin itself returns, for raw ids."""
    model = fitted[name]
    serving.deploy([bundles[name]], ssdb, name=name, progress=False)
    svc = serving.Service(ssdb, name)
    if model.capabilities.supports(Task.RANKING) or model.capabilities.supports(Task.SEQUENTIAL):
        for u in raw_users(model):
            got = svc.recommend(u, 10)
            want_items, want_scores = model.recommend_raw([u], 10)
            keep = [i is not None for i in want_items[0]]
            assert got["model"] == name and got["fallback"] is None
            assert [it["item"] for it in got["items"]] == [i.item() if hasattr(i, "item") else i for i in want_items[0][keep]]
            np.testing.assert_allclose([it["score"] for it in got["items"]], want_scores[0][keep], rtol=1e-5, atol=1e-5)
    else:
        items = [model.item_ids_.raw[i] for i in range(0, model.n_items_, 7)]
        for u in raw_users(model):
            got = svc.predict(u, items)
            np.testing.assert_allclose([p["score"] for p in got["predictions"]], model.predict_raw([u] * len(items), items),
                                       rtol=1e-5, atol=1e-5)


def test_unknown_user_gets_the_popularity_fallback(fitted, bundles, ssdb):
    serving.deploy([bundles["bpr"]], ssdb, name="ep", progress=False)
    out = serving.Service(ssdb, "ep").recommend("no-such-user", 5)
    assert out["fallback"].startswith("popularity")
    counts = np.bincount(fitted["bpr"].seen_indices_, minlength=fitted["bpr"].n_items_)
    top = [fitted["bpr"].item_ids_.raw[i] for i in np.argsort(-counts, kind="stable")[:5]]
    assert [it["item"] for it in out["items"]] == [t.item() if hasattr(t, "item") else t for t in top]


def _keys(wire, pattern):
    return sorted(wire.scan_iter(match=pattern, count=1000))


def test_a_failing_probe_leaves_the_previous_version_serving(fitted, bundles, ssdb, wire, tmp_path):
    first = serving.deploy([bundles["bpr"]], ssdb, name="ep", progress=False)
    before = serving.Service(ssdb, "ep").recommend(raw_users(fitted["bpr"])[1], 5)
    # a bundle whose graph is not the model its probe answers were recorded from
    bad = tmp_path / "tampered"
    shutil.copytree(bundles["biased-mf"], bad)
    shutil.copy(bundles["bpr"] / "recommend.onnx", bad / "recommend.onnx")
    # with its checksum recorded, as an exporter bug would write it: only the probe can tell
    m = json.loads((bad / "manifest.json").read_text())
    m["files"]["recommend.onnx"] = file_digest(bad / "recommend.onnx")
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(serving.DeployError, match="probe in the database does not match"):
        serving.deploy([bad], ssdb, name="ep", progress=False)
    svc = serving.Service(ssdb, "ep")
    assert svc.routing()["entries"] == first["entries"]
    assert svc.recommend(raw_users(fitted["bpr"])[1], 5) == before
    versions = {k.decode().split(":")[2] for k in _keys(wire, "recarena:ep:*")} - {"routing", "versions"}
    assert versions == {first["entries"][0]["version"]}, "the refused version's keys were not cleaned up"


def test_a_killed_deploy_leaves_the_previous_version_serving(fitted, bundles, ssdb, tmp_path):
    first = serving.deploy([bundles["ease"]], ssdb, name="ep", progress=False)
    env = {**os.environ, "SSDB": ssdb, "RECARENA_DEPLOY_PAUSE_BEFORE_SWITCH": "60", "RECARENA_HOME": str(tmp_path)}
    p = subprocess.Popen([sys.executable, "-m", "recarena.cli", "serve", "deploy", str(bundles["bpr"]), "--name", "ep",
                          "--no-progress"], stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    line = ""
    while "switching" not in line and time.time() < deadline:
        line = p.stdout.readline()
        assert line or p.poll() is None, "deploy ended before reaching the switch"
    os.kill(p.pid, signal.SIGKILL)  # loaded and probed, killed just before the switch
    p.wait()
    svc = serving.Service(ssdb, "ep")
    assert svc.routing()["entries"] == first["entries"]
    u = raw_users(fitted["ease"])[2]
    got = svc.recommend(u, 10)
    assert got["model"] == "ease"
    assert [it["item"] for it in got["items"]] == [i for i in fitted["ease"].recommend_raw([u], 10)[0][0] if i is not None]


def test_ab_split_is_stable_per_user_and_says_who_served(fitted, bundles, ssdb):
    routing = serving.deploy([bundles["bpr"], bundles["ease"]], ssdb, name="ab", split="bpr=1,ease=3", progress=False)
    assert {e["model"]: e["weight"] for e in routing["entries"]} == {"bpr": 1.0, "ease": 3.0}
    svc = serving.Service(ssdb, "ab")
    users = list(fitted["bpr"].user_ids_.raw)
    served = {u: svc.recommend(u, 5)["model"] for u in users}
    assert all(svc.recommend(u, 5)["model"] == served[u] for u in users[:20])  # stable
    share = sum(m == "ease" for m in served.values()) / len(served)
    assert 0.6 < share < 0.9, f"ease served {share:.0%} of users with weight 3/4"
    for u in users[:10]:  # each answer is the serving model's own
        m = fitted[served[u]]
        assert [it["item"] for it in svc.recommend(u, 5)["items"]] == [i for i in m.recommend_raw([u], 5)[0][0] if i is not None]
    with pytest.raises(RecArenaError, match="give every bundle a weight"):
        serving.deploy([bundles["bpr"], bundles["ease"]], ssdb, name="ab", split="bpr=1", progress=False)
    with pytest.raises(RecArenaError, match="only with --split"):
        serving.deploy([bundles["bpr"], bundles["ease"]], ssdb, name="ab", progress=False)


def test_cli_deploy_recommend_status(fitted, bundles, ssdb, tmp_path):
    env = {**os.environ, "SSDB": ssdb, "RECARENA_HOME": str(tmp_path)}
    exe = [sys.executable, "-m", "recarena.cli", "serve"]
    out = subprocess.run([*exe, "deploy", str(bundles["itemknn"]), "--no-progress"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "endpoint 'default' now serves itemknn" in out.stdout
    u = raw_users(fitted["itemknn"])[3]
    out = subprocess.run([*exe, "recommend", str(u), "-k", "5", "--json"], env=env, capture_output=True, text=True)
    got = json.loads(out.stdout)
    assert [it["item"] for it in got["items"]] == [i for i in fitted["itemknn"].recommend_raw([u], 5)[0][0] if i is not None]
    out = subprocess.run([*exe, "status", "--json"], env=env, capture_output=True, text=True)
    st = json.loads(out.stdout)
    assert st["entries"][0]["model"] == "itemknn"
    out = subprocess.run([*exe, "recommend", "1", "--ssdb", "unix:///nonexistent.sock"], capture_output=True, text=True,
                         env={**env, "SR_CONN_TIMEOUT": "1"})
    assert out.returncode == 2 and "Cannot reach the inference database" in out.stderr and "Traceback" not in out.stderr


def test_cli_predict_gives_a_ctr_models_own_scores(fitted, bundles, ssdb, tmp_path):
    env = {**os.environ, "SSDB": ssdb, "RECARENA_HOME": str(tmp_path)}
    exe = [sys.executable, "-m", "recarena.cli", "serve"]
    out = subprocess.run([*exe, "deploy", str(bundles["dcnv2"]), "--name", "ctr", "--no-progress"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    model = fitted["dcnv2"]
    u = raw_users(model)[2]
    items = [model.item_ids_.raw[i] for i in (0, 3, 9)]
    out = subprocess.run([*exe, "predict", str(u), *map(str, items), "--name", "ctr", "--json"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    np.testing.assert_allclose([p["score"] for p in got["predictions"]], model.predict_raw([u] * 3, items),
                               rtol=1e-5, atol=1e-5)
    out = subprocess.run([*exe, "recommend", str(u), "--name", "ctr"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "recarena serve predict" in out.stderr


def test_status_counts_calls(fitted, bundles, ssdb, wire):
    serving.deploy([bundles["bpr"]], ssdb, name="st", progress=False)
    svc = serving.Service(ssdb, "st")
    for u in raw_users(fitted["bpr"]):
        svc.recommend(u, 3)
    st = serving.status(ssdb, "st")
    # the deploy's probe ran the model too, then six requests
    assert st["entries"][0]["recommend"]["calls"] == len(json.loads((bundles["bpr"] / "probe.json").read_text())["users"]) + 6
    assert st["entries"][0]["recommend"]["errors"] == 0


def test_k_beyond_the_export_is_a_clear_error(fitted, bundles, ssdb):
    serving.deploy([bundles["bpr"]], ssdb, name="k", progress=False)
    with pytest.raises(RecArenaError, match="exported with k=10; export again with -k 50"):
        serving.Service(ssdb, "k").recommend(raw_users(fitted["bpr"])[0], 50)


def test_nothing_deployed(ssdb):
    with pytest.raises(RecArenaError, match="Nothing is deployed on endpoint 'nope'"):
        serving.Service(ssdb, "nope").recommend(1)


def test_twenty_deploys_leave_the_key_count_flat_and_rollback_restores_the_previous_answers(fitted, bundles, ssdb, wire):
    """Superseded versions are deleted (the routing and the previous routing are kept), probe
    keys are removed, and rollback switches back in one write."""
    counts = []
    for k in range(20):
        serving.deploy([bundles["ease" if k % 2 == 0 else "bpr"]], ssdb, name="gc", progress=False)
        counts.append(wire.dbsize())
    assert counts[-1] == counts[1], counts  # ease and bpr versions alternate: 2nd deploy onwards, flat
    assert not wire.keys("recarena:probe:*")
    versions = {k.decode().split(":")[2] for k in wire.keys("recarena:gc:*:meta")}
    assert len(versions) == 2  # the serving bpr version and the previous (ease) one
    svc = serving.Service(ssdb, "gc")
    user = raw_users(fitted["bpr"])[0]
    assert svc.recommend(user, 5)["model"] == "bpr"
    serving.rollback(ssdb, "gc")
    got = svc.recommend(user, 5)
    want_items, _ = fitted["ease"].recommend_raw([user], 5)
    assert got["model"] == "ease" and [it["item"] for it in got["items"]] == [i.item() if hasattr(i, "item") else i for i in want_items[0]]
    serving.rollback(ssdb, "gc")  # a second rollback undoes the first
    assert svc.recommend(user, 5)["model"] == "bpr"
    svc.close()
    assert not wire.keys("recarena:tmp:*")


def test_a_version_is_a_few_keys_whatever_its_users_and_its_rows_are_the_users_seen_items(fitted, bundles, ssdb, wire):
    """The packed layout: a version holds its graphs, meta, and one `seen`, `seen:indptr` and
    `ids` tensor (five keys for any number of users); row u of `seen` is user u's training
    items (one -1 for a user with none) and `ids[u:u+1]` is u."""
    serving.deploy([bundles["bpr"]], ssdb, name="packed", progress=False)
    prefix = serving._get_json(serving._client(ssdb), serving.routing_key("packed"))["entries"][0]["prefix"]
    keys = {k.decode()[len(prefix) + 1:] for k in wire.scan_iter(match=f"{prefix}:*", count=1000)}
    assert keys == {"recommend", "predict", "meta", "seen", "seen:indptr", "ids"} - ({"predict"} - keys)
    m = fitted["bpr"]
    indptr = np.frombuffer(wire.execute_command("AI.TENSORGET", f"{prefix}:seen:indptr", "BLOB"), np.int64)
    assert len(indptr) == m.n_users_ + 1
    for u in range(m.n_users_):
        row = np.frombuffer(wire.execute_command("AI.TENSORGET", f"{prefix}:seen[{indptr[u]}:{indptr[u + 1]}]", "BLOB"), np.int64)
        own = m.seen_indices_[m.seen_indptr_[u]:m.seen_indptr_[u + 1]]
        assert row.tolist() == (own.tolist() or [-1])
        assert np.frombuffer(wire.execute_command("AI.TENSORGET", f"{prefix}:ids[{u}:{u + 1}]", "BLOB"), np.int64).tolist() == [u]


def test_rows_too_large_for_one_write_are_refused_before_the_database_changes(fitted, bundles, ssdb, wire, monkeypatch):
    serving.deploy([bundles["bpr"]], ssdb, name="big", progress=False)
    before = serving.Service(ssdb, "big").routing()
    monkeypatch.setattr(serving, "MAX_PUT_BYTES", 1024)
    keys = wire.dbsize()
    with pytest.raises(serving.DeployError, match=r"packed per-user rows are .* MiB, above the 0 MiB one write may carry"):
        serving.deploy([bundles["ease"]], ssdb, name="big", progress=False)
    assert wire.dbsize() == keys and serving.Service(ssdb, "big").routing() == before


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 3])
def test_a_cluster_serves_the_same_answers_from_every_shard(shards, fitted, bundles, ssdb, tmp_path, monkeypatch):
    """On `db start --cluster N` a deploy writes each version's per-user tensors once per shard
    (smartredis stores the models on every shard), users spread over the shards, and every
    answer equals the plugin's (recommend, a session, predict); a later deploy removes the
    superseded copies from every shard. One shard is a real cluster too (the cluster client's
    own path)."""
    import redis

    from recarena_serve import db

    monkeypatch.setenv("SR_DB_TYPE", "Clustered")  # a one-shard cluster's address has no comma
    d = db.start(tmp_path / "cluster", cluster=shards)
    try:
        shards = [redis.Redis(unix_socket_path=n.address[len("unix://"):]) for n in d.nodes]
        for name in ("bpr", "ease", "sasrec", "pop"):
            model = fitted[name]
            serving.deploy([bundles[name]], d.address, name="c", progress=False)
            svc = serving.Service(d.address, "c")
            for u in raw_users(model):
                got = svc.recommend(u, 10)
                want_items, want_scores = model.recommend_raw([u], 10)
                keep = [i is not None for i in want_items[0]]
                assert [it["item"] for it in got["items"]] == [i.item() if hasattr(i, "item") else i for i in want_items[0][keep]]
                np.testing.assert_allclose([it["score"] for it in got["items"]], want_scores[0][keep], rtol=1e-5, atol=1e-5)
            if name == "sasrec":  # a session without a user: the same answer as on a standalone database
                raw = [model.item_ids_.raw[i] for i in (3, 17, 5, 8)]
                raw = [r.item() if hasattr(r, "item") else r for r in raw]
                serving.deploy([bundles[name]], ssdb, name="c-alone", progress=False)
                want = serving.Service(ssdb, "c-alone").recommend_session(raw, 10)["items"]
                got = svc.recommend_session(raw, 10)["items"]
                assert [i["item"] for i in got] == [i["item"] for i in want]
                np.testing.assert_allclose([i["score"] for i in got], [i["score"] for i in want], rtol=1e-5, atol=1e-5)
            svc.close()
            copies = [sum(1 for k in r.scan_iter(match="{r*}recarena:c:*", count=1000)) for r in shards]
            # this version's copies and the previous one's (kept for rollback), on every shard
            assert all(n == copies[0] and n in (2, 4) for n in copies), copies
        # a rating model's predict graph through the cluster
        model = fitted["biased-mf"]
        serving.deploy([bundles["biased-mf"]], d.address, name="p", progress=False)
        items = [model.item_ids_.raw[i] for i in range(0, model.n_items_, 7)]
        for u in raw_users(model, 3):
            got = serving.Service(d.address, "p").predict(u, items)
            np.testing.assert_allclose([p["score"] for p in got["predictions"]], model.predict_raw([u] * len(items), items),
                                       rtol=1e-5, atol=1e-5)
        runs = [dict(zip(*[iter(r.execute_command("AI.INFO"))] * 2))[b"runs"] for r in shards]
        assert all(n > 0 for n in runs), runs  # every shard ran models
    finally:
        d.stop()


def test_rollback_without_a_previous_routing_is_a_clear_error(bundles, ssdb):
    serving.deploy([bundles["pop"]], ssdb, name="once", progress=False)
    with pytest.raises(RecArenaError, match="no previous routing table"):
        serving.rollback(ssdb, "once")


def _cli(argv, capsys) -> tuple[int, str]:
    """The `recarena` entry point in this process: exit code and stderr."""
    from recarena import cli

    capsys.readouterr()
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def _tampered(bundle, tmp_path, name, edit) -> str:
    bad = tmp_path / name
    shutil.copytree(bundle, bad)
    edit(bad)
    return str(bad)


def _manifest_edit(change):
    def edit(b):
        m = json.loads((b / "manifest.json").read_text())
        change(m, b)
        (b / "manifest.json").write_text(json.dumps(m))
    return edit


def _outside(m, b):
    (b.parent / "outside.onnx").write_bytes((b / "recommend.onnx").read_bytes())
    m["graphs"][0]["file"] = "../outside.onnx"
    m["files"]["../outside.onnx"] = file_digest(b.parent / "outside.onnx")


def _wrong_signature(m, b):
    # the predict graph of another model where a recommend graph belongs, checksum updated
    shutil.copy(b.parent / "other.onnx", b / "recommend.onnx")
    m["files"]["recommend.onnx"] = file_digest(b / "recommend.onnx")


def _truncated(m, b):
    data = (b / "recommend.onnx").read_bytes()
    (b / "recommend.onnx").write_bytes(data[: len(data) // 3])
    m["files"]["recommend.onnx"] = file_digest(b / "recommend.onnx")


BAD_BUNDLES = [
    ("outside", _manifest_edit(_outside), "points outside the bundle folder"),
    ("etc-passwd", _manifest_edit(lambda m, b: m["graphs"][0].update(file="/etc/passwd")), "points outside the bundle folder"),
    ("checksum", lambda b: (b / "recommend.onnx").write_bytes((b / "recommend.onnx").read_bytes() + b"x"), "checksum differs"),
    ("truncated", _manifest_edit(_truncated), "not a loadable ONNX graph"),
    ("signature", _manifest_edit(_wrong_signature), "takes 2 inputs (user, seen items)"),
    ("broken-json", lambda b: (b / "manifest.json").write_text('{"model": "bpr",'), "not valid JSON"),
    ("no-checksums", _manifest_edit(lambda m, b: m.pop("files")), "export it again"),
    ("bad-type", _manifest_edit(lambda m, b: m.update(n_users="many")), "'n_users' must be a non-negative integer"),
]


@pytest.mark.parametrize("name,edit,phrase", BAD_BUNDLES, ids=[b[0] for b in BAD_BUNDLES])
def test_a_bad_bundle_is_refused_before_the_database_changes(name, edit, phrase, fitted, bundles, ssdb, wire, tmp_path,
                                                            capsys):
    """Bundles are input too: a path outside the folder, a changed file, a damaged or
    mis-shaped graph, a broken manifest: exit 2 with the reason, the database untouched and
    the previous version serving."""
    first = serving.deploy([bundles["bpr"]], ssdb, name="hard", progress=False)
    u = raw_users(fitted["bpr"])[1]
    before = serving.Service(ssdb, "hard").recommend(u, 5)
    shutil.copy(bundles["dcnv2"] / "predict.onnx", tmp_path / "other.onnx")
    bad = _tampered(bundles["bpr"], tmp_path, name, edit)
    keys = _keys(wire, "*")
    rc, err = _cli(["serve", "deploy", bad, "--name", "hard", "--no-progress", "--ssdb", ssdb], capsys)
    assert rc == 2, err
    assert phrase in " ".join(err.split()) and "Traceback" not in err, err
    assert _keys(wire, "*") == keys, "a refused bundle wrote to the database"
    svc = serving.Service(ssdb, "hard")
    assert svc.routing()["entries"] == first["entries"] and svc.recommend(u, 5) == before


@pytest.mark.parametrize("args,phrase", [(["", "-k", "5"], "user id is empty"), (["1", "-k", "-5"], "k must be a positive"),
                                         (["1", "-k", "0"], "k must be a positive")])
def test_recommend_refuses_an_empty_user_and_a_bad_k(args, phrase, bundles, ssdb, capsys):
    serving.deploy([bundles["bpr"]], ssdb, name="req", progress=False)
    rc, err = _cli(["serve", "recommend", *args, "--name", "req", "--ssdb", ssdb], capsys)
    assert rc == 2 and phrase in err and "Traceback" not in err, err


@pytest.mark.parametrize("name", sorted(SEQUENTIAL))
def test_a_session_without_a_user_is_recommended_from_its_items(name, fitted, bundles, ssdb, tmp_path):
    """serve recommend --items A,B,C: the graph reads the session as the history, and the answer
    is the plugin's own from that history (its items never returned)."""
    import torch

    model = fitted[name]
    serving.deploy([bundles[name]], ssdb, name=f"s-{name}", progress=False)
    session = [3, 17, 5, 17, 42, 8, 11]  # internal ids, oldest first, a repeat among them
    raw = [model.item_ids_.raw[i] for i in session]
    raw = [r.item() if hasattr(r, "item") else r for r in raw]
    got = serving.Service(ssdb, f"s-{name}").recommend_session(raw, 10)
    scores = model.score_history(np.array([0]), np.array([0] + [len(session)] * model.n_users_), np.array(session))[0]
    scores[session] = -torch.inf
    top = torch.topk(scores, 10)
    want = [model.item_ids_.raw[i] for i in top.indices.tolist()]
    assert [it["item"] for it in got["items"]] == [w.item() if hasattr(w, "item") else w for w in want]
    np.testing.assert_allclose([it["score"] for it in got["items"]], top.values.numpy(), rtol=1e-5, atol=1e-5)
    # a different order is a different session: the newest item leads
    other = serving.Service(ssdb, f"s-{name}").recommend_session(raw[::-1], 10)
    assert [it["item"] for it in other["items"]] != [it["item"] for it in got["items"]]
    # through the CLI as well
    env = {**os.environ, "SSDB": ssdb, "RECARENA_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "recarena.cli", "serve", "recommend", "--items", ",".join(map(str, raw)),
                          "--name", f"s-{name}", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [it["item"] for it in json.loads(out.stdout)["items"]] == [it["item"] for it in got["items"]]


def test_a_session_is_refused_where_it_cannot_be_served(bundles, ssdb):
    serving.deploy([bundles["bpr"]], ssdb, name="s-bpr", progress=False)
    with pytest.raises(RecArenaError, match="cannot recommend for a session"):
        serving.Service(ssdb, "s-bpr").recommend_session([1, 2], 5)
    serving.deploy([bundles["sasrec"]], ssdb, name="s-unknown", progress=False)
    with pytest.raises(RecArenaError, match="Unknown items"):
        serving.Service(ssdb, "s-unknown").recommend_session(["no-such-item"], 5)
    with pytest.raises(RecArenaError, match="session is empty"):
        serving.Service(ssdb, "s-unknown").recommend_session([], 5)
