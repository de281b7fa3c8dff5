"""One contract suite for every store backend: memory, sqlite, kt:// and tt:// (protocol test server, real ones if set)."""
from __future__ import annotations

import pytest
from kttt_fixtures import prefix, protocol_server, real_address  # noqa: F401

from pyzdb.errors import StoreProtocolError
from pyzdb.storage import open_store
from pyzdb.storage.kt import KyotoTycoonStore

BACKENDS = ["memory", "sqlite", "kt", "tt", "kt-real", "tt-real"]


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path, protocol_server):
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite://{tmp_path}/store.db"
    if kind in ("kt", "tt"):
        port = protocol_server.kt_port if kind == "kt" else protocol_server.tt_port
        return f"{kind}://127.0.0.1:{port}"
    address = real_address("PYZDB_KT" if kind == "kt-real" else "PYZDB_TT")
    if address is None:
        pytest.skip(f"set {'PYZDB_KT' if kind == 'kt-real' else 'PYZDB_TT'}=host:port to test a real server")
    return f"{kind[:2]}://{address.host}:{address.port}"


@pytest.fixture
def store(store_url, prefix):
    s = open_store(store_url)
    yield s
    s.close()


def test_set_then_get_returns_the_values_and_leaves_missing_keys_out(store, prefix):
    store.set_bulk({prefix + b"a": b"1", prefix + b"b": b"2"})
    assert store.get_bulk([prefix + b"a", prefix + b"b", prefix + b"c"]) == {prefix + b"a": b"1", prefix + b"b": b"2"}


def test_set_overwrites(store, prefix):
    store.set_bulk({prefix + b"k": b"old"})
    store.set_bulk({prefix + b"k": b"new"})
    assert store.get_bulk([prefix + b"k"]) == {prefix + b"k": b"new"}


def test_remove_ignores_missing_keys(store, prefix):
    store.set_bulk({prefix + b"a": b"1", prefix + b"b": b"2"})
    store.remove_bulk([prefix + b"a", prefix + b"never-there"])
    assert store.get_bulk([prefix + b"a", prefix + b"b"]) == {prefix + b"b": b"2"}


def test_empty_calls_do_nothing(store):
    store.set_bulk({})
    store.remove_bulk([])
    assert store.get_bulk([]) == {}


def test_binary_keys_and_values_survive_byte_for_byte(store, prefix):
    data = {prefix + bytes([i, 0, 255 - i]): bytes(range(256)) * (i % 3) for i in range(256)}
    store.set_bulk(data)
    assert store.get_bulk(list(data)) == data


def test_empty_value_is_stored_not_missing(store, prefix):
    store.set_bulk({prefix + b"e": b""})
    assert store.get_bulk([prefix + b"e"]) == {prefix + b"e": b""}


def test_many_records_and_large_values_in_one_call(store, prefix):
    data = {prefix + b"%06d" % i: b"r%d" % i for i in range(20_000)}
    data[prefix + b"big1"] = b"\x01" * (5 << 20)
    data[prefix + b"big2"] = b"\x02" * (3 << 20)
    store.set_bulk(data)
    assert store.get_bulk(list(data)) == data
    store.remove_bulk(list(data))
    assert store.get_bulk(list(data)) == {}


def test_store_works_as_a_context_manager(store_url, prefix):
    with open_store(store_url) as s:
        s.set_bulk({prefix + b"k": b"v"})
    with open_store(store_url) as s:
        expected = {} if store_url.startswith("memory") else {prefix + b"k": b"v"}
        assert s.get_bulk([prefix + b"k"]) == expected


def test_kt_store_keeps_databases_apart(protocol_server, prefix):
    with KyotoTycoonStore("127.0.0.1", protocol_server.kt_port, db=0) as db0, \
            open_store(f"kt://127.0.0.1:{protocol_server.kt_port}/1") as db1:
        db0.set_bulk({prefix + b"k": b"zero"})
        db1.set_bulk({prefix + b"k": b"one"})
        assert db0.get_bulk([prefix + b"k"]) == {prefix + b"k": b"zero"}
        assert db1.get_bulk([prefix + b"k"]) == {prefix + b"k": b"one"}


def test_kt_store_refuses_a_database_the_server_does_not_have(protocol_server, prefix):
    with open_store(f"kt://127.0.0.1:{protocol_server.kt_port}/150") as store:
        with pytest.raises(StoreProtocolError, match="database 150"):
            store.set_bulk({prefix + b"k": b"v"})
