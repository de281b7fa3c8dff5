"""Unit tests of the undo history: the byte budget, undo turned off, O(change) inverses, replay at smaller limits."""
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pyzdb.errors import UndoError
from pyzdb.server.database import Database
from pyzdb.storage.journal import Journal, log_key
from pyzdb.storage.memory import MemoryStore
from pyzdb.tree.engine import Engine
from pyzdb.tree.history import History, decode_entry

MiB = 1 << 20


def open_db(store=None, **options):
    db = Database(Journal(store or MemoryStore()), **options)
    db.open()
    return db


def ok(reply):
    assert "err" not in reply, reply
    return reply["ok"]


def err(reply):
    assert "err" in reply, reply
    return reply["err"]


class Client:
    """Requests of one client id with increasing request ids, committed one by one."""

    def __init__(self, db, cid=b"c"):
        self.db, self.cid, self.rid = db, cid, 0

    def __call__(self, query):
        self.rid += 1
        reply = self.db.handle(self.cid, self.rid, query)
        self.db.commit()
        return reply


def set_q(key, value):
    return {"op": "set", "path": [key], "value": value}


def test_the_oldest_entries_are_dropped_to_stay_within_the_byte_budget():
    db = open_db(history_bytes=10_000)
    run = Client(db)
    for i in range(10):
        ok(run(set_q(f"k{i}", "x" * 3000)))
    status = db.status()
    assert status["history_bytes"] <= 10_000 and status["history_bytes_limit"] == 10_000
    assert status["undo_depth"] == 3 and status["history_depth_limit"] == 1000
    for i in (9, 8, 7):                       # the newest first, in order
        ok(run({"op": "undo"}))
        assert f"k{i}" not in db.engine.tree and f"k{i - 1}" in db.engine.tree
    assert "older writes were dropped" in err(run({"op": "undo"}))[1]
    assert db.status()["redo_depth"] == 3 and db.status()["history_bytes"] <= 10_000


def test_a_write_too_big_to_keep_clears_undo_so_no_older_write_is_undone_out_of_order():
    db = open_db(history_bytes=10_000)
    run = Client(db)
    ok(run(set_q("a", 1)))
    ok(run(set_q("big", "x" * 20_000)))       # its own entry is over the whole budget
    assert db.status()["undo_depth"] == 0 and db.status()["history_bytes"] == 0
    name, message = err(run({"op": "undo"}))
    assert name == "UndoError" and "could not be undone" in message and "--history-bytes" in message
    ok(run(set_q("c", 1)))
    ok(run({"op": "undo"}))                   # history starts after the big write
    assert db.engine.tree == {"a": 1, "big": "x" * 20_000}
    assert "could not be undone" in err(run({"op": "undo"}))[1]


def test_undo_off_writes_work_undo_and_redo_say_so_and_a_restart_works():
    store = MemoryStore()
    db = open_db(store, history_depth=0)
    run = Client(db)
    ok(run(set_q("l", [1])))
    ok(run({"op": "iadd", "path": ["l"], "value": [2]}))
    for op in ("undo", "redo"):
        name, message = err(run({"op": op}))
        assert name == "UndoError" and "undo is off" in message and "--history-depth 0" in message
    assert db.status()["undo_depth"] == 0 and db.status()["history_bytes"] == 0
    reopened = open_db(store, history_depth=0)
    assert reopened.engine.tree == {"l": [1, 2]}
    ok(Client(reopened, b"d")(set_q("m", 1)))
    assert err(Client(reopened, b"e")({"op": "undo"}))[0] == "UndoError" and reopened.engine.tree["m"] == 1


def test_a_rollback_restores_entries_a_big_write_dropped():
    engine, history = Engine(), History(depth=10, max_bytes=2000)
    for i in range(3):
        history.record([set_q("k", "x" * 500)], [{"op": "del", "path": ["k"]}])
    history.undo(Engine({"k": 1}))
    before = (list(history.undo_stack), list(history.redo_stack), history.undo_bytes, history.redo_bytes)
    history.mark()
    history.record([set_q("big", "x" * 5000)], [{"op": "del", "path": ["big"]}])    # clears undo and redo
    history.record([set_q("k", "y" * 900)], [{"op": "del", "path": ["k"]}])
    history.record([set_q("k", "z" * 900)], [{"op": "del", "path": ["k"]}])         # drops the one before
    history.undo(Engine({"k": 1}))
    history.rollback()
    assert (list(history.undo_stack), list(history.redo_stack), history.undo_bytes, history.redo_bytes) == before
    assert engine.tree == {}


@pytest.mark.parametrize("old, added", [("s" * MiB, "y"), (b"b" * MiB, b"y"), (list(range(100_000)), [1])],
                         ids=["str", "bytes", "list"])
