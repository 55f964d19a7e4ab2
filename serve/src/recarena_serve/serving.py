"""Serving exported bundles from the inference database, through smartredis.

Key layout (all under ``recarena:<name>:``, where ``name`` is the serving endpoint):

- ``routing``: the live routing table, a UINT8 tensor holding JSON ``{"entries": [{model,
  run_id, version, prefix, weight}, ...]}``. It is the only key a deploy changes in place,
  and it is written last, in one command: the switch is atomic and a deploy that fails or
  dies before it leaves the previous version serving. ``routing:previous`` keeps the one
  before, which ``rollback`` restores in one write.
- ``versions``: the registry of this endpoint's versions (JSON ``[{prefix, n_users}]``),
  written before a version's keys are, so nothing loaded is ever unknown. After each switch
  every version that neither the routing table nor the previous one names is deleted.
- ``<version>:`` one deployment (the version is unique per deploy): ``recommend`` /
  ``predict`` (ONNX models), and every user's rows packed into a few tensors, whatever the
  number of users: ``seen`` (int64 [1, total], each user's training items in turn, an empty
  row stored as one -1; a sequential model's are its training sequence in time order, whose
  last ``max_len`` items the graph reads as the user) with ``seen:indptr`` (int64 [U + 1],
  where each user's row starts), ``ids`` (int64 [U], 0..U-1: the graph's ``user`` input) and,
  for models without ONNX, ``top`` / ``topscore`` ([1, U * N], precomputed top-N rows). A
  request names its rows as views, ``<key>[a:b]`` (elements a..b-1 of the last dimension; the
  module reads them in place, without a copy), so a request writes nothing and a million users
  cost five or six keys, not two million. ``meta`` (JSON as a UINT8 tensor): id maps, titles, the
  popularity fallback, probe answers. (Versions deployed before the packed layout keep their
  per-user ``seen:<uid>`` / ``user:<uid>`` / ``top:<uid>`` keys, and are still served.)

A request: raw user id -> internal id (the client caches each version's id maps), then
``get_tensor`` routing, ``run_model`` (inputs: views of the user's rows of ``ids`` and ``seen``;
the client caches ``seen:indptr`` with the id maps), ``get_tensor`` items and scores, and back to
raw ids: four round trips, and only K ids and scores leave the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recarena.errors import RecArenaError
from recarena.paths import file_digest

PREFIX = "recarena"
POPULAR_N = 100
#: the largest tensor one write may carry: Redis' default proto-max-bulk-len (512 MiB)
MAX_PUT_BYTES = 512 << 20


class DeployError(RecArenaError):
    """A deploy that could not be completed; the previous version is still serving."""


def is_cluster(address: str) -> bool:
    """A Redis Cluster address: several comma-separated shards (what `recarena db start --cluster N`
    prints), or one TCP address while ``SR_DB_TYPE=Clustered`` (SmartSim's and smartredis'
    variable). A Unix socket is never one: cluster clients reach shards over TCP."""
    if address.startswith("unix://"):
        return False
    return "," in address or os.environ.get("SR_DB_TYPE", "").lower() == "clustered"


def _client(ssdb: str | None = None):
    from smartredis import Client

    address = ssdb or os.environ.get("SSDB")
    if not address:
        raise RecArenaError("No database address: give --ssdb or export SSDB (printed by `recarena db start`).")
    os.environ.setdefault("SR_SOCKET_TIMEOUT", "60000")
    os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
    cluster = is_cluster(address)
    try:
        c = Client(address=address.split(",")[0], cluster=cluster)
    except Exception as e:  # smartredis raises its own classes; say what failed, not how
        raise RecArenaError(f"Cannot reach the inference database at {address}: {str(e).splitlines()[-1]}") from None
    c.recarena_address, c.recarena_cluster = address, cluster
    return c


def shard_tags(c) -> list[str]:
    """One hash tag per shard, ``{r<i>}``, each hashing into a slot that shard serves: a version's
    per-user tensors are written once per shard under them (``{r0}recarena:...:seen``), so each
    shard can answer any user without fetching from another, and requests spread over shards
    like the models do (smartredis stores a model on every shard). ``[""]`` when standalone."""
    if not getattr(c, "recarena_cluster", False):
        return [""]
    import redis
    from redis.crc import key_slot

    host, port = c.recarena_address.split(",")[0].rsplit(":", 1)
    slots = redis.Redis(host=host, port=int(port)).execute_command("CLUSTER", "SLOTS")
    by_node: dict = {}
    for lo, hi, primary, *_ in slots:
        by_node.setdefault(tuple(primary[:2]), []).append((int(lo), int(hi)))
    tags = []
    for ranges in sorted(by_node.values()):
        i = 0
        while not any(lo <= key_slot(f"r{i}".encode()) <= hi for lo, hi in ranges):
            i += 1
        tags.append(f"{{r{i}}}")
    return tags


def _put_json(c, key: str, obj) -> None:
    c.put_tensor(key, np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8).copy())


def _get_json(c, key: str):
    return json.loads(c.get_tensor(key).tobytes().decode())


def routing_key(name: str) -> str:
    return f"{PREFIX}:{name}:routing"


def versions_key(name: str) -> str:
    return f"{PREFIX}:{name}:versions"


#: the scratch keys a model run writes under its ``tmp`` prefix
SCRATCH = ("user", "items", "scores", "u", "i", "score")


def drop_scratch(c, tmp: str) -> None:
    """Delete the scratch keys runs under ``tmp`` wrote (probes, a closing client)."""
    for s in SCRATCH:
        if c.key_exists(f"{tmp}:{s}"):
            c.delete_tensor(f"{tmp}:{s}")


def _routing_or_none(c, key: str) -> dict | None:
    return _get_json(c, key) if c.tensor_exists(key) else None


def _registry(c, name: str) -> list[dict]:
    """The endpoint's known versions; for a database deployed before the registry existed,
    the versions its routing tables name."""
    if c.tensor_exists(versions_key(name)):
        return _get_json(c, versions_key(name))
    out: list[dict] = []
    for key in (routing_key(name), routing_key(name) + ":previous"):
        for e in (_routing_or_none(c, key) or {}).get("entries", []):
            meta = _routing_or_none(c, f"{e['prefix']}:meta") or {}
            if all(v["prefix"] != e["prefix"] for v in out):
                out.append({"prefix": e["prefix"], "n_users": len(meta.get("users", []))})
    return out


def collect_garbage(c, name: str) -> list[str]:
    """Delete every version of endpoint ``name`` that neither the routing table nor the
    previous one names (what a rollback could need); returns the prefixes deleted."""
    keep = set()
    for key in (routing_key(name), routing_key(name) + ":previous"):
        keep |= {e["prefix"] for e in (_routing_or_none(c, key) or {}).get("entries", [])}
    versions = _registry(c, name)
    gone = [v for v in versions if v["prefix"] not in keep]
    for v in gone:
        _delete_version(c, v["prefix"], 0 if v.get("layout") == "packed" else v["n_users"], v.get("replicas", [""]))
    _put_json(c, versions_key(name), [v for v in versions if v["prefix"] in keep])
    return [v["prefix"] for v in gone]


def rollback(ssdb: str | None = None, name: str = "default") -> dict:
    """Restore the routing table before the last switch (whatever made it: a deploy or a split
    change) in one write; the table it replaces becomes the previous one, so a second rollback
    undoes the first."""
    c = _client(ssdb)
    key, prev_key = routing_key(name), routing_key(name) + ":previous"
    previous = _routing_or_none(c, prev_key)
    if previous is None:
        raise RecArenaError(f"Endpoint {name!r} has no previous routing table to roll back to.")
    missing = [e["prefix"] for e in previous["entries"] if not c.tensor_exists(f"{e['prefix']}:meta")]
    if missing:
        raise RecArenaError(f"Cannot roll back endpoint {name!r}: its previous versions {missing} are gone.")
    current = _routing_or_none(c, key)
    restored = {**previous, "switched_at": time.time()}
    _put_json(c, key, restored)  # the switch: one write
    if current is not None:
        _put_json(c, prev_key, current)
    return restored


def parse_split(spec: str | None) -> dict[str, float]:
    """``"mf=0.7,ncf=0.3"`` -> {"mf": 0.7, "ncf": 0.3}"""
    if not spec:
        return {}
    out = {}
    for part in spec.split(","):
        key, sep, w = part.partition("=")
        try:
            weight = float(w)
        except ValueError:
            weight = -1.0
        if not sep or not key.strip() or weight <= 0:
            raise RecArenaError(f"--split {spec!r}: expected NAME=WEIGHT pairs with positive weights, got {part!r}.")
        out[key.strip()] = weight
    return out


# ------------------------------------------------------------------ deploy
#: manifest fields deploy relies on, and their JSON types
_MANIFEST_SCHEMA = {"model": str, "n_users": int, "n_items": int, "graphs": list, "files": dict}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RecArenaError(f"{path}:{e.lineno}: not valid JSON ({e.msg}). Nothing was deployed.") from None
    except UnicodeDecodeError:
        raise RecArenaError(f"{path}: not UTF-8 text. Nothing was deployed.") from None


@dataclass
class Bundle:
    path: Path
    manifest: dict
    ids: dict
    probe: dict

    @classmethod
    def open(cls, path) -> Bundle:
        """Read and check a bundle before anything reaches the database: its manifest against
        the schema, every path in it inside the bundle folder, every file against the checksum
        recorded at export, and each graph loaded and run once locally with the signature the
        database will call it with. Any problem is a :class:`RecArenaError` naming it."""
        path = Path(path)
        need = ["manifest.json", "ids.json", "probe.json", "seen_indptr.npy", "seen_indices.npy"]
        missing = [f for f in need if not (path / f).is_file()]
        if missing:
            raise RecArenaError(f"{path} is not a complete bundle (missing {', '.join(missing)}); write it with `recarena serve export`.")
        b = cls(path, _read_json(path / "manifest.json"), _read_json(path / "ids.json"), _read_json(path / "probe.json"))
        b.check()
        return b

    def _inside(self, name, field: str) -> Path:
        if not isinstance(name, str) or not name:
            raise RecArenaError(f"{self.path}/manifest.json: {field} must be a file name, got {name!r}.")
        root = self.path.resolve()
        target = (self.path / name).resolve()
        if Path(name).is_absolute() or not target.is_relative_to(root):
            raise RecArenaError(f"{self.path}/manifest.json: {field} {name!r} points outside the bundle folder; "
                                "a bundle may only name its own files. Nothing was deployed.")
        return target

    def check(self) -> None:
        m, where = self.manifest, f"{self.path}/manifest.json"
        if not isinstance(m, dict):
            raise RecArenaError(f"{where}: expected a JSON object, got {type(m).__name__}.")
        for key, kind in _MANIFEST_SCHEMA.items():
            v = m.get(key)
            if key not in m or not isinstance(v, kind) or isinstance(v, bool) or (kind is int and v < 0):
                want = {int: "a non-negative integer", str: "a string", list: "a list", dict: "an object"}[kind]
                raise RecArenaError(f"{where}: {key!r} must be {want}, got {v!r}." if key in m else
                                    f"{where}: the required field {key!r} is missing" + (
                                        " (bundles written before checksums were recorded: export it again with "
                                        "`recarena serve export`)." if key == "files" else "."))
        if m["n_items"] < 1:
            raise RecArenaError(f"{where}: 'n_items' must be at least 1, got {m['n_items']}.")
        named = {}
        for g in m["graphs"]:
            if not isinstance(g, dict) or g.get("kind") not in ("recommend", "predict"):
                raise RecArenaError(f"{where}: each graph needs kind 'recommend' or 'predict', got {g!r}.")
            if g["kind"] == "recommend" and not (isinstance(g.get("k"), int) and g["k"] >= 1):
                raise RecArenaError(f"{where}: the recommend graph needs k >= 1, got {g.get('k')!r}.")
            named[f"graph {g['kind']!r} file"] = g.get("file")
        table = m.get("topn_table")
        if table is not None:
            if not isinstance(table, dict) or not (isinstance(table.get("k"), int) and table["k"] >= 1):
                raise RecArenaError(f"{where}: topn_table must be an object with k >= 1, got {table!r}.")
            named["topn_table file"], named["topn_table scores"] = table.get("file"), table.get("scores")
        if not named:
            raise RecArenaError(f"{where}: no graph and no top-N table: nothing to serve.")
        for field, name in named.items():
            self._inside(name, field)
            if name not in m["files"]:
                raise RecArenaError(f"{where}: {field} {name!r} has no recorded checksum.")
        for name, digest in m["files"].items():
            f = self._inside(name, "files entry")
            if not f.is_file():
                raise RecArenaError(f"{self.path}: {name} is listed in the manifest but missing.")
            if file_digest(f) != digest:
                raise RecArenaError(f"{self.path}: {name} is not the file written at export (checksum differs): "
                                    "the bundle was changed or damaged. Export it again. Nothing was deployed.")
        for g in m["graphs"]:
            self._check_graph(g)

    def _check_graph(self, g: dict) -> None:
        """Load the graph in onnxruntime and run it once with the inputs serving sends."""
        import onnxruntime as ort

        f = self.path / g["file"]
        try:
            sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for damaged files
            raise RecArenaError(f"{f}: not a loadable ONNX graph ({type(e).__name__}: {str(e).splitlines()[0][:200]}).") from None
        ins, outs = sess.get_inputs(), sess.get_outputs()
        want_out = 2 if g["kind"] == "recommend" else 1
        if len(ins) != 2 or len(outs) != want_out:
            raise RecArenaError(
                f"{f}: a {g['kind']} graph takes 2 inputs ({'user, seen items' if g['kind'] == 'recommend' else 'users, items'}) "
                f"and gives {want_out} output(s); this one takes {len(ins)} ({', '.join(i.name for i in ins)}) and gives "
                f"{len(outs)}.")
        if g["kind"] == "recommend":
            feed = [np.array([0], np.int64), np.array([[-1]], np.int64)]
        else:
            feed = [np.array([0], np.int64), np.array([0], np.int64)]
        try:
            res = sess.run(None, {i.name: x for i, x in zip(ins, feed)})
        except Exception as e:
            raise RecArenaError(f"{f}: the graph does not run with the inputs serving sends ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]}).") from None
        if g["kind"] == "recommend" and np.asarray(res[0]).dtype != np.int64:
            raise RecArenaError(f"{f}: the recommend graph's first output must be int64 item ids, got {np.asarray(res[0]).dtype}.")

    @property
    def model(self) -> str:
        return self.manifest["model"]

    def graph(self, kind: str) -> dict | None:
        return next((g for g in self.manifest.get("graphs", []) if g["kind"] == kind), None)


def _packed_seen(b: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """Every user's seen row in one tensor: (indptr int64 [U + 1], values int64 [1, total]),
    an empty row stored as one -1 (the graphs take at least one excluded item)."""
    ip, ix = np.load(b.path / "seen_indptr.npy").astype(np.int64), np.load(b.path / "seen_indices.npy").astype(np.int64)
    lengths = np.maximum(np.diff(ip), 1)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.full(int(indptr[-1]), -1, np.int64)
    # each user's items at their new offsets: position within the row + the row's new start
    pos = np.arange(len(ix), dtype=np.int64) - np.repeat(ip[:-1], np.diff(ip)) + np.repeat(indptr[:-1], np.diff(ip))
    values[pos] = ix
    return indptr, values.reshape(1, -1)


def _load_version(c, b: Bundle, prefix: str, replicas: list[str]) -> tuple[dict, np.ndarray | None]:
    """Writes one bundle under ``prefix`` (its per-user tensors once under each of ``replicas``,
    the shard hash tags); returns its meta record and the ``seen:indptr`` it wrote (None for a
    top-N table)."""
    kinds = []
    for kind in ("recommend", "predict"):
        g = b.graph(kind)
        if g:
            c.set_model(f"{prefix}:{kind}", (b.path / g["file"]).read_bytes(), "ONNX", "CPU", tag=f"{b.model}:{prefix}")
            kinds.append(kind)
    n_users = b.manifest["n_users"]
    table = b.manifest.get("topn_table")
    row_len, indptr = None, None
    if table:
        items = np.load(b.path / table["file"]).astype(np.int64)
        row_len = int(items.shape[1])
        scores = np.ascontiguousarray(np.load(b.path / table["scores"]).astype(np.float32).reshape(1, -1))
        for tag in replicas:
            c.put_tensor(f"{tag}{prefix}:top", np.ascontiguousarray(items.reshape(1, -1)))
            c.put_tensor(f"{tag}{prefix}:topscore", scores)
        kinds.append("table")
    elif "recommend" in kinds:
        indptr, values = _packed_seen(b)
        c.put_tensor(f"{prefix}:seen:indptr", indptr)
        for tag in replicas:
            c.put_tensor(f"{tag}{prefix}:seen", values)
            c.put_tensor(f"{tag}{prefix}:ids", np.arange(n_users, dtype=np.int64))
    counts = np.bincount(np.load(b.path / "seen_indices.npy"), minlength=b.manifest["n_items"])
    meta = {
        "model": b.model, "run_id": b.manifest.get("run_id"), "dataset": b.manifest.get("dataset"),
        "protocol": b.manifest.get("protocol"), "seed": b.manifest.get("seed"), "metrics": b.manifest.get("metrics"), "kinds": kinds,
        "k": (b.graph("recommend") or {}).get("k") or (table or {}).get("k"), "users": b.ids["users"], "items": b.ids["items"],
        "titles": b.ids.get("titles"), "popular": np.argsort(-counts, kind="stable")[:POPULAR_N].tolist(),
        "popular_counts": np.sort(counts)[::-1][:POPULAR_N].tolist(), "deployed_at": time.time(),
        "layout": "packed", "table_row": row_len, "replicas": replicas,
        # the recommend graph reads a user only from `exclude`: a session's items can stand in
        "session": bool((b.graph("recommend") or {}).get("session")) and not table,
    }
    _put_json(c, f"{prefix}:meta", meta)
    return meta, indptr


def _probe(c, b: Bundle, prefix: str, meta: dict, indptr: np.ndarray | None, tolerance: float = 1e-4) -> str | None:
    """Runs the bundle's probe users in the database; returns what differs, or None."""
    svc = _Version(prefix, meta, indptr)
    users = b.probe["users"]
    if "recommend" in b.probe:
        want_i, want_s = np.asarray(b.probe["recommend"]["items"]), np.asarray(b.probe["recommend"]["scores"], np.float32)
        # the first probe user on every shard's copy; the others on their own shard
        checks = [(0, users[0], tag) for tag in meta.get("replicas") or [None]]
        checks += [(row, u, None) for row, u in enumerate(users) if row > 0]
        for row, u, tag in checks:
            tmp = f"{PREFIX}:probe:{uuid.uuid4().hex[:8]}"
            items, scores = svc.run_recommend(c, u, tmp, tag)
            drop_scratch(c, tmp)
            n = min(len(items), want_i.shape[1])
            finite = np.isfinite(want_s[row, :n])
            if not np.array_equal(items[:n][finite], want_i[row, :n][finite]):
                return f"user {u}: database returned items {items[:5].tolist()}..., the plugin {want_i[row, :5].tolist()}..."
            if finite.any() and np.abs(scores[:n][finite] - want_s[row, :n][finite]).max() > tolerance:
                return f"user {u}: scores differ by {np.abs(scores[:n][finite] - want_s[row, :n][finite]).max():.3g}"
    if "predict" in b.probe:
        tmp = f"{PREFIX}:probe:{uuid.uuid4().hex[:8]}"
        got = svc.run_predict(c, np.asarray(users), np.asarray(b.probe["predict"]["items"]), tmp)
        drop_scratch(c, tmp)
        diff = np.abs(got - np.asarray(b.probe["predict"]["scores"], np.float32)).max()
        if diff > tolerance:
            return f"predictions differ from the plugin's by {diff:.3g}"
    return None


