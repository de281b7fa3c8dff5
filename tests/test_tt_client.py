"""Behaviour of the Tokyo Tyrant client and of the server it talks to (protocol test server, real one if PYZDB_TT)."""
from __future__ import annotations

import socket
import struct
import threading

import pytest
from kttt_fixtures import (  # noqa: F401
    prefix,
    protocol_server,
    raw_connection,
    recv_all,
    start_protocol_server,
    tt_server,
)

from pyzdb.errors import RecordTooLarge, StoreConnectionError, StoreProtocolError
from pyzdb.kvnet.pool import KvConnection, Pool, batches
from pyzdb.tt import KT_MSGPACK, KT_NONE, MAXARGSIZ, TokyoTyrant
from pyzdb.tt import protocol as p


@pytest.fixture
def tt(tt_server):
    """A raw-bytes client (KT_NONE, bytes keys) of each server variant, closed after the test."""
    client = TokyoTyrant(tt_server.host, tt_server.port, timeout=5.0, serializer=KT_NONE, decode_keys=False)
    yield client
    client.close()


def test_put_get_out_and_missing_keys(tt, prefix):
    tt.put(prefix + b"k", b"v")
    assert tt.get(prefix + b"k") == b"v"
    assert tt.get(prefix.decode() + "k") == b"v"
    assert tt.get(prefix + b"missing") is None
    assert tt.out(prefix + b"k") is True
    assert tt.out(prefix + b"k") is False


def test_putkeep_keeps_the_old_value_and_putcat_appends(tt, prefix):
    assert tt.putkeep(prefix + b"k", b"first") is True
    assert tt.putkeep(prefix + b"k", b"second") is False
    tt.putcat(prefix + b"k", b"+more")
    tt.putcat(prefix + b"new", b"x")
    assert tt.mget([prefix + b"k", prefix + b"new"]) == {prefix + b"k": b"first+more", prefix + b"new": b"x"}


def test_putnr_sends_no_reply_on_the_wire(tt_server, prefix):
    putnr = p.encode_kv(p.TTCMDPUTNR, prefix + b"nr", b"v")
    get = p.encode_key(p.TTCMDGET, prefix + b"nr")
    with raw_connection(tt_server, putnr + get) as sock:
        assert sock.recv(6, socket.MSG_WAITALL) == b"\x00" + struct.pack(">I", 1) + b"v"  # the get's reply only
    with TokyoTyrant(tt_server.host, tt_server.port) as client:
        client.putnr(prefix + b"nr2", b"w")
        assert client.get(prefix + b"nr2") == "w"


def test_mget_returns_hits_in_request_order_keyed_as_stored(tt, prefix):
    tt.put_many({prefix + b"%d" % i: b"v%d" % i for i in range(4)})
    got = tt.mget([prefix + b"3", prefix + b"x", prefix.decode() + "0"])
    assert list(got.items()) == [(prefix + b"3", b"v3"), (prefix + b"0", b"v0")]


def test_vsiz_and_fwmkeys(tt, prefix):
    tt.put_many({prefix + b"a1": b"xyz", prefix + b"a2": b"", prefix + b"b1": b"1"})
    assert tt.vsiz(prefix + b"a1") == 3 and tt.vsiz(prefix + b"a2") == 0 and tt.vsiz(prefix + b"z") is None
    assert sorted(tt.fwmkeys(prefix + b"a")) == [prefix + b"a1", prefix + b"a2"]
    assert len(tt.match_prefix(prefix, 2)) == 2
    assert sorted(tt.fwmkeys(prefix.decode())) == [prefix + b"a1", prefix + b"a2", prefix + b"b1"]


def test_addint_stores_a_little_endian_int_and_adds(tt, prefix):
    assert tt.addint(prefix + b"n", 5) == 5
    assert tt.addint(prefix + b"n", -7) == -2
    assert tt.get(prefix + b"n") == struct.pack("<i", -2)
    assert tt.addint(prefix + b"n") == -2


def test_adddouble_adds_real_numbers(tt, prefix):
    assert tt.adddouble(prefix + b"d", 1.5) == pytest.approx(1.5)
    assert tt.adddouble(prefix + b"d", -0.25) == pytest.approx(1.25)
    assert tt.get(prefix + b"d") == struct.pack("<d", 1.25)


def test_addint_on_a_value_that_is_no_int_raises_protocol_error(tt, prefix):
    tt.put(prefix + b"s", b"not an int")
    with pytest.raises(StoreProtocolError, match="addint"):
        tt.addint(prefix + b"s", 1)
    with pytest.raises(StoreProtocolError, match="adddouble"):
        tt.adddouble(prefix + b"s", 1.0)
    assert tt.get(prefix + b"s") == b"not an int"  # and the connection still works


def test_rnum_size_stat_and_len(tt, prefix):
    before = tt.rnum()
    tt.put_many({prefix + b"1": b"a", prefix + b"2": b"b"})
    assert tt.rnum() == before + 2 == len(tt)
    assert tt.size() > 0
    stat = tt.stat()
    assert int(stat["rnum"]) == before + 2 and "version" in stat and "time" in stat


