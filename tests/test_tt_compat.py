"""What a kt user meets in pyzdb.tt: return values, misc failure, ext, admin commands, range/regex, the update-log
reader and addint overflow (issue 18). Runs against the protocol test server, and the real ttserver when PYZDB_TT
is set (started as an on-memory tree, ``+``, with ``-ulog DIR -sid N``)."""
from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from kttt_fixtures import collect_events, prefix, protocol_server, tt_server  # noqa: F401

from pyzdb import errors
from pyzdb.tt import CounterOverflow, ProtocolError, ReplicationError, TokyoTyrant, TTReplicationEvent


@pytest.fixture
def tt(tt_server):
    """A client with kt's defaults (KT_BINARY, decoded keys), closed after the test."""
    client = TokyoTyrant(tt_server.host, tt_server.port, timeout=5.0)
    yield client
    client.close()


# --- return values and names as kt gives them -------------------------------------------------
def test_writes_answer_true_and_bulk_writes_count(tt, prefix):
    assert tt.put(prefix + b"a", "1") is True and tt.set(prefix + b"b", "2") is True
    assert tt.put_many({prefix + b"c": "3", prefix + b"d": "4"}) == 2
    assert tt.set_bulk({prefix + b"e": "5"}) is True
    assert tt.out_many([prefix + b"c", prefix + b"d", prefix + b"nope"]) == 2
    assert tt.remove(prefix + b"e") is True and tt.remove(prefix + b"e") is False
    assert tt.add(prefix + b"a", "x") is False and tt.append(prefix + b"a", "+") is True
    assert tt.get(prefix + b"a") == "1+" and tt.exists(prefix + b"a") and tt.length(prefix + b"a") == 2


def test_values_read_as_str_and_keys_decoded_like_kt(tt, prefix):
    tt.set(prefix + b"k", "é")
    assert tt.get(prefix + b"k") == "é" and tt.get_bytes(prefix + b"k") == "é".encode()
    assert tt.get_bulk([prefix + b"k"]) == {prefix.decode() + "k": "é"}
    assert tt.match_prefix(prefix) == [prefix.decode() + "k"]


def test_misc_failure_reads_as_none_as_kt_reports_it(tt, prefix):
    assert tt.misc("nosuchfunction", ["x"]) is None
    assert tt.misc("putlist", [prefix + b"m", b"1"]) == []
    assert tt.misc("get", [prefix + b"m"], update_log=False) == [b"1"]


def test_putshl_keeps_the_last_width_bytes(tt, prefix):
    tt.put(prefix + b"s", "abc")
    assert tt.putshl(prefix + b"s", "def", 4) is True and tt.addshl(prefix + b"s", "g", 3) is True
    assert tt.get(prefix + b"s") == "efg"


def test_setnr_bulk_writes_without_replies(tt, prefix):
    assert tt.set_bulk({prefix + b"n1": "a", prefix + b"n2": "b"}, no_reply=True) is None
    assert tt.get_bulk([prefix + b"n1", prefix + b"n2"]) == {prefix.decode() + "n1": "a", prefix.decode() + "n2": "b"}


# --- ext, admin commands ------------------------------------------------------------------------
def test_ext_without_the_function_reads_as_none(tt):
    assert tt.ext("no_such_lua_function", "k", "v") is None  # ttserver without -ext, or no such function
    assert tt.script("no_such_lua_function", "k", "v") is None


def test_ext_calls_the_servers_function(tt_server):
    with TokyoTyrant(tt_server.host, tt_server.port) as tt:
        if tt.ext("echo", "", "") is None:
            pytest.skip("the server has no ext functions (start ttserver -ext tests/tt_ext.lua on a Lua build)")
        assert tt.ext("concat", "k", "v") == b"kv"
        assert tt.script("echo", value="é") == "é".encode() and tt.script("echo", value="é", decode_value=True) == "é"


def test_sync_optimize_and_vanish_answer_true(protocol_server):
    with TokyoTyrant(port=protocol_server.tt_port) as tt:
        tt.put("k", "v")
        assert tt.sync() is True and tt.synchronize() is True and tt.optimize("") is True
        assert tt.clear() is True and tt.count() == 0


def test_copy_writes_a_file_on_the_server_and_fails_for_a_bad_path(tt, tmp_path, prefix):
    tt.put(prefix + b"c", "v")
    target = tmp_path / "copy.tch"
    assert tt.copy(str(target)) is True and os.path.exists(target)
    assert tt.copy(str(tmp_path / "no" / "such" / "dir.tch")) is False


def test_restore_of_a_missing_log_directory_fails(tt, tmp_path):
    assert tt.restore(str(tmp_path / "no-such-ulog"), 1) is False


def test_setmst_with_no_host_answers_true(tt):
    assert tt.setmst("", 0, 1) is True and tt.set_master("", 0, 1) is True


def test_get_range_and_match_regex_return_records_like_kt(tt, prefix):
    pre = prefix.decode()
    tt.set_bulk({pre + "a": "1", pre + "b": "2", pre + "c": "3", pre + "X": "4"})
    assert tt.get_range(pre + "a", pre + "c") == {pre + "a": "1", pre + "b": "2"}
    assert tt.get_range(pre + "b", max_keys=1) == {pre + "b": "2"}
    assert tt.match_regex("^" + pre + "[ab]$") == {pre + "a": "1", pre + "b": "2"}
    assert tt.match_regex("*^" + pre + "x$") == {pre + "X": "4"}  # a leading * ignores case
    assert tt[pre + "b":pre + "d"] == {pre + "b": "2", pre + "c": "3"}
    assert tt.get_part(pre + "a") == "1" and tt.get_part(pre + "a", 5) is False and tt.get_part(pre + "z") is False


