"""Hostile input: random and mutated messages through wire.decode_request + query.validate + Database.handle,
and a short run against a real server socket. Nothing crashes; a rejected message changes nothing stored."""
import os
import random
import time

import msgpack
import pytest
import zmq
from hostile import ask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyzdb.broker.health import query_status
from pyzdb.errors import Error
from pyzdb.server.database import DEFER, Database
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal
from pyzdb.testing import Cluster, EmbeddedService
from pyzdb.transport import wire
from pyzdb.tree import query as q

SEED_TREE = {"l": [1, 2, [3, 4], "x"], "d": {"a": 1, "b": [1, {"c": b"z"}]}, "s": "text", "b": b"bytes",
             "n": 5, "f": 1.5, "t": True, "none": None}
EVIL_METHODS = ["__class__", "__init__", "__globals__", "__reduce__", "__getattribute__", "mro", "format",
                "system", "join", "ljust", "center", "zfill", "expandtabs", "__import__", "eval"]

ints = st.integers(-(2 ** 63), 2 ** 63 - 1)      # what msgpack can carry
keys = st.one_of(st.sampled_from(list(SEED_TREE) + ["a", "b", "c"]), st.text(max_size=4), st.integers(-6, 6))
steps = st.one_of(keys, st.lists(st.one_of(st.none(), st.integers(-6, 6)), max_size=4), st.booleans(),
                  st.floats(allow_nan=True), st.binary(max_size=3), st.none(), ints)
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), st.text(max_size=6), st.binary(max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=3), ints, st.booleans()),
                                                 inner, max_size=3)), max_leaves=10)
ops = st.sampled_from(sorted(q.OPS) + sorted(q.CONTROL_OPS) + ["exec", "eval", "__init__", 1, None, ""])
methods = st.sampled_from(sorted(q.ALL_METHODS) + EVIL_METHODS)


def queries(depth: int = 0):
    """Random query maps: right shapes, wrong shapes, unknown ops and methods, odd fields."""
    optional = {"value": values, "expected": values, "method": st.one_of(methods, values),
                "args": st.one_of(st.lists(values, max_size=3), values), "kwargs": st.one_of(
                    st.dictionaries(st.one_of(st.sampled_from(["reverse", "key", "x"]), ints), values,
                                    max_size=2), values),
                "start": st.one_of(st.integers(-3, 5), values), "limit": st.one_of(st.integers(-3, 5), values),
                "create": values, "offset": ints, "size": ints, "locked": st.booleans()}
    if depth < 1:
        optional["ops"] = st.lists(queries(depth + 1), max_size=4)
    return st.fixed_dictionaries({"op": ops, "path": st.one_of(st.lists(steps, max_size=4), values)},
                                 optional=optional)


def fresh_db() -> Database:
    db = Database(Journal(open_store("memory://")), lock_lease=60)
    db.open()
    for key, value in SEED_TREE.items():
        db.handle(b"seed", 1, {"op": "set", "path": [key], "value": value})
        db.commit()
    return db


def stored(db: Database) -> bytes:
    """Everything a request could change: the tree, history and the journal position."""
    return msgpack.packb([db.engine.tree, list(db.history.undo_stack), db.history.redo_stack, db.journal.seq,
                          db.lock is not None], use_bin_type=True)


def send(db: Database, data: bytes, read_only: bool = False) -> dict | None:
    """The server's path for one message, without sockets; asserts a rejected message changed nothing."""
    before = stored(db)
    try:
        cid, rid, query = wire.decode_request(data, 1 << 20)
    except Error:
        assert stored(db) == before
        return None
    reply = db.handle(cid, rid, query, read_only=read_only)
    if reply is DEFER:
        return None
    assert isinstance(reply, dict) and ("ok" in reply or "err" in reply)
    wire.encode_reply(reply, 1 << 20)         # every reply can be sent
    db.commit()
    if "err" in reply or read_only:
        assert stored(db) == before, reply
    return reply


FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_LONG = settings(FUZZ, max_examples=int(os.environ.get("FUZZ_LONG_EXAMPLES", "5000")))


def run_queries(batch: list, read_only: bool) -> None:
    db = fresh_db()
    for rid, query in enumerate(batch, start=10):
        send(db, msgpack.packb({"v": 1, "cid": b"fuzzer", "rid": rid, "q": query}, use_bin_type=True), read_only)
    msgpack.packb(db.engine.tree)             # the tree stays encodable (checkpoints, reads of the root)


@FUZZ
@given(st.lists(queries(), min_size=1, max_size=6), st.booleans())
def test_random_queries_never_crash_and_rejections_change_nothing(batch, read_only):
    run_queries(batch, read_only)


