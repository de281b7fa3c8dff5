"""Unit tests of the read-write state machine: exactly-once, history, locks and commit failures."""
import pytest
from store_fakes import FailingStore

from pyzdb.errors import StoreError
from pyzdb.server.database import DEFER, Database
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore


def open_db(store=None, **options):
    db = Database(Journal(store or MemoryStore()), **options)
    db.open()
    return db


def ok(reply):
    assert "err" not in reply, reply
    return reply["ok"]


def test_a_retried_write_gets_the_first_reply_and_is_not_applied_again():
    db = open_db()
    ok(db.handle(b"c", 1, {"op": "set", "path": ["l"], "value": [1, 2, 3]}))
    first = ok(db.handle(b"c", 2, {"op": "call", "path": ["l"], "method": "pop", "args": []}))
    again = ok(db.handle(b"c", 2, {"op": "call", "path": ["l"], "method": "pop", "args": []}))
    db.commit()
    assert first == again == 3 and db.engine.tree == {"l": [1, 2]}


def test_exactly_once_table_and_history_survive_reopening():
    store = MemoryStore()
    db = open_db(store)
    ok(db.handle(b"c", 1, {"op": "set", "path": ["l"], "value": []}))
    ok(db.handle(b"c", 2, {"op": "call", "path": ["l"], "method": "append", "args": ["x"]}))
    db.commit()
    reopened = open_db(store)
    ok(reopened.handle(b"c", 2, {"op": "call", "path": ["l"], "method": "append", "args": ["x"]}))
    assert reopened.engine.tree == {"l": ["x"]}
    ok(reopened.handle(b"c", 3, {"op": "undo"}))
    assert reopened.engine.tree == {"l": []}


def test_undo_is_not_repeated_when_its_request_is_retried():
    db = open_db()
    ok(db.handle(b"c", 1, {"op": "set", "path": ["a"], "value": 1}))
    ok(db.handle(b"c", 2, {"op": "set", "path": ["b"], "value": 2}))
    ok(db.handle(b"c", 3, {"op": "undo"}))
    ok(db.handle(b"c", 3, {"op": "undo"}))
    assert db.engine.tree == {"a": 1}


def test_history_depth_is_bounded():
    db = open_db(history_depth=3)
    for i in range(10):
        ok(db.handle(b"c", i + 1, {"op": "set", "path": ["k"], "value": i}))
    for rid in range(11, 14):
        ok(db.handle(b"c", rid, {"op": "undo"}))
    assert "nothing to undo" in db.handle(b"c", 14, {"op": "undo"})["err"][1]
    assert db.engine.tree == {"k": 6}


def test_lock_defers_others_and_commits_its_session_as_one_record():
    db = open_db()
    ok(db.handle(b"a", 1, {"op": "lock"}))
    ok(db.handle(b"a", 2, {"op": "set", "path": ["x"], "value": 1}))
    ok(db.handle(b"a", 3, {"op": "set", "path": ["y"], "value": 2}))
    assert db.handle(b"b", 1, {"op": "get", "path": []}) is DEFER
    assert db.commit() is False and db.journal.seq == 0       # nothing durable while locked
    ok(db.handle(b"a", 4, {"op": "unlock"}))
    assert db.journal.seq == 1                                 # one record for the session
    assert ok(db.handle(b"b", 1, {"op": "get", "path": []})) == {"x": 1, "y": 2}


def test_an_expired_lease_rolls_back_the_session_and_tells_the_holder():
    db = open_db(lock_lease=1.0)
    ok(db.handle(b"z", 1, {"op": "set", "path": ["keep"], "value": 0}))
    db.commit()
    ok(db.handle(b"a", 1, {"op": "lock"}, now=100.0))
    ok(db.handle(b"a", 2, {"op": "set", "path": ["x"], "value": 1}, now=100.5))
    ok(db.handle(b"a", 3, {"op": "undo"}, now=100.6))
    assert db.expire_lock(now=101.0) is False                  # renewed by its traffic at 100.6
    assert db.expire_lock(now=102.0) is True
    assert db.engine.tree == {"keep": 0} and len(db.history.undo_stack) == 1
    assert db.handle(b"a", 4, {"op": "unlock"})["err"][0] == "LockLost"


def test_after_a_lost_lock_reads_are_answered_and_the_next_write_is_refused_once():
    db = open_db(lock_lease=1.0)
    ok(db.handle(b"a", 1, {"op": "lock"}, now=100.0))
    ok(db.handle(b"a", 2, {"op": "set", "path": ["x"], "value": 1}, now=100.5))
    assert db.expire_lock(now=102.0) is True
    assert ok(db.handle(b"a", 3, {"op": "batch", "ops": [{"op": "get", "path": []}]})) == [{}]
    assert db.handle(b"a", 4, {"op": "call", "path": ["nope"], "method": "append", "args": [1]})["err"][0] == "LockLost"
    assert db.handle(b"a", 5, {"op": "set", "path": ["x"], "value": 2}) == {"rid": 5, "ok": None, "seq": 1}
    assert db.engine.tree == {"x": 2}


