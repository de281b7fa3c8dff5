"""Locks with real processes: leases renewed by the holder, lost by a dead or frozen holder, rolled back, waits bounded."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pyzdb.errors import LockLost, LockTimeout
from pyzdb.testing import EmbeddedService

HOLDER = textwrap.dedent("""
    import sys, time
    from pyzdb.client import client
    db, _ = client(sys.argv[1], timeout=10)
    db.lock()
    db['held'] = 'by the holder'
    db['counter'] += 100
    db['log'].append('holder')
    print('LOCKED', flush=True)
    sys.stdin.readline()                   # sits still until told to write again
    try:
        db['late'] = 'after waking'
        print('WROTE', flush=True)
    except Exception as exc:
        print(type(exc).__name__, flush=True)
""")


@pytest.fixture(scope="module")
def svc():
    with EmbeddedService("--lock-lease", "1", "--lock-wait", "8") as service:
        yield service


@pytest.fixture
def db(svc):
    db = svc.empty_client(timeout=15)
    db["counter"] = 0
    db["log"] = []
    yield db
    db._conn.close()


def start_holder(svc) -> subprocess.Popen:
    """A separate process that takes the lock, writes under it and then sits still."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, svc.rw_uri], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, start_new_session=True)
    line = proc.stdout.readline()
    assert line.strip() == b"LOCKED", line
    return proc


def test_killed_holder_loses_the_lock_and_its_writes_are_rolled_back(svc, db):
    holder = start_holder(svc)
    try:
        os.kill(holder.pid, signal.SIGKILL)
        db["after"] = 1            # waits for the lease (1 s) to run out, then proceeds (--lock-wait is 8 s)
    finally:
        holder.wait()
    assert "held" not in db
    assert db["counter"] == 0
    assert db["log"] == []
    assert db["after"] == 1


def test_frozen_holder_loses_the_lock_and_learns_it_when_it_wakes(svc, db):
    holder = start_holder(svc)
    try:
        os.kill(holder.pid, signal.SIGSTOP)      # a stall: its lease thread stops too
        db["after"] = 2
        assert "held" not in db and db["counter"] == 0
        os.kill(holder.pid, signal.SIGCONT)      # it wakes and writes under the lock it believes it holds
        holder.stdin.write(b"write\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == b"LockLost"
        assert holder.wait(30) == 0
        assert "late" not in db and "held" not in db and db["after"] == 2
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def test_busy_holder_keeps_the_lock_past_its_lease(svc, db):
    other = svc.client(timeout=15)
    db.lock()
    db["counter"] += 1
    done = threading.Event()

    def writer():
        other["counter"] += 10
        done.set()
    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(2.5)                       # 2.5 leases with no request from the holder's main thread
    assert not done.is_set(), "the lease keeper should have kept the lock"
    db["counter"] += 1
    db.unlock()
    thread.join(10)
    assert done.is_set()
    assert db["counter"] == 12
    other._conn.close()


def test_write_after_a_lost_lock_raises_lock_lost_and_is_not_applied(svc, db):
    db.lock()
    db["inside"] = 1
    db._conn._keeper.stopping.set()       # stop renewing, as a frozen process would
    time.sleep(1.6)
    with pytest.raises(LockLost):
        db["outside"] = 1
    db._conn.locked = False
    assert "inside" not in db and "outside" not in db


def test_lock_wait_raises_lock_timeout(tmp_path):
    with EmbeddedService("--lock-lease", "30", "--lock-wait", "1", data_dir=str(tmp_path)) as svc:
        holder, waiter = svc.client(), svc.client(timeout=10)
        holder.lock()
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            waiter["x"] = 1
        assert time.monotonic() - started >= 0.9        # it waited its --lock-wait before giving up
        holder.unlock()
        waiter["x"] = 1
        assert holder["x"] == 1


def test_lock_session_is_atomic_across_a_server_restart(tmp_path):
    svc = EmbeddedService("--lock-lease", "5", data_dir=str(tmp_path))
    svc.start()
    try:
        db = svc.client(timeout=20)
        db["x"] = 0
        db.lock()
        db["x"] = 1
        svc.kill()
        svc.start()
        with pytest.raises(LockLost):     # the session died with the server: never half applied
            db["y"] = 1
        db._conn.locked = False
        assert db["x"] == 0 and "y" not in db
    finally:
        svc.close()


def test_retried_unlock_is_answered_once(svc, db):
    conn = db._conn
    db.lock()
    db["a"] = 1
    rid_before = conn.request_id
    db.unlock()
    # the same unlock request (same client id and request id) again, as a retry after a lost reply
    conn.request_id = rid_before
    conn.locked = True
    assert conn.write({"op": "unlock"}) is None
    conn.locked = False
    assert db["a"] == 1


def test_many_contending_processes_all_finish(svc, db):
    script = textwrap.dedent("""
        import sys
        from pyzdb.client import client
        db, _ = client(sys.argv[1], timeout=20)
        for i in range(10):
            with db.lock():
                v = db['counter']._run()
                db['counter'] = v + 1
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", script, svc.rw_uri], env=env, start_new_session=True)
             for _ in range(4)]
    for proc in procs:
        assert proc.wait(60) == 0
    assert db["counter"] == 40
