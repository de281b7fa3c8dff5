"""What a ukt or kt user meets in pyzdb.kt: expire times, *_details, serializers, mapping semantics, exceptions (issue 18).

Runs against the protocol test server, and the real ktserver when PYZDB_KT is set.
"""
from __future__ import annotations

import datetime
import socket
import struct
import time

import pytest
from kttt_fixtures import kt_server, prefix, protocol_server  # noqa: F401

from pyzdb import errors
from pyzdb.kt import (
    DATAMAXSIZ,
    KT_BINARY,
    KT_JSON,
    KT_MSGPACK,
    KT_NONE,
    XT_MAX,
    XT_NEVER,
    KTError,
    KyotoTycoon,
    ProtocolError,
    ServerConnectionError,
    ServerTimeoutError,
    wire_xt,
)
from pyzdb.kt import protocol as p


@pytest.fixture
def kt(kt_server):
    """A client with ukt's defaults (KT_BINARY, decoded keys), closed after the test."""
    client = KyotoTycoon(kt_server.host, kt_server.port, timeout=5.0)
    yield client
    client.close()


def _xt(kt, key, db=0):
    found = kt.get_bulk_details([(db, key)])
    return found[0].xt if found else None


# --- expire times --------------------------------------------------------------------------
def test_expire_time_of_180_days_or_more_is_an_absolute_timestamp(kt, prefix):
    at = int(time.time()) + 3600
    kt.set(prefix + b"abs", "v", expire_time=at)  # ukt: absolute, not "in 56 years"
    assert _xt(kt, prefix + b"abs") == at


def test_expire_time_under_180_days_is_relative(kt, prefix):
    now = int(time.time())
    kt.set(prefix + b"rel", "v", expire_time=86400 * 179)
    assert now + 86400 * 179 - 1 <= _xt(kt, prefix + b"rel") <= now + 86400 * 179 + 2


def test_expire_time_takes_datetime_and_timedelta(kt, prefix):
    when = datetime.datetime.now().replace(microsecond=0) + datetime.timedelta(hours=2)
    kt.set(prefix + b"dt", "v", expire_time=when)
    assert _xt(kt, prefix + b"dt") == int(when.timestamp())
    now = int(time.time())
    kt.set(prefix + b"td", "v", expire_time=datetime.timedelta(minutes=10))
    assert now + 599 <= _xt(kt, prefix + b"td") <= now + 602


def test_expire_time_in_the_past_expires_now_and_none_never(kt, prefix):
    kt.set(prefix + b"past", "v", expire_time=int(time.time()) - 100)
    kt.set(prefix + b"never", "v", expire_time=None)
    assert kt.get(prefix + b"past") is None
    assert _xt(kt, prefix + b"never") == XT_MAX


def test_wire_xt_matches_ukt_conversion():
    assert wire_xt(None) == XT_NEVER and wire_xt(60) == 60 and wire_xt(60.9) == 60
    assert wire_xt(15552000) == -15552000 and wire_xt(15551999) == 15551999
    assert wire_xt(-1_900_000_000) == -1_900_000_000
    assert wire_xt(datetime.timedelta(days=1)) == 86400
    with pytest.raises(errors.ValueTypeError, match="expire_time"):
        wire_xt("soon")


# --- *_details -----------------------------------------------------------------------------
def test_set_bulk_details_takes_xt_none_and_str_keys_and_values(kt, prefix):
    pre = prefix.decode()
    at = int(time.time()) + 7200
    assert kt.set_bulk_details([(0, pre + "a", "é", None), (0, pre + "b", "x", at), (1, pre + "c", "y", 60)]) == 3
    got = kt.get_bulk_details([(0, pre + "a"), (0, pre + "b"), (0, pre + "missing"), (1, pre + "c")])
    assert [(r.db, r.key, r.value) for r in got] == [(0, pre + "a", "é"), (0, pre + "b", "x"), (1, pre + "c", "y")]
    assert got[0].xt == XT_MAX and got[1].xt == at
    assert isinstance(got[0], tuple) and len(got[0]) == 4  # (db, key, value, xt), as ukt returns


def test_get_bulk_details_decode_values_false_gives_raw_bytes(kt, prefix):
    kt.set(prefix + b"k", "é")
    (record,) = kt.get_bulk_details([(0, prefix + b"k")], decode_values=False)
    assert record.value == "é".encode() and record.key == prefix.decode() + "k"


def test_set_bulk_details_encode_values_false_takes_bytes_str_and_numbers(kt_server, prefix):
    with KyotoTycoon(kt_server.host, kt_server.port, serializer=KT_MSGPACK) as kt:
        kt.set_bulk_details([(0, prefix + b"b", b"\x01", None), (0, prefix + b"s", "t", None),
                             (0, prefix + b"n", 7, None)], encode_values=False)
        assert kt.get_bulk([prefix + b"b", prefix + b"s", prefix + b"n"], decode_values=False) == {
            prefix.decode() + "b": b"\x01", prefix.decode() + "s": b"t", prefix.decode() + "n": b"7"}


def test_remove_bulk_details_across_databases(kt, prefix):
    kt.set_bulk_details([(0, prefix + b"k", "0", None), (1, prefix + b"k", "1", None)])
    assert kt.remove_bulk_details([(0, prefix + b"k"), (1, prefix + b"k"), (1, prefix + b"gone")]) == 2


