"""``recarena serve http``: the recommendation web service in front of the inference database.

FastAPI on uvicorn: FastAPI because the OpenAPI document at ``/docs`` is generated from the same
declarations that validate every request (the docs cannot drift from what is enforced);
uvicorn[standard] for httptools and uvloop, and because its worker model is the common one.

The hot path does not go through smartredis: smartredis is synchronous (it would stall the
event loop for every request in flight) and cannot send the module's
``AI._MODELEXECUTE_REPLY``, which runs the recommend graph on the keys the deploy stored and
returns the items and scores in its reply. A recommend request is one round trip: one Lua
script runs that command (inline: the module runs on the main thread inside scripts), counts
the request for its variant and logs it to the stream. It writes no tensor: traffic never grows
the keyspace, nor the AOF with model outputs (only the counters and the log, which it must).
The hot path avoids per-request tasks (the body limit is pure ASGI) and encodes with orjson:
on this 2-core machine that took the service from 720 to 330 us of CPU per request. Deploy,
promote and rollback are the same smartredis functions the CLI runs.

Keys this service adds under ``recarena:<name>:`` (see :mod:`recarena_serve.serving`):
``events`` (a stream capped at ``stream_cap`` entries: every served request, with the
version's internal ids of the items it showed, and every feedback event), ``ab:<version>`` (a hash of counters: requests, impressions, clicks, hits,
purchases, ratings, rating_sum, rating_sq), ``ab:<version>:users`` (HyperLogLog of the users
served), ``ab:<version>:clicked`` (the ``request|item`` pairs clicked, so a repeated click
counts once) and ``ab:<version>:hit`` (the requests with a click).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import hmac
import ipaddress
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl

import numpy as np
import orjson
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from recarena.errors import RecArenaError
from recarena_serve import abtest, serving

log = logging.getLogger("recarena.http")

MAX_ID = 256  # characters of a raw user or item id
MAX_K = 1000
MAX_BODY = 64 * 1024  # bytes of a JSON body
MAX_SESSION = 1000  # items in a session request
RETRY_AFTER = "1"  # seconds, on 503

# A recommend request in one round trip: the model runs inline in the script (the module runs
# on the main thread inside scripts) and the request is counted and logged with its items.
_RECOMMEND = """
local out = redis.call('AI._MODELEXECUTE_REPLY', KEYS[1], 'INPUTS', 2, KEYS[2], KEYS[3])
local blob, k = out[1][3], tonumber(ARGV[5])
local ids = {}
for pos = 1, math.min(#blob, 8 * k), 8 do
  local v = struct.unpack('<i8', blob, pos)
  if v >= 0 then ids[#ids + 1] = string.format('%d', v) end
end
redis.call('HINCRBY', KEYS[4], 'requests', 1)
redis.call('HINCRBY', KEYS[4], 'impressions', #ids)
redis.call('PFADD', KEYS[5], ARGV[2])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[6], '*', 'type', 'request', 'request_id', ARGV[1],
           'user', ARGV[2], 'variant', ARGV[3], 'version', ARGV[4], 'items', table.concat(ids, ','))
return out
"""

_LOG_REQUEST = """
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('HINCRBY', KEYS[1], 'impressions', tonumber(ARGV[5]))
redis.call('PFADD', KEYS[2], ARGV[2])
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'type', 'request', 'request_id', ARGV[1],
                  'user', ARGV[2], 'variant', ARGV[3], 'version', ARGV[4], 'items', ARGV[6])
"""

_LOG_FEEDBACK = """
local ev = ARGV[3]
if ev == 'click' then
  if redis.call('SADD', KEYS[2], ARGV[1] .. '|' .. ARGV[2]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'clicks', 1)
  end
  if redis.call('SADD', KEYS[4], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'hits', 1) end
elseif ev == 'rating' then
  redis.call('HINCRBY', KEYS[1], 'ratings', 1)
  redis.call('HINCRBYFLOAT', KEYS[1], 'rating_sum', ARGV[4])
  redis.call('HINCRBYFLOAT', KEYS[1], 'rating_sq', tostring(tonumber(ARGV[4]) * tonumber(ARGV[4])))
elseif ev == 'purchase' then
  redis.call('HINCRBY', KEYS[1], 'purchases', 1)
end
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'feedback', 'request_id', ARGV[1],
                  'item', ARGV[2], 'event', ev, 'value', ARGV[4])
