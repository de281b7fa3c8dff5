"""script / raw_script and ukt's Lua-backed helpers: touch, expire times, count, seize, key matching, Hash, Set, List,
Queue (issue 18). Against the protocol test server, which runs pyzdb.lua's procedures in Python, and the real
ktserver when PYZDB_KT is set and it was started with ``-scr pyzdb/kt/scripts/pyzdb.lua`` (else those skip)."""
from __future__ import annotations

import datetime
import os
import time

import pytest
from kttt_fixtures import kt_server, prefix, protocol_server  # noqa: F401

from pyzdb.errors import PathIndexError
from pyzdb.kt import KT_MSGPACK, SCRIPT_PATH, XT_MAX, KyotoTycoon, ProtocolError


@pytest.fixture
def kt(kt_server):
    """A ukt-default client of a server that has pyzdb.lua loaded."""
    client = KyotoTycoon(kt_server.host, kt_server.port, timeout=5.0)
    try:
        client.raw_script("count", {"db": 0})
    except ProtocolError:
        client.close()
        pytest.skip(f"the server has no pyzdb.lua (start ktserver -scr {SCRIPT_PATH} on a build with Lua)")
    yield client
    client.close()


def test_the_lua_file_ships_inside_the_package():
    assert os.path.isfile(SCRIPT_PATH) and SCRIPT_PATH.endswith(os.path.join("pyzdb", "kt", "scripts", "pyzdb.lua"))
    with open(SCRIPT_PATH) as f:
        text = f.read()
    for name in ("touch_bulk", "expire_time", "hmset", "sadd", "lrpush", "queue_add"):
        assert f"function {name}(" in text or f"\n{name} = " in text


def test_script_decodes_and_raw_script_does_not(kt):
    assert kt.script("echo", {"a": "é", "b": 1}) == {"a": "é", "b": "1"}
    assert kt.raw_script("echo", {"a": "é"}) == {b"a": "é".encode()}
    assert kt.script("echo", {"k": b"\x01"}, encode_values=False, decode_values=False) == {"k": b"\x01"}
    assert kt.lua.echo(x="y") == {"x": "y"}
    assert kt.script("echo", {"k": "v"}, no_reply=True) is None


def test_touch_sets_a_new_expire_time_and_returns_the_old(kt, prefix):
    key = prefix.decode() + "t"
    kt.set(key, "v")
    at = int(time.time()) + 3600
    assert kt.touch(key, at) == XT_MAX
    assert kt.expire_time(key) == at
    assert kt.touch(prefix.decode() + "missing", 60) is None
    assert kt.touch_bulk([key, prefix.decode() + "missing"], None) == {key: at}
    assert kt.expire_time(key) == XT_MAX and kt.expires(key) == datetime.datetime.max


def test_touch_relative_pushes_the_expire_time_later(kt, prefix):
    key = prefix.decode() + "r"
    at = int(time.time()) + 600
    kt.set(key, "v", expire_time=at)
    assert kt.touch_relative(key, 60) == at + 60
    assert kt.touch_bulk_relative([key, prefix.decode() + "missing"], 40) == {key: at + 100}
    assert kt.expires(key) == datetime.datetime.fromtimestamp(at + 100)
    assert kt.expire_time(prefix.decode() + "missing") is None and kt.expires(prefix.decode() + "missing") is None


def test_count_seize_and_matching(kt, prefix):
    pre = prefix.decode()
    kt.set_bulk({pre + "a1": "1", pre + "a2": "2", pre + "b1": "3"}, db=1)
    assert kt.count(db=1) >= 3
    assert kt.match_prefix(pre + "a", db=1) == [pre + "a1", pre + "a2"]
    assert kt.match_prefix(pre, max_keys=1, db=1) == [pre + "a1"]
    assert kt.match_regex("^" + pre + ".1$", db=1) == [pre + "a1", pre + "b1"]
    assert kt.match_similar(pre + "a3", db=1) == [pre + "a1", pre + "a2"]
    assert kt.match_similar(pre + "c11", distance=2, db=1) == [pre + "a1", pre + "b1"]
    assert kt.seize(pre + "a1", db=1) == "1" and kt.get(pre + "a1", db=1) is None
    assert kt.pop(pre + "a1", db=1) is None


def test_clear_and_len_on_a_database_of_its_own(protocol_server, prefix):
    with KyotoTycoon(port=protocol_server.kt_port, default_db=1) as kt:
        kt.set_bulk({"x": "1", "y": "2"})
        assert len(kt) == kt.count() >= 2
        assert sorted(kt.keys()) == kt.keys_nonlazy() and dict(kt.items())["x"] == "1"
        assert kt.clear() is True and len(kt) == 0 and kt.get("x", db=0) is None