# --- serializers -------------------------------------------------------------------------------
def test_kt_binary_reads_str_as_ukt_and_kt_do(kt, prefix):
    kt.set(prefix + b"s", "é")
    kt.set(prefix + b"b", b"raw")
    assert kt.get(prefix + b"s") == "é" and kt.get(prefix + b"b") == "raw"
    assert kt.get_bytes(prefix + b"s") == "é".encode() == kt.get_raw(prefix + b"s")
    assert kt.get_bulk_raw([prefix + b"s"]) == {prefix.decode() + "s": "é".encode()}
    kt.set(prefix + b"bin", b"\xff\xfe")
    assert kt.get(prefix + b"bin") == b"\xff\xfe"  # not UTF-8: the bytes, where ukt would raise
    assert kt.serializer.name == KT_BINARY


@pytest.mark.parametrize("kind, value, back", [(KT_NONE, "text", b"text"), (KT_JSON, {"a": [1]}, {"a": [1]}),
                                               (KT_MSGPACK, {"a": b"x"}, {"a": b"x"}), (None, 5, "5")])
def test_each_serializer_reads_back_the_type_ukt_gives(kt_server, prefix, kind, value, back):
    with KyotoTycoon(kt_server.host, kt_server.port, serializer=kind) as kt:
        kt.set(prefix + b"v", value)
        assert kt.get(prefix + b"v") == back


def test_custom_encode_and_decode_value_replace_the_serializer(kt_server, prefix):
    with KyotoTycoon(kt_server.host, kt_server.port, encode_value=lambda v: v[::-1].encode(),
                     decode_value=lambda b: b.decode()[::-1]) as kt:
        kt.set(prefix + b"c", "abc")
        assert kt.get_bytes(prefix + b"c") == b"cba" and kt.get(prefix + b"c") == "abc"


def test_get_bulk_keys_come_back_decoded_or_raw_by_decode_keys(kt_server, prefix):
    with KyotoTycoon(kt_server.host, kt_server.port) as kt:
        kt.set(prefix + b"k", "v")
        assert kt.get_bulk([prefix + b"k"]) == {prefix.decode() + "k": "v"}
    with KyotoTycoon(kt_server.host, kt_server.port, decode_keys=False) as kt:
        assert kt.get_bulk([prefix.decode() + "k"]) == {prefix + b"k": "v"}


# --- mapping and return values --------------------------------------------------------------
def test_mapping_reads_none_for_missing_and_takes_key_db_tuples(kt, prefix):
    key = prefix.decode() + "k"
    assert kt[key] is None and key not in kt
    kt[key, 1] = "in one"
    assert kt[key, 1] == "in one" and kt[key] is None
    assert (key, 1) in kt and key not in kt
    del kt[key, 1]
    del kt[key, 1]  # missing: quiet, as ukt's remove
    assert kt.get(key, db=1) is None


def test_a_client_is_true_without_asking_the_server(kt_server):
    with KyotoTycoon(kt_server.host, kt_server.port) as kt:
        assert kt  # no count script needed (len() is a server procedure)


def test_return_values_are_ukts_counts(kt, prefix):
    assert kt.set(prefix + b"a", "1") == 1
    assert kt.set(prefix + b"a", "1", no_reply=True) is None
    assert kt.update({prefix + b"b": "2"}, **{prefix.decode() + "c": "3"}) == 2
    assert kt.remove(prefix + b"a") == 1 and kt.remove(prefix + b"a") == 0
    assert kt.exists(prefix + b"b") and not kt.exists(prefix + b"a")
    assert kt.length(prefix + b"b") == 1 and kt.length(prefix + b"a") is None
    kt.set_database(1)
    assert kt.get(prefix + b"b") is None and kt.get(prefix + b"b", db=0) == "2"


# --- exceptions under the peers' names -------------------------------------------------------
def test_peer_named_exceptions_are_pyzdb_errors():
    assert issubclass(ProtocolError, errors.StoreProtocolError) and issubclass(ProtocolError, KTError)
    assert issubclass(ServerConnectionError, errors.StoreConnectionError)
    assert issubclass(ServerTimeoutError, ServerConnectionError) and issubclass(ServerTimeoutError, errors.StoreTimeout)
    assert issubclass(KTError, errors.Error) and ProtocolError is not errors.ProtocolError


def test_a_failed_request_raises_protocol_error(kt):
    with pytest.raises(ProtocolError, match="no-such"):
        kt.script("no-such-procedure-here")
    oversized = struct.pack(">BIIHIIq", p.BMSETBULK, 0, 1, 0, DATAMAXSIZ + 1, 1, XT_NEVER)
    with pytest.raises(ProtocolError, match="set_bulk"):
        kt._call(oversized, p.BMSETBULK, "set_bulk of 1 records", False, False)


def test_refused_and_silent_servers_raise_server_connection_and_timeout_errors():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with KyotoTycoon("127.0.0.1", port, timeout=1.0) as kt, pytest.raises(ServerConnectionError):
        kt.get("k")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with KyotoTycoon("127.0.0.1", listener.getsockname()[1], timeout=0.3) as kt:
            with pytest.raises(ServerTimeoutError):
                kt.get("k")
