"""Exactly-once: late copies and retries are never run again, however many clients come and go; writes never crash.

The service-level tests send raw wire messages (a pyzmq DEALER with a
client id and request ids of the test's own), as a network that delays,
duplicates and reorders packets would deliver them.
"""
import time

import pytest
import zmq

from pyzdb.errors import InvalidValue
from pyzdb.server.database import Database
from pyzdb.server.replies import ReplyTable
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore
from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire

INCREMENT = {"op": "iadd", "path": ["n"], "value": 1, "create": True}


def open_db(store: MemoryStore) -> Database:
    db = Database(Journal(store))
    db.open()
    return db


def handled(db: Database, cid: bytes, rid: int, query: dict) -> dict:
    reply = db.handle(cid, rid, dict(query))
    db.commit()
    return reply


class RawClient:
    """A DEALER that sends requests with ids chosen by the test and collects replies by request id."""

    def __init__(self, uri: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(uri)

    def send(self, cid: bytes, rid: int, query: dict) -> None:
        self.sock.send_multipart([b"", wire.encode_request(cid, rid, query)])

    def receive(self, timeout: float = 10.0) -> dict:
        assert self.sock.poll(int(timeout * 1000)), "no reply"
        return wire.unpack(self.sock.recv_multipart()[-1])

    def call(self, cid: bytes, rid: int, query: dict) -> dict:
        self.send(cid, rid, query)
        return self.receive()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def raw_service():
    with EmbeddedService("--durability", "batch") as svc:
        yield svc


def test_late_copies_of_acknowledged_requests_are_never_run_again(raw_service):
    raw, cid = RawClient(raw_service.rw_uri), b"late-copies"
    increment = {**INCREMENT, "path": ["late"]}
    append = {"op": "call", "path": ["items"], "method": "append", "args": ["a"]}
    try:
        assert [raw.call(cid, rid, increment)["ok"] for rid in (1, 2, 3)] == [1, 2, 3]
        raw.call(cid, 4, {"op": "set", "path": ["items"], "value": []})
        raw.call(cid, 5, append)
        raw.call(cid, 6, {"op": "set", "path": ["reg"], "value": "old"})
        newest = raw.call(cid, 7, {"op": "set", "path": ["reg"], "value": "new"})
        late = {1: increment, 2: increment, 5: append, 6: {"op": "set", "path": ["reg"], "value": "old"}}
        for rid, query in late.items():    # late copies of acknowledged writes, after newer ones
            reply = raw.call(cid, rid, query)
            assert reply["err"][0] == "StaleRequest", reply
        assert raw.call(cid, 7, {"op": "set", "path": ["reg"], "value": "new"}) == newest   # a retry: its reply
        values = raw.call(cid, 8, {"op": "batch", "ops": [{"op": "get", "path": [k]} for k in ("late", "items", "reg")]})
        assert values["ok"] == [3, ["a"], "new"]
    finally:
        raw.close()


def test_a_flood_of_100000_client_ids_does_not_evict_a_client_that_may_retry(raw_service):
    raw, early = RawClient(raw_service.rw_uri), b"early-client"
    try:
        acked = raw.call(early, 1, {**INCREMENT, "path": ["flood-early"]})
        assert acked["ok"] == 1
        started, window = time.monotonic(), 2000
        for base in range(0, 100_000, window):     # pipelined: a window of writes in flight, then their replies
            for i in range(base, base + window):
                raw.send(b"flood-%d" % i, 1, {**INCREMENT, "path": ["flood"]})
            for _ in range(window):
                assert "err" not in raw.receive()
        print(f"100000 client ids in {time.monotonic() - started:.1f} s")
        assert raw.call(early, 1, {**INCREMENT, "path": ["flood-early"]}) == acked    # the retry: its first reply
        status = raw.call(b"flood-reader", 1, {"op": "get", "path": ["flood-early"]})
        assert status["ok"] == 1, "the early client's increment was applied again"
        assert raw.call(b"flood-reader", 2, {"op": "get", "path": ["flood"]})["ok"] == 100_000
    finally:
        raw.close()


def test_the_high_water_mark_survives_a_restart_and_a_checkpoint():
    store = MemoryStore()
    db = open_db(store)
    assert handled(db, b"c", 1, INCREMENT)["ok"] == 1
    assert handled(db, b"c", 2, INCREMENT)["ok"] == 2
    db = open_db(store)                                         # from the log
    assert handled(db, b"c", 1, INCREMENT)["err"][0] == "StaleRequest"
    assert handled(db, b"c", 2, INCREMENT)["ok"] == 2           # the retry of the newest: its first reply
    state, seq, crc = db.snapshot()
    db.journal.write_checkpoint(state, seq, crc)
    db = open_db(store)                                         # from the checkpoint
    assert handled(db, b"c", 1, INCREMENT)["err"][0] == "StaleRequest"
    assert handled(db, b"c", 3, INCREMENT)["ok"] == 3
    assert db.engine.tree == {"n": 3}


def test_a_request_that_changed_nothing_is_not_run_again_later():
    db = open_db(MemoryStore())
    handled(db, b"w", 1, {"op": "set", "path": ["x"], "value": "a"})
    cas = {"op": "cas", "path": ["x"], "expected": "b", "value": "c"}
    assert handled(db, b"c", 1, cas)["ok"] is False
    handled(db, b"w", 2, {"op": "set", "path": ["x"], "value": "b"})
    assert handled(db, b"c", 1, cas)["ok"] is False             # a late copy: the answer it had, not a new run
    assert db.engine.tree == {"x": "b"}
    assert handled(db, b"c", 2, {"op": "get", "path": ["x"]})["ok"] == "b"
    assert handled(db, b"c", 2, {"op": "get", "path": ["x"]})["ok"] == "b"   # a read's retry simply runs again


def test_renewals_have_their_own_high_water_mark():
    db = open_db(MemoryStore())
    assert "err" not in handled(db, b"c", 1, {"op": "lock"})
    db.handle(b"c", 3, {"op": "renew"})
    assert db.handle(b"c", 2, {"op": "renew"})["err"][0] == "StaleRequest"   # a late renewal
    assert "err" not in db.handle(b"c", 4, {"op": "set", "path": ["x"], "value": 1, "locked": True})
    assert "err" not in db.handle(b"c", 5, {"op": "unlock", "locked": True})
    assert db.handle(b"c", 3, {"op": "renew"})["err"][0] == "StaleRequest"


def test_the_table_keeps_every_client_of_the_retry_window_and_drops_idle_ones():
    now = [1000.0]
    table = ReplyTable(idle_horizon=3600, retry_window=60, cap=10, clock=lambda: now[0])
    for i in range(1000):
        table.record(b"c%d" % i, 1, {"rid": 1})
    assert len(table) == 1000                  # over the cap, but all may still be retrying
    now[0] += 61
    table.record(b"late", 1, None)
    assert len(table) == 10 and table.get(b"late") is not None
    now[0] += 3601
    table.evict()
    assert len(table) == 0


def test_an_overflowing_write_is_refused_and_a_restart_loads(tmp_path):
    with EmbeddedService(data_dir=str(tmp_path / "data")) as svc:
        db = svc.client()
        db["n"] = 2**64 - 1
        with pytest.raises(InvalidValue, match="2\\*\\*64-1"):
            db["n"] += 1
        with pytest.raises(InvalidValue, match="64|2\\*\\*63"):
            db["m"] = -(2**63)
            db["m"].increment(-1)
        db["k"] = 1
        assert db["n"]._run() == 2**64 - 1 and db["k"]._run() == 1    # still serving
        svc.restart()
        db = svc.client()
        assert (db["n"]._run(), db["m"]._run(), db["k"]._run()) == (2**64 - 1, -(2**63), 1)


def test_a_record_that_does_not_encode_rolls_back_only_its_group():
    store = MemoryStore()
    db = open_db(store)
    handled(db, b"c", 1, {"op": "set", "path": ["a"], "value": 1})
    good = db.handle(b"c", 2, {"op": "set", "path": ["a"], "value": 2})
    db.pending[-1]["res"] = 2**70          # what the journal encoder cannot take (as an unchecked int would be)
    read = db.handle(b"r", 1, {"op": "get", "path": ["a"]})
    with pytest.raises(InvalidValue, match="journaled"):
        db.commit()
    assert good["err"][0] == "InvalidValue" and read == {"rid": 1, "ok": 1, "seq": 1}
    assert open_db(store).engine.tree == {"a": 1}


def test_a_checkpoint_of_the_older_table_format_loads():
    table = ReplyTable(clock=lambda: 50.0)
    table.restore([[b"c", [4, {"rid": 4, "ok": None, "seq": 9}]]])     # [rid, reply]: before the marks had times
    assert table.check(b"c", 4) == {"rid": 4, "ok": None, "seq": 9} and table.get(b"c")[2] == 50.0
    with pytest.raises(Exception, match="older than"):
        table.check(b"c", 3)


def test_an_idle_asyncio_lock_holder_keeps_its_lock_with_fresh_renewal_ids(tmp_path):
    import asyncio

    from pyzdb.asyncio import client as async_client

    async def main(svc):
        db, _ = await async_client(svc.rw_uri, timeout=10)
        async with db.lock():
            await db["x"].set(1)
            await asyncio.sleep(3)                      # 1.5 leases with no request from the holder itself
            await db["x"].set(2)                        # LockLost here if the renewals were refused as stale
        assert await db["x"] == 2

    with EmbeddedService("--lock-lease", "2", data_dir=str(tmp_path / "data")) as svc:
        asyncio.run(main(svc))


def test_a_copy_of_a_request_that_timed_out_waiting_for_a_lock_is_answered_the_timeout_and_never_run():
    with EmbeddedService("--lock-wait", "0.5", "--lock-lease", "30") as service:
        raw, holder, waiter = RawClient(service.rw_uri), b"lock-holder", b"lock-waiter"
        try:
            assert "err" not in raw.call(holder, 1, {"op": "set", "path": ["x"], "value": 0})
            assert "err" not in raw.call(holder, 2, {"op": "lock"})
            write = {"op": "set", "path": ["x"], "value": 99}
            timed_out = raw.call(waiter, 1, write)
            assert timed_out["err"][0] == "LockTimeout", timed_out
            raw.send(waiter, 1, write)      # a late copy of that attempt, arriving after its answer ...
            raw.send(holder, 3, {"op": "unlock", "locked": True})   # ... and the lock ends while it would wait
            replies = {reply["rid"]: reply for reply in (raw.receive(), raw.receive())}
            assert replies[1]["err"][0] == "LockTimeout", replies
            assert "err" not in replies[3], replies
            assert raw.call(holder, 4, {"op": "get", "path": ["x"]})["ok"] == 0   # the copy never ran
        finally:
            raw.close()