def test_a_procedure_on_a_missing_database_fails(kt):
    with pytest.raises(ProtocolError, match="count"):
        kt.count(db=150)


# --- containers ---------------------------------------------------------------------------------
def test_hash_is_a_dict_in_one_record(kt, prefix):
    h = kt.Hash(prefix.decode() + "h")
    assert h.set_bulk({"a": "1", "b": "2"}) == 2 and h.set("c", "3") == 1
    assert h.setnx("a", "x") == 0 and h.setnx("d", "4") == 1
    assert h.get("a") == "1" and h["b"] == "2" and h.get("zz") is None
    assert h.get_bulk(["a", "c", "zz"]) == {"a": "1", "c": "3"}
    assert len(h) == 4 and "a" in h and "zz" not in h
    assert h.remove_bulk(["c", "zz"]) == 1 and h.remove("d") == 1 and h.remove("d") == 0
    assert h.get_all() == {"a": "1", "b": "2"} == h.get_raw()
    h.set_raw({"only": "one"})
    assert h.get_all() == {"only": "one"}


def test_containers_keep_their_records_expire_time_and_an_emptied_one_stays_empty(kt, prefix):
    key, at = prefix.decode() + "kept", int(time.time()) + 5000
    kt.set_bytes(key, kt.serialize_dict({"a": "1"}), expire_time=at)
    h = kt.Hash(key)
    assert h.set("b", "2") == 1 and kt.expire_time(key) == at
    assert h.remove_bulk(["a", "b"]) == 2 and kt.get_bytes(key) == b"" and kt.expire_time(key) == at
    assert kt.List(prefix.decode() + "never").popleft() is None and kt.get_bytes(prefix.decode() + "never") is None


def test_hash_record_is_a_kt_mapdump(kt, prefix):
    key = prefix.decode() + "raw"
    kt.Hash(key).set_bulk({"b": "2", "a": "1"})
    assert kt.get_bytes(key) == b"\x01\x01a1\x01\x01b2"
    assert kt.deserialize_dict(kt.get_bytes(key)) == {"a": "1", "b": "2"}


def test_hash_values_use_the_clients_serializer(kt, prefix):
    with KyotoTycoon(kt.host, kt.port, serializer=KT_MSGPACK) as kt:
        h = kt.Hash(prefix.decode() + "m")
        h["n"] = {"deep": [1, 2]}
        assert h["n"] == {"deep": [1, 2]} and h.get_all() == {"n": {"deep": [1, 2]}}


def test_set_members(kt, prefix):
    s = kt.Set(prefix.decode() + "s")
    assert s.add("a", "b", "a") == 2 and s.add_bulk(["b", "c"]) == 1
    assert s.count() == len(s) == 3 and "a" in s and "z" not in s
    assert s.members() == {"a", "b", "c"}
    assert s.remove("a", "z") == 1
    popped = s.pop()
    assert popped in {"b", "c"} and s.members() == {"b", "c"} - {popped}
    s.pop()
    assert s.pop() is None and s.members() == set()


def test_list_operations_follow_python_indexing(kt, prefix):
    items = kt.List(prefix.decode() + "l")
    assert items.append("b") == 1 and items.appendleft("a") == 2 and items.extend(["c", "d"]) == 4
    assert items.get_range() == ["a", "b", "c", "d"] and items[1:3] == ["b", "c"] and items[-1] == "d"
    assert items.insert(1, "x") == 5 and items.index(1) == "x" and items.remove(1) == "x"
    items[0] = "A"
    assert items.find("c") == 2 and items.rfind("zz") is None and "d" in items
    assert items.popleft() == "A" and items.popright() == "d" and items.pop() == "c" and items.pop(5) is None
    with pytest.raises(IndexError):
        items.index(7)
    with pytest.raises(PathIndexError, match="lset"):
        items[3] = "y"
    assert len(items) == 1 and items.get_raw() == ["b"]
    items.set_raw(["p", "q"])
    assert items.length() == 2 and kt.get_bytes(prefix.decode() + "l") == b"\x01p\x01q"


def test_queue_pops_higher_scores_first_and_fifo_within_a_score(kt, prefix):
    q = kt.Queue(prefix.decode() + "q")
    assert q.add("first") == 1 and q.extend(["second", "third"]) == 3 and q.add("urgent", score=10) == 4
    assert q.peek() == "urgent" and q.rpeek(2) == ["third", "second"] and len(q) == 4
    assert q.pop() == "urgent" and q.pop(2) == ["first", "second"]
    q.extend(["low", "low"], score=-5)
    assert q.pop(min_score=0) == "third" and q.pop(min_score=0) is None
    assert q.remove("low", n=1) == 1 and q.count() == 1
    assert q.rpop() == "low" and q.pop() is None and q.pop(3) == []
    q.add("x")
    assert q.clear() == 1 and len(q) == 0


