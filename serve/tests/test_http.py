"""The HTTP service (`recarena serve http`), started for real on 127.0.0.1 with a free port in
front of a real database with the module: answers equal the Python API's, sticky salted A/B
assignment, feedback counted exactly, promote/rollback, input validation and fuzzing, faults
(database killed and restarted), /metrics, the page in Chromium, and the simulate known answer."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recarena import plugins
from recarena.testing import _fit
from recarena_serve import abtest, db, serving
from recarena_serve.export import write_bundle

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

TOKEN = "s3cret-token"
CLI = str(Path(sys.executable).with_name("recarena"))


# ------------------------------------------------------------------ statistics (no server)
def test_wilson_and_z_test_known_answers():
    lo, hi = abtest.wilson(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)  # Wilson 1927 / Newcombe 1998 table
    assert abtest.wilson(0, 0) is None
    # 45/100 vs 60/100: pooled p .525, se .07062, z 2.124, two-sided p .0337
    z = abtest.two_proportion_z(45, 100, 60, 100)
    assert z["z"] == pytest.approx(2.1241, abs=1e-3) and z["p_value"] == pytest.approx(0.0337, abs=5e-4)
    # 10% vs 15%, alpha .05 two-sided, power .8: 686 per arm (Fleiss, without continuity correction)
    assert abtest.sample_size(0.10, 0.15) == 686
    t = abtest.welch(3, 6.0, 14.0, 3, 9.0, 29.0)  # [1,2,3] vs [2,3,4]: t = 1.2247, df 4
    assert t["t"] == pytest.approx(1.2247, abs=1e-3) and t["p_value"] == pytest.approx(0.2879, abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 10_000), st.integers(0, 10_000), st.integers(1, 10_000))
def test_rate_intervals_and_tests_are_consistent(x1, n1, x2, n2):
    x1, x2 = min(x1, n1), min(x2, n2)
    lo, hi = abtest.wilson(x1, n1)
    assert 0 <= lo <= x1 / n1 <= hi <= 1
    a, b = abtest.two_proportion_z(x1, n1, x2, n2), abtest.two_proportion_z(x2, n2, x1, n1)
    if a is None:
        assert b is None and (x1 + x2 in (0, n1 + n2))
    else:  # swapping the arms flips the sign, never the p-value
        assert a["z"] == pytest.approx(-b["z"]) and a["p_value"] == pytest.approx(b["p_value"])
        assert 0 <= a["p_value"] <= 1


def test_salted_assignment_is_sticky_and_a_new_salt_reshuffles():
    routing = {"entries": [{"model": "a", "weight": 1.0}, {"model": "b", "weight": 1.0}], "salt": "one"}
    users = [f"u{i}" for i in range(2000)]
    first = [serving.assign(routing, u)["model"] for u in users]
    assert first == [serving.assign(routing, u)["model"] for u in users]
    assert 0.45 < first.count("a") / len(users) < 0.55
    moved = sum(x != serving.assign({**routing, "salt": "two"}, u)["model"] for x, u in zip(first, users))
    assert 0.4 < moved / len(users) < 0.6  # a new experiment reshuffles about half the users


# ------------------------------------------------------------------ a live service
@pytest.fixture(scope="module")
def models():
    return {n: _fit(plugins.get(n)(**p)) for n, p in {
        "pop": {}, "ease": {"reg": 10.0}, "biased-mf": {"dim": 8, "epochs": 2},
        "sasrec": {"dim": 8, "n_layers": 1, "heads": 2, "max_len": 5, "epochs": 2}}.items()}


@pytest.fixture(scope="module")
def bundle_paths(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("http-bundles")
    return {n: write_bundle(m, out / n, {"model": n, "run_id": f"run-{n}", "dataset": "kit"}, k=10) for n, m in models.items()}


def start_service(address: str, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = db.free_port()
    p = subprocess.Popen([CLI, "serve", "http", "--ssdb", address, "--port", str(port), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                         env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return p, url
        except httpx.HTTPError:
            time.sleep(0.1)
        if p.poll() is not None:
            raise RuntimeError(p.stdout.read().decode())
    p.kill()
    raise RuntimeError("the service did not come up")


def stop_service(p: subprocess.Popen) -> str:
    os.killpg(p.pid, signal.SIGTERM)
    try:
        out, _ = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
    return out.decode(errors="replace")


@pytest.fixture(scope="module")
def service(ai_db):
    p, url = start_service(ai_db.nodes[0].address, "--token", TOKEN, "--routing-ttl", "0")
    yield url
    log = stop_service(p)
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def http(service, wire):
    with httpx.Client(base_url=service, timeout=10) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_recommend_over_http_equals_the_python_api(http, bundle_paths, models, ai_db):
    ssdb = ai_db.nodes[0].address
    serving.deploy([bundle_paths["pop"], bundle_paths["ease"]], ssdb, name="ab", split="pop=1,ease=1", progress=False)
    svc = serving.Service(ssdb, "ab")
    seen_variants = set()
    for u in models["ease"].user_ids_.raw[::7]:
        r = http.get("/v1/endpoints/ab/recommend", params={"user": str(u), "k": 5})
        assert r.status_code == 200, r.text
        body, want = r.json(), svc.recommend(str(u), 5)
        assert body["variant"] == want["model"] and body["version"] == want["version"]
        assert [it["item"] for it in body["items"]] == [it["item"] for it in want["items"]]
        np.testing.assert_allclose([it["score"] for it in body["items"]], [it["score"] for it in want["items"]], rtol=1e-6)
        assert body["request_id"].startswith(body["version"] + ".")
        # sticky: the same user meets the same variant every time
        assert http.get("/v1/endpoints/ab/recommend", params={"user": str(u), "k": 5}).json()["variant"] == body["variant"]
        seen_variants.add(body["variant"])
    svc.close()
    assert seen_variants == {"pop", "ease"}
    # the fast path (user and k only) and FastAPI's route (any other parameter) answer alike
    u = str(models["ease"].user_ids_.raw[3])
    fast = http.get("/v1/endpoints/ab/recommend", params={"user": u, "k": 5}).json()
    slow = http.get("/v1/endpoints/ab/recommend", params={"k": 5, "user": u, "exclude_seen": "true"}).json()
    assert {k: v for k, v in fast.items() if k != "request_id"} == {k: v for k, v in slow.items() if k != "request_id"}
    for q in ("user=%20&k=5", "user=a%01b", "user=" + "u" * 257, "user=1&k=1001", "user=1&k=0", "user=1&k=%2B", "k=3"):
        r = http.get("/v1/endpoints/ab/recommend?" + q)
        assert r.status_code == 422 and "Traceback" not in r.text, (q, r.text)
    r = http.get("/v1/endpoints/ab/recommend", params={"user": "1", "exclude_seen": "false"})
    assert r.status_code == 422 and "history" in r.json()["error"]


def test_a_request_writes_no_tensor_and_the_keyspace_does_not_grow(http, bundle_paths, models, ai_db, wire):
    serving.deploy([bundle_paths["ease"]], ai_db.nodes[0].address, name="quiet", progress=False)
    users = [str(u) for u in models["ease"].user_ids_.raw]
    http.get("/v1/endpoints/quiet/recommend", params={"user": users[0]})
    n_keys = wire.dbsize()
    calls = wire.info("commandstats")
    for u in users[:100]:
        assert http.get("/v1/endpoints/quiet/recommend", params={"user": u}).status_code == 200
    assert wire.dbsize() == n_keys
    after = wire.info("commandstats")
    assert after.get("cmdstat_ai.tensorset", {}).get("calls", 0) == calls.get("cmdstat_ai.tensorset", {}).get("calls", 0)
    assert after["cmdstat_ai._modelexecute_reply"]["calls"] >= 100
    assert wire.xlen("recarena:quiet:events") == 101  # every served request is in the stream


def test_feedback_is_counted_exactly_and_the_experiment_decides(http, bundle_paths, models, ai_db):
    ssdb = ai_db.nodes[0].address
    serving.deploy([bundle_paths["pop"], bundle_paths["ease"]], ssdb, name="exp", split="pop=1,ease=1", progress=False)
    served = {"pop": 0, "ease": 0}
    hits = {"pop": 0, "ease": 0}
    for n, u in enumerate(models["ease"].user_ids_.raw):
        body = http.get("/v1/endpoints/exp/recommend", params={"user": str(u), "k": 5}).json()
        served[body["variant"]] += 1
        # ease's users click their first item, one in four of pop's: ease must win
        if body["variant"] == "ease" or n % 4 == 0:
            item = str(body["items"][0]["item"])
            for _ in range(2):  # a repeated click counts once
                r = http.post("/v1/endpoints/exp/feedback", json={"request_id": body["request_id"], "item": item, "event": "click"},
                              headers=AUTH)
                assert r.status_code == 200, r.text
            hits[body["variant"]] += 1
        http.post("/v1/endpoints/exp/feedback", json={"request_id": body["request_id"], "item": str(body["items"][1]["item"]),
                                                       "event": "rating", "value": 4.0 if body["variant"] == "ease" else 3.0}, headers=AUTH)
    ex = http.get("/v1/endpoints/exp/experiment").json()
    rows = {v["label"]: v for v in ex["variants"]}
    for label in ("pop", "ease"):
        assert rows[label]["requests"] == served[label] and rows[label]["users"] == pytest.approx(served[label], abs=2)
        assert rows[label]["hits"] == rows[label]["clicks"] == hits[label]
        assert rows[label]["impressions"] == 5 * served[label]
        assert rows[label]["ratings"] == served[label]
    assert rows["ease"]["mean_rating"] == pytest.approx(4.0) and rows["pop"]["mean_rating"] == pytest.approx(3.0)
    (test,) = ex["tests"]
    z = abtest.two_proportion_z(hits["pop"], served["pop"], hits["ease"], served["ease"])
    assert test["p_value"] == pytest.approx(z["p_value"]) and test["winner"] == "ease" and test["significant"]
    # feedback needs the token, and a request id this endpoint issued
    assert http.post("/v1/endpoints/exp/feedback", json={"request_id": "x" * 20 + "." + "0" * 16, "item": "1", "event": "click"},
                     headers=AUTH).status_code == 404
    r = http.post("/v1/endpoints/exp/feedback", json={"request_id": "a.b", "item": "1", "event": "click"})
    assert r.status_code in (401, 422)
    r = http.post("/v1/endpoints/exp/feedback", json={"request_id": ex["variants"][0]["version"] + "." + "0" * 16, "item": "1",
                                                      "event": "click"})
    assert r.status_code == 401 and "token" in r.json()["error"]


def test_promote_and_rollback_are_one_write_each_and_need_the_token(http, bundle_paths, models, ai_db):
    ssdb = ai_db.nodes[0].address
    serving.deploy([bundle_paths["pop"], bundle_paths["ease"]], ssdb, name="pr", split="pop=1,ease=1", progress=False)
    users = [str(u) for u in models["ease"].user_ids_.raw[:60]]
    before = [http.get("/v1/endpoints/pr/recommend", params={"user": u}).json()["variant"] for u in users]
    assert http.post("/v1/endpoints/pr/promote", json={"variant": "ease"}).status_code == 401
    r = http.post("/v1/endpoints/pr/promote", json={"variant": "nope"}, headers=AUTH)
    assert r.status_code == 409 and "ease" in r.json()["error"]
    assert http.post("/v1/endpoints/pr/promote", json={"variant": "ease"}, headers=AUTH).status_code == 200
    assert {http.get("/v1/endpoints/pr/recommend", params={"user": u}).json()["variant"] for u in users} == {"ease"}
    assert http.get("/v1/endpoints/pr/experiment").json()["promoted"] == "ease"
    assert http.post("/v1/endpoints/pr/rollback", headers=AUTH).status_code == 200
    assert [http.get("/v1/endpoints/pr/recommend", params={"user": u}).json()["variant"] for u in users] == before
    # the CLI's promote is the same function
    out = subprocess.run([CLI, "serve", "promote", "pop", "--ssdb", ssdb, "--name", "pr"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert {http.get("/v1/endpoints/pr/recommend", params={"user": u}).json()["variant"] for u in users} == {"pop"}


def test_session_and_predict(http, bundle_paths, models, ai_db):
    ssdb = ai_db.nodes[0].address
    serving.deploy([bundle_paths["sasrec"]], ssdb, name="seq", progress=False)
    serving.deploy([bundle_paths["biased-mf"]], ssdb, name="rate", progress=False)
    items = [str(i) for i in models["sasrec"].item_ids_.raw[:4]]
    r = http.post("/v1/endpoints/seq/session", json={"items": items, "k": 5})
    assert r.status_code == 200, r.text
    want = serving.Service(ssdb, "seq").recommend_session(items, 5)
    assert [it["item"] for it in r.json()["items"]] == [it["item"] for it in want["items"]]
    u = str(models["biased-mf"].user_ids_.raw[2])
    r = http.post("/v1/endpoints/rate/predict", json={"user": u, "items": items})
    np.testing.assert_allclose([p["score"] for p in r.json()["predictions"]],
                               models["biased-mf"].predict_raw([models["biased-mf"].user_ids_.raw[2]] * 4,
                                                               list(models["sasrec"].item_ids_.raw[:4])), rtol=1e-5)
    r = http.post("/v1/endpoints/rate/session", json={"items": items})
    assert r.status_code == 409 and "session" in r.json()["error"]


@pytest.mark.parametrize("method,path,kw,status,phrase", [
    ("get", "/v1/endpoints/v/recommend", {"params": {"user": "1", "k": "0"}}, 422, "greater than or equal to 1"),
    ("get", "/v1/endpoints/v/recommend", {"params": {"user": "1", "k": "1001"}}, 422, "less than or equal to 1000"),
    ("get", "/v1/endpoints/v/recommend", {"params": {"user": "u" * 257}}, 422, "at most 256 characters"),
    ("get", "/v1/endpoints/v/recommend", {"params": {"k": "3"}}, 422, "query.user"),
    ("get", "/v1/endpoints/v/recommend", {"params": {"user": "1", "k": "11"}}, 422, "exported with k=10"),
    ("get", "/v1/endpoints/nope/recommend", {"params": {"user": "1"}}, 404, "Nothing is deployed on endpoint 'nope'"),
    ("get", "/v1/endpoints/bad%20name/recommend", {"params": {"user": "1"}}, 422, "path.name"),
    ("get", "/v2/nothing", {}, 404, "No such path"),
    ("post", "/v1/endpoints/v/feedback", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ("post", "/v1/endpoints/v/feedback", {"json": {"request_id": "x", "item": "1", "event": "like"}}, 422, "body.event"),
    ("post", "/v1/endpoints/v/session", {"json": {"items": []}}, 422, "body.items"),
    ("post", "/v1/endpoints/v/session", {"content": b"x" * 70_000}, 413, "too large"),
    ("delete", "/v1/endpoints/v/recommend", {}, 405, "not allowed"),
])
def test_bad_requests_get_4xx_that_say_what_is_wrong(http, bundle_paths, ai_db, method, path, kw, status, phrase):
    serving.deploy([bundle_paths["ease"]], ai_db.nodes[0].address, name="v", progress=False)
    r = getattr(http, method)(path, **kw)
    assert r.status_code == status, r.text
    assert phrase in r.json()["error"] and "Traceback" not in r.text


def test_metrics_parse_as_prometheus_and_count_per_variant(http, bundle_paths, models, ai_db):
    from prometheus_client.parser import text_string_to_metric_families

    serving.deploy([bundle_paths["ease"]], ai_db.nodes[0].address, name="m", progress=False)
    before = _recommends(http, "m")
    for u in models["ease"].user_ids_.raw[:25]:
        http.get("/v1/endpoints/m/recommend", params={"user": str(u)})
    http.get("/v1/endpoints/m/recommend", params={"user": "1", "k": "0"})
    assert _recommends(http, "m") == before + 25
    fams = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    hist = fams["recarena_http_request_duration_seconds"]
    counts = [s.value for s in hist.samples if s.name.endswith("_count") and s.labels.get("endpoint") == "m"]
    assert sum(counts) >= 25


def _recommends(http, name):
    from prometheus_client.parser import text_string_to_metric_families

    total = 0
    for fam in text_string_to_metric_families(http.get("/metrics").text):
        if fam.name == "recarena_http_requests":
            total += sum(s.value for s in fam.samples if s.name.endswith("_total") and s.labels["endpoint"] == name
                         and s.labels["route"] == "recommend" and s.labels["status"] == "200")
    return total


def test_several_workers_share_one_metrics_view(bundle_paths, models, ai_db, wire):
    serving.deploy([bundle_paths["ease"]], ai_db.nodes[0].address, name="w2", progress=False)
    p, url = start_service(ai_db.nodes[0].address, "--workers", "2")
    try:
        with httpx.Client(base_url=url, timeout=10) as c:
            for u in models["ease"].user_ids_.raw[:40]:
                # a new connection each time, so that both workers take requests
                assert httpx.get(url + "/v1/endpoints/w2/recommend", params={"user": str(u)}).status_code == 200
            assert _recommends(c, "w2") == 40
    finally:
        stop_service(p)


def test_docs_and_openapi_are_served_offline(http):
    assert "swagger-ui" in http.get("/docs").text
    assert http.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/v1/endpoints/{name}/recommend", "/v1/endpoints/{name}/feedback", "/v1/endpoints/{name}/promote"} <= set(paths)


def test_listening_beyond_loopback_needs_a_token_or_insecure(ai_db):
    out = subprocess.run([CLI, "serve", "http", "--ssdb", ai_db.nodes[0].address, "--host", "0.0.0.0", "--port", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--token" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_ten_thousand_malformed_requests_get_only_4xx(http, bundle_paths, models, ai_db):
    """Fuzzed query strings, paths and JSON bodies: every answer is a 4xx with an error that
    is not a traceback, and the service still answers a good request afterwards."""
    serving.deploy([bundle_paths["ease"]], ai_db.nodes[0].address, name="fz", progress=False)
    rng = np.random.default_rng(0)
    alphabet = list("abc019%&=?#/.\\\"'{}[]:,- \t\x00\x7f<>;") + ["é", "\u2028", "💥"]

    def junk(n):
        return "".join(rng.choice(alphabet) for _ in range(n))

    def body():
        choice = rng.integers(6)
        if choice == 0:
            return junk(int(rng.integers(0, 60))).encode("utf-8", "surrogatepass")
        values = [None, True, -1, 0, 10**30, 1.5e308, "", junk(5), [], {}, [junk(3)] * 3, {"x": {"y": []}}, "u" * 300]
        obj = {k: values[int(rng.integers(len(values)))] for k in rng.choice(
            ["request_id", "item", "event", "value", "items", "k", "user", "variant", junk(3)], size=int(rng.integers(0, 5)))}
        if choice == 1:
            return json.dumps(values[int(rng.integers(len(values)))]).encode()
        return json.dumps(obj).encode()

    routes = ["recommend", "session", "predict", "feedback", "experiment", "promote", "rollback", junk(4)]
    statuses = {}
    for i in range(10_000):
        route = routes[int(rng.integers(len(routes)))]
        # percent-encoded: the server decodes it (control characters, quotes, non-ASCII)
        name = "fz" if rng.random() < 0.7 else quote(junk(int(rng.integers(1, 8))), safe="")
        url = f"/v1/endpoints/{name}/{route}"
        if rng.random() < 0.5:  # a GET that is wrong in at least one way
            params = {junk(3): junk(int(rng.integers(0, 10))) for _ in range(int(rng.integers(0, 4)))}
            flaw = int(rng.integers(4))
            if flaw == 0:
                params["k"] = rng.choice(["-1", "0", "1001", "1e3", "nan", "", "9" * 30, "x", "1.5"])
            elif flaw == 1:
                params["user"] = rng.choice(["u" * int(rng.integers(257, 400)), "", " ", "a\x01b"])
            elif flaw == 2:
                params.pop("user", None)
                url = "/v1/endpoints/fz/recommend"
            else:
                # a path segment no route has (no '/', '.', '?' or '#', which would lead elsewhere)
                url = f"/v1/endpoints/{name}/x" + "".join(rng.choice(list("abz09%-_~")) for _ in range(int(rng.integers(0, 6))))
            if flaw < 2:
                url = f"/v1/endpoints/{name}/recommend"
            r = http.get(url, params=params)
        else:
            r = http.post(url, content=body(), headers={"content-type": "application/json"})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert 400 <= r.status_code < 500, (i, url, r.status_code, r.text[:300])
        assert "Traceback" not in r.text
    assert http.get("/v1/endpoints/fz/recommend", params={"user": str(models["ease"].user_ids_.raw[0])}).status_code == 200
    assert len(statuses) >= 3, statuses


# ------------------------------------------------------------------ faults
def test_database_killed_and_restarted(bundle_paths, models, tmp_path):
    """kill -9 of the database under load: every request gets 2xx or 503 + Retry-After within
    1 s, /readyz says not ready, the service is ready again within 2 s of the restart, and every
    feedback event acknowledged with 2xx is there afterwards (AOF, appendfsync always)."""
    data = tmp_path / "db"
    port = db.free_port()
    aof = db.DURABLE
    d = db.start(data, port=port, extra_config=aof)
    address = d.nodes[0].address
    serving.deploy([bundle_paths["ease"]], address, name="f", progress=False)
    p, url = start_service(address, "--routing-ttl", "0")
    users = [str(u) for u in models["ease"].user_ids_.raw]
    acked, answers, slow = [], {}, []
    try:
        with httpx.Client(base_url=url, timeout=5) as c:
            t_end, killed_at, restarted_at, ready_at = time.monotonic() + 10, None, None, None
            i = 0
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                r = c.get("/v1/endpoints/f/recommend", params={"user": users[i % len(users)]})
                dt = time.monotonic() - t0
                answers[r.status_code] = answers.get(r.status_code, 0) + 1
                if dt > 1.0:
                    slow.append(dt)
                if r.status_code == 200:
                    fb = c.post("/v1/endpoints/f/feedback", json={"request_id": r.json()["request_id"],
                                                                   "item": str(r.json()["items"][0]["item"]), "event": "click"})
                    if fb.status_code == 200:
                        acked.append(fb.json()["event_id"])
                    else:
                        assert fb.status_code == 503 and fb.headers.get("retry-after"), fb.text
                else:
                    assert r.status_code == 503 and r.headers.get("retry-after") and dt < 0.1 + 0.05, (r.status_code, dt, r.text)
                i += 1
                now = time.monotonic() - (t_end - 10)
                if killed_at is None and now > 3:
                    os.kill(d.nodes[0].pid, signal.SIGKILL)
                    killed_at = time.monotonic()
                    time.sleep(0.05)
                    assert c.get("/readyz").status_code == 503
                if killed_at and restarted_at is None and time.monotonic() - killed_at > 2:
                    d = db.start(data, port=port, extra_config=aof)
                    restarted_at = time.monotonic()
                if restarted_at and ready_at is None and c.get("/readyz").status_code == 200:
                    ready_at = time.monotonic()
        assert answers.get(503, 0) > 0 and answers.get(200, 0) > 0, answers
        assert set(answers) <= {200, 503}, answers
        assert not slow, slow
        assert ready_at is not None and ready_at - restarted_at < 2.0
        import redis

        r = redis.Redis(unix_socket_path=d.nodes[0].address[len("unix://"):])
        ids = {e[0].decode() for e in r.xrange("recarena:f:events") if e[1][b"type"] == b"feedback"}
        missing = [a for a in acked if a not in ids]
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged feedback events lost"
    finally:
        stop_service(p)
        d.stop()


# ------------------------------------------------------------------ the page
def test_page_in_headless_chromium(service, http, bundle_paths, models, ai_db, tmp_path):
    pytest.importorskip("playwright")
    from recarena_viz.browser import find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium installed (just setup installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    serving.deploy([bundle_paths["pop"], bundle_paths["ease"]], ai_db.nodes[0].address, name="pg", split="pop=1,ease=1",
                   progress=False)
    user = str(models["ease"].user_ids_.raw[5])
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(service + "/", wait_until="load")
        page.wait_for_selector("table.ab[data-endpoint=pg]")
        cell = page.locator("table.ab[data-endpoint=pg] tr[data-variant=ease] td.requests")
        before = int(cell.inner_text())
        page.select_option("#try-endpoint", "pg")
        page.fill("#try-user", user)
        page.click("#try button")
        page.wait_for_selector("#try-items li")
        shown = page.locator("#try-items li").count()
        # feedback from outside the page; the table follows within its 2 s refresh
        for u in models["ease"].user_ids_.raw[:40]:
            body = http.get("/v1/endpoints/pg/recommend", params={"user": str(u)}).json()
            http.post("/v1/endpoints/pg/feedback", json={"request_id": body["request_id"], "item": str(body["items"][0]["item"]),
                                                          "event": "click"}, headers=AUTH)
        page.wait_for_function("(b) => Number(document.querySelector('table.ab[data-endpoint=pg] tr[data-variant=ease] td.requests')"
                               ".innerText) > b", arg=before, timeout=10_000)
        clicks = int(page.locator("table.ab[data-endpoint=pg] tr[data-variant=ease] td.clicks").inner_text())
        verdict = page.locator("div.verdict").first.inner_text()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert shown == 10 and clicks > 0 and "hit rate" in verdict
    assert not errors, errors


# ------------------------------------------------------------------ the known answer
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.slow
def test_simulate_ease_beats_pop_on_recbole_ml1m(ai_db, tmp_path, monkeypatch):
    """`serve simulate`: ease against pop on recbole-ml1m, 50/50, 2,000 simulated users:
    EASE's hit rate is higher with p < 0.01, and the page's data (the experiment) says so."""
    if not (SHARED / "ml-1m").exists():
        pytest.skip("../shared/data/ml-1m is not here")
    monkeypatch.setenv("RECARENA_HOME", str(tmp_path / "home"))
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    for model in ("ease", "pop"):
        out = subprocess.run([CLI, "train", model, "--protocol", "recbole-ml1m", "--data-dir", str(SHARED), "--no-progress"],
                             capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
    out = subprocess.run([CLI, "serve", "export", "--protocol", "recbole-ml1m", "--top", "2", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    bundles = sorted((tmp_path / "b").iterdir())
    ssdb = ai_db.nodes[0].address
    serving.deploy(bundles, ssdb, name="sim", split=",".join(
        f"{json.loads((b / 'manifest.json').read_text())['model']}=1" for b in bundles), progress=False)
    p, url = start_service(ssdb, "--name", "sim")
    try:
        res = subprocess.run([CLI, "serve", "simulate", "--url", url, "--name", "sim", "--users", "2000", "--seed", "0",
                              "--data-dir", str(SHARED), "--json"], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-2000:]
    finally:
        stop_service(p)
    sim = json.loads(res.stdout.strip().splitlines()[-1])
    ex = sim["experiment"]
    rows = {v["label"]: v for v in ex["variants"]}
    assert sim["users"] == 2000 and rows["ease"]["requests"] + rows["pop"]["requests"] == 2000
    (t,) = ex["tests"]
    assert t["winner"] == "ease" and t["p_value"] < 0.01, t
    assert rows["ease"]["hit_rate"] > rows["pop"]["hit_rate"] and not math.isnan(rows["ease"]["ctr"])
    print(res.stdout.strip().splitlines()[-2])  # the summary line