@pytest.mark.slow
@FUZZ_LONG
@given(st.lists(queries(), min_size=1, max_size=8), st.booleans())
def test_random_queries_long_run(batch, read_only):
    run_queries(batch, read_only)


VALID = [{"op": "set", "path": ["l", 0], "value": [1, {"a": b"x"}]},
         {"op": "call", "path": ["l"], "method": "append", "args": ["d"]},
         {"op": "batch", "ops": [{"op": "iadd", "path": ["n"], "value": 2}, {"op": "del", "path": ["s"]}]},
         {"op": "cas", "path": ["n"], "expected": 5, "value": 6}]


@FUZZ
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       st.binary(max_size=8), st.integers(0, 3))
def test_mutated_messages_never_crash(query, flips, tail, cut):
    data = bytearray(msgpack.packb({"v": 1, "cid": b"fuzzer", "rid": 3, "q": query}, use_bin_type=True))
    for position, byte in flips:
        data[position % len(data)] = byte
    data = bytes(data[:len(data) - cut]) + tail
    send(fresh_db(), data)


@FUZZ
@given(st.binary(max_size=64))
def test_random_bytes_never_crash(data):
    send(fresh_db(), data)


def test_limits_are_refused_by_name():
    db = fresh_db()

    def error_of(query):
        reply = send(db, msgpack.packb({"v": 1, "cid": b"x", "rid": 1, "q": query}, use_bin_type=True))
        return reply["err"][0] if reply and "err" in reply else None
    assert error_of({"op": "get", "path": ["d"] * (q.MAX_PATH_DEPTH + 1)}) == "QueryError"
    assert error_of({"op": "batch", "ops": [{"op": "get", "path": []}] * (q.MAX_BATCH + 1)}) == "QueryError"
    assert error_of({"op": "call", "path": ["l"], "method": "__class__"}) == "MethodNotAllowed"
    assert error_of({"op": "call", "path": ["s"], "method": "zfill", "args": [10 ** 9]}) == "MethodNotAllowed"
    deep = None
    for _ in range(q.MAX_VALUE_DEPTH + 5):
        deep = [deep]
    assert error_of({"op": "set", "path": ["deep"], "value": deep}) == "ValueTypeError"
    # depth adds up across writes: the tree never becomes too deep to encode
    nested = None
    for _ in range(q.MAX_VALUE_DEPTH - 5):
        nested = [nested]
    assert error_of({"op": "set", "path": ["deep"], "value": nested}) is None
    assert error_of({"op": "set", "path": ["deep"] + [0] * 50, "value": nested}) == "ValueTypeError"
    with pytest.raises(Error):
        wire.decode_request(b"\x91" * 5000 + b"\xc0")           # nesting bomb: refused by the decoder
    with pytest.raises(Error):
        wire.decode_request(b"\x00" * 100, max_size=50)         # over the size limit before decoding


@pytest.fixture(scope="module")
def small_service():
    with EmbeddedService("--max-message", "65536") as svc:
        yield svc


def send_hostile_traffic(uri: str, seed: int, count: int = 600) -> int:
    """Garbage, mutations, random queries, odd frame counts and oversized messages to ``uri``; how many were sent.

    Only messages a server must refuse (or reads) are sent, so nothing stored may change.
    """
    print(f"hostile traffic to {uri}: seed {seed}")
    rnd = random.Random(seed)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(uri)
    valid = msgpack.packb({"v": 1, "cid": b"fuzzer", "rid": 1, "q": {"op": "get", "path": ["keep"]}})
    sent = 0
    for n in range(count):
        kind = n % 5
        if kind == 0:
            payload = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200)))
        elif kind == 1:
            payload = bytearray(valid)
            for _ in range(rnd.randint(1, 4)):
                payload[rnd.randrange(len(payload))] = rnd.getrandbits(8)
            payload = bytes(payload)
        elif kind == 2:
            payload = msgpack.packb({"v": 1, "cid": b"f", "rid": n, "q": {"op": rnd.choice(["exec", "eval", "set"]),
                                                                         "path": [], "value": 1}})
        elif kind == 3:
            payload = msgpack.packb({"v": 1, "cid": b"f", "rid": n, "q": random_query(rnd)}, use_bin_type=True)
        else:
            payload = os.urandom(70_000)                      # over --max-message: refused, or the peer cut off
        frames = [b"", payload] if rnd.random() < 0.8 else [payload] * rnd.randint(1, 4)
        try:
            cid, rid, query = wire.decode_request(payload)
            q.validate(query)
            if query["op"] not in ("get", "len", "iter", "type", "contains", "ping", "status"):
                continue                                      # only messages that must be refused (or reads)
        except Error:
            pass
        except Exception:                                     # what validate cannot even look at: sent as it is
            pass
        sock.send_multipart(frames)
        sent += 1
        if kind == 4:                                         # a server may have dropped us; connect again
            sock.close()
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(uri)
    sock.close()
    return sent


