"""The client cache under faults: reads held in a group with a later write, a silent feed, hostile feed frames, huge values."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from pyzdb.client.cache import DEFAULT_BYTES, FEED_SILENCE, LARGEST_SHARE, MISS
from pyzdb.testing import EmbeddedService, feed_and_cache, free_ports, stop_process, wait_cache_seen
from pyzdb.transport import invalidation
from pyzdb.transport.wire import pack


@pytest.fixture(scope="module")
def service():
    with EmbeddedService("--lock-lease", "5", "--lock-wait", "10") as running:
        yield running


def test_a_read_run_before_another_clients_write_of_its_group_is_not_cached_stale(service):
    """A read held behind a lock and released together with a later write of the same path shares that write's
    group: its reply carries the group's seq, though it read the state before the write. Cached, it would be
    stale until the path is written again."""
    reader = service.client(cache=True, feed=service.feed)
    writer, locker = service.client(), service.client()
    pad = b"p" * (1 << 20)     # a big reply: the feed's small invalidation overtakes it in the client
    stale = []
    for i in range(12):
        key = f"held{i}"
        writer[key] = {"v": 0, "pad": pad}
        locker.lock()
        read = threading.Thread(target=lambda: reader[key]._run())
        read.start()
        time.sleep(0.3)         # the read is held first...
        write = threading.Thread(target=writer.__setitem__, args=(key, {"v": 1, "pad": pad}))
        write.start()
        time.sleep(0.3)         # ...then the write; both are released in one group at unlock
        locker.unlock()
        read.join(10)
        write.join(10)
        wait_cache_seen(reader, writer._conn.last_seq)
        if reader[key]._run()["v"] != 1:
            stale.append(key)
    assert stale == [], f"reads cached stale after the feed delivered the write: {stale}"


@pytest.fixture
def stoppable_feed(service):
    """The service's feed through a TCP proxy process (tests/delay_proxy.py, no delay) that a test may SIGSTOP."""
    port = free_ports(1)[0]
    proxy = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "delay_proxy.py"),
                              f"127.0.0.1:{port}", service.feed.removeprefix("tcp://"), "0"],
                             stdout=subprocess.PIPE, start_new_session=True)
    assert proxy.stdout.readline().strip() == b"ready"
    yield proxy, f"tcp://127.0.0.1:{port}"
    os.kill(proxy.pid, signal.SIGCONT)
    stop_process(proxy)


def test_a_silent_feed_stops_the_cache_answering_within_its_silence_bound(service, stoppable_feed):
    """A feed whose packets stop (a frozen hop, a DROP rule) breaks no connection and reports no gap: without
    a bound, a client reading only cached paths would read them stale for as long as the silence lasts."""
    proxy, feed = stoppable_feed
    reader, writer = service.client(cache=True, feed=feed), service.client()
    writer["quiet"] = {"v": 0}
    wait_cache_seen(reader, writer._conn.last_seq)
    assert reader["quiet"]._run() == {"v": 0} and reader["quiet"]._run() == {"v": 0}
    hits = reader._conn.cache.hits
    assert hits >= 1
    os.kill(proxy.pid, signal.SIGSTOP)
    writer["quiet"] = {"v": 1}                     # its invalidation is stuck in the stopped proxy
    time.sleep(FEED_SILENCE + 0.5)
    assert reader["quiet"]._run() == {"v": 1}      # asked of the server: the cache was silent too long
    os.kill(proxy.pid, signal.SIGCONT)             # the held messages arrive in order: no gap, the cache serves again
    wait_cache_seen(reader, writer._conn.last_seq)
    deadline = time.monotonic() + 10
    while reader._conn.cache.hits == hits:
        assert time.monotonic() < deadline, "the cache did not serve again once the feed was heard"
        assert reader["quiet"]._run() == {"v": 1}
        time.sleep(0.05)