def test_range_and_regex_lists_and_iter_from(tt, prefix):
    pre = prefix.decode()
    tt.set_bulk({pre + "a": "1", pre + "b": "2"})
    assert tt.get_rangelist(pre, pre + "~") == [(pre + "a", "1"), (pre + "b", "2")]
    assert tt.match_regexlist("^" + pre + "b") == [(pre + "b", "2")]
    assert list(tt.iter_from(pre + "b"))[0] == pre + "b"
    assert (pre + "a", "1") in tt.items_fast() and pre + "a" in tt.keys_fast()


def test_misc_functions_an_on_memory_tree_lacks_answer_false(tt, prefix):
    assert tt.setdup(prefix + b"d", "v") is False and tt.setdupback(prefix + b"d", "v") is False
    assert tt.clear_cache() is False and tt.defragment() is False and tt.error is None


def test_status_parses_numbers(tt):
    status = tt.status()
    assert isinstance(status["rnum"], int) and isinstance(status["time"], float) and "version" in status


# --- addint overflow -----------------------------------------------------------------------------
def test_addint_past_int_max_says_it_overflowed_and_what_the_server_stores(tt, prefix):
    key = prefix + b"n"
    assert tt.addint(key, 2**31 - 1) == 2**31 - 1
    with pytest.raises(CounterOverflow, match=r"overflowed the 32-bit counter.*now stores -2147483648"):
        tt.addint(key, 1)  # the sum wraps to INT_MIN, which ttserver answers as failure
    assert tt.get_bytes(key) == struct.pack("<i", -(2**31))
    with pytest.raises(CounterOverflow, match="now stores 2147483646"):
        tt.addint(key, -2)  # wraps the other way: the server answers success with the wrapped sum
    assert tt.get_bytes(key) == struct.pack("<i", 2**31 - 2)


def test_addint_reaching_int_min_exactly_is_named_and_a_bad_record_too(tt, prefix):
    tt.addint(prefix + b"m", -(2**31) + 1)
    with pytest.raises(CounterOverflow, match=r"reached -2147483648 \(INT_MIN\)"):
        tt.addint(prefix + b"m", -1)
    tt.put(prefix + b"s", "abc")
    with pytest.raises(ProtocolError, match="a value of 3 bytes, not a 4-byte int counter") as info:
        tt.incr(prefix + b"s")
    assert not isinstance(info.value, CounterOverflow) and isinstance(info.value, errors.StoreProtocolError)


# --- the update-log reader -----------------------------------------------------------------------
def collect(rep, prefix: bytes, count: int, seconds: float = 10.0) -> list[TTReplicationEvent]:
    """The first ``count`` events about keys starting with ``prefix`` (a misc call's first argument; fewer if
    ``seconds`` pass)."""
    def about(event: TTReplicationEvent) -> bytes:
        return event.key if event.key is not None else (event.args[0] if event.args else b"")
    return collect_events(rep, lambda e: about(e).startswith(prefix), count, seconds)


def test_replication_yields_decoded_commands_in_order(tt, prefix):
    since = int(time.time() * 1_000_000)
    tt.put(prefix + b"a", "1")
    tt.putcat(prefix + b"a", "2")
    tt.out(prefix + b"a")
    tt.out(prefix + b"a")
    tt.addint(prefix + b"n", 5)
    tt.adddouble(prefix + b"d", 1.5)
    tt.misc("putlist", [prefix + b"m", b"x"])
    with tt.replication(ts=since, sid=999) as rep:
        events = collect(rep, prefix, 7)
    assert [(e.op, e.key, e.value, e.ok) for e in events[:4]] == [
        ("put", prefix + b"a", b"1", True), ("putcat", prefix + b"a", b"2", True),
        ("out", prefix + b"a", None, True), ("out", prefix + b"a", None, False)]
    assert (events[4].op, events[4].number) == ("addint", 5)
    assert events[5].op == "adddouble" and events[5].number == pytest.approx(1.5)
    assert (events[6].op, events[6].name, events[6].args) == ("misc", "putlist", (prefix + b"m", b"x"))
    assert [e.ts for e in events] == sorted(e.ts for e in events) and all(e.ts >= since for e in events)
    assert rep.master_sid == events[0].origin_sid


def test_replication_waits_for_later_writes_and_resumes_from_ts(tt, prefix):
    since = int(time.time() * 1_000_000)
    with tt.replication(ts=since, sid=999) as rep:
        got = []
        reader = threading.Thread(target=lambda: got.extend(collect(rep, prefix, 1)))
        reader.start()
        time.sleep(0.5)  # idle: keep-alive bytes only
        tt.put(prefix + b"late", "v")
        reader.join(10)
    assert [e.key for e in got] == [prefix + b"late"]
    tt.put(prefix + b"later", "w")
    with tt.replication(ts=got[0].ts + 1, sid=999) as rep:
        assert [e.key for e in collect(rep, prefix, 1)] == [prefix + b"later"]


def test_replication_refused_for_the_servers_own_sid(tt):
    own = int(tt.stat()["sid"])
    with pytest.raises(ReplicationError, match="refused"):
        tt.replication(ts=1, sid=own)
