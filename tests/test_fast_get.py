"""The read-write server's short way for plain gets (server/fast_get.py) answers exactly what the generic path would.

In-process tests compare ``FastGets.answer`` with ``Database.handle`` on the
same tree and reply table; the service tests send raw wire messages (a
pyzmq DEALER with ids of the test's own) to a real ``pyzdb serve``.
"""
import threading
import time

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from pyzdb.errors import ProtocolError
from pyzdb.server.database import Database
from pyzdb.server.fast_get import SMALL, FastGets
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore
from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire
from pyzdb.tree.query import MAX_KEY_LENGTH

MAX_MESSAGE = 1 << 20
TREE = {"s": "v" * 16, "b": b"\x00\x01", "i": -7, "f": 1.5, "t": True, "n": None, 3: "int key",
        "d": {"e": {"x": "deep"}}, "l": [1, 2, 3], "big": "x" * (SMALL + 1), "long": {"k" * (MAX_KEY_LENGTH + 1): 1}}
ANSWERED = [["s"], ["b"], ["i"], ["f"], ["t"], ["n"], [3], ["d", "e", "x"]]
GENERIC = [["l", 0], ["l", [0, 2, None]], ["missing"], ["d", "nope"], ["d"], ["l"], [], ["big"],
           ["long", "k" * (MAX_KEY_LENGTH + 1)], ["s", 0], [True], [1.5]]


def open_db() -> Database:
    db = Database(Journal(MemoryStore()), max_reply=MAX_MESSAGE)
    db.open()
    for rid, (key, value) in enumerate(TREE.items(), 1):
        assert "ok" in db.handle(b"writer", rid, {"op": "set", "path": [key], "value": value})
    db.commit()
    return db


@pytest.mark.parametrize("path", ANSWERED, ids=repr)
def test_a_plain_get_of_a_scalar_is_answered_as_the_generic_path_answers_it(path):
    db = open_db()
    fast = FastGets(db, MAX_MESSAGE).answer(b"fast", 1, {"op": "get", "path": path})
    assert fast is not None
    assert wire.unpack(fast) == db.handle(b"generic", 1, {"op": "get", "path": path})
    assert db.replies.get(b"fast")[:2] == db.replies.get(b"generic")[:2] == [1, None]   # a read: a retry runs again


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: repr(p)[:40])
def test_anything_else_is_left_to_the_generic_path_unchanged(path):
    db = open_db()
    assert FastGets(db, MAX_MESSAGE).answer(b"fast", 1, {"op": "get", "path": path}) is None
    assert db.replies.get(b"fast") is None


def test_extra_fields_pending_writes_and_locks_go_the_generic_way():
    db = open_db()
    fast = FastGets(db, MAX_MESSAGE)
    assert fast.answer(b"c", 1, {"op": "get", "path": ["s"], "locked": True}) is None
    assert fast.answer(b"c", 1, {"op": "len", "path": ["s"]}) is None
    db.handle(b"w", 1, {"op": "set", "path": ["s"], "value": "new"})      # not committed yet
    assert fast.answer(b"c", 1, {"op": "get", "path": ["s"]}) is None
    db.commit()
    assert wire.unpack(fast.answer(b"c", 2, {"op": "get", "path": ["s"]}))["ok"] == "new"
    db.handle(b"holder", 1, {"op": "lock"})
    assert fast.answer(b"c", 3, {"op": "get", "path": ["s"]}) is None
    assert FastGets(Database(Journal(MemoryStore()), max_work=0), MAX_MESSAGE).answer(
        b"c", 1, {"op": "get", "path": ["s"]}) is None
    assert FastGets(db, 100).small < 100          # a reply budget below SMALL lowers what is answered here


def test_retries_and_late_copies_are_left_to_the_exactly_once_table():
    db = open_db()
    fast, query = FastGets(db, MAX_MESSAGE), {"op": "get", "path": ["s"]}
    assert fast.answer(b"c", 5, dict(query)) is not None
    assert fast.answer(b"c", 5, dict(query)) is None                   # a retry of the newest request
    assert db.handle(b"c", 5, dict(query))["ok"] == "v" * 16           # a read's retry runs again
    assert fast.answer(b"c", 4, dict(query)) is None                   # a late copy
    assert db.handle(b"c", 4, dict(query))["err"][0] == "StaleRequest"


