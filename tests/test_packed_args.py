"""A call's list/dict arguments go into the tree uncopied (Engine.run(packed=True)): the journal and the undo
history must still hold them as they were sent, even when a later write of the same commit group changes them."""
from pyzdb.server.database import Database
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal


def _update(key, value):
    return {"op": "call", "path": [], "method": "update", "args": [{key: value}]}


def _append(key, value):
    return {"op": "call", "path": [key], "method": "append", "args": [value]}


def _reopened(store):
    db = Database(Journal(store))
    db.open()
    return db


def test_a_value_changed_later_in_the_same_group_replays_as_it_was_sent():
    store = open_store("memory://")
    db = _reopened(store)
    db.handle(b"c1", 1, _update("a", [1]))
    db.handle(b"c2", 1, _append("a", 2))          # same group: no commit in between
    db.handle(b"c1", 2, _update("d", {"x": [0]}))
    db.handle(b"c2", 2, {"op": "call", "path": ["d", "x"], "method": "extend", "args": [[5, 6]]})
    db.commit()
    assert db.engine.tree == {"a": [1, 2], "d": {"x": [0, 5, 6]}}
    assert _reopened(store).engine.tree == db.engine.tree


def test_a_batch_that_changes_its_own_argument_replays_and_undoes_exactly():
    store = open_store("memory://")
    db = _reopened(store)
    batch = {"op": "batch", "ops": [_update("a", [1]), _append("a", 2)]}
    db.handle(b"c1", 1, batch)
    db.handle(b"c1", 2, _append("a", 3))
    db.commit()
    assert db.engine.tree == {"a": [1, 2, 3]}
    again = _reopened(store)
    assert again.engine.tree == {"a": [1, 2, 3]}
    for step, rid, expected in (("undo", 3, {"a": [1, 2]}), ("undo", 4, {}), ("redo", 5, {"a": [1, 2]})):
        again.handle(b"c1", rid, {"op": step})
        again.commit()
        assert again.engine.tree == expected, step
    assert _reopened(store).engine.tree == {"a": [1, 2]}


def test_undo_redo_after_an_in_place_change_of_a_loaded_value():
    db = _reopened(open_store("memory://"))
    db.handle(b"c1", 1, _update("a", [1]))
    db.handle(b"c1", 2, _append("a", 2))
    db.commit()
    for rid, step, expected in ((3, "undo", [1]), (4, "undo", None), (5, "redo", [1]), (6, "redo", [1, 2])):
        db.handle(b"c1", rid, {"op": step})
        db.commit()
        assert db.engine.tree.get("a") == expected, (rid, step)
