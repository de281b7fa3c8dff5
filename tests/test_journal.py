"""The journal on a store: append and recover, checkpoint generations, crash leftovers, corruption, restarts."""
import os
import shutil
import subprocess
import sys
import threading
import time
import zlib

import msgpack
import pytest
from store_fakes import FailingStore

from pyzdb.errors import CorruptStore, StoreError, UndoError
from pyzdb.server.database import Database
from pyzdb.storage import open_store
from pyzdb.storage.journal import (
    META_KEY,
    PENDING_KEY,
    Journal,
    chunk_key,
    encode_record,
    log_key,
)
from pyzdb.storage.memory import MemoryStore


def append_q(key, value):
    return {"op": "call", "path": [key], "method": "append", "args": [value]}


def set_q(key, value):
    return {"op": "set", "path": [key], "value": value}


def open_db(store, **options):
    db = Database(Journal(store, chunk_size=options.pop("chunk_size", 64)), **options)
    db.open()
    return db


def write(db, cid, rid, query):
    reply = db.handle(cid, rid, query)
    db.commit()
    assert "err" not in reply, reply
    return reply


def checkpoint(db):
    data, seq, crc = db.snapshot()
    return db.journal.write_checkpoint(data, seq, crc, db.journal.appended_bytes)


def fill(db, count, key="l", cid=b"c1", first_rid=1):
    if key not in db.engine.tree:
        write(db, cid, first_rid, set_q(key, []))
        first_rid += 1
    for i in range(count):
        write(db, cid, first_rid + i, append_q(key, i))


# --- append and recover ---------------------------------------------------------------
def test_empty_store_recovers_to_an_empty_tree():
    db = open_db(MemoryStore())
    assert db.journal.seq == 0 and db.engine.tree == {}


def test_appended_records_are_recovered_in_order():
    store = MemoryStore()
    db = open_db(store)
    fill(db, 10)
    assert db.journal.seq == 11 and db.journal.log_records == 11
    again = open_db(store)
    assert again.engine.tree == {"l": list(range(10))}
    assert again.journal.seq == 11 and again.journal.last_crc == db.journal.last_crc


def test_records_go_to_a_sqlite_file_and_come_back(tmp_path):
    url = f"sqlite:///{tmp_path}/j.db"
    store = open_store(url)
    fill(open_db(store), 5)
    store.close()
    store = open_store(url)
    assert open_db(store).engine.tree == {"l": [0, 1, 2, 3, 4]}
    store.close()


def test_a_failed_append_leaves_the_journal_where_it_was():
    store = FailingStore()
    db = open_db(store)
    fill(db, 3)
    seq, crc = db.journal.seq, db.journal.last_crc
    store.fail_set = lambda items: True
    db.handle(b"c1", 10, append_q("l", "lost"))
    with pytest.raises(StoreError):
        db.commit()
    assert (db.journal.seq, db.journal.last_crc) == (seq, crc)
    assert db.engine.tree == {"l": [0, 1, 2]}
    store.fail_set = None
    write(db, b"c1", 11, append_q("l", "kept"))
    assert open_db(store).engine.tree == {"l": [0, 1, 2, "kept"]}


# --- checkpoints ---------------------------------------------------------------------
def test_checkpoint_switches_generation_and_removes_the_old_one():
    store = MemoryStore()
    db = open_db(store)
    fill(db, 20)
    first = checkpoint(db)
    assert first["gen"] == 1 and first["chunks"] > 1
    assert not any(k.startswith(b"log/") for k in store._data)
    fill(db, 5, first_rid=100)
    second = checkpoint(db)
    assert second["gen"] == 2
    assert all(not k.startswith(b"ckpt/1/") for k in store._data)
    assert PENDING_KEY not in store._data
    fill(db, 3, first_rid=200)
    assert db.journal.log_records == 3 and db.journal.log_bytes > 0
    again = open_db(store)
    assert again.engine.tree == db.engine.tree
    assert again.journal.seq == db.journal.seq and again.journal.meta["gen"] == 2


