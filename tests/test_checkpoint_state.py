"""The checkpoint state's flat tree form: written for dict trees, read with the older map form too."""
from __future__ import annotations

import pytest

from pyzdb.errors import CorruptStore
from pyzdb.server.database import Database
from pyzdb.storage.checkpoint_state import encode_state, restore_tree
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore
from pyzdb.transport.wire import pack, unpack


def test_a_dict_tree_is_written_flat_and_read_back_the_same():
    tree = {"a": {"b": [1, 2]}, "c": "x", 5: None}
    data = encode_state({"tree": tree, "history": {}, "replies": []})
    state = unpack(data, max_size=None)
    assert "tree" not in state and state["tree_pairs"][:2] == ["a", {"b": [1, 2]}]
    assert restore_tree(state) == tree


def test_a_list_tree_and_the_older_map_form_are_read_as_they_are():
    assert restore_tree(unpack(encode_state({"tree": [1, 2], "history": {}, "replies": []}))) == [1, 2]
    assert restore_tree({"tree": {"a": 1}}) == {"a": 1}


@pytest.mark.parametrize("pairs", [["a"], ["a", 1, "a", 2], "ab"])
def test_broken_pairs_are_a_corrupt_store(pairs):
    with pytest.raises(CorruptStore):
        restore_tree({"tree_pairs": pairs})


@pytest.mark.parametrize("older_form", [False, True])
def test_a_database_reopens_from_a_checkpoint_in_either_form(older_form):
    store = MemoryStore()
    db = Database(Journal(store, chunk_size=64))
    db.open()
    for rid in range(1, 30):
        db.handle(b"c", rid, {"op": "set", "path": [f"k{rid}"], "value": {"n": rid}})
        db.commit()
    data, seq, crc = db.snapshot()
    if older_form:
        state = unpack(data, max_size=None)
        state["tree"] = restore_tree(state)
        data = pack(state)
    db.journal.write_checkpoint(data, seq, crc)
    again = Database(Journal(store, chunk_size=64))
    assert again.open() == seq
    assert again.engine.tree == {f"k{rid}": {"n": rid} for rid in range(1, 30)}
    assert again.history.state() == db.history.state()