"""

COUNTERS = ("requests", "impressions", "clicks", "hits", "purchases", "ratings", "rating_sum", "rating_sq")


class HTTPProblem(Exception):
    """An error with its HTTP status and a message that says what is wrong."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class Unavailable(HTTPProblem):
    def __init__(self, what: str):
        super().__init__(503, f"The inference database is unavailable ({what}); retry shortly.",
                         {"Retry-After": RETRY_AFTER})


@dataclass
class Settings:
    """What ``serve http`` was started with (passed to workers through the environment)."""

    address: str
    names: list[str] = field(default_factory=list)  # endpoints served; empty: every deployed one
    token: str | None = None
    routing_ttl: float = 0.2  # seconds a worker reuses the routing table it read
    stream_cap: int = 1_000_000  # approximate length cap of each endpoint's event stream
    db_timeout: float = 1.0  # seconds before a database call is given up (503)

    def to_env(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get("RECARENA_HTTP_SETTINGS")
        if not raw:
            raise RecArenaError("RECARENA_HTTP_SETTINGS is not set: start the service with `recarena serve http`.")
        return cls(**json.loads(raw))


def _tensor(reply) -> np.ndarray:
    """``[dtype, shape, blob]`` from AI._MODELEXECUTE_REPLY -> array"""
    dtype, shape, blob = reply
    dt = {b"INT64": np.int64, b"FLOAT": np.float32, b"INT32": np.int32, b"DOUBLE": np.float64}[dtype]
    return np.frombuffer(blob, dtype=dt).reshape([int(d) for d in shape])


class Backend:
    """The service's view of the database: async connection, cached routing and versions."""

    def __init__(self, settings: Settings):
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.settings = settings
        kw = dict(socket_timeout=settings.db_timeout, socket_connect_timeout=min(0.1, settings.db_timeout),
                  retry=Retry(NoBackoff(), 0), health_check_interval=0)
        a = settings.address
        if a.startswith("unix://"):
            self.r = aredis.Redis(unix_socket_path=a[len("unix://"):], **kw)
        else:
            host, port = a.rsplit(":", 1)
            self.r = aredis.Redis(host=host, port=int(port), **kw)
        self._routing: dict[str, tuple[float, dict]] = {}
        self._versions: dict[str, serving._Version] = {}
        self._log_request = self.r.register_script(_LOG_REQUEST)
        self._recommend = self.r.register_script(_RECOMMEND)
        self._log_feedback = self.r.register_script(_LOG_FEEDBACK)

    async def call(self, coro):
        import redis

        try:
            return await coro
        except (TimeoutError, redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise Unavailable(type(e).__name__) from None
        except redis.ResponseError as e:
            if "LOADING" in str(e) or "BUSY" in str(e):
                raise Unavailable(str(e).split("\n")[0]) from None
            raise

    async def json_key(self, key: str):
        blob = await self.call(self.r.execute_command("AI.TENSORGET", key, "BLOB"))
        return json.loads(bytes(blob).decode())

    def allowed(self, name: str) -> None:
        if self.settings.names and name not in self.settings.names:
            raise HTTPProblem(404, f"Unknown endpoint {name!r}: this service serves {self.settings.names}.")

    async def routing(self, name: str, fresh: bool = False) -> dict:
        self.allowed(name)
        now = time.monotonic()
        hit = self._routing.get(name)
        if hit and not fresh and now < hit[0]:
            return hit[1]
        import redis

        try:
            routing = await self.json_key(serving.routing_key(name))
        except redis.ResponseError as e:
            if "empty" in str(e).lower() or "does not exist" in str(e).lower() or "nil" in str(e).lower():
                raise HTTPProblem(404, f"Nothing is deployed on endpoint {name!r} (`recarena serve deploy --name {name}`).") from None
            raise
        self._routing[name] = (now + self.settings.routing_ttl, routing)
        return routing

    async def previous(self, name: str) -> dict | None:
        if not await self.call(self.r.exists(serving.routing_key(name) + ":previous")):
            return None
        return await self.json_key(serving.routing_key(name) + ":previous")

    async def version(self, entry: dict) -> serving._Version:
        v = self._versions.get(entry["prefix"])
        if v is None:
            v = serving._Version(entry["prefix"], await self.json_key(f"{entry['prefix']}:meta"))
            if v.needs_indptr:
                v.indptr = np.frombuffer(await self.call(self.r.execute_command(
                    "AI.TENSORGET", f"{entry['prefix']}:seen:indptr", "BLOB")), np.int64)
            self._versions[entry["prefix"]] = v
            # a version's id maps are large and live as long as the worker: out of the
            # collector's way, or every full collection walks them (p99 spikes)
            gc.collect()
            gc.freeze()
        return v

    async def endpoints(self) -> list[str]:
        if self.settings.names:
            return list(self.settings.names)
        names = []
        async for key in self.r.scan_iter(match=f"{serving.PREFIX}:*:routing", count=1000):
            names.append(key.decode().split(":")[1])
        return sorted(set(names))

    async def run_with(self, model_key: str, tensors: list[np.ndarray]) -> list[np.ndarray]:
        """Runs a model on request-specific inputs: written to scratch keys and deleted in the
        same transaction, so nothing is left in the keyspace."""
        tmp = f"{serving.PREFIX}:tmp:http:{uuid.uuid4().hex[:12]}"
        keys = [f"{tmp}:{i}" for i in range(len(tensors))]
        pipe = self.r.pipeline(transaction=True)
        for k, t in zip(keys, tensors):
            pipe.execute_command("AI.TENSORSET", k, {np.dtype(np.int64): "INT64", np.dtype(np.float32): "FLOAT"}[t.dtype],
                                 *t.shape, "BLOB", t.tobytes())
        pipe.execute_command("AI._MODELEXECUTE_REPLY", model_key, "INPUTS", len(keys), *keys)
        pipe.delete(*keys)
        out = await self.call(pipe.execute())
        return [_tensor(t) for t in out[len(keys)]]


class LiveStats:
    """This worker's requests of the last minute, for the page (Prometheus has the totals)."""

    def __init__(self, window: float = 60.0):
        self.window = window
        self.events: collections.deque = collections.deque(maxlen=200_000)

    def add(self, seconds: float, error: bool) -> None:
        self.events.append((time.monotonic(), seconds, error))

    def summary(self) -> dict:
        now = time.monotonic()
        while self.events and self.events[0][0] < now - self.window:
            self.events.popleft()
        if not self.events:
            return {"window_s": self.window, "requests": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None, "error_rate": None}
        lat = np.array([e[1] for e in self.events]) * 1000
        span = max(1.0, min(self.window, now - self.events[0][0]))
        return {"window_s": self.window, "requests": len(lat), "rps": len(lat) / span,
                "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "error_rate": sum(e[2] for e in self.events) / len(lat)}


class Metrics:
    """Prometheus counters and latency histogram, per route, endpoint and variant."""

    BUCKETS = (.0005, .001, .002, .003, .005, .0075, .01, .015, .025, .05, .1, .25, .5, 1, 2.5)

    def __init__(self):
        import prometheus_client as pc

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = pc.REGISTRY if self.multiprocess else pc.CollectorRegistry()
        labels = ["route", "endpoint", "variant"]
        self.requests = pc.Counter("recarena_http_requests", "HTTP requests served", labels + ["status"], registry=self.registry)
        self.errors = pc.Counter("recarena_http_errors", "HTTP requests answered 5xx", labels, registry=self.registry)
        self.latency = pc.Histogram("recarena_http_request_duration_seconds", "Time to answer a request", labels,
                                    buckets=self.BUCKETS, registry=self.registry)

    def observe(self, route: str, endpoint: str, variant: str, status: int, seconds: float) -> None:
        self.requests.labels(route, endpoint, variant, str(status)).inc()
        self.latency.labels(route, endpoint, variant).observe(seconds)
        if status >= 500:
            self.errors.labels(route, endpoint, variant).inc()

    def render(self) -> tuple[bytes, str]:
        import prometheus_client as pc

        if self.multiprocess:
            from prometheus_client import multiprocess

            reg = pc.CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)
            return pc.generate_latest(reg), pc.CONTENT_TYPE_LATEST
        return pc.generate_latest(self.registry), pc.CONTENT_TYPE_LATEST


def _check_id(what: str, v: str) -> str:
    if not v or not v.strip():
        raise HTTPProblem(422, f"The {what} id is empty: name a raw {what} id as it appears in the training data.")
    if len(v) > MAX_ID:
        raise HTTPProblem(422, f"The {what} id is {len(v)} characters long; at most {MAX_ID} are accepted.")
    if any(ord(ch) < 32 for ch in v):
        raise HTTPProblem(422, f"The {what} id holds control characters.")
    return v


def _items_out(v: serving._Version, items: np.ndarray, scores: np.ndarray) -> list[dict]:
    titles = v.titles
    return [{"item": v.items[i], "score": float(s), **({"title": titles[i]} if titles else {})}
            for i, s in zip(items.tolist(), scores.tolist())]


class Service:
    """The request logic, independent of the web framework (the app below only adapts it)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = Backend(settings)

    def _keys(self, name: str, version: str) -> tuple[str, str, str, str, str]:
        base = f"{serving.PREFIX}:{name}:ab:{version}"
        return base, base + ":users", f"{serving.PREFIX}:{name}:events", base + ":clicked", base + ":hit"

    async def recommend(self, name: str, user: str, k: int, exclude_seen: bool = True) -> dict:
        _check_id("user", user)
        if not exclude_seen:
            # the graphs mask the seen items inside the database, and many (EASE, item-kNN, the
            # autoencoders, the sequential models) read them as the user's history
            raise HTTPProblem(422, "exclude_seen=false is not served: the recommend graphs exclude the user's training items "
                                   "in the database, and several read them as the user's history.")
        routing = await self.db.routing(name)
        entry = serving.assign(routing, user)
        v = await self.db.version(entry)
        uid = v.user_index.get(user)
        fallback = None
        if uid is None:
            items = np.asarray(v.meta["popular"][:k], np.int64)
            scores = np.asarray(v.meta["popular_counts"][:k], np.float32)
            fallback = "popularity (unknown user)"
        elif "recommend" not in v.meta["kinds"] and "table" not in v.meta["kinds"]:
            raise HTTPProblem(409, f"{entry['model']} serves rating predictions only (no ranking graph): use predict.")
        else:
            if k > (v.meta["k"] or 0):
                raise HTTPProblem(422, f"k={k} but {entry['model']} was exported with k={v.meta['k']}; "
                                       f"ask for at most {v.meta['k']} or export again with -k {k}.")
            if "table" in v.meta["kinds"]:
                pipe = self.db.r.pipeline(transaction=False)
                top, topscore = v.table_keys(uid)
                pipe.execute_command("AI.TENSORGET", top, "BLOB")
                pipe.execute_command("AI.TENSORGET", topscore, "BLOB")
                a, b = await self.db.call(pipe.execute())
                items, scores = np.frombuffer(a, np.int64), np.frombuffer(b, np.float32)
            else:
                rid = f"{entry['version']}.{uuid.uuid4().hex[:16]}"
                base, users, events, *_ = self._keys(name, entry["version"])
                reply = await self.db.call(self.db._recommend(
                    keys=[f"{v.prefix}:recommend", *v.recommend_keys(uid), base, users, events],
                    args=[rid, user, entry.get("label", entry["model"]), entry["version"], k, self.settings.stream_cap]))
                items, scores = _tensor(reply[0])[0][:k], _tensor(reply[1])[0][:k]
                keep = items >= 0
                return self._answer(name, user, entry, v, rid, items[keep], scores[keep], None)
            items, scores = items[:k], scores[:k]
            keep = items >= 0
            items, scores = items[keep], scores[keep]
        rid = f"{entry['version']}.{uuid.uuid4().hex[:16]}"
        await self._log(name, entry, rid, user, items)
        return self._answer(name, user, entry, v, rid, items, scores, fallback)

    @staticmethod
    def _answer(name, user, entry, v, rid, items, scores, fallback) -> dict:
        return {"request_id": rid, "endpoint": name, "user": user, "model": entry["model"], "version": entry["version"],
                "variant": entry.get("label", entry["model"]), "run_id": entry.get("run_id"), "fallback": fallback,
                "items": _items_out(v, items, scores)}

    async def _log(self, name: str, entry: dict, rid: str, user: str, items: np.ndarray) -> None:
        """Counts and logs a request served without the recommend script; ``items`` are the
        version's internal ids, as the script logs them."""
        keys = self._keys(name, entry["version"])
        await self.db.call(self.db._log_request(keys=list(keys[:3]), args=[
            rid, user, entry.get("label", entry["model"]), entry["version"], len(items),
            ",".join(map(str, np.asarray(items).tolist())), self.settings.stream_cap]))

    async def session(self, name: str, raw_items: list[str], k: int) -> dict:
        if not raw_items:
            raise HTTPProblem(422, "The session is empty: pass the raw ids of the items it holds, oldest first.")
        for i in raw_items:
            _check_id("item", i)
        routing = await self.db.routing(name)
        key = "session:" + ",".join(raw_items)
        entry = serving.assign(routing, key)
        v = await self.db.version(entry)
        if not v.meta.get("session"):
            raise HTTPProblem(409, f"{entry['model']} cannot recommend for a session without a user: its recommend graph "
                                   "scores users it trained on (sequential models such as sasrec, gru4rec, svae can).")
        unknown = [i for i in raw_items if i not in v.item_index]
        if unknown:
            raise HTTPProblem(422, f"Unknown items {unknown[:5]!r} for {entry['model']}: a session holds items of its training data.")
        if k > (v.meta["k"] or 0):
            raise HTTPProblem(422, f"k={k} but {entry['model']} was exported with k={v.meta['k']}.")
        ids = np.array([[v.item_index[i] for i in raw_items]], np.int64)
        items, scores = await self.db.run_with(f"{v.prefix}:recommend", [np.zeros(1, np.int64), ids])
        items, scores = items[0][:k], scores[0][:k]
        keep = items >= 0
        rid = f"{entry['version']}.{uuid.uuid4().hex[:16]}"
        out = {"request_id": rid, "endpoint": name, "session": raw_items, "model": entry["model"], "version": entry["version"],
               "variant": entry.get("label", entry["model"]), "run_id": entry.get("run_id"), "fallback": None,
               "items": _items_out(v, items[keep], scores[keep])}
        await self._log(name, entry, rid, key[:MAX_ID], items[keep])
        return out

    async def predict(self, name: str, user: str, raw_items: list[str]) -> dict:
        _check_id("user", user)
        if not raw_items:
            raise HTTPProblem(422, "Name at least one item to predict.")
        for i in raw_items:
            _check_id("item", i)
        routing = await self.db.routing(name)
        entry = serving.assign(routing, user)
        v = await self.db.version(entry)
        if "predict" not in v.meta["kinds"]:
            raise HTTPProblem(409, f"{entry['model']} has no predict graph (a ranking-only model): use recommend.")
        uid = v.user_index.get(user)
        unknown = [i for i in raw_items if i not in v.item_index]
        if uid is None or unknown:
            raise HTTPProblem(404, f"Unknown {'user ' + repr(user) if uid is None else 'items ' + repr(unknown[:5])} for {entry['model']}.")
        iids = np.array([v.item_index[i] for i in raw_items], np.int64)
        (scores,) = await self.db.run_with(f"{v.prefix}:predict", [np.full(len(iids), uid, np.int64), iids])
        return {"endpoint": name, "user": user, "model": entry["model"], "version": entry["version"],
                "variant": entry.get("label", entry["model"]),
                "predictions": [{"item": i, "score": float(s)} for i, s in zip(raw_items, scores.reshape(-1).tolist())]}

    async def feedback(self, name: str, request_id: str, item: str, event: str, value: float | None) -> dict:
        self.db.allowed(name)
        version, _, tail = request_id.rpartition(".")
        if not version or len(tail) != 16 or len(request_id) > MAX_ID:
            raise HTTPProblem(422, f"request_id {request_id[:80]!r} is not one this service issued "
                                   "(it is the request_id field of a recommend response).")
        _check_id("item", item)
        known = {e["version"]: e for t in (await self.db.routing(name, fresh=True), await self.db.previous(name) or {"entries": []})
                 for e in t["entries"]}
        if version not in known:
            exists = await self.db.call(self.db.r.exists(f"{serving.PREFIX}:{name}:ab:{version}"))
            if not exists:
                raise HTTPProblem(404, f"request_id {request_id[:80]!r}: endpoint {name!r} never served version {version!r}.")
        if event == "rating" and value is None:
            raise HTTPProblem(422, "A rating event needs its value (for example 4.5).")
        value = 1.0 if value is None else float(value)
        keys = self._keys(name, version)
        sid = await self.db.call(self.db._log_feedback(keys=[keys[0], keys[3], keys[2], keys[4]], args=[
            request_id, item, event, repr(value), self.settings.stream_cap]))
        entry = known.get(version)
        return {"accepted": True, "event_id": sid.decode() if isinstance(sid, bytes) else sid, "version": version,
                "variant": entry.get("label", entry["model"]) if entry else "-"}

    async def experiment(self, name: str) -> dict:
        routing = await self.db.routing(name, fresh=True)
        rows = []
        for e in routing["entries"]:
            base, users, *_ = self._keys(name, e["version"])
            pipe = self.db.r.pipeline(transaction=False)
            pipe.hgetall(base)
            pipe.pfcount(users)
            h, n_users = await self.db.call(pipe.execute())
            h = {k.decode(): float(v) for k, v in h.items()}
            row = {c: (h.get(c, 0.0) if c.startswith("rating_") else int(h.get(c, 0))) for c in COUNTERS}
            rows.append({"label": e.get("label", e["model"]), "model": e["model"], "version": e["version"],
                         "run_id": e.get("run_id"), "weight": e["weight"], "users": int(n_users), **row})
        total = sum(r["weight"] for r in rows) or 1.0
        for r in rows:
            r["traffic"] = r["weight"] / total
        prev = await self.db.previous(name)
        return {"endpoint": name, "salt": routing.get("salt", ""), "switched_at": routing.get("switched_at"),
                "promoted": routing.get("promoted"),
                "previous": [e.get("label", e["model"]) for e in prev["entries"]] if prev else None,
                **abtest.summarize(rows)}

    async def describe(self, name: str) -> dict:
        routing = await self.db.routing(name, fresh=True)
        prev = await self.db.previous(name)
        variants = []
        for e in routing["entries"]:
            v = await self.db.version(e)
            variants.append({"label": e.get("label", e["model"]), "model": e["model"], "version": e["version"],
                             "run_id": e.get("run_id"), "weight": e["weight"], "kinds": v.meta["kinds"],
                             "dataset": v.meta.get("dataset"), "protocol": v.meta.get("protocol"), "seed": v.meta.get("seed"),
                             "metrics": v.meta.get("metrics"), "k": v.meta.get("k"), "session": bool(v.meta.get("session"))})
        return {"name": name, "switched_at": routing.get("switched_at"), "salt": routing.get("salt", ""),
                "variants": variants, "previous": [e["version"] for e in prev["entries"]] if prev else None}

    async def switch(self, name: str, action: str, variant: str | None = None) -> dict:
        """promote / rollback: the CLI's functions (smartredis, one write), off the event loop."""
        self.db.allowed(name)
        try:
            if action == "promote":
                routing = await asyncio.to_thread(serving.promote, self.settings.address, name, variant)
            else:
                routing = await asyncio.to_thread(serving.rollback, self.settings.address, name)
        except RecArenaError as e:
            raise HTTPProblem(409, str(e)) from None
        self.db._routing.pop(name, None)
        return {"endpoint": name, "action": action, "variants": [
            {"label": e.get("label", e["model"]), "version": e["version"], "weight": e["weight"]} for e in routing["entries"]]}


# ------------------------------------------------------------------ request bodies
class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(max_length=MAX_ID, description="the request_id of the recommend response")
    item: str = Field(min_length=1, max_length=MAX_ID, description="raw item id the event is about")
    event: Literal["click", "rating", "purchase"]
    value: float | None = Field(default=None, ge=-1e6, le=1e6, allow_inf_nan=False,
                                description="a rating's value (required for rating)")


class Session(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[str] = Field(min_length=1, max_length=MAX_SESSION, description="raw item ids, oldest first")
    k: int = Field(default=10, ge=1, le=MAX_K)


class Predict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=MAX_ID)
    items: list[str] = Field(min_length=1, max_length=MAX_K)


class Promote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variant: str = Field(min_length=1, max_length=MAX_ID, description="the variant's label (or version)")



# ------------------------------------------------------------------ the ASGI app
def create_app(settings: Settings | None = None):
    """The FastAPI app (``settings`` from ``RECARENA_HTTP_SETTINGS`` when not given)."""
    from fastapi import FastAPI, Query
    from fastapi import Path as PathParam
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    JSONResponse = _json_response_class()  # noqa: N806 (a class)
    settings = settings or Settings.from_env()
    svc = Service(settings)
    metrics = Metrics()
    live = LiveStats()
    app = FastAPI(title="RecArena recommendation service", version="1", docs_url=None, redoc_url=None,
                  default_response_class=JSONResponse,
                  description="Recommendations from the inference database, with sticky A/B tests that decide.")
    import swagger_ui_bundle

    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.state.service = svc

    NAME = PathParam(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the serving endpoint (`serve deploy --name`)")

    def problem(status: int, message: str, headers: dict | None = None, detail=None) -> JSONResponse:
        body = {"error": message}
        if detail is not None:
            body["detail"] = detail
        return JSONResponse(body, status_code=status, headers=headers)

    def authorize(request: Request) -> None:
        if not settings.token:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {settings.token}".encode()):
            raise HTTPProblem(401, "This endpoint changes state: send the service's token as 'Authorization: Bearer <token>'.",
                              {"WWW-Authenticate": "Bearer"})

    async def answer(route: str, name: str, work) -> Response:
        t0 = time.perf_counter()
        variant, status = "-", 200
        try:
            out = await work()
            variant = out.get("variant", "-") if isinstance(out, dict) else "-"
            return JSONResponse(out)
        except HTTPProblem as e:
            status = e.status
            return problem(e.status, e.message, e.headers)
        except RecArenaError as e:
            status = 422
            return problem(422, str(e))
        except Exception:  # never a traceback in a body; the log has it
            status = 500
            log.exception("%s %s failed", route, name)
            return problem(500, "Internal error; the service log has the details.")
        finally:
            dt = time.perf_counter() - t0
            metrics.observe(route, name if status != 404 else "-", variant, status, dt)
            live.add(dt, status >= 500)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errs = [{"where": ".".join(str(x) for x in e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()]
        text = "; ".join(f"{e['where']}: {e['problem']}" for e in errs[:5])
        metrics.observe("invalid", "-", "-", 422, 0.0)
        return problem(422, f"Invalid request: {text}", detail=errs)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        msg = {404: f"No such path {request.url.path[:100]!r}; GET /docs lists the API.",
               405: f"{request.method} is not allowed on {request.url.path[:100]!r}; GET /docs lists the API."}
        return problem(exc.status_code, msg.get(exc.status_code, str(exc.detail)), getattr(exc, "headers", None))

    @app.get("/v1/endpoints", summary="The endpoints served, with their variants and versions")
    async def endpoints():
        async def work():
            return {"endpoints": [await svc.describe(n) for n in await svc.db.endpoints()]}
        return await answer("endpoints", "-", work)

    @app.get("/v1/endpoints/{name}", summary="One endpoint: variants, versions, traffic split")
    async def endpoint(name: str = NAME):
        return await answer("endpoint", name, lambda: svc.describe(name))

    @app.get("/v1/endpoints/{name}/recommend", summary="Top-k items for a raw user id")
    async def recommend(name: str = NAME, user: str = Query(min_length=1, max_length=MAX_ID),
                        k: int = Query(10, ge=1, le=MAX_K),
                        exclude_seen: bool = Query(True, description="leave out the items the user trained on")):
        return await answer("recommend", name, lambda: svc.recommend(name, user, k, exclude_seen))

    @app.post("/v1/endpoints/{name}/session", summary="Top-k after a session of raw item ids (sequential models)")
    async def session(body: Session, name: str = NAME):
        return await answer("session", name, lambda: svc.session(name, body.items, body.k))

    @app.post("/v1/endpoints/{name}/predict", summary="Scores of (user, item) pairs: a rating or click probability")
    async def predict(body: Predict, name: str = NAME):
        return await answer("predict", name, lambda: svc.predict(name, body.user, body.items))

    @app.post("/v1/endpoints/{name}/feedback", summary="Record a click, rating or purchase for a served request")
    async def feedback(request: Request, body: Feedback, name: str = NAME):
        async def work():
            authorize(request)
            return await svc.feedback(name, body.request_id, body.item, body.event, body.value)
        return await answer("feedback", name, work)

    @app.get("/v1/endpoints/{name}/experiment", summary="The A/B test: per-variant metrics, intervals, significance")
    async def experiment(name: str = NAME):
        return await answer("experiment", name, lambda: svc.experiment(name))

    @app.post("/v1/endpoints/{name}/promote", summary="Give one variant all traffic (one write; rollback undoes it)")
    async def promote(request: Request, body: Promote, name: str = NAME):
        async def work():
            authorize(request)
            return await svc.switch(name, "promote", body.variant)
        return await answer("promote", name, work)

    @app.post("/v1/endpoints/{name}/rollback", summary="Restore the previous routing table (one write)")
    async def rollback(request: Request, name: str = NAME):
        async def work():
            authorize(request)
            return await svc.switch(name, "rollback")
        return await answer("rollback", name, work)

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"ok": True}

    @app.get("/readyz", summary="The database answers")
    async def readyz():
        try:
            await asyncio.wait_for(svc.db.r.ping(), timeout=0.5)
            return {"ready": True}
        except Exception as e:  # any failure to answer means not ready
            return JSONResponse({"ready": False, "reason": type(e).__name__}, status_code=503, headers={"Retry-After": RETRY_AFTER})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prom():
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/v1/stats", summary="This worker's last minute: request rate, p50/p99 latency, error rate")
    async def live_stats():
        return live.summary()

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title="RecArena API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css", swagger_favicon_url="")

    @app.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse((Path(__file__).parent / "page.html").read_text())

    @app.on_event("shutdown")
    async def _close():
        await svc.db.r.aclose()

    async def fast_recommend(scope, name: str) -> Response | None:
        """The hot route without FastAPI's per-request machinery, for requests it can tell are
        valid by the route's own rules; anything else (an unknown parameter, a repeated one, a
        value out of range) returns None and goes through FastAPI, which answers it with the
        documented validation. Same Service call, same metrics."""
        try:  # decoded exactly as Starlette decodes it for the FastAPI route
            params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None
        got = dict(params)
        if len(got) != len(params) or not set(got) <= {"user", "k"}:
            return None
        user, k = got.get("user"), got.get("k", "10")
        if user is None or not 1 <= len(user) <= MAX_ID or not (k.isascii() and k.isdigit()) or not 1 <= int(k) <= MAX_K:
            return None
        return await answer("recommend", name, lambda: svc.recommend(name, user, int(k)))

    return BodyLimit(app, fast_recommend)


def _json_response_class():
    from starlette.responses import JSONResponse as Base

    class OrjsonResponse(Base):
        def render(self, content) -> bytes:
            return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)

    return OrjsonResponse


RECOMMEND_PATH = re.compile(r"^/v1/endpoints/([A-Za-z0-9_.-]{1,64})/recommend$")


class BodyLimit:
    """Refuses a declared body over MAX_BODY before it is read, and sends plain recommend GETs
    down the fast path (pure ASGI: Starlette's BaseHTTPMiddleware would cost a task per
    request on the hot path)."""

    def __init__(self, app, fast=None):
        self.app = app
        self.fast = fast

    def __getattr__(self, name):  # app.state, app.openapi() etc. for tests and tools
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            for k, v in scope["headers"]:
                if k == b"content-length" and (not v.isdigit() or int(v) > MAX_BODY):
                    body = orjson.dumps({"error": f"Request body too large or malformed length ({v[:20].decode(errors='replace')}); "
                                                  f"at most {MAX_BODY} bytes."})
                    await send({"type": "http.response.start", "status": 413,
                                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
            if self.fast is not None and scope["method"] == "GET":
                m = RECOMMEND_PATH.match(scope["path"])
                if m:
                    response = await self.fast(scope, m.group(1))
                    if response is not None:
                        await response(scope, receive, send)
                        return
        await self.app(scope, receive, send)


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to listen beyond loopback without a token or an explicit --insecure."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token and not insecure:
        raise RecArenaError(f"--host {host} would let anyone who reaches it promote, roll back and write feedback: "
                            "give --token (required on write endpoints) or --insecure if the network is trusted.")


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, insecure: bool = False,
        log_level: str = "warning") -> None:
    """Serve until interrupted (``recarena serve http``)."""
    import tempfile

    import uvicorn

    check_bind(host, settings.token, insecure)
    from recarena_serve.serving import is_cluster

    if is_cluster(settings.address):
        raise RecArenaError(f"serve http needs a standalone database, not the cluster at {settings.address}: a request is "
                            "one Lua script over the model's, the counters' and the event stream's keys, which a cluster "
                            "splits across shards. Use serving.Service (smartredis) against a cluster.")
    os.environ["RECARENA_HTTP_SETTINGS"] = settings.to_env()
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recarena-prom-")
    uvicorn.run("recarena_serve.http:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, loop="uvloop", http="httptools")
