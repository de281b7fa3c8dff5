"""The checkpoint state's flat tree form: written for dict trees, read with the older map form too."""
from __future__ import annotations

import zlib

import pytest

from pyzdb.errors import CorruptStore
from pyzdb.server.database import Database
from pyzdb.storage.checkpoint_state import FORMAT_VERSION, encode_state, restore_tree
from pyzdb.storage.journal import META_KEY, Journal, chunk_key, encode_record, log_key
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


def _database_with_a_checkpoint(store: MemoryStore) -> Database:
    db = Database(Journal(store, chunk_size=64))
    db.open()
    for rid in range(1, 30):
        db.handle(b"c", rid, {"op": "set", "path": [f"k{rid}"], "value": {"n": rid}})
        db.commit()
    data, seq, crc = db.snapshot()
    db.journal.write_checkpoint(data, seq, crc)
    return db


def test_a_checkpoint_in_the_flat_form_is_written_under_a_version_a_reader_of_version_1_refuses():
    store = MemoryStore()
    db = _database_with_a_checkpoint(store)
    meta = unpack(store.get_bulk([META_KEY])[META_KEY])
    state = db.journal.load_checkpoint(meta)
    assert meta["version"] == FORMAT_VERSION > 1        # pyzdb up to version 1 checks `version == 1` and refuses
    assert unpack(encode_state({"tree": {"a": 1}}))["tree_pairs"] == ["a", 1] and state["tree"]


@pytest.mark.parametrize("version", [3, "2", True, None])
def test_a_store_of_a_version_this_pyzdb_does_not_read_is_refused_by_name(version):
    store = MemoryStore()
    _database_with_a_checkpoint(store)
    meta = unpack(store.get_bulk([META_KEY])[META_KEY])
    store.set_bulk({META_KEY: pack({**meta, "version": version})})
    with pytest.raises(CorruptStore, match=f"format version {version!r}; this pyzdb reads versions 1, 2"):
        Database(Journal(store, chunk_size=64)).open()


@pytest.mark.parametrize("layout", ["tree", "tree_pairs"])
def test_a_store_written_in_format_version_1_opens_and_its_next_checkpoint_is_version_2(layout):
    """Version 1's layout written by hand: a ``meta`` of version 1, the state map with ``tree`` (or, as builds
    between the flat form and the bump wrote it, ``tree_pairs``), then log records after it."""
    store = MemoryStore()
    tree = {f"k{i}": {"n": i} for i in range(20)}
    state = {"history": {}, "replies": [],
             **({"tree": tree} if layout == "tree" else {"tree_pairs": [x for kv in tree.items() for x in kv]})}
    data = pack(state)
    chunks = [data[i:i + 64] for i in range(0, len(data), 64)]
    store.set_bulk({chunk_key(1, i): chunk for i, chunk in enumerate(chunks)})
    store.set_bulk({META_KEY: pack({"format": "pyzdb-journal", "version": 1, "gen": 1, "seq": 5, "crc": 77,
                                    "chunks": len(chunks), "crcs": [zlib.crc32(c) for c in chunks],
                                    "size": len(data), "time": 0.0, "prev_gen": 0, "prev_chunks": 0,
                                    "prev_seq": 0, "id": "f" * 32, "created": 0.0})})
    record = encode_record(6, 77, [{"k": "w", "ops": [{"op": "set", "path": ["new"], "value": 1}],
                                    "cid": None, "rid": None, "res": None}])
    store.set_bulk({log_key(6): record})
    db = Database(Journal(store, chunk_size=64))
    assert db.open() == 6
    assert db.engine.tree == {**tree, "new": 1}
    data, seq, crc = db.snapshot()
    db.journal.write_checkpoint(data, seq, crc)
    assert unpack(store.get_bulk([META_KEY])[META_KEY])["version"] == FORMAT_VERSION
    again = Database(Journal(store, chunk_size=64))
    assert again.open() == 6 and again.engine.tree == {**tree, "new": 1}