def test_a_feed_frame_that_cannot_be_applied_clears_the_cache_and_it_keeps_following():
    with feed_and_cache() as (pub, cache):
        def send_until(frame: bytes, done) -> None:
            deadline = time.monotonic() + 10
            while not done():
                assert time.monotonic() < deadline
                pub.send(frame)
                time.sleep(0.02)
        send_until(invalidation.message(1, 1, "db1", {("z",)}), lambda: cache.seen == 1)
        cache.put(("a",), "old", 1)
        assert cache.get(("a",), 1) == "old"
        hostile = invalidation.TOPIC + pack([2, 2, "db1", [[["not", "a", "str"]]] + [["a"]] * 100_000])
        send_until(hostile, lambda: cache.get(("a",), 1) is MISS)      # cleared, not applied step by step
        assert cache._thread.is_alive()
        send_until(invalidation.message(3, 3, "db1", {("b",)}), lambda: cache.seen == 3)   # still following
        cache.put(("a",), "new", 3)
        assert cache.get(("a",), 3) == "new"


def test_the_cache_holds_a_bounded_number_of_bytes_whatever_the_values(service):
    reader, writer = service.client(cache=True, feed=service.feed), service.client()
    big = "b" * (2 << 20)
    for i in range(48):                            # 96 MiB of distinct values read once each
        writer[f"big{i}"] = big
    wait_cache_seen(reader, writer._conn.last_seq)
    for i in range(48):
        assert reader[f"big{i}"]._run() == big
    cache = reader._conn.cache
    assert 0 < cache.bytes <= DEFAULT_BYTES
    held = sum(len(value) for _, value, _, _ in cache.entries.values())
    assert held <= DEFAULT_BYTES
    huge = b"h" * (DEFAULT_BYTES // LARGEST_SHARE + 1)
    writer["huge"] = huge
    wait_cache_seen(reader, writer._conn.last_seq)
    assert reader["huge"]._run() == huge and ("huge",) not in cache.entries


def test_an_invalidation_drops_what_is_on_above_or_below_its_prefix_and_nothing_beside_it():
    with feed_and_cache() as (pub, cache):
        def deliver(seq: int, prefixes: set) -> None:
            deadline = time.monotonic() + 10
            while cache.seen != seq:
                assert time.monotonic() < deadline
                pub.send(invalidation.message(seq, seq, "db1", prefixes))
                time.sleep(0.02)
        deliver(1, {("z",)})
        keys = [(), ("users",), ("users", "u1"), ("users", "u1", "name"), ("users", "u2"), ("users", "u2", 0),
                ("l", 3), ("l",), ("other", "u1")]
        for number in range(1000):
            keys.append(("users", f"many{number}"))
        for key in keys:
            cache.put(key, repr(key), 1)
        deliver(2, {("users", "u1")})
        gone = {(), ("users",), ("users", "u1"), ("users", "u1", "name")}
        assert {key for key in keys if cache.get(key, 2) is MISS} == gone
        deliver(3, {("l",)})
        assert cache.get(("l", 3), 3) is MISS and cache.get(("l",), 3) is MISS
        assert cache.get(("users", "u2", 0), 3) == repr(("users", "u2", 0))
        assert cache.bytes == sum(entry[2] for entry in cache.entries.values())
        deliver(4, {("users",)})
        assert [key for key in cache.entries] == [("other", "u1")]
        assert set(cache.by_top) == {"other"} and set(cache.by_two) == {("other", "u1")}


def test_a_broker_restart_between_cached_reads_keeps_them_fresh_and_read_your_writes():
    from pyzdb.testing import Cluster
    with Cluster(1, "--durability", "none") as cluster:
        me = cluster.client(cache=True, feed=cluster.feed, timeout=30)
        other = cluster.client(timeout=30)
        me["mine"], other["theirs"] = {"v": 0}, {"v": 0}
        wait_cache_seen(me, other._conn.last_seq)
        assert me["theirs"]._run() == {"v": 0} and me["theirs"]._run() == {"v": 0}
        cluster.kill_member("broker")
        cluster.start_member("broker")
        other["theirs"] = {"v": 1}                  # the client retries through the new broker
        me["mine"] = {"v": 1}
        assert me["mine"]._run() == {"v": 1}        # its own write, at once
        wait_cache_seen(me, other._conn.last_seq)
        assert me["theirs"]._run() == {"v": 1}      # the other's, once the feed delivered it
        for tick in range(20):   # and the cache serves again (a hit needs a feed message within its silence bound)
            other["tick"] = tick
            wait_cache_seen(me, other._conn.last_seq)
            hits = me._conn.cache.hits
            assert me["theirs"]._run() == {"v": 1}
            if me._conn.cache.hits == hits + 1:
                break
        else:
            raise AssertionError("the cache never answered a read again after the broker's restart")