def interrupted_checkpoint(**failure):
    """A store whose second checkpoint failed part way, as a crash would leave it; and the tree it holds."""
    store = FailingStore()
    db = open_db(store)
    fill(db, 10)
    checkpoint(db)
    fill(db, 30, first_rid=100)
    for name, value in failure.items():
        setattr(store, name, value)
    with pytest.raises(StoreError):
        checkpoint(db)
    store.fail_set, store.fail_remove = None, False
    return store, db.engine.tree


def test_crash_before_meta_keeps_the_old_generation_and_removes_the_new_chunks():
    store, tree = interrupted_checkpoint(fail_set=lambda items: META_KEY in items)
    assert any(k.startswith(b"ckpt/2/") for k in store._data)
    again = open_db(store)
    assert again.engine.tree == tree and again.journal.meta["gen"] == 1
    assert not any(k.startswith(b"ckpt/2/") for k in store._data)
    assert PENDING_KEY not in store._data


def test_crash_after_meta_removes_the_leftovers_at_the_next_start():
    store, tree = interrupted_checkpoint(fail_remove=True)
    assert any(k.startswith(b"ckpt/1/") for k in store._data)
    again = open_db(store)
    assert again.engine.tree == tree and again.journal.meta["gen"] == 2
    assert not any(k.startswith((b"ckpt/1/", b"log/")) for k in store._data)
    assert PENDING_KEY not in store._data


# --- the crc chain ------------------------------------------------------------------
def test_stale_records_past_the_end_are_not_taken():
    store = MemoryStore()
    db = open_db(store)
    fill(db, 6)                               # records 1..7
    del store._data[log_key(5)]               # a store that lost one record of a batch
    run2 = open_db(store)
    assert run2.engine.tree == {"l": [0, 1, 2]} and run2.journal.seq == 4
    assert log_key(6) not in store._data      # the writer removed what lies past its end


def test_a_record_that_does_not_chain_ends_the_log():
    store = MemoryStore()
    db = open_db(store)
    fill(db, 3)                               # records 1..4
    stale = encode_record(5, 12345, [{"k": "w", "ops": [append_q("l", "stale")], "inv": []}])
    store.set_bulk({log_key(5): stale})
    journal = Journal(store)
    state, records = journal.recover()
    assert len(records) == 4 and journal.seq == 4


# --- corruption ----------------------------------------------------------------------
def corrupt_store():
    store = MemoryStore()
    db = open_db(store)
    fill(db, 20)
    checkpoint(db)
    fill(db, 3, first_rid=100)
    return store, db.journal.meta


def recover_error(store):
    with pytest.raises(CorruptStore) as info:
        open_db(store)
    return str(info.value)


def test_meta_that_is_not_msgpack_is_named():
    store, _ = corrupt_store()
    store._data[META_KEY] = b"\xc1\xc1garbage"
    assert "meta record" in recover_error(store)


def test_foreign_meta_is_refused():
    store, _ = corrupt_store()
    store._data[META_KEY] = msgpack.packb({"hello": "world"})
    assert "not a pyzdb journal meta record" in recover_error(store)


def test_meta_of_another_version_is_refused():
    store, meta = corrupt_store()
    store._data[META_KEY] = msgpack.packb({**meta, "version": 99})
    assert "version 99" in recover_error(store)


def test_a_missing_chunk_is_named():
    store, meta = corrupt_store()
    del store._data[chunk_key(meta["gen"], 1)]
    assert f"chunk ckpt/{meta['gen']}/1 is missing" in recover_error(store)


def test_a_chunk_failing_its_crc_is_named():
    store, meta = corrupt_store()
    key = chunk_key(meta["gen"], 2)
    store._data[key] = bytes([store._data[key][0] ^ 0xFF]) + store._data[key][1:]
    assert f"chunk ckpt/{meta['gen']}/2 fails its crc32" in recover_error(store)


def test_an_undecodable_log_record_is_named():
    store, meta = corrupt_store()
    store._data[log_key(meta["seq"] + 2)] = b"\xc1not msgpack"
    assert log_key(meta["seq"] + 2).decode() in recover_error(store)


