"""The service as users run it: undo/redo, locks, restarts, hostile messages, the CLI and the shell."""
import subprocess
import sys
import threading
import time

import msgpack
import pytest
import zmq

from pyzdb.errors import LockLost, MessageTooLarge, UndoError
from pyzdb.testing import EmbeddedService, free_ports, start_process, stop_process
from pyzdb.transport import wire


def test_undo_redo_over_nested_and_method_writes(db):
    db["l"] = list(range(10))
    db["l"][4] = ["a", "b", "c"]
    db.undo()
    assert db["l"][4]._run() == 4
    db.undo()
    assert "l" not in db
    db.redo()
    db.redo()
    assert [v for v in db["l"][4]] == ["a", "b", "c"]
    db["l"][4].append("d")
    db["l"][4].sort(reverse=True)
    db.undo()
    db.undo()
    assert db["l"][4]._run() == ["a", "b", "c"]
    db["x"] = 1            # a new write clears redo
    with pytest.raises(UndoError, match="nothing to redo"):
        db.redo()


def test_history_survives_a_restart(fresh_service):
    db = fresh_service.client()
    db["a"] = [1]
    db["a"].append(2)
    db.undo()
    fresh_service.restart()
    db = fresh_service.client()
    assert db["a"]._run() == [1]
    db.redo()
    assert db["a"]._run() == [1, 2]
    db.undo()
    db.undo()
    assert "a" not in db


def test_lock_makes_others_wait_then_proceed(service, db):
    db["x"] = 0
    other = service.client()
    seen = []
    with db.lock():
        db["x"] = db["x"]._run() + 1
        assert db["x"]._run() == 1          # the holder sees its own writes
        reader = threading.Thread(target=lambda: seen.append(other["x"]._run()))
        reader.start()
        time.sleep(0.5)
        assert seen == []                   # the other client waits, it is not refused
        db["x"] = db["x"]._run() + 1
    reader.join(5)
    assert seen == [2]                      # and it never saw half of the locked session
    other._conn.close()


def test_exception_in_a_lock_block_rolls_back(db):
    db["x"] = 1
    with pytest.raises(RuntimeError):
        with db.lock():
            db["x"] = 2
            raise RuntimeError("boom")
    assert db["x"]._run() == 1


def test_a_silent_lock_holder_loses_the_lock_and_its_writes(service, db):
    db["x"] = "before"
    holder = service.client()
    holder.lock()
    holder["x"] = "under lock"
    holder._conn._keeper.stopping.set()     # silent: its lease keeper stops renewing, as in a frozen process
    started = time.monotonic()
    assert db["x"]._run() == "before"       # waits for the 2 s lease, then the writes are gone
    assert time.monotonic() - started >= 1.5
    with pytest.raises(LockLost):
        holder["x"] = "late"
    assert db["x"]._run() == "before"
    holder._conn.close()


def test_retried_write_is_applied_once_across_a_restart(fresh_service):
    db = fresh_service.client(timeout=30)
    db["n"] = 0
    errors = []

    def work():
        try:
            for _ in range(300):
                db["n"] += 1
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.3)
    fresh_service.restart()
    thread.join(60)
    assert errors == []
    assert fresh_service.client()["n"]._run() == 300


def raw_request(uri, payload, timeout=5000):
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(uri)
        sock.send_multipart([b"", payload])
        assert sock.poll(timeout), "no reply"
        return msgpack.unpackb(sock.recv_multipart()[-1], raw=False)


@pytest.mark.parametrize("payload, message", [
    (b"\xc1garbage", "not valid msgpack"),
    (msgpack.packb([1, 2]), "must be a map"),
    (msgpack.packb({"v": 99, "cid": b"c", "rid": 1, "q": {}}), "unsupported protocol version"),
    (msgpack.packb({"v": 1, "cid": b"c", "rid": 1, "q": {"op": "eval", "path": []}}), "unknown operation"),
    (msgpack.packb({"v": 1, "cid": b"c", "rid": 1, "q": {"op": "call", "path": [], "method": "__class__"}}),
     "not allowed"),
    (b"\x91" * 100_000, "msgpack"),
])
def test_garbage_gets_an_error_reply_and_the_server_keeps_serving(service, db, payload, message):
    db["keep"] = [1]
    reply = raw_request(service.rw_uri, payload)
    assert message in reply["err"][1]
    assert db["keep"]._run() == [1]


def test_oversized_messages_are_refused(tmp_path):
    with EmbeddedService("--max-message", "100000", data_dir=str(tmp_path)) as svc:
        db = svc.client(max_message=100000)
        with pytest.raises(MessageTooLarge, match="over the limit"):
            db["big"] = "x" * 200_000
        reply = raw_request(svc.rw_uri, wire.encode_request(b"c", 1, {"op": "set", "path": ["b"], "value": "x" * 99_000}) + b"")
        assert "ok" in reply
        db2 = svc.client()
        db2["b2"] = "y" * 60_000
        with pytest.raises(MessageTooLarge, match="reply of"):
            db2._run()
        assert db2["b2"]._run() == "y" * 60_000


def test_separate_broker_and_server_processes(tmp_path):
    ports = free_ports(5)
    rw, rw_back, ro, ro_back, feed = (f"tcp://127.0.0.1:{p}" for p in ports)
    broker = start_process(["broker", "--rw-front", rw, "--rw-back", rw_back, "--ro-front", ro, "--ro-back", ro_back],
                           str(tmp_path / "broker.log"))
    server = start_process(["server", "--back", rw_back, "--feed", feed, "--data", str(tmp_path / "data")],
                           str(tmp_path / "server.log"))
    try:
        from pyzdb.client import client
        db, _ = client(rw, timeout=15)
        db["x"] = {"a": 1}
        db["x"]["b"] = 2
        assert db["x"]._run() == {"a": 1, "b": 2}
    finally:
        stop_process(server)
        stop_process(broker)


@pytest.mark.parametrize("module, words", [
    ("pyzdb.server", ["--back", "--store", "--durability", "--ro"]),
    ("pyzdb.broker", ["--rw-front", "--ro-back", "5559", "5562"]),
])
def test_module_entry_points_have_help(module, words):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for word in words:
        assert word in out.stdout


def test_shell_session_prints_what_python_would(service, db):
    script = "\n".join([
        "db['x'] = 3", "db['x']", "db['l'] = range(10)", "db", "db['l'][4] = ['a', 'b', 'c']",
        "db.undo(); db['l'][4]", "db.undo(); db.redo(); db.redo()", "[v for v in db['l'][4]]",
        "[k for k in db]", "db['l'][4].append('d')", "db['l'][4]", "db['nope']", "",
    ])
    out = subprocess.run([sys.executable, "-m", "pyzdb", "shell", service.rw_uri], input=script,
                         capture_output=True, text=True, timeout=60)
    lines = [line.lstrip("> .").strip() for line in out.stdout.splitlines() + out.stderr.splitlines()]
    assert "3" in lines
    assert "{'x': 3, 'l': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}" in lines
    assert "4" in lines
    assert "['a', 'b', 'c']" in lines
    assert "['x', 'l']" in lines
    assert "['a', 'b', 'c', 'd']" in lines
    assert any("PathKeyError" in line and "nope" in line for line in lines)


def test_python_m_pyzdb_client_opens_the_shell(service):
    out = subprocess.run([sys.executable, "-m", "pyzdb.client", service.rw_uri], input="db.ping()\n",
                         capture_output=True, text=True, timeout=60)
    assert "'pong'" in out.stdout + out.stderr
