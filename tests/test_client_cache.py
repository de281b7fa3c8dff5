"""The client cache (cache=True): repeated gets served locally, never stale for own writes, fresh once the feed delivered."""
from __future__ import annotations

import random
import time

import pytest
import zmq

from pyzdb.client import client
from pyzdb.client.cache import MISS
from pyzdb.errors import AuthError
from pyzdb.testing import EmbeddedService, feed_and_cache, wait_cache_seen
from pyzdb.transport import invalidation


@pytest.fixture(scope="module")
def service():
    with EmbeddedService() as running:
        yield running


def test_own_writes_are_never_read_stale(service):
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    db = service.client(cache=True, feed=service.feed)
    db["own"] = {"a": {"b": 0}, "l": [0]}
    for i in range(300):
        choice = rng.randrange(4)
        if choice == 0:
            db["own"]["a"]["b"] = i
        elif choice == 1:
            db["own"]["a"] = {"b": i}
        elif choice == 2:
            db["own"]["l"].append(i)
        else:
            db["own"].update({"a": {"b": i}})
        expected_b = i if choice != 2 else None
        if expected_b is not None:
            assert db["own"]["a"]["b"]._run() == expected_b
            assert db["own"]["a"]._run() == {"b": expected_b}
        assert db["own"]["l"]._run()[-1] == (i if choice == 2 else db["own"]["l"]._run()[-1])
        time.sleep(rng.random() / 500)   # let the feed deliver sometimes, and sometimes not
    assert db._conn.cache.hits > 0


def test_another_clients_acknowledged_write_is_seen_once_the_feed_delivered_it(service):
    reader = service.client(cache=True, feed=service.feed)
    writer = service.client()
    writer["shared"] = {"x": {"y": 0}, "n": 0}
    for i in range(1, 60):
        assert reader["shared"]["x"]["y"]._run() == i - 1     # the second read is a hit
        if i % 3 == 0:
            writer["shared"]["x"]["y"] = i
        elif i % 3 == 1:
            writer["shared"].update({"x": {"y": i}})
        else:
            writer["shared"] = {"x": {"y": i}, "n": i}
        wait_cache_seen(reader, writer._conn.last_seq)
        assert reader["shared"]["x"]["y"]._run() == i
        assert reader["shared"]._run()["x"] == {"y": i}
    assert reader._conn.cache.hits >= 50   # the second read of each round (the first rounds may come before the feed)


def test_a_root_write_drops_everything(service):
    reader = service.client(cache=True, feed=service.feed)
    writer = service.client()
    writer["r1"], writer["r2"] = 1, 2
    wait_cache_seen(reader, writer._conn.last_seq)
    assert (reader["r1"]._run(), reader["r2"]._run()) == (1, 2)
    writer.update({"r1": 10, "r2": 20})
    wait_cache_seen(reader, writer._conn.last_seq)
    assert (reader["r1"]._run(), reader["r2"]._run()) == (10, 20)


def test_a_gap_a_heartbeat_ahead_or_another_database_clears_the_cache():
    with feed_and_cache() as (pub, cache):
        def send_until(frame: bytes, seen: int, identity: str = "db1") -> None:
            deadline = time.monotonic() + 10
            while cache.seen != seen or cache.identity != identity:
                assert time.monotonic() < deadline
                pub.send(frame)
                time.sleep(0.02)
        send_until(invalidation.message(1, 1, "db1", {("a",)}), 1)
        cache.put(("a",), 1, 1)
        cache.put(("b",), 2, 1)
        assert cache.get(("b",), 1) == 2
        pub.send(invalidation.message(2, 2, "db1", {("a",)}))
        send_until(b"seq" + (2).to_bytes(8, "big") + b"db1", 2)
        assert cache.get(("a",), 2) is MISS and cache.get(("b",), 2) == 2     # by path
        send_until(invalidation.message(4, 4, "db1", {("a",)}), 4)           # seq 3 never came
        assert cache.get(("b",), 4) is MISS
        cache.put(("b",), 2, 4)
        send_until(b"seq" + (6).to_bytes(8, "big") + b"db1", 6)               # heartbeat ahead: 5, 6 missed
        assert cache.get(("b",), 6) is MISS
        cache.put(("b",), 2, 6)
        send_until(b"seq" + (6).to_bytes(8, "big") + b"db2", 6, "db2")
        assert cache.get(("b",), 6) is MISS                                   # another database
        cache.put(("b",), 2, 6)
        send_until(b"seq" + (3).to_bytes(8, "big") + b"db2", 3, "db2")               # seq went back: a restart
        assert cache.get(("b",), 3) is MISS
        cache.put(("b",), 2, 2)                                               # older than seen: not kept
        assert cache.get(("b",), 0) is MISS


def test_cache_is_refused_under_curve():
    server_public, _ = zmq.curve_keypair()
    with pytest.raises(AuthError, match="without CURVE"):
        client("tcp://127.0.0.1:1", cache=True, curve_server_key=server_public, curve_keypair=zmq.curve_keypair())