def test_plus_equals_on_a_large_value_records_a_truncation_not_the_old_value(old, added):
    store = MemoryStore()
    db = open_db(store)
    run = Client(db)
    ok(run(set_q("v", old)))
    ok(run({"op": "iadd", "path": ["v"], "value": added}))
    entry = db.history.undo_stack[-1]
    assert decode_entry(entry)[1] == [{"op": "truncate", "path": ["v"], "length": len(old)}]
    assert len(entry) == db.status()["history_bytes"] - len(db.history.undo_stack[0]) < 1024
    assert len(store.get_bulk([log_key(db.journal.seq)])[log_key(db.journal.seq)]) < 1024
    ok(run({"op": "undo"}))
    assert db.engine.tree["v"] == old
    ok(run({"op": "redo"}))
    assert db.engine.tree["v"] == old + added
    reopened = open_db(store)                   # the log replays to the same tree and history
    assert reopened.engine.tree == db.engine.tree and reopened.history.state() == db.history.state()
    ok(Client(reopened, b"d")({"op": "undo"}))
    assert reopened.engine.tree["v"] == old


def test_a_restart_with_the_same_limits_keeps_the_same_history():
    store = MemoryStore()
    db = open_db(store, history_bytes=10_000)
    run = Client(db)
    for i in range(8):
        ok(run(set_q(f"k{i}", "x" * 3000)))
    ok(run({"op": "undo"}))
    reopened = open_db(store, history_bytes=10_000)
    assert reopened.history.state() == db.history.state()
    assert reopened.status()["history_bytes"] == db.status()["history_bytes"] <= 10_000


ops = st.lists(st.one_of(st.tuples(st.just("w"), st.integers(0, 3), st.integers(1, 400)),
                         st.sampled_from([("undo",), ("redo",)])), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops, depth=st.integers(0, 6), budget=st.integers(0, 2000), checkpoint_at=st.integers(-1, 30))
@example(steps=[("w", 0, 1), ("w", 1, 1), ("undo",), ("undo",), ("redo",)], depth=1, budget=2000, checkpoint_at=-1)
@example(steps=[("w", 0, 1), ("w", 1, 1), ("w", 2, 1), ("undo",), ("undo",), ("undo",), ("redo",), ("redo",),
                ("redo",), ("undo",)], depth=2, budget=2000, checkpoint_at=5)
def test_replayed_at_smaller_limits_undo_and_redo_follow_the_full_history_in_order(steps, depth, budget, checkpoint_at):
    """A restart with a smaller depth or budget (from the log, or a checkpoint then the log): each undo and
    redo still available leaves the same tree as the same undo or redo with the full history."""
    store = MemoryStore()
    db = open_db(store, history_depth=50, history_bytes=1 << 30)
    run = Client(db)
    for index, step in enumerate(steps):
        run(set_q(f"k{step[1]}", "x" * step[2]) if step[0] == "w" else {"op": step[0]})
        if index == checkpoint_at:
            db.journal.write_checkpoint(*db.snapshot())
    for op in ("undo", "redo"):
        full, small = open_db(store, history_depth=50, history_bytes=1 << 30), open_db(
            store, history_depth=depth, history_bytes=budget)
        assert small.engine.tree == full.engine.tree
        assert small.history.used_bytes <= budget and small.history.count <= depth
        for rid in range(1, 60):
            reply = small.handle(b"t", rid, {"op": op})
            if "err" in reply:
                break
            ok(full.handle(b"t", rid, {"op": op}))
            assert small.engine.tree == full.engine.tree


def test_negative_limits_are_refused():
    with pytest.raises(ValueError):
        History(depth=-1)
    with pytest.raises(UndoError, match="undo is off on this server \\(--history-bytes 0\\)"):
        History(max_bytes=0).undo(Engine())


def test_a_checkpoint_of_an_earlier_version_with_plain_entries_is_restored():
    history = History(depth=10, max_bytes=1000)
    history.restore({"depth": 1000, "undo": [[[set_q("a", 1)], [{"op": "del", "path": ["a"]}]]], "redo": []})
    engine = Engine({"a": 1})
    assert history.undo(engine) == ([{"op": "del", "path": ["a"]}], [set_q("a", 1)]) and engine.tree == {}
    assert history.used_bytes == len(history.redo_stack[0])


def test_a_big_undo_entry_is_kept_compressed_and_undoes_exactly():
    from pyzdb.tree.history import COMPRESS_FROM, encode_entry
    keys = {f"k{i:08}": "v" * 16 for i in range(20_000)}   # a bulk load's update: 1 MB as msgpack
    forward = [{"op": "call", "path": [], "method": "update", "args": [keys]}]
    inverse = [{"op": "del", "path": [key]} for key in keys]
    entry = encode_entry(forward, inverse)
    assert COMPRESS_FROM < len(entry) < 200_000
    assert decode_entry(entry) == (forward, inverse)
    small = encode_entry([{"op": "del", "path": ["x"]}], [])
    assert decode_entry(small) == ([{"op": "del", "path": ["x"]}], [])
    history = History(depth=10, max_bytes=1 << 20)
    for _ in range(5):                       # five such entries fit a 1 MiB budget only compressed
        history.record(forward, inverse)
    assert len(history.undo_stack) == 5 and history.undo_bytes == 5 * len(entry)

