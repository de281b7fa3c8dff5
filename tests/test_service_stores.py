"""The whole service on every store backend: the same behaviour on sqlite, Kyoto Tycoon and Tokyo Tyrant.

The KT and TT variants run on the protocol test server; the ``real`` variants
run on the servers PYZDB_KT / PYZDB_TT name (each test under its own key prefix).
"""
import time
import uuid

import pytest
from kttt_fixtures import real_address, start_protocol_server

from pyzdb.testing import EmbeddedService


@pytest.fixture(scope="module")
def protocol_server():
    server = start_protocol_server()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "kt", "tt", "kt-real", "tt-real"])
def store_url(request, protocol_server, tmp_path):
    kind = request.param
    prefix = f"?prefix=test-{uuid.uuid4().hex[:10]}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    if kind in ("kt", "tt"):
        port = protocol_server.kt_port if kind == "kt" else protocol_server.tt_port
        return f"{kind}://127.0.0.1:{port}{'/0' if kind == 'kt' else ''}{prefix}"
    scheme = kind.split("-")[0]
    address = real_address(f"PYZDB_{scheme.upper()}")
    if address is None:
        pytest.skip(f"set PYZDB_{scheme.upper()}=host:port to run the service on a real server")
    return f"{scheme}://{address.host}:{address.port}{'/0' if scheme == 'kt' else ''}{prefix}"


def make_service(store_url, tmp_path):
    # small checkpoints in small chunks, so that every run goes through several generations; a short claim
    # lease, so that a start after a kill -9 on KT/TT waits out the dead writer's lease quickly
    return EmbeddedService("--store", store_url, "--checkpoint-records", "40", "--chunk-size", "2048",
                           "--checkpoint-seconds", "1", "--claim-lease", "1", data_dir=str(tmp_path / "data"))


def test_writes_undo_and_checkpoints_survive_restarts(store_url, tmp_path):
    with make_service(store_url, tmp_path) as service:
        db = service.client()
        db["l"] = []
        for i in range(120):
            db["l"].append({"i": i, "pad": "x" * 40})
        db["d"] = {"k": 1}
        db["d"]["k"] += 1
        db.undo()
        deadline = time.monotonic() + 10
        while db.status()["checkpoint_seq"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert db.status()["checkpoint_seq"] > 0
        expected = db._run()
        service.restart()
        db = service.client()
        assert db._run() == expected
        assert len(db["l"]) == 120 and db["d"]["k"]._run() == 1
        db.redo()
        assert db["d"]["k"]._run() == 2
        db.undo()
        db.undo()                         # back through history written before the restart
        assert "d" not in db


def test_every_acknowledged_write_survives_kill_9(store_url, tmp_path):
    with make_service(store_url, tmp_path) as service:
        db = service.client()
        db["acks"] = []
        acked = []
        for i in range(150):
            db["acks"].append(i)
            acked.append(i)
        service.kill()
        service.start()
        assert service.client()["acks"]._run() == acked