def deploy(bundles: list, ssdb: str | None = None, name: str = "default", split: str | None = None,
           progress: bool = True) -> dict:
    """Load bundles into the database as a new version of endpoint ``name``, probe each in the
    database against the answers the plugin gave at export, then switch the routing table in
    one write. Any failure before the switch leaves the previous routing serving. ``progress``
    is accepted and unused since the packed layout (a deploy writes a few tensors, not a row a
    user), so callers and ``--no-progress`` keep working."""
    bs = [Bundle.open(p) for p in bundles]
    if not bs:
        raise RecArenaError("Name at least one bundle to deploy.")
    weights = parse_split(split)
    labels = [b.model if [x.model for x in bs].count(b.model) == 1 else b.manifest.get("run_id") for b in bs]
    if weights:
        unknown = sorted(set(weights) - set(labels))
        if unknown or set(labels) - set(weights):
            raise RecArenaError(f"--split names {sorted(weights)} but the bundles are {labels}: give every bundle a weight.")
    elif len(bs) > 1:
        raise RecArenaError(f"Several bundles ({', '.join(labels)}) share one endpoint only with --split NAME=WEIGHT,...")
    for b in bs:  # before anything reaches the database
        ip = np.load(b.path / "seen_indptr.npy", mmap_mode="r")
        need = 8 * int(np.maximum(np.diff(ip), 1).sum())
        table = b.manifest.get("topn_table")
        if table:
            need = 8 * int(np.prod(np.load(b.path / table["file"], mmap_mode="r").shape))
        if need > MAX_PUT_BYTES:
            raise DeployError(f"Deploy of {b.path} refused: its packed per-user rows are {need / 2**20:,.0f} MiB, above the "
                              f"{MAX_PUT_BYTES / 2**20:,.0f} MiB one write may carry (Redis' proto-max-bulk-len). "
                              f"Endpoint {name!r} is unchanged.")
    c = _client(ssdb)
    stamp = time.strftime("%Y%m%d%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
    entries, written = [], []
    # registered before any key is written: a deploy killed mid-load leaves nothing unknown,
    # and the next deploy's garbage collection removes it
    prefixes = [f"{PREFIX}:{name}:{stamp}-{label}" for label in labels]
    replicas = shard_tags(c)
    _put_json(c, versions_key(name), _registry(c, name) + [
        {"prefix": p, "n_users": b.manifest["n_users"], "layout": "packed", "replicas": replicas} for p, b in zip(prefixes, bs)])
    try:
        for b, label, prefix in zip(bs, labels, prefixes):
            written.append((b, prefix))
            meta, indptr = _load_version(c, b, prefix, replicas)
            problem = _probe(c, b, prefix, meta, indptr)
            if problem:
                raise DeployError(f"Deploy of {b.path} refused: the probe in the database does not match the bundle ({problem}). "
                                  f"Endpoint {name!r} still serves its previous version.")
            entries.append({"model": b.model, "label": label, "run_id": b.manifest.get("run_id"), "version": f"{stamp}-{label}",
                            "prefix": prefix, "weight": weights.get(label, 1.0)})
        pause = float(os.environ.get("RECARENA_DEPLOY_PAUSE_BEFORE_SWITCH", "0") or 0)
        if pause:  # lets tests kill a deploy at its most delicate moment
            print("deploy: loaded and probed; switching", flush=True)
            time.sleep(pause)
        key = routing_key(name)
        if c.tensor_exists(key):
            c.copy_tensor(key, key + ":previous")
        # a fresh salt per deploy: a new experiment reshuffles which users meet which variant
        routing = {"name": name, "entries": entries, "switched_at": time.time(), "salt": uuid.uuid4().hex[:16]}
        _put_json(c, key, routing)  # the switch: one write
    except BaseException:
        # the routing table was not switched (that is the last step): drop what was written
        for _, prefix in written:
            _delete_version(c, prefix, 0, replicas)
        raise
    collect_garbage(c, name)  # after the switch: a failure here costs keys, never service
    return routing


def _delete_version(c, prefix: str, n_users: int, replicas: list[str] = ("",)) -> None:
    """``n_users``: how many per-user keys to look for (versions from before the packed layout);
    0 for a packed version. ``replicas``: the shard tags its per-user tensors were written under."""
    try:
        for kind in ("recommend", "predict"):
            if c.model_exists(f"{prefix}:{kind}"):
                c.delete_model(f"{prefix}:{kind}")
        keys = [f"{prefix}:seen:indptr", f"{prefix}:meta"]
        keys += [f"{tag}{prefix}:{key}" for tag in replicas for key in ("seen", "ids", "top", "topscore")]
        for key in keys:
            if c.key_exists(key):
                c.delete_tensor(key)
        for u in range(n_users):
            for part in ("seen", "user", "top", "topscore"):
                if c.key_exists(f"{prefix}:{part}:{u}"):
                    c.delete_tensor(f"{prefix}:{part}:{u}")
    except Exception:  # cleanup is best effort; the routing never points at this version
        pass


# ------------------------------------------------------------------ serving requests
class _Version:
    """One deployed version, with its id maps cached client-side."""

    def __init__(self, prefix: str, meta: dict, indptr: np.ndarray | None = None):
        self.prefix = prefix
        self.meta = meta
        self.user_index = {str(u): i for i, u in enumerate(meta["users"])}
        self.items = meta["items"]
        self.titles = meta.get("titles")
        self.item_index = {str(i): n for n, i in enumerate(self.items)}
        self.indptr = indptr  # int64 [U + 1], where each user's row of `seen` starts (packed layout)

    @property
    def needs_indptr(self) -> bool:
        return self.meta.get("layout") == "packed" and "recommend" in self.meta["kinds"] and "table" not in self.meta["kinds"]

    def load(self, c) -> _Version:
        if self.needs_indptr and self.indptr is None:
            self.indptr = np.asarray(c.get_tensor(f"{self.prefix}:seen:indptr")).reshape(-1)
        return self

    def _replica(self, uid: int, replica: str | None) -> str:
        """The shard tag whose copy serves ``uid`` (users spread over the shards), unless named."""
        tags = self.meta.get("replicas") or [""]
        return tags[uid % len(tags)] if replica is None else replica

    def recommend_keys(self, uid: int, replica: str | None = None, client: str = "") -> tuple[str, str]:
        """The recommend graph's two inputs for internal user ``uid``: (user, seen) key names.
        ``client``: a tag the views carry (``#tag``, ignored by the module) so that names differ
        between clients: on a cluster smartredis copies each input to a temporary key named
        after it, and two clients asking for one user at once would share (and delete) it."""
        p = self._replica(uid, replica) + self.prefix
        tag = f"#{client}" if client else ""
        if self.meta.get("layout") == "packed":
            return (f"{p}:ids[{uid}:{uid + 1}]{tag}",
                    f"{p}:seen[{int(self.indptr[uid])}:{int(self.indptr[uid + 1])}]{tag}")
        return f"{p}:user:{uid}", f"{p}:seen:{uid}"

    def table_keys(self, uid: int, replica: str | None = None) -> tuple[str, str]:
        """A top-N table model's (items, scores) key names for internal user ``uid``."""
        p, n = self._replica(uid, replica) + self.prefix, self.meta.get("table_row")
        if self.meta.get("layout") == "packed":
            return f"{p}:top[{uid * n}:{(uid + 1) * n}]", f"{p}:topscore[{uid * n}:{(uid + 1) * n}]"
        return f"{p}:top:{uid}", f"{p}:topscore:{uid}"

    def run_recommend(self, c, uid: int, tmp: str, replica: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """internal user -> (internal items int64 [k], scores float32 [k]), computed in the DB
        (on the shard of ``replica``'s copy when named, else the user's own)"""
        if "table" in self.meta["kinds"]:
            top, topscore = self.table_keys(uid, replica)
            return c.get_tensor(top).reshape(-1), c.get_tensor(topscore).reshape(-1)
        if self.meta.get("layout") == "packed" or self.meta.get("user_keys"):
            client = tmp.rsplit(":", 1)[-1] if getattr(c, "recarena_cluster", False) else ""
            user_key, seen_key = self.recommend_keys(uid, replica, client)
        else:  # deployed before user keys were stored
            user_key, seen_key = f"{tmp}:user", f"{self.prefix}:seen:{uid}"
            c.put_tensor(user_key, np.array([uid], np.int64))
        c.run_model(f"{self.prefix}:recommend", [user_key, seen_key], [f"{tmp}:items", f"{tmp}:scores"])
        return c.get_tensor(f"{tmp}:items")[0], c.get_tensor(f"{tmp}:scores")[0]

    def run_session(self, c, items: np.ndarray, tmp: str) -> tuple[np.ndarray, np.ndarray]:
        """a session's internal items int64 [S] (oldest first) -> (items [k], scores [k])"""
        c.put_tensor(f"{tmp}:user", np.zeros(1, np.int64))  # unread by a session graph
        c.put_tensor(f"{tmp}:session", items.astype(np.int64).reshape(1, -1))
        c.run_model(f"{self.prefix}:recommend", [f"{tmp}:user", f"{tmp}:session"], [f"{tmp}:items", f"{tmp}:scores"])
        return c.get_tensor(f"{tmp}:items")[0], c.get_tensor(f"{tmp}:scores")[0]

    def run_predict(self, c, users: np.ndarray, items: np.ndarray, tmp: str) -> np.ndarray:
        c.put_tensor(f"{tmp}:u", users.astype(np.int64))
        c.put_tensor(f"{tmp}:i", items.astype(np.int64))
        c.run_model(f"{self.prefix}:predict", [f"{tmp}:u", f"{tmp}:i"], [f"{tmp}:score"])
        return c.get_tensor(f"{tmp}:score")


def _check_request(raw_user, k: int | None = None, items: list | None = None) -> None:
    """Refuse a request that can only be a mistake before it reaches the database."""
    for what, v in [("user", raw_user)] + [("item", i) for i in (items or [])]:
        if v is None or (isinstance(v, str) and not v.strip()):
            raise RecArenaError(f"The {what} id is empty: name a raw {what} id as it appears in the training data.")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise RecArenaError(f"k must be a positive integer (how many items to recommend), got {k!r}.")


def stable_bucket(raw_user, salt: str = "") -> float:
    """A user's place in [0, 1) for traffic splits: the same on every client, worker and run.
    ``salt`` is the experiment's (a routing table's ``salt``): a new experiment reshuffles users.
    Tables written before salts existed have none and keep their old crc32 assignment."""
    if not salt:
        return zlib.crc32(str(raw_user).encode()) / 2**32
    digest = hashlib.blake2b(f"{salt}\0{raw_user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(routing: dict, raw_user) -> dict:
    """The routing entry (variant) that serves ``raw_user``: sticky, by the salted hash."""
    entries = routing["entries"]
    total = sum(e["weight"] for e in entries)
    x, acc = stable_bucket(raw_user, routing.get("salt", "")) * total, 0.0
    for e in entries:
        acc += e["weight"]
        if x < acc:
            return e
    return entries[-1]


def promote(ssdb: str | None = None, name: str = "default", variant: str | None = None) -> dict:
    """Make one variant of the endpoint's A/B test take all traffic, in one write of the routing
    table; the table it replaces becomes the previous one, so ``rollback`` restores the split.
    ``variant`` is an entry's label (the model name, or the run id when two share a model)."""
    c = _client(ssdb)
    key = routing_key(name)
    current = _routing_or_none(c, key)
    if current is None:
        raise RecArenaError(f"Nothing is deployed on endpoint {name!r}: nothing to promote.")
    labels = [e.get("label", e["model"]) for e in current["entries"]]
    chosen = [e for e, lab in zip(current["entries"], labels) if variant in (lab, e["version"])]
    if not chosen:
        raise RecArenaError(f"Endpoint {name!r} has no variant {variant!r}; its variants are {labels}.")
    promoted = {**current, "entries": [{**chosen[0], "weight": 1.0}], "switched_at": time.time(),
                "promoted": chosen[0].get("label", chosen[0]["model"])}
    c.copy_tensor(key, key + ":previous")
    _put_json(c, key, promoted)  # the switch: one write
    return promoted


class Service:
    """A long-lived serving client: ``recommend(raw_user, k)`` through the database."""

    def __init__(self, ssdb: str | None = None, name: str = "default"):
        self.c = _client(ssdb)
        self.name = name
        self.tmp = f"{PREFIX}:tmp:{uuid.uuid4().hex[:12]}"  # per-client scratch keys, reused
        self._versions: dict[str, _Version] = {}

    def close(self) -> None:
        """Delete this client's scratch keys (a long-lived client keeps reusing them)."""
        drop_scratch(self.c, self.tmp)

    def routing(self) -> dict:
        key = routing_key(self.name)
        try:  # one round trip per request; the existence check only on the error path
            return _get_json(self.c, key)
        except Exception:
            if self.c.tensor_exists(key):
                raise
            raise RecArenaError(f"Nothing is deployed on endpoint {self.name!r} (deploy a bundle with `recarena serve deploy`).") from None

    def _version(self, entry: dict) -> _Version:
        v = self._versions.get(entry["prefix"])
        if v is None:
            v = self._versions[entry["prefix"]] = _Version(entry["prefix"], _get_json(self.c, f"{entry['prefix']}:meta")).load(self.c)
        return v

    def pick(self, routing: dict, raw_user) -> dict:
        return assign(routing, raw_user)

    def recommend(self, raw_user, k: int = 10) -> dict:
        """Top-k for a raw user id: ``{"user", "model", "version", "fallback", "items": [{"item",
        "score", "title"}]}``. Unknown users get the most popular items (``fallback: true``)."""
        _check_request(raw_user, k)
        entry = self.pick(self.routing(), raw_user)
        v = self._version(entry)
        uid = v.user_index.get(str(raw_user))
        out = {"user": raw_user, "model": entry["model"], "version": entry["version"], "run_id": entry["run_id"]}
        if uid is None:
            items, scores = np.asarray(v.meta["popular"][:k]), np.asarray(v.meta["popular_counts"][:k], np.float32)
            out["fallback"] = "popularity (unknown user)"
        elif "recommend" not in v.meta["kinds"] and "table" not in v.meta["kinds"]:
            raise RecArenaError(f"{entry['model']} serves rating predictions only (no ranking graph); use predict (recarena serve predict USER ITEM...).")
        else:
            if k > (v.meta["k"] or 0):
                raise RecArenaError(f"k={k} but {entry['model']} was exported with k={v.meta['k']}; export again with -k {k}.")
            items, scores = v.run_recommend(self.c, uid, self.tmp)
            keep = items[:k] >= 0
            items, scores = items[:k][keep], scores[:k][keep]
            out["fallback"] = None
        out["items"] = [{"item": v.items[i], "score": float(s), **({"title": v.titles[i]} if v.titles else {})}
                        for i, s in zip(items.tolist(), scores.tolist())]
        return out

    def recommend_session(self, raw_items: list, k: int = 10) -> dict:
        """Top-k after a session of raw item ids (oldest first) with no user id, for models
        whose recommend graph reads the history it is given (sequential models): ``{"session",
        "model", "version", "items": [...]}``; the session's own items are never returned. The
        A/B split places a session by its items, so the same session meets the same variant."""
        raw_items = list(raw_items)
        if not raw_items:
            raise RecArenaError("The session is empty: pass the raw ids of the items it holds, oldest first.")
        _check_request("session", k, raw_items)
        entry = self.pick(self.routing(), "session:" + ",".join(map(str, raw_items)))
        v = self._version(entry)
        if not v.meta.get("session"):
            raise RecArenaError(f"{entry['model']} cannot recommend for a session without a user: its recommend graph "
                                "scores users it trained on (sequential models such as sasrec, gru4rec, svae can).")
        unknown = [i for i in raw_items if str(i) not in v.item_index]
        if unknown:
            raise RecArenaError(f"Unknown items {unknown[:5]!r} for {entry['model']}: a session holds items of its "
                                "training data.")
        if k > (v.meta["k"] or 0):
            raise RecArenaError(f"k={k} but {entry['model']} was exported with k={v.meta['k']}; export again with -k {k}.")
        ids = np.array([v.item_index[str(i)] for i in raw_items], np.int64)
        items, scores = v.run_session(self.c, ids, self.tmp)
        keep = items[:k] >= 0
        items, scores = items[:k][keep], scores[:k][keep]
        return {"session": raw_items, "model": entry["model"], "version": entry["version"], "run_id": entry["run_id"],
                "fallback": None,
                "items": [{"item": v.items[i], "score": float(s), **({"title": v.titles[i]} if v.titles else {})}
                          for i, s in zip(items.tolist(), scores.tolist())]}

    def predict(self, raw_user, raw_items: list) -> dict:
        _check_request(raw_user, items=list(raw_items))
        entry = self.pick(self.routing(), raw_user)
        v = self._version(entry)
        if "predict" not in v.meta["kinds"]:
            raise RecArenaError(f"{entry['model']} has no predict graph (a ranking-only model).")
        item_index = v.item_index
        uid = v.user_index.get(str(raw_user))
        unknown = [i for i in raw_items if str(i) not in item_index]
        if uid is None or unknown:
            raise RecArenaError(f"Unknown {'user ' + repr(raw_user) if uid is None else 'items ' + repr(unknown[:5])} for {entry['model']}.")
        iids = np.array([item_index[str(i)] for i in raw_items], np.int64)
        scores = v.run_predict(self.c, np.full(len(iids), uid, np.int64), iids, self.tmp)
        return {"user": raw_user, "model": entry["model"], "version": entry["version"],
                "predictions": [{"item": i, "score": float(s)} for i, s in zip(raw_items, scores.tolist())]}


def status(ssdb: str | None = None, name: str = "default") -> dict:
    svc = Service(ssdb, name)
    routing = svc.routing()
    address = ssdb or os.environ["SSDB"]
    rows = []
    for e in routing["entries"]:
        meta = svc._version(e).meta
        row = {**e, "metrics": meta.get("metrics"), "dataset": meta.get("dataset"), "kinds": meta["kinds"]}
        for kind in ("recommend", "predict"):
            if kind in meta["kinds"]:
                info = svc.c.get_ai_info([address], f"{e['prefix']}:{kind}")[0]
                calls = int(info["calls"])
                row[kind] = {"calls": calls, "errors": int(info["errors"]),
                             "mean_ms": float(info["duration"]) / 1000 / calls if calls else None}
        rows.append(row)
    prev = None
    if svc.c.tensor_exists(routing_key(name) + ":previous"):
        prev = [e["version"] for e in _get_json(svc.c, routing_key(name) + ":previous")["entries"]]
    return {"name": name, "switched_at": routing.get("switched_at"), "entries": rows, "previous": prev}
