"""Behaviour of the Kyoto Tycoon client and of the server it talks to (protocol test server, real one if PYZDB_KT)."""
from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from kttt_fixtures import (  # noqa: F401
    collect_events,
    kt_server,
    prefix,
    protocol_server,
    raw_connection,
    recv_all,
    start_protocol_server,
)

from pyzdb.errors import (
    RecordTooLarge,
    StoreConnectionError,
    StoreProtocolError,
    StoreTimeout,
    ValueTypeError,
)
from pyzdb.kt import (
    DATAMAXSIZ,
    KT_BINARY,
    KT_JSON,
    KT_MSGPACK,
    KT_NONE,
    XT_MAX,
    KyotoTycoon,
    Record,
)
from pyzdb.kt import protocol as p


@pytest.fixture
def kt(kt_server):
    """A raw-bytes client (KT_NONE, bytes keys) of each server variant, closed after the test."""
    client = KyotoTycoon(kt_server.host, kt_server.port, timeout=5.0, serializer=KT_NONE, decode_keys=False)
    yield client
    client.close()


def test_set_then_get_returns_the_value_under_str_and_bytes_keys(kt, prefix):
    key = prefix.decode() + "clé"
    assert kt.set(key, b"v1") == 1
    assert kt.get(key) == b"v1"
    assert kt.get(key.encode("utf-8")) == b"v1"
    assert kt.get(prefix + b"missing") is None


def test_dict_style_access_follows_ukt_missing_keys_read_as_none_and_del_is_quiet(kt, prefix):
    kt[prefix + b"a"] = "text"
    assert kt[prefix + b"a"] == b"text"
    assert prefix + b"a" in kt and prefix + b"b" not in kt
    assert kt[prefix + b"b"] is None
    del kt[prefix + b"a"]
    del kt[prefix + b"a"]  # a missing key: nothing happens, as in ukt
    assert kt.update({prefix + b"x": b"1"}, **{prefix.decode() + "y": b"2"}) == 2
    assert kt.get_bulk([prefix + b"x", prefix.decode() + "y"]) == {prefix + b"x": b"1", prefix + b"y": b"2"}


def test_get_bulk_leaves_missing_keys_out_and_keys_results_as_stored(kt, prefix):
    data = {prefix + b"%d" % i: b"v%d" % i for i in range(5)}
    assert kt.set_bulk(data) == 5
    asked = [prefix + b"4", prefix + b"nope", prefix.decode() + "1"]
    assert kt.get_bulk(asked) == {prefix + b"4": b"v4", prefix + b"1": b"v1"}
    records = kt.get_bulk_details([(0, prefix + b"3"), (0, prefix + b"x"), (0, prefix + b"0")])
    assert [r.key for r in records] == [prefix + b"3", prefix + b"0"]  # request order


def test_remove_bulk_counts_only_keys_that_existed(kt, prefix):
    kt.set_bulk({prefix + b"a": b"1", prefix + b"b": b"2"})
    assert kt.remove_bulk([prefix + b"a", prefix + b"b", prefix + b"c"]) == 2
    assert kt.remove(prefix + b"a") == 0
    assert kt.get_bulk([prefix + b"a", prefix + b"b"]) == {}


@pytest.mark.parametrize("kind, value", [(KT_MSGPACK, {"a": [1, 2.5, None, b"x"]}), (KT_JSON, {"a": [1, "é"]}),
                                         (KT_BINARY, b"\x00\xff"), (KT_NONE, b"raw")])
def test_serializers_round_trip_values(kt_server, prefix, kind, value):
    with KyotoTycoon(kt_server.host, kt_server.port, serializer=kind) as client:
        client.set(prefix + b"k", value)
        assert client.get(prefix + b"k") == value
        assert client[prefix + b"k"] == value


def test_serializer_none_stores_str_and_numbers_as_text_like_ukt_and_no_pickle_serializer_exists(kt_server, prefix):
    with KyotoTycoon(kt_server.host, kt_server.port, serializer=KT_NONE) as client:
        client.set_bulk({prefix + b"s": "text", prefix + b"n": 12, prefix + b"f": 1.5})
        assert client.get_bulk([prefix + b"s", prefix + b"n", prefix + b"f"]) == {
            prefix.decode() + "s": b"text", prefix.decode() + "n": b"12", prefix.decode() + "f": b"1.5"}
        with pytest.raises(ValueTypeError, match="dict"):
            client.set(b"k", {"a": 1})
    with pytest.raises(ValueError):
        KyotoTycoon(kt_server.host, kt_server.port, serializer="pickle")