def test_a_read_only_client_reads_and_every_write_is_refused_before_it_runs():
    db = open_db()
    ok(db.handle(b"w", 1, {"op": "set", "path": ["l"], "value": [1]}))
    gets = {"op": "batch", "ops": [{"op": "get", "path": ["l", 0]}, {"op": "call", "path": ["l"], "method": "count",
                                                                      "args": [1]}]}
    assert ok(db.handle(b"r", 1, gets, read_only=True)) == [1, 1]
    for rid, query in enumerate([{"op": "set", "path": ["l"], "value": 2},
                                 {"op": "call", "path": ["l"], "method": "append", "args": [2]},
                                 {"op": "call", "path": ["nope"], "method": "append", "args": [2]},
                                 {"op": "batch", "ops": [{"op": "get", "path": ["l"]}, {"op": "del", "path": ["l"]}]},
                                 {"op": "undo"}], start=2):
        assert db.handle(b"r", rid, query, read_only=True)["err"][0] == "ReadOnlyError"
    assert db.engine.tree == {"l": [1]} and len(db.history.undo_stack) == 1


def test_a_write_that_changes_nothing_or_fails_is_not_logged():
    db = open_db()
    ok(db.handle(b"c", 1, {"op": "set", "path": ["n"], "value": 1}))
    db.commit()
    assert db.handle(b"c", 2, {"op": "cas", "path": ["n"], "expected": 5, "value": 6}) == {"rid": 2, "ok": False,
                                                                                          "seq": 1}
    assert db.handle(b"c", 3, {"op": "iadd", "path": ["n"], "value": "x"})["err"][0] == "ValueTypeError"
    assert db.pending == [] and db.commit() is False and db.journal.seq == 1


def test_logged_method_arguments_are_copies_not_the_tree_values():
    store = MemoryStore()
    db = open_db(store)
    ok(db.handle(b"c", 1, {"op": "set", "path": ["d"], "value": {}}))
    ok(db.handle(b"c", 2, {"op": "call", "path": ["d"], "method": "update", "args": [], "kwargs": {"x": [1]}}))
    ok(db.handle(b"c", 3, {"op": "call", "path": ["d"], "method": "update", "args": [{"y": [1]}]}))
    ok(db.handle(b"c", 4, {"op": "call", "path": ["d", "x"], "method": "append", "args": [2]}))
    ok(db.handle(b"c", 5, {"op": "call", "path": ["d", "y"], "method": "append", "args": [2]}))
    db.commit()
    assert db.engine.tree == open_db(store).engine.tree == {"d": {"x": [1, 2], "y": [1, 2]}}


def test_abort_rolls_back_and_releases():
    db = open_db()
    ok(db.handle(b"a", 1, {"op": "lock"}))
    ok(db.handle(b"a", 2, {"op": "set", "path": ["x"], "value": 1}))
    ok(db.handle(b"a", 3, {"op": "abort"}))
    assert db.engine.tree == {} and db.lock is None


def test_a_failed_commit_rolls_back_every_pending_write():
    store = FailingStore()
    db = open_db(store)
    ok(db.handle(b"c", 1, {"op": "set", "path": ["a"], "value": [1]}))
    db.commit()
    store.fail_set = lambda items: True
    ok(db.handle(b"c", 2, {"op": "call", "path": ["a"], "method": "append", "args": [2]}))
    ok(db.handle(b"d", 1, {"op": "set", "path": ["b"], "value": 1}))
    with pytest.raises(StoreError):
        db.commit()
    assert db.engine.tree == {"a": [1]} and len(db.history.undo_stack) == 1
    store.fail_set = None
    retry = db.handle(b"c", 2, {"op": "call", "path": ["a"], "method": "append", "args": [2]})
    assert retry["err"][0] == "StoreError"      # a retry learns the write failed; it is not run again
    ok(db.handle(b"c", 3, {"op": "call", "path": ["a"], "method": "append", "args": [2]}))  # a new request applies
    db.commit()
    assert open_db(store).engine.tree == {"a": [1, 2]}


def test_a_failed_query_is_an_error_reply_not_an_exception():
    db = open_db()
    reply = db.handle(b"c", 1, {"op": "call", "path": [], "method": "__class__"})
    assert reply["err"][0] == "MethodNotAllowed"
    assert db.handle(b"c", 2, "not a map")["err"][0] == "QueryError"


def test_history_rollback_returns_both_stacks_to_the_mark_even_at_full_depth():
    from pyzdb.tree.engine import Engine
    from pyzdb.tree.history import History
    engine, history = Engine(), History(depth=3)
    for i in range(4):
        engine.execute({"op": "set", "path": ["k"], "value": i})
        history.record([{"op": "set", "path": ["k"], "value": i}], [{"op": "del", "path": ["k"]}])
    history.undo(engine)
    before = (list(history.undo_stack), list(history.redo_stack))
    history.mark()
    history.record([{"op": "set", "path": ["a"], "value": 1}], [{"op": "del", "path": ["a"]}])  # clears redo
    history.record([{"op": "set", "path": ["b"], "value": 1}], [{"op": "del", "path": ["b"]}])  # drops the oldest
    history.undo(Engine({"b": 1}))
    history.redo(Engine({}))
    history.rollback()
    assert (list(history.undo_stack), list(history.redo_stack)) == before
