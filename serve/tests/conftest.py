import os

import pytest

# smartredis: quiet, fail fast when a server is missing, and never re-send a slow command
os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
os.environ.setdefault("SR_SOCKET_TIMEOUT", "60000")
os.environ.setdefault("SR_CONN_TIMEOUT", "5")
os.environ.setdefault("SR_CONN_INTERVAL", "100")


@pytest.fixture(scope="session", autouse=True)
def native_cache(tmp_path_factory):
    # one module build for the whole session, whatever RECARENA_HOME each test has
    os.environ["RECARENA_NATIVE_DIR"] = str(tmp_path_factory.mktemp("native"))
    yield


@pytest.fixture(scope="module")
def ai_db(tmp_path_factory, native_cache):
    """A real server with the module, on a Unix socket and a free 127.0.0.1 port; stopped by PID."""
    from recarena_serve import db

    d = db.start(tmp_path_factory.mktemp("db"), port=db.free_port())
    yield d
    d.stop()


@pytest.fixture
def wire(ai_db):
    """A plain Redis client (redis-py) on the module's server, emptied before each test."""
    import redis

    r = redis.Redis(unix_socket_path=ai_db.nodes[0].address[len("unix://"):])
    r.flushall()
    yield r
    r.close()


@pytest.fixture
def client(ai_db, wire):
    from smartredis import Client

    return Client(address=ai_db.nodes[0].address, cluster=False)