def test_misc_functions_and_their_failure_code(tt, prefix):
    assert tt.misc("putlist", [prefix + b"a", b"1", prefix + b"b", b"2"]) == []
    assert tt.misc("getlist", [prefix + b"a", prefix + b"zz", prefix + b"b"]) == [prefix + b"a", b"1", prefix + b"b", b"2"]
    assert tt.misc("get", [prefix + b"a"]) == [b"1"]
    assert tt.misc("nosuchfunction", [b"x"]) is None  # a failure reads as None, as in kt
    assert tt.misc("get", [prefix + b"missing"]) is None
    assert tt.misc("outlist", [prefix + b"a"]) == [] and tt.get(prefix + b"a") is None


def test_misc_failure_on_the_wire_is_code_one_then_a_zero_count(tt_server):
    with raw_connection(tt_server, p.encode_misc(b"nosuchfunction", [])) as sock:
        assert sock.recv(5, socket.MSG_WAITALL) == b"\x01\x00\x00\x00\x00"


def test_vanish_removes_everything(protocol_server):
    with TokyoTyrant(port=protocol_server.tt_port) as client:
        client.put_many({b"a": b"1", b"b": b"2"})
        client.vanish()
        assert client.rnum() == 0 and client.get(b"a") is None


def test_dict_style_access_follows_kt(tt, prefix):
    tt[prefix + b"k"] = b"v"
    assert tt[prefix + b"k"] == b"v" and prefix + b"k" in tt
    del tt[prefix + b"k"]
    assert tt[prefix + b"k"] is None and prefix + b"k" not in tt
    del tt[prefix + b"k"]  # a missing key: nothing happens, as in kt
    assert tt.update({prefix + b"u": b"1"}) is True
    assert tt.get(prefix + b"u") == b"1"


def test_msgpack_serializer_round_trips(tt_server, prefix):
    with TokyoTyrant(tt_server.host, tt_server.port, serializer=KT_MSGPACK) as client:
        client[prefix + b"m"] = {"a": [1, None, b"x"]}
        assert client[prefix + b"m"] == {"a": [1, None, b"x"]}
        assert client.mget([prefix + b"m"]) == {prefix.decode() + "m": {"a": [1, None, b"x"]}}


@pytest.mark.parametrize("payload", [b"\xc8\x77", b"\xc8\x30\xff\xff\xff\xff", b"\xc8\x10\x00\x00\x00\x01\x80\x00\x00\x00"],
                         ids=["unknown-command", "negative-key-size", "value-size-too-large"])
def test_protocol_violations_close_the_connection_without_reply(tt_server, payload):
    with raw_connection(tt_server, payload) as sock:
        assert recv_all(sock) == b""


def test_records_over_the_limit_are_refused_before_sending(tt, prefix):
    with pytest.raises(RecordTooLarge):
        tt.put(prefix, bytes(MAXARGSIZ + 1))
    tt.put(prefix, b"fine")


def test_pipelined_put_many_and_out_many_over_several_batches(tt, prefix):
    data = {prefix + b"%06d" % i: b"y" * 200 for i in range(30_000)}
    data[prefix + b"big"] = b"z" * (6 << 20)
    tt.put_many(data)
    assert tt.mget(list(data)) == data
    assert tt.out_many(list(data) + [prefix + b"missing"]) == len(data)
    assert tt.mget(list(data)) == {}


def test_client_carries_on_after_the_server_restarts():
    server = start_protocol_server()
    try:
        client = TokyoTyrant("127.0.0.1", server.tt_port, timeout=3.0)
        client.put(b"k", b"1")
        server.restart()
        assert client.get(b"k") is None
        assert client.addint(b"n", 1) == 1  # a dead pooled connection is replaced before sending
        client.close()
    finally:
        server.stop()


class HangUpServer:
    """Accepts connections, reads one request's first bytes, closes: counts the requests it saw."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                if conn.recv(2):
                    self.requests += 1


@pytest.mark.parametrize("call, attempts", [(lambda c: c.get(b"k"), 2), (lambda c: c.put(b"k", b"v"), 2),
                                            (lambda c: c.out(b"k"), 2), (lambda c: c.addint(b"k", 1), 1),
                                            (lambda c: c.adddouble(b"k", 1.0), 1), (lambda c: c.putcat(b"k", b"v"), 1)],
                         ids=["get", "put", "out", "addint", "adddouble", "putcat"])
def test_only_idempotent_commands_are_retried_after_a_broken_connection(call, attempts):
    server = HangUpServer()
    with TokyoTyrant("127.0.0.1", server.port, timeout=2.0) as client, pytest.raises(StoreConnectionError):
        call(client)
    server.listener.close()
    assert server.requests == attempts


def test_pool_replaces_dead_idle_connections(protocol_server):
    made = []

    def connect():
        made.append(KvConnection("127.0.0.1", protocol_server.tt_port, timeout=2, name="TT"))
        return made[-1]
    pool = Pool(connect, size=2)
    ping = p.encode_bare(p.TTCMDRNUM)
    assert pool.call(lambda c: (c.send(ping), c.read(9))[1][0], idempotent=True) == 0
    made[0]._sock.shutdown(socket.SHUT_RDWR)
    assert pool.call(lambda c: (c.send(ping), c.read(9))[1][0], idempotent=False) == 0
    assert len(made) == 2
    pool.close()


def test_batches_split_by_bytes_and_count():
    assert [list(b) for b in batches([b"aa", b"bb", b"c"], len, max_bytes=3)] == [[b"aa"], [b"bb", b"c"]]
    assert [len(b) for b in batches(list(range(25)), lambda _: 1, max_count=10)] == [10, 10, 5]
    assert list(batches([], len)) == []
