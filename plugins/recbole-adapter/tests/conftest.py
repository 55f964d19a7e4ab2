import os

import pytest

os.environ.setdefault("SR_LOG_LEVEL", "QUIET")
os.environ.setdefault("SR_SOCKET_TIMEOUT", "60000")
os.environ.setdefault("SR_CONN_TIMEOUT", "5")
os.environ.setdefault("SR_CONN_INTERVAL", "100")


@pytest.fixture(scope="module")
def ssdb(tmp_path_factory):
    """A real server with RecArena's module on a free 127.0.0.1 port (and a Unix socket),
    stopped by PID; the module is built into this module's temporary folder."""
    from recarena_serve import db

    os.environ["RECARENA_NATIVE_DIR"] = str(tmp_path_factory.mktemp("native"))
    d = db.start(tmp_path_factory.mktemp("db"), port=db.free_port())
    yield d.nodes[0].address
    d.stop()