def test_expiry_relative_absolute_and_never(kt, prefix):
    now = int(time.time())
    kt.set(prefix + b"rel", b"1", expire_time=100)
    kt.set(prefix + b"never", b"2")
    kt.set(prefix + b"past", b"3", expire_time=-(now - 10))
    kt.set(prefix + b"abs", b"4", expire_time=-(now + 1000))
    got = {r.key: r.xt for r in kt.get_bulk_details([(0, prefix + k) for k in (b"rel", b"never", b"past", b"abs")])}
    assert now + 99 <= got[prefix + b"rel"] <= now + 102
    assert got[prefix + b"never"] == XT_MAX
    assert prefix + b"past" not in got
    assert got[prefix + b"abs"] == now + 1000


def test_no_reply_writes_arrive_without_an_answer(kt, prefix):
    assert kt.set_bulk({prefix + b"a": b"1"}, no_reply=True) is None
    assert kt.remove_bulk([prefix + b"zz"], no_reply=True) is None
    assert kt.get(prefix + b"a") == b"1"


def test_no_reply_flag_on_the_wire_sends_nothing_back(kt_server, prefix):
    request = p.encode_set_bulk([Record(0, prefix + b"n", b"v")], p.BONOREPLY)
    get = p.encode_keys(p.BMGETBULK, [(0, prefix + b"n")])
    with raw_connection(kt_server, request + get) as sock:
        reply = sock.recv(1)
        assert reply == bytes([p.BMGETBULK])  # the first byte back answers the get


def test_database_index_out_of_range_is_skipped_silently(kt, prefix):
    assert kt.set_bulk_details([Record(1000, prefix + b"k", b"v"), Record(0, prefix + b"k", b"v")]) == 1
    assert kt.get_bulk_details([(1000, prefix + b"k")]) == []
    assert kt.remove_bulk_details([(1000, prefix + b"k")]) == 0


def test_unknown_magic_byte_closes_the_connection_without_reply(kt_server):
    with raw_connection(kt_server, b"\xb7\x00\x00\x00\x00") as sock:
        assert recv_all(sock) == b""


def test_failed_bulk_op_answers_error_byte_then_closes(kt_server):
    header = struct.pack(">BIIHIIq", p.BMSETBULK, 0, 1, 0, DATAMAXSIZ + 1, 1, p.XT_NEVER)
    with raw_connection(kt_server, header) as sock:
        assert recv_all(sock) == bytes([p.BMERROR])


def test_client_raises_protocol_error_and_replaces_the_closed_connection(kt, prefix):
    header = struct.pack(">BIIHIIq", p.BMSETBULK, 0, 1, 0, DATAMAXSIZ + 1, 1, p.XT_NEVER)
    with pytest.raises(StoreProtocolError, match="set_bulk of 1 records"):
        kt._call(header, p.BMSETBULK, "set_bulk of 1 records", False, False)
    assert kt.set(prefix + b"after", b"ok") and kt.get(prefix + b"after") == b"ok"


def test_records_over_the_limit_are_refused_before_sending(kt, prefix):
    with pytest.raises(RecordTooLarge):
        kt.set(prefix, bytes(DATAMAXSIZ + 1))
    with pytest.raises(RecordTooLarge):
        kt.get(bytes(DATAMAXSIZ + 1))
    assert kt.set(prefix, b"fine")


def test_large_bulk_calls_are_split_and_all_records_arrive(kt, prefix):
    data = {prefix + b"%06d" % i: b"x" * 300 for i in range(25_000)}
    data[prefix + b"big"] = bytes(range(256)) * 30_000  # 7.7 MB
    assert kt.set_bulk(data) == len(data)
    assert kt.get_bulk(list(data)) == data
    assert kt.remove_bulk(list(data)) == len(data)


def test_connection_refused_raises_store_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with KyotoTycoon("127.0.0.1", port, timeout=1.0) as client, pytest.raises(StoreConnectionError):
        client.get(b"k")


def test_silent_server_raises_store_timeout():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        with KyotoTycoon("127.0.0.1", listener.getsockname()[1], timeout=0.3) as client:
            start = time.monotonic()
            with pytest.raises(StoreTimeout):
                client.get(b"k")
            assert time.monotonic() - start > 0.25      # it waited its timeout, then gave up


def test_client_carries_on_after_the_server_restarts():
    server = start_protocol_server()
    try:
        client = KyotoTycoon("127.0.0.1", server.kt_port, timeout=3.0)
        client.set(b"k", b"1")
        server.restart()
        assert client.get(b"k") is None  # new empty server, same port, no error
        assert client.set(b"k", b"2") and client.get(b"k") == "2"
        client.close()
    finally:
        server.stop()


def test_pool_is_safe_across_threads(kt, prefix):
    errors = []

    def work(n):
        try:
            for i in range(50):
                key = prefix + b"%d-%d" % (n, i)
                kt.set(key, key)
                assert kt.get(key) == key
        except Exception as exc:  # noqa: BLE001 - collected for the assert below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_closed_client_refuses_calls(kt_server):
    client = KyotoTycoon(kt_server.host, kt_server.port)
    client.close()
    with pytest.raises(StoreConnectionError):
        client.get(b"k")


