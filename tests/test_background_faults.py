"""Background threads that fail say so: the sqlite fsync thread, the checkpointer, the client's lease keeper."""
import logging
import os
import time

import pytest
from store_fakes import FailingStore

from pyzdb.errors import LockError, NotDurable, StoreError
from pyzdb.server.checkpoint import Checkpointer
from pyzdb.server.database import Database
from pyzdb.storage.journal import Journal
from pyzdb.testing import EmbeddedService


def open_db(store):
    db = Database(Journal(store, chunk_size=64))
    db.open()
    return db


def wait_until(predicate, seconds: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_a_failing_fsync_is_shown_in_status_and_refuses_writes_until_it_works_again(tmp_path):
    """A real fault: the WAL's name becomes a symlink loop, so the flush thread's open() fails with ELOOP.

    sqlite keeps writing through its open descriptor (the renamed file), so
    only the thread that makes those writes durable fails, as a failing disk would.
    """
    data = tmp_path / "data"
    with EmbeddedService("--durability", "batch", data_dir=str(data)) as svc:
        db = svc.client(timeout=5)
        db["x"] = 1
        wal = data / "pyzdb.db-wal"
        wait_until(wal.exists, 10, "the WAL exists")
        os.rename(wal, str(wal) + ".held")
        os.symlink(wal.name, wal)       # open() of it: ELOOP
        try:
            db["y"] = 2                 # written before the thread finds out; the next flush fails
            wait_until(lambda: db.status()["store_fault"], 10, "status shows the fsync fault")
            assert "fsync" in db.status()["store_fault"]
            with pytest.raises(NotDurable) as refused:
                db["z"] = 3
            assert isinstance(refused.value, StoreError) and "durable" in str(refused.value)
            assert db["x"]._run() == 1 and db["y"]._run() == 2 and "z" not in db   # reads keep working
            assert "fsync failed" in svc.log()
        finally:
            os.unlink(wal)
            os.rename(str(wal) + ".held", wal)
        wait_until(lambda: db.status()["store_fault"] is None, 10, "the fault clears once fsync works")
        db["z"] = 3
        assert db["z"]._run() == 3
        db._conn.close()


def test_a_failed_checkpoint_is_counted_and_named_in_status_and_the_log_keeps_every_write(caplog):
    store = FailingStore()
    db = open_db(store)
    for rid in range(1, 6):
        db.handle(b"c", rid, {"op": "set", "path": [f"k{rid}"], "value": rid})
        db.commit()
    checkpointer = Checkpointer(db, every_records=1, every_bytes=1 << 30, every_seconds=3600)
    store.fail_set = lambda items: any(key.startswith(b"ckpt/") for key in items)
    with caplog.at_level(logging.ERROR, logger="pyzdb.checkpoint"):
        assert checkpointer.maybe_start(force=True)
        checkpointer.wait()
    status = db.status()
    assert status["checkpoint_failures"] == 1
    assert "injected store failure" in status["checkpoint_error"] and "seq 5" in status["checkpoint_error"]
    assert status["checkpoint_gen"] == 0
    assert any("checkpoint at seq 5 failed" in r.getMessage() for r in caplog.records)
    store.fail_set = None
    assert open_db(store).engine.tree == db.engine.tree        # the log still holds every write
    assert checkpointer.maybe_start(force=True)
    checkpointer.wait()
    assert db.status()["checkpoint_gen"] == 1 and db.status()["checkpoint_failures"] == 1


def test_the_lease_keeper_logs_a_lost_lock_and_is_joined_when_the_lock_ends(fresh_service, caplog):
    """A real failure: the server restarts under a held lock, so the keeper's next renew is refused."""
    db = fresh_service.client(timeout=10)
    conn = db._conn
    with caplog.at_level(logging.WARNING, logger="pyzdb.client"):
        db.lock()
        keeper = conn._keeper
        fresh_service.restart()
        wait_until(lambda: not keeper.thread.is_alive(), 15, "the keeper ends once renew is refused")
        assert any("renew" in r.getMessage() and "LockError" in r.getMessage() for r in caplog.records), \
            [r.getMessage() for r in caplog.records]
        with pytest.raises(LockError):
            db.unlock()
    assert conn._keeper is None
    db.lock()
    keeper = conn._keeper
    assert keeper.thread.is_alive()
    conn.close()
    assert not keeper.thread.is_alive()      # close() joined it
