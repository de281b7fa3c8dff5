"""The client API against a real `pyzdb serve` process: paths, methods, values, batches, errors."""
import threading
import time

import pytest

from pyzdb.client import Batch, File, client
from pyzdb.errors import (
    Error,
    InvalidValue,
    MethodNotAllowed,
    PathIndexError,
    PathKeyError,
    QueryError,
    ValueTypeError,
)


def test_the_original_design_example(db):
    db["l"] = list(range(10))
    db["l"][4] = ["a", "b", "c"]
    db["l"][4].append("d")
    assert db["l"][4]._run() == ["a", "b", "c", "d"]
    assert db["l"]._run() == [0, 1, 2, 3, ["a", "b", "c", "d"], 5, 6, 7, 8, 9]


def test_items_keys_membership_and_length(db):
    db["x"] = 3
    db["d"] = {"a": {"b": [1, 2, {"c": "deep"}]}, 7: "int key"}
    assert db["x"]._run() == 3
    assert db["d"]["a"]["b"][2]["c"]._run() == "deep"
    assert db["d"][7]._run() == "int key"
    assert "x" in db and "nope" not in db
    assert 2 in db["d"]["a"]["b"]
    assert len(db["d"]["a"]["b"]) == 3 and len(db) == 2
    assert [k for k in db] == ["x", "d"]
    del db["x"]
    assert "x" not in db


def test_negative_indices_and_slices(db):
    db["l"] = list(range(10))
    assert db["l"][-1]._run() == 9
    assert db["l"][2:5]._run() == [2, 3, 4]
    assert db["l"][::-3]._run() == [9, 6, 3, 0]
    db["l"][2:5] = ["x"]
    assert db["l"]._run() == [0, 1, "x", 5, 6, 7, 8, 9]
    del db["l"][-2:]
    assert db["l"]._run() == [0, 1, "x", 5, 6, 7]
    db["l"][-1] = "last"
    assert db["l"][-1]._run() == "last"


def test_iteration_pages_through_large_containers(db):
    db["big"] = list(range(2500))
    db["map"] = {str(i): i for i in range(2100)}
    assert [v for v in db["big"]] == list(range(2500))
    assert len([k for k in db["map"]]) == 2100


def test_every_list_method_runs_on_the_server(db):
    db["l"] = [3, 1, 2]
    db["l"].append(4)
    db["l"].extend([5, 6])
    db["l"].insert(0, 0)
    assert db["l"].pop() == 6
    assert db["l"].pop(0) == 0
    db["l"].remove(4)
    assert db["l"].index(2) == 2 and db["l"].count(1) == 1
    db["l"].sort()
    assert db["l"]._run() == [1, 2, 3, 5]
    db["l"].sort(reverse=True)
    db["l"].reverse()
    assert db["l"]._run() == [1, 2, 3, 5]
    db["l"].clear()
    assert db["l"]._run() == []


def test_every_dict_method_runs_on_the_server(db):
    db["d"] = {"a": 1}
    assert db["d"].get("a") == 1 and db["d"].get("z", 9) == 9
    assert db.get("d") == {"a": 1} and db.get("missing", "dflt") == "dflt"
    db["d"].update({"b": 2}, c=3)
    assert db["d"].keys() == ["a", "b", "c"]
    assert db["d"].values() == [1, 2, 3]
    assert db["d"].items() == [["a", 1], ["b", 2], ["c", 3]]
    assert db["d"].setdefault("e", []) == []
    db["d"]["e"].append(1)
    assert db["d"].pop("a") == 1 and db["d"].pop("a", None) is None
    assert db["d"].popitem() == ["e", [1]]
    db["d"].clear()
    assert db["d"]._run() == {}


def test_increment_is_one_atomic_write(service, db):
    db["n"] = 0

    def work():
        mine = service.client()
        for _ in range(50):
            mine["n"] += 1
        mine._conn.close()
    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db["n"]._run() == 200
    assert db["n"].increment(5) == 205
    assert db["fresh"].increment() == 1
    db["s"] = "ab"
    db["s"] += "c"
    db["n"] -= 5
    assert db["s"]._run() == "abc" and db["n"]._run() == 200


def test_compare_and_set(db):
    db["v"] = 1
    assert db["v"].compare_and_set(1, 2) is True
    assert db["v"].compare_and_set(1, 3) is False
    assert db["v"]._run() == 2


def test_batch_sends_many_operations_in_one_message_all_or_none(db):
    with db.batch() as batch:
        batch["x"] = 1
        batch["l"] = []
        batch["l"].append(2)
        batch["x"]._run()
    assert batch.results == [None, None, None, 1]
    assert db["l"]._run() == [2]
    pipe = db.pipeline()
    pipe["y"] = 5
    pipe["l"].remove(99)
    with pytest.raises(InvalidValue, match="batch operation 1"):
        pipe.execute()
    assert "y" not in db


class _Sent:
    """A connection that keeps each query and whether it was sent as a read or a write."""

    def __init__(self) -> None:
        self.sent: list = []

    def read(self, query: dict, consistency: str | None = None) -> list:
        self.sent.append(("read", query))
        return []

    def write(self, query: dict, consistency: str | None = None) -> list:
        self.sent.append(("write", query))
        return []