# --- play_script -------------------------------------------------------------------------
def _script_or_skip(kt, name, data):
    try:
        return kt.play_script(name, data)
    except StoreProtocolError:
        pytest.skip(f"the server has no script {name!r} (start it with -scr)")


def test_play_script_echo_returns_pairs_sorted_by_key(kt):
    out = _script_or_skip(kt, "echo", {"b": b"2", "a": b"1", "c": b""})
    assert list(out.items()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"")]


def test_failed_script_raises_but_keeps_the_connection_on_the_wire(kt_server):
    request = p.encode_play_script(b"no-such-script", [(b"k", b"v")])
    with raw_connection(kt_server, request) as sock:
        assert sock.recv(1) == bytes([p.BMERROR])
        sock.sendall(p.encode_keys(p.BMGETBULK, [(0, b"x")]))
        assert sock.recv(1) == bytes([p.BMGETBULK])  # still open


def test_failed_script_raises_protocol_error_naming_it(kt):
    with pytest.raises(StoreProtocolError, match="no-such-script"):
        kt.play_script("no-such-script", {"k": b"v"})


# --- replication -------------------------------------------------------------------------
def collect(rep, prefix: bytes, count: int, seconds: float = 10.0) -> list:
    """The first ``count`` events about keys starting with ``prefix`` (fewer if ``seconds`` pass)."""
    return collect_events(rep, lambda e: e.key is None or e.key.startswith(prefix), count, seconds)


def recent_ts(seconds_ago: float = 1.0) -> int:
    return int((time.time() - seconds_ago) * 1000) * 1_000_000


def _replication_or_skip(kt, **kwargs):
    try:
        return kt.replication(**kwargs)
    except StoreProtocolError:
        pytest.skip("the server keeps no update log (start it with -ulog DIR -sid N)")


def test_replication_streams_sets_and_removes_in_order(kt, prefix):
    with _replication_or_skip(kt, ts=recent_ts(), sid=9999) as rep:
        kt.set(prefix + b"a", b"1")
        kt.set(prefix + b"b", b"2", expire_time=-2_000_000_000)
        kt.remove(prefix + b"a")
        kt.remove(prefix + b"missing")
        events = collect(rep, prefix, 4)
    assert [(e.op, e.key, e.value) for e in events] == [
        ("set", prefix + b"a", b"1"), ("set", prefix + b"b", b"2"),
        ("remove", prefix + b"a", None), ("remove", prefix + b"missing", None)]
    assert events[0].expire is None and events[1].expire == 2_000_000_000
    assert all(e.db == 0 for e in events)
    assert [e.ts for e in events] == sorted(e.ts for e in events) and len({e.ts for e in events}) == 4
    assert abs(events[0].ts // 10**9 - time.time()) < 60  # unix ms x 10^6 + counter


def test_replication_starts_after_the_requested_ts(kt, prefix):
    with _replication_or_skip(kt, ts=recent_ts(), sid=9999) as rep:
        for i in range(3):
            kt.set(prefix + b"%d" % i, b"v")
        first = collect(rep, prefix, 3)
    with kt.replication(ts=first[1].ts, sid=9999) as rep:
        later = collect(rep, prefix, 1)
    assert [e.key for e in later] == [prefix + b"2"]


def test_replication_answers_keep_alives_and_advances_ts_while_idle(kt, prefix):
    with _replication_or_skip(kt, ts=recent_ts(0), sid=9999) as rep:
        got = []
        reader = threading.Thread(target=lambda: got.extend(collect(rep, prefix, 1)))
        reader.start()
        time.sleep(1.5)  # many B0 / B1 exchanges
        kt.set(prefix + b"late", b"v")
        reader.join(10)
        assert [e.key for e in got] == [prefix + b"late"]
        assert rep.ts >= got[0].ts


def test_replication_leaves_out_the_requesters_own_sid_unless_white_listed(kt, prefix):
    with _replication_or_skip(kt, ts=recent_ts(), sid=9999) as rep:
        kt.set(prefix + b"x", b"v")
        origin = collect(rep, prefix, 1)[0].origin_sid
    since = recent_ts(5)
    with kt.replication(ts=since, sid=origin) as rep:
        assert collect(rep, prefix, 1, seconds=1.5) == []
    with kt.replication(ts=since, sid=origin, white_sid=True) as rep:
        assert [e.key for e in collect(rep, prefix, 1)] == [prefix + b"x"]


def test_replication_reports_clear(protocol_server):
    with KyotoTycoon(port=protocol_server.kt_port) as client, \
            client.replication(ts=recent_ts(), sid=9999) as rep:
        client.play_script("clear")
        events = collect(rep, b"\xff" * 40, 1)
    assert [(e.op, e.key, e.db) for e in events] == [("clear", None, 0)]


def test_play_script_count_reports_the_records_of_database_zero(kt, prefix):
    kt.set(prefix + b"c", b"v")
    out = _script_or_skip(kt, "count", {})
    assert list(out) == [b"count"] and int(out[b"count"]) >= 1
