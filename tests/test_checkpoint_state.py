"""The checkpoint state's flat tree form: written for dict trees, read with the older map form too; a restart's progress."""
from __future__ import annotations

import time
import zlib

import pytest

from pyzdb.errors import CorruptStore
from pyzdb.server.database import Database
from pyzdb.storage import big_tree
from pyzdb.storage.checkpoint_state import FORMAT_VERSION, decode_state, encode_state, restore_tree
from pyzdb.storage.journal import META_KEY, Journal, chunk_key, encode_record, log_key
from pyzdb.storage.memory import MemoryStore
from pyzdb.testing import EmbeddedService
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


@pytest.mark.parametrize("version", [4, "2", True, None])
def test_a_store_of_a_version_this_pyzdb_does_not_read_is_refused_by_name(version):
    store = MemoryStore()
    _database_with_a_checkpoint(store)
    meta = unpack(store.get_bulk([META_KEY])[META_KEY])
    store.set_bulk({META_KEY: pack({**meta, "version": version})})
    with pytest.raises(CorruptStore, match=f"format version {version!r}; this pyzdb reads versions 1, 2, 3"):
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


@pytest.mark.parametrize("hashed_from", [1 << 22, 1])
def test_the_flat_form_builds_the_same_dict_in_the_same_order_with_either_table(monkeypatch, hashed_from):
    monkeypatch.setattr(big_tree, "HASHED_FROM", hashed_from)
    monkeypatch.setattr(big_tree, "PIECE_PAIRS", 7)
    tree = {f"k{i}": [i] for i in range(50)}
    tree.update({3: "an int key", b"raw": None})
    reported: list[tuple[int, int]] = []
    built = big_tree.dict_from_flat([item for pair in tree.items() for item in pair],
                                    lambda done, total: reported.append((done, total)))
    assert built == tree and list(built) == list(tree)
    assert reported[-1] == (52, 52) and len(reported) == 8
    built["new"] = 1
    del built["k0"]
    assert list(built)[-1] == "new" and "k0" not in built


def test_an_unhashable_key_in_a_hashed_table_is_a_corrupt_store(monkeypatch):
    monkeypatch.setattr(big_tree, "HASHED_FROM", 1)
    with pytest.raises(CorruptStore):
        restore_tree({"tree_pairs": ["a", 1, ["x"], 2]})


def test_decoding_a_checkpoint_reports_each_stage_and_empties_the_buffer():
    tree = {f"k{i}": i for i in range(100)}
    buffer = bytearray(encode_state({"tree": tree, "history": {}, "replies": []}))
    stages: list[tuple[int, int, str]] = []
    state = decode_state(buffer, "test checkpoint", lambda done, total, stage: stages.append((done, total, stage)))
    assert state["tree"] == tree and len(buffer) == 0
    assert [stage for stage in stages if stage[0] == stage[1]] == [
        (1, 1, "decoding the checkpoint (0 MiB)"), (100, 100, "building the tree (keys)")]
    with pytest.raises(CorruptStore, match="test checkpoint does not decode"):
        decode_state(bytearray(b"\xc1"), "test checkpoint")


def test_a_restart_shows_one_progress_line_through_reading_decoding_building_and_replaying(tmp_path):
    with EmbeddedService("--durability", "always", "--checkpoint-records", "2", data_dir=str(tmp_path)) as service:
        db = service.client()
        db.update({f"k{i}": i for i in range(2000)})
        db["k0"] = 0
        while (status := db.status())["checkpoint_seq"] != 2:
            time.sleep(0.05)
        db["after"] = 1
        assert status["seq"] == 2
        service.kill()
        service.start()
        assert len(service.client()) == 2001
        lines = [line for line in service.log().splitlines() if line.startswith("restart: ")]
    ends = [line for line in lines if "(100%)" in line]
    assert [line.split(":")[1].strip().split(" (")[0] for line in ends] == [
        "reading checkpoint chunks", "decoding the checkpoint", "building the tree", "replaying log records"], lines
    assert ends[2].endswith("2000/2000 (100%)") and ends[3].endswith("1/1 (100%)")