def test_add_replace_append_cas_and_increment(kt, prefix):
    pre = prefix.decode()
    assert kt.add(pre + "a", "1") is True and kt.add(pre + "a", "2") is False
    assert kt.replace(pre + "a", "3") is True and kt.replace(pre + "none", "x") is False
    assert kt.append(pre + "a", "4") is True and kt.get(pre + "a") == "34"
    assert kt.cas(pre + "a", "34", "5") is True and kt.cas(pre + "a", "34", "6") is False
    assert kt.cas(pre + "new", None, "7") is True and kt.cas(pre + "new", "7", None) is True
    assert kt.get(pre + "a") == "5" and kt.get(pre + "new") is None
    assert kt.increment(pre + "n") == 1 and kt.incr(pre + "n", 10) == 11
    assert kt.increment(pre + "m", 2, orig=40) == 42
    assert kt.get_bytes(pre + "n") == (11).to_bytes(8, "big")
    with pytest.raises(ProtocolError, match="increment"):
        kt.increment(pre + "a")  # not an 8-byte counter
    assert kt.increment_double(pre + "d", 1.25) == pytest.approx(1.25)
    assert kt.incr_double(pre + "d", -0.5) == pytest.approx(0.75)
    assert kt.increment_double(pre + "e", 0.5, orig=2.0) == pytest.approx(2.5) 
    assert kt.get_bytes(pre + "e") == (2).to_bytes(8, "big") + (5 * 10**14).to_bytes(8, "big")  # integ, fract x 10^15
    at = int(time.time()) + 900
    assert kt.add(pre + "x", "v", expire_time=at) and kt.expire_time(pre + "x") == at


def test_set_intersection_union_difference_and_dest(kt, prefix):
    pre = prefix.decode()
    a, b = kt.Set(pre + "A"), kt.Set(pre + "B")
    a.add("1", "2", "3")
    b.add("2", "3", "4")
    assert a & b == {"2", "3"} and a | b == {"1", "2", "3", "4"} and a - b == {"1"}
    assert a.intersection(pre + "B", dest=pre + "C") == {"2", "3"} and kt.Set(pre + "C").members() == {"2", "3"}


def test_list_remove_range_and_pop_push(kt, prefix):
    pre = prefix.decode()
    items = kt.List(pre + "L")
    items.extend(["a", "b", "c", "d", "e"])
    assert items.remove_range(1, 3) == 3 and items.get_range() == ["a", "d", "e"]
    assert items.lpoprpush() == "a" and items.get_range() == ["d", "e", "a"]
    assert items.rpoplpush(pre + "M") == "a" and kt.List(pre + "M").get_range() == ["a"]
    with pytest.raises(IndexError, match="empty"):
        kt.List(pre + "empty").lpoprpush()


def test_queue_rremove_set_priority_transfer_and_bpop(kt, prefix):
    pre = prefix.decode()
    q = kt.Queue(pre + "Q")
    q.extend(["x", "y", "x", "z"])
    assert q.rremove("x", n=1) == 1 and q.peek(3) == ["x", "y", "z"]
    assert q.set_priority("z", 5) == 1 and q.peek() == "z"
    assert q.transfer(pre + "R") == "z" and kt.Queue(pre + "R").peek() == "z"
    assert q.transfer(kt.Queue(pre + "R"), n=5) == ["x", "y"] and len(q) == 0
    assert kt.Queue(pre + "R").pop(3) == ["z", "x", "y"]  # the score 5 kept its place
    assert q.bpop(timeout=0.3) is None
    q.add("late")
    assert q.bpop(timeout=5) == "late"


def test_schedule_reads_due_items_in_score_order(kt, prefix):
    s = kt.Schedule(prefix.decode() + "S")
    assert s.add("c", 30) == 1 and s.add("a", 10) == 2 and s.add("b", 20) == 3 and s.add("a2", 10) == 4
    assert s.items() == ["a", "a2", "b", "c"] and s.items(2) == ["a", "a2"] and s.count() == 4
    assert s.read(15) == ["a", "a2"] and s.read(25, n=5) == ["b"] and s.read(25) == []
    assert s.read() == ["c"] and len(s) == 0
    s.add("x", 1)
    assert s.clear() == 1 and s.items() == []