@pytest.fixture(scope="module")
def served():
    with EmbeddedService("--durability", "batch", "--lock-wait", "10") as svc:
        yield svc


def raw_dealer(uri: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(uri)
    return sock


def replies(sock: zmq.Socket, count: int) -> dict:
    got = {}
    while len(got) < count:
        assert sock.poll(10_000), "no reply"
        reply = wire.unpack(sock.recv_multipart()[-1])
        got[reply["rid"]] = reply
    return got


def test_a_get_sent_right_behind_a_write_sees_it_and_carries_its_seq(served):
    sock, cid = raw_dealer(served.rw_uri), b"pipelined"
    try:
        for round_ in range(20):
            base = round_ * 2 + 1
            sock.send_multipart([b"", wire.encode_request(cid, base, {"op": "set", "path": ["p"], "value": round_})])
            sock.send_multipart([b"", wire.encode_request(cid, base + 1, {"op": "get", "path": ["p"]})])
            got = replies(sock, 2)
            assert got[base + 1]["ok"] == round_
            assert got[base + 1]["seq"] >= got[base]["seq"] > 0
    finally:
        sock.close()


def test_a_plain_get_waits_for_another_clients_lock(served):
    holder = served.client()
    reader = served.client()
    holder["x"] = "before"
    seen = []
    with holder.lock():
        holder["x"] = "inside"
        thread = threading.Thread(target=lambda: seen.append(reader["x"]._run()))
        thread.start()
        time.sleep(0.5)
        assert seen == []          # held in the server while the lock is held
        holder["x"] = "after"
    thread.join(10)
    assert seen == ["after"]
    holder._conn.close()
    reader._conn.close()


def test_the_fronts_hook_answers_only_plain_gets_and_nothing_while_requests_are_held():
    db, held = open_db(), []
    fast = FastGets(db, MAX_MESSAGE, held)
    get = wire.encode_request(b"c", 1, {"op": "get", "path": ["s"]})
    assert fast.answer_payload(wire.encode_request(b"c", 1, {"op": "set", "path": ["s"], "value": 1})) is None
    assert fast.answer_payload(get[:-3]) is None                      # cut short: the loop answers the error
    assert fast.answer_payload(wire.encode_request(b"c", 1, {"op": "get", "path": ["l", 0]})) is None
    held.append("a request held behind a lock")
    assert fast.answer_payload(get) is None
    held.clear()
    assert wire.unpack(fast.answer_payload(get))["ok"] == "v" * 16
    assert db.replies.get(b"c")[0] == 1
    assert fast.answer_payload(get) is None                           # its retry: the exactly-once table answers


@pytest.mark.parametrize("path", ANSWERED, ids=repr)
def test_the_short_ways_reply_is_byte_for_byte_the_generic_paths(path):
    db = open_db()
    fast = FastGets(db, MAX_MESSAGE).answer(b"fast", 1, {"op": "get", "path": path})
    assert fast == wire.encode_reply(db.handle(b"generic", 1, {"op": "get", "path": path}))


QUERIES = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False)
                       | st.text(max_size=300) | st.binary(max_size=300),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                       max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(cid=st.binary(min_size=1, max_size=64), rid=st.integers(0, 2**64 - 1),
       query=st.dictionaries(st.text(max_size=8), QUERIES, max_size=4))
def test_a_clients_request_encoder_writes_the_bytes_encode_request_writes(cid, rid, query):
    assert wire.RequestEncoder(cid).encode(rid, query) == wire.encode_request(cid, rid, query)


def test_the_request_encoder_refuses_what_encode_request_refuses_and_stays_usable():
    encoder, query = wire.RequestEncoder(b"c"), {"op": "get", "path": ["s"]}
    for bad in ({"value": object()}, {"value": [1, 2**70]}):
        with pytest.raises(ProtocolError):
            wire.encode_request(b"c", 1, bad)
        with pytest.raises(ProtocolError):
            encoder.encode(1, bad)
    assert encoder.encode(2, query) == wire.encode_request(b"c", 2, query)   # nothing of the refused one is left