def test_a_log_record_that_does_not_replay_is_named():
    store, meta = corrupt_store()
    seq = meta["seq"] + 1
    prev = meta["crc"]
    bad = encode_record(seq, prev, [{"k": "w", "ops": [append_q("missing", 1)], "inv": []}])
    following = msgpack.unpackb(store._data[log_key(seq + 1)])
    store._data[log_key(seq)] = bad
    store._data[log_key(seq + 1)] = encode_record(seq + 1, zlib.crc32(bad), following[2])
    message = recover_error(store)
    assert log_key(seq).decode() in message and "does not replay" in message


# --- pyzdb check -----------------------------------------------------------------------
def run_check(url):
    return subprocess.run([sys.executable, "-m", "pyzdb", "check", "--store", url],
                          capture_output=True, text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_check_verifies_a_store_offline_and_names_a_fault(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    store = open_store(url)
    db = open_db(store)
    fill(db, 20)
    checkpoint(db)
    fill(db, 2, first_rid=100)
    meta = db.journal.meta
    store.close()
    good = run_check(url)
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout and f"log up to seq {db.journal.seq}" in good.stdout
    store = open_store(url)
    store.set_bulk({chunk_key(meta["gen"], 0): b"flipped"})
    store.close()
    bad = run_check(url)
    assert bad.returncode != 0
    assert f"ckpt/{meta['gen']}/0 fails its crc32 check" in bad.stderr


# --- what survives a restart ------------------------------------------------------------
@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_history_survives_a_restart(with_checkpoint):
    store = MemoryStore()
    db = open_db(store)
    fill(db, 3)
    write(db, b"c1", 50, {"op": "undo"})
    if with_checkpoint:
        checkpoint(db)
    again = open_db(store)
    assert again.engine.tree == {"l": [0, 1]}
    write(again, b"c2", 1, {"op": "undo"})
    write(again, b"c2", 2, {"op": "redo"})
    write(again, b"c2", 3, {"op": "redo"})
    assert again.engine.tree == {"l": [0, 1, 2]}
    assert open_db(store).engine.tree == {"l": [0, 1, 2]}


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_a_retried_write_after_a_restart_is_applied_once(with_checkpoint):
    store = MemoryStore()
    db = open_db(store)
    write(db, b"c1", 1, set_q("n", 0))
    first = write(db, b"c1", 2, {"op": "iadd", "path": ["n"], "value": 5})
    if with_checkpoint:
        checkpoint(db)
    again = open_db(store)
    retry = write(again, b"c1", 2, {"op": "iadd", "path": ["n"], "value": 5})
    assert retry["ok"] == first["ok"] == 5
    assert again.engine.tree == {"n": 5} and again.journal.seq == db.journal.seq


def test_undo_depth_is_bounded_and_stays_bounded_after_a_restart():
    store = MemoryStore()
    db = open_db(store, history_depth=3)
    fill(db, 5)
    checkpoint(db)
    fill(db, 2, first_rid=100)
    again = open_db(store, history_depth=3)
    for rid in range(3):
        write(again, b"c2", rid + 1, {"op": "undo"})
    assert again.engine.tree == {"l": [0, 1, 2, 3]}
    reply = again.handle(b"c2", 9, {"op": "undo"})
    assert reply["err"][0] == UndoError.__name__


# --- durability modes -------------------------------------------------------------------
class CountingStore(MemoryStore):
    """Records each ``set_bulk`` of log records (one fsync'ed group): when it was stored and which keys it wrote."""

    def __init__(self):
        super().__init__()
        self.groups = []          # (time stored, [top-level key each record set])

    def set_bulk(self, items):
        super().set_bulk(items)
        logged = [msgpack.unpackb(v)[2][0]["ops"][0]["path"][0] for k, v in items.items() if k.startswith(b"log/")]
        if logged:
            self.groups.append((time.perf_counter(), logged))


@pytest.fixture
def batch_server():
    """An in-process broker + read-write server with --durability batch --batch-ms 150 on a counting store."""
    from pyzdb.broker.queues import Broker, BrokerConfig
    from pyzdb.server.rw import ReadWriteServer, ServerConfig
    from pyzdb.testing import free_ports
    store = CountingStore()
    db = Database(Journal(store))
    db.open()
    front, back = f"tcp://127.0.0.1:{free_ports(1)[0]}", f"inproc://test-batch-{id(store)}"
    broker = Broker(BrokerConfig(rw_front=front, rw_back=back, ro_front=None))
    broker.start()
    server = ReadWriteServer(db, ServerConfig(back=back, feed=None, durability="batch", batch_ms=150))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield front, store
    server.stop()
    thread.join(10)
    broker.stop()


def test_batch_durability_groups_concurrent_writes_and_replies_wait_for_their_group(batch_server):
    from pyzdb.client import client
    front, store = batch_server
    clients = [client(front, timeout=10)[0] for _ in range(6)]
    for db in clients:
        db.ping()
    barrier, replied = threading.Barrier(len(clients)), {}

    def one_write(number, db):
        barrier.wait()
        db[f"k{number}"] = number
        replied[f"k{number}"] = time.perf_counter()

    threads = [threading.Thread(target=one_write, args=pair) for pair in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in clients:
        db._conn.close()
    stored = {key: when for when, keys in store.groups for key in keys}
    assert sorted(stored) == sorted(replied), store.groups
    assert len(store.groups) <= 3, f"6 concurrent writes took {len(store.groups)} groups: {store.groups}"
    assert any(len(keys) > 1 for _, keys in store.groups), "no two writes shared a group"
    assert all(replied[key] >= stored[key] for key in replied), "a reply was sent before its group was stored"


def test_sqlite_durability_sets_the_sync_level(tmp_path):
    from pyzdb.storage.sqlite import SqliteStore
    levels = {}
    for mode in ("always", "batch", "none"):
        store = SqliteStore(str(tmp_path / f"{mode}.db"), durability=mode)
        levels[mode] = store._db.execute("PRAGMA synchronous").fetchone()[0]
        store.close()
    assert levels == {"always": 2, "batch": 1, "none": 0}


def test_batch_durability_flushes_the_wal_in_the_background(tmp_path):
    from pyzdb.storage.sqlite import SqliteStore
    store = SqliteStore(str(tmp_path / "b.db"), durability="batch", flush_seconds=0.05)
    time.sleep(0.2)
    assert store.flushes == 0                 # nothing written, nothing to flush
    for i in range(50):
        store.set_bulk({b"k%d" % i: b"v"})
    deadline = time.monotonic() + 5
    while store.flushes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 1 <= store.flushes < 50            # flushed by time, not once per write
    store.close()


def test_batch_durability_checkpoints_the_wal_in_the_flush_thread_not_in_writes(tmp_path):
    import shutil
    import sqlite3

    from pyzdb.storage.sqlite import SqliteStore

    def keys_in_main_file(name):
        """The keys a copy of the database file alone (no WAL) holds."""
        copy = tmp_path / name
        shutil.copy(tmp_path / "c.db", copy)
        with sqlite3.connect(copy) as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchall():
                return 0                          # even the table is still only in the WAL
            return db.execute("SELECT count(*) FROM kv").fetchone()[0]

    store = SqliteStore(str(tmp_path / "c.db"), durability="batch", flush_seconds=3600)
    for i in range(3000):                     # sqlite's own checkpoint would have run after ~1000 pages
        store.set_bulk({b"log/%08d" % i: b"x" * 100})
    assert keys_in_main_file("before.db") == 0
    store.checkpoint()
    assert keys_in_main_file("after.db") == 3000
    assert store.get_bulk([b"log/00002999"]) == {b"log/00002999": b"x" * 100}
    store.close()


def test_sqlite_keeps_log_records_in_their_own_table_and_moves_those_of_an_older_file(tmp_path):
    import sqlite3

    from pyzdb.storage.sqlite import SqliteStore

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:                # a file as the first session's store wrote it
        old.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        old.executemany("INSERT INTO kv VALUES (?, ?)", [(log_key(1), b"one"), (log_key(2), b"two"),
                                                          (b"meta", b"m"), (b"log/short", b"odd")])
    store = SqliteStore(str(path))
    odd = [b"log/", b"log/" + b"1" * 21, b"log/0001", b"app/" + log_key(3)]
    store.set_bulk({log_key(3): b"three", **{key: key for key in odd}})
    everything = [log_key(1), log_key(2), log_key(3), b"meta", b"log/short", *odd]
    assert store.get_bulk(everything) == {log_key(1): b"one", log_key(2): b"two", log_key(3): b"three",
                                          b"meta": b"m", b"log/short": b"odd", **{key: key for key in odd}}
    assert store.key_count() == len(everything)
    store.remove_bulk([log_key(2), b"log/short"])
    assert set(store.get_bulk(everything)) == set(everything) - {log_key(2), b"log/short"}
    store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT seq FROM log ORDER BY seq").fetchall() == [(1,), (3,)]
        assert raw.execute("SELECT count(*) FROM kv WHERE k = ?", (log_key(1),)).fetchone() == (0,)


SYNC_SCRIPT = """
import sys
from pyzdb.storage.sqlite import SqliteStore
store = SqliteStore(sys.argv[1], durability=sys.argv[2])
for i in range(30):
    store.set_bulk({b"log/%d" % i: b"x" * 100})
store.close()
"""


def count_syncs(tmp_path, mode):
    out = tmp_path / f"strace.{mode}"
    result = subprocess.run(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(out), sys.executable,
                             "-c", SYNC_SCRIPT, str(tmp_path / f"{mode}.db"), mode], capture_output=True, text=True,
                            timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if result.returncode != 0:
        pytest.skip(f"strace cannot run here: {result.stderr[-200:]}")
    return sum(1 for line in out.read_text().splitlines() if "sync(" in line)


def test_none_durability_never_calls_fsync_and_always_does_per_write(tmp_path):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    assert count_syncs(tmp_path, "none") == 0
    assert count_syncs(tmp_path, "always") >= 30


# --- checkpoints by themselves; the store stays bounded ------------------------------------
def steady_writes(db, checkpointer, count, sizes, store):
    for i in range(count):
        write(db, b"c1", i + 1, set_q("x", i))
        checkpointer.maybe_start()
        if i % 100 == 99:
            checkpointer.wait()
            sizes.append((store.key_count(), store.byte_size()))


def test_store_size_stabilises_under_steady_writes():
    from pyzdb.server.checkpoint import Checkpointer
    store = MemoryStore()
    db = open_db(store, history_depth=20, chunk_size=256)
    checkpointer = Checkpointer(db, every_records=50, every_bytes=1 << 30, every_seconds=3600,
                                fork=False)   # in-thread: each checkpoint ends before the next is due
    sizes = []
    steady_writes(db, checkpointer, 3000, sizes, store)
    checkpointer.wait()
    assert db.journal.meta["gen"] >= 50
    early, late = sizes[2:8], sizes[-10:]
    assert max(k for k, _ in late) <= max(k for k, _ in early) + 5, sizes
    assert max(b for _, b in late) <= 1.2 * max(b for _, b in early), sizes
    assert open_db(store).engine.tree == {"x": 2999}


def test_a_checkpoint_is_due_by_bytes_and_by_time():
    from pyzdb.server.checkpoint import Checkpointer
    db = open_db(MemoryStore())
    by_bytes = Checkpointer(db, every_records=10 ** 9, every_bytes=2000, every_seconds=3600)
    write(db, b"c1", 1, set_q("x", "y" * 500))
    assert not by_bytes.due()
    for rid in range(2, 6):
        write(db, b"c1", rid, set_q("x", "y" * 500))
    assert by_bytes.due() and by_bytes.maybe_start()
    by_bytes.wait()
    assert db.journal.log_records == 0 and db.journal.log_bytes == 0 and not by_bytes.due()
    by_time = Checkpointer(db, every_records=10 ** 9, every_bytes=1 << 30, every_seconds=0.2)
    write(db, b"c1", 10, set_q("x", 1))
    assert not by_time.due()
    time.sleep(0.25)
    assert by_time.maybe_start()
    by_time.wait()
    assert db.journal.meta["seq"] == db.journal.seq


def sqlite_usage(path):
    """(records held, journal log records after the checkpoint, pages in use) of a sqlite store; the log's
    records are in its log file (whose segments may still hold records a checkpoint covered, until the
    segment rotates) and its ``log`` table."""
    import sqlite3

    from pyzdb.storage.logfile import LogFile
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        log_file = LogFile(path + "-log", con.execute("SELECT token FROM log_file").fetchone()[0])
        held = log_file.count()
        log_file.low = msgpack.unpackb(con.execute("SELECT v FROM kv WHERE k = ?", (META_KEY,)).fetchone()[0])["seq"] + 1
        logs = con.execute("SELECT count(*) FROM log").fetchone()[0] + log_file.count()
        log_file.close()
        keys = con.execute("SELECT count(*) FROM kv").fetchone()[0] + held
        pages = con.execute("PRAGMA page_count").fetchone()[0] - con.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        con.close()
    return keys, logs, pages


def test_a_running_service_checkpoints_by_itself_and_its_sqlite_store_stays_bounded(tmp_path):
    from pyzdb.testing import EmbeddedService
    service = EmbeddedService("--checkpoint-records", "100", "--durability", "none", "--checkpoint-seconds", "0.5", "--history-depth", "50",
                              "--chunk-size", "4096", data_dir=str(tmp_path / "data"))
    service.start()
    try:
        db = service.client()
        path = os.path.join(service.data_dir, "pyzdb.db")
        usage = []
        for i in range(1500):
            db["x"] = {"i": i, "pad": "p" * 200}
            if i % 150 == 149:
                usage.append(sqlite_usage(path))
        assert max(logs for _, logs, _ in usage) > 0, usage      # the count sees the log's records
        # 1500 records were written: removal keeps well under that, however slow the (forked) checkpoints run
        assert max(logs for _, logs, _ in usage) <= 1000, usage
        assert max(keys for keys, _, _ in usage) <= 1000, usage   # covered segments are removed as they rotate
        assert max(pages for _, _, pages in usage[-4:]) <= 2 * max(pages for _, _, pages in usage[:3]) + 10, usage
        db["y"] = 1                              # a lone write is checkpointed by time
        deadline = time.monotonic() + 20
        while (status := db.status())["log_records"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status["checkpoint_seq"] == status["seq"] and status["log_records"] == 0, status
        assert sqlite_usage(path)[1] == 0
        db._conn.close()
    finally:
        service.close()


def test_a_restart_with_a_smaller_history_depth_still_replays_every_undo():
    store = MemoryStore()
    db = open_db(store, history_depth=10)
    fill(db, 8)
    for rid in range(7):
        write(db, b"c2", rid + 1, {"op": "undo"})
    again = open_db(store, history_depth=3)
    assert again.engine.tree == db.engine.tree == {"l": [0]}
    assert len(again.history.undo_stack) <= 3


def test_a_log_record_is_stored_as_the_same_bytes_as_before_so_existing_stores_load():
    entry = {"k": "w", "ops": [{"op": "set", "path": ["x"], "value": b"\x00"}], "cid": b"c", "rid": 1, "res": None}
    golden = ("93077b9185a16ba177a36f70739183a26f70a3736574a47061746891a178a576616c7565c40100a3636964c40163a372696401"
              "a3726573c0")
    assert encode_record(7, 123, [entry]).hex() == golden
    assert msgpack.unpackb(bytes.fromhex(golden), raw=False) == [7, 123, [entry]]


def test_log_seq_is_the_inverse_of_log_key_and_refuses_every_other_key():
    from pyzdb.storage.journal import log_seq
    for seq in (0, 1, 12345, 10 ** 19):
        assert log_seq(log_key(seq)) == seq
    for key in (b"log/1", b"log/" + b"x" * 20, b"meta", b"ckpt/1/0", log_key(5) + b"0", b"log0" + b"0" * 20):
        assert log_seq(key) is None, key