def test_a_batch_goes_to_the_read_write_server_only_when_it_writes():
    conn = _Sent()
    reads = Batch(conn)
    reads["a"][0]._run()
    reads["d"].get("k")
    reads.execute()
    writes = Batch(conn)
    writes["a"]._run()
    writes["l"].pop()
    writes.execute()
    writes["a"]._run()      # the recorder starts again empty: this batch only reads
    writes.execute()
    assert [kind for kind, _ in conn.sent] == ["read", "write", "read"]
    assert conn.sent[0][1]["ops"][0] == {"op": "get", "path": ["a", 0]}
    assert conn.sent[2][1]["ops"] == [{"op": "get", "path": ["a"]}]
    with pytest.raises(QueryError, match="keys are str, int or slices"):
        reads[True]
    with pytest.raises(QueryError, match="cannot run inside a batch"):
        reads.root.undo()


def test_values_msgpack_carries_round_trip(db):
    value = {"none": None, "t": True, "f": False, "int": -(2 ** 63), "big": 2 ** 64 - 1, "float": 1.5,
             "str": "héllo", "bytes": b"\x00\xff", "list": [1, [2, []]], "dict": {"k": {}}, 3: "int key"}
    db["v"] = value
    assert db["v"]._run() == value
    db["r"] = range(3)
    db["t"] = (1, 2)
    db["s"] = {3, 1, 2}
    db["ba"] = bytearray(b"xy")
    assert (db["r"]._run(), db["t"]._run(), db["s"]._run(), db["ba"]._run()) == ([0, 1, 2], [1, 2], [1, 2, 3], b"xy")


@pytest.mark.parametrize("bad", [object(), {1.5: 2}, {(1,): 2}, 2 ** 64, lambda: 1, [1, {"x": set}]])
def test_values_msgpack_cannot_carry_are_refused_before_sending(db, bad):
    with pytest.raises(ValueTypeError):
        db["bad"] = bad
    with pytest.raises(TypeError):   # a ValueTypeError is a TypeError too
        db["bad"] = bad
    assert "bad" not in db


def test_proxy_shows_and_compares_the_value(db, capsys):
    db["x"] = [1, 2]
    print(db["x"])
    assert capsys.readouterr().out.strip() == "[1, 2]"
    assert repr(db["x"]) == "[1, 2]"
    assert db["x"] == [1, 2] and db["x"] != [1]
    db["n"] = 4
    assert db["n"] + 1 == 5 and int(db["n"]) == 4 and db["n"] > 3


@pytest.mark.parametrize("action, error, message", [
    (lambda db: db["missing"]._run(), PathKeyError, "key 'missing' not found"),
    (lambda db: db["l"][10]._run(), PathIndexError, "index 10 out of range"),
    (lambda db: db["l"].append(1, 2), ValueTypeError, "takes 1 arguments"),
    (lambda db: db["n"].append(1), MethodNotAllowed, "no allowed method 'append'"),
    (lambda db: db["l"].mro(), AttributeError, "no method 'mro'"),
    (lambda db: db["l"].__class__.__name__ == "x" or db["l"].system("ls"), AttributeError, "no method 'system'"),
    (lambda db: db["n"]["k"]._run(), ValueTypeError, "it has no item"),
    (lambda db: db[1.5], QueryError, "keys are str, int or slices"),
    (lambda db: db["l"].remove("zz"), ValueError, "not in the list"),
])
def test_bad_requests_get_clear_errors_and_change_nothing(db, action, error, message):
    db["l"] = [1, 2]
    db["n"] = 1
    with pytest.raises(error, match=message):
        action(db)
    assert db._run() == {"l": [1, 2], "n": 1}


def test_errors_are_pyzdb_errors_and_python_ones(db):
    with pytest.raises(Error):
        db["missing"]._run()
    with pytest.raises(KeyError):
        db["missing"]._run()


def test_file_references_are_read_back_in_chunks(service, db, tmp_path):
    import os
    root = os.path.join(service.data_dir, "files")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "big.bin")
    content = os.urandom(3 * 1024 * 1024 + 17)
    with open(path, "wb") as handle:
        handle.write(content)
    db["f"] = File(path)
    assert db["f"]._run() == File(path)
    with db["f"].open(chunk_size=1 << 20) as remote:
        assert remote.size == len(content)
        assert b"".join(remote.chunks()) == content
    with db["f"].open() as remote:
        assert remote.read(10) == content[:10]
    db["g"] = File("/etc/passwd")
    with pytest.raises(OSError, match="outside the server's file roots"):
        db["g"].open()


def test_client_accepts_rw_and_ro_uris(service):
    db, socket = client(service.rw_uri, service.ro_uri, timeout=5)
    db["x"] = 1          # writes go to the read-write queue
    assert db["x"]._run() == 1   # no replica answers: the read falls back to the read-write server
    assert db._conn.ro_skip_until > time.monotonic()   # the next reads skip the silent replica queue for a while
    assert db["x"]._run() == 1
    assert socket is not None