def random_query(rnd: random.Random) -> dict:
    """A query of random op, path, method and arguments, shapes right and wrong."""
    pool = [None, True, 0, -1, 7, 2 ** 63 - 1, 1.5, "", "keep", "l", "s", b"b", [], [1], {}, {"a": 1}, [None, 2, None],
            [1, 2, 0], "__class__"]
    query = {"op": rnd.choice(sorted(q.OPS) + sorted(q.CONTROL_OPS) + ["exec", [1], None, 3]),
             "path": rnd.choice([[], ["keep"], ["keep", "l"], ["keep", "l", [0, 3, None]], ["keep", "s"], [[1]],
                                 ["keep", True], "keep", None])}
    for field in rnd.sample(["value", "method", "args", "kwargs", "start", "limit", "ops", "offset", "size"], 3):
        query[field] = rnd.choice(pool)
    if rnd.random() < 0.5:
        query["method"] = rnd.choice(sorted(q.ALL_METHODS) + EVIL_METHODS)
        query["args"] = [rnd.choice(pool) for _ in range(rnd.randint(0, 3))]
    return query


def test_hostile_traffic_against_a_real_server(small_service):
    """The server answers on, nothing changes."""
    db = small_service.client(timeout=10)
    db["keep"] = {"l": list(range(100)), "s": "x" * 100}
    before = db["keep"]._run()
    assert send_hostile_traffic(small_service.rw_uri, 5) > 400
    assert db.ping() == "pong"
    assert db["keep"]._run() == before
    assert small_service.proc.poll() is None
    assert "unexpected failure" not in small_service.log()     # every message was refused by name


@pytest.fixture(scope="module")
def small_cluster():
    with Cluster(1, "--max-message", "65536") as cluster:
        yield cluster


def test_hostile_traffic_against_a_replica(small_cluster):
    """Through the broker's read-only queue to a replica: the replica and the broker answer on, nothing changes."""
    db = small_cluster.client(timeout=10)
    db["keep"] = {"l": list(range(100)), "s": "x" * 100}
    before = db["keep"]._run()
    deadline = time.monotonic() + 20
    while ask(small_cluster.ro_uri, {"op": "get", "path": ["keep"]}).get("ok") != before:
        assert time.monotonic() < deadline, "the replica did not apply the write"
        time.sleep(0.05)
    assert send_hostile_traffic(small_cluster.ro_uri, 6) > 400
    assert ask(small_cluster.ro_uri, {"op": "ping"})["ok"] == "pong"
    assert ask(small_cluster.ro_uri, {"op": "get", "path": ["keep"]})["ok"] == before
    assert small_cluster.replicas[0].poll() is None and small_cluster.broker.poll() is None
    assert db["keep"]._run() == before
    assert "unexpected failure" not in small_cluster.log("ro0") + small_cluster.log("broker")


def test_hostile_traffic_against_the_health_socket(small_cluster):
    """Random frames, beats that do not decode or are not maps, floods of peers: the table is still served."""
    rnd = random.Random(7)
    print("health socket traffic: seed 7")
    words = [b"BEAT", b"STATUS", b"", b"\x00", msgpack.packb({"role": "rw", "pid": [1]}), msgpack.packb([1, 2])]
    for n in range(300):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(small_cluster.health)
        frames = [rnd.choice(words + [os.urandom(rnd.randint(0, 300))]) for _ in range(rnd.randint(1, 4))]
        sock.send_multipart(frames)
        sock.close()
    status = query_status(small_cluster.health, timeout=5)
    assert status is not None and any(s.get("role") == "rw" and s.get("alive") for s in status["servers"])
    assert small_cluster.broker.poll() is None


def test_large_reads_are_paged_and_oversized_replies_refused(small_service):
    db = small_service.client(timeout=10)
    db["big"] = []
    for _ in range(4):
        db["big"].extend(["y" * 1000] * 20)                  # 80 KB in all, over the 64 KB reply limit
    from pyzdb.errors import MessageTooLarge
    with pytest.raises(MessageTooLarge):
        db["big"]._run()
    assert len(list(db["big"])) == 80                         # iteration reads it in pages
    assert db["big"][3:5]._run() == ["y" * 1000] * 2
    assert small_service.proc.poll() is None
