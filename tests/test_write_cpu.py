"""The write path's shortcuts keep their results: one msgpack packer per thread, invalidations built only when wanted.

``wire.pack`` reuses a per-thread ``Packer`` (bench/README.md "Write path");
its bytes must equal ``msgpack.packb``'s, a failed pack must leave nothing
behind, and a large value must not stay held by the packer. The feed's
XPUB skips the invalidation message while no subscriber takes ``inv``; a
subscriber that arrives later gets them, and one that takes only ``seq``
never sees one.
"""
from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq

from pyzdb.errors import ProtocolError
from pyzdb.testing import EmbeddedService
from pyzdb.transport import invalidation, wire


def test_pack_matches_packb_after_a_failure_and_across_threads():
    values = [1, "s", b"b", [1, [2, {"k": b"v"}]], {"a": None, 1: 2.5}, wire.ExtType(3, b"x")]
    with pytest.raises(ProtocolError):
        wire.pack([1, object()])
    for value in values:
        assert wire.pack(value) == msgpack.packb(value, use_bin_type=True, datetime=False)
    results: list = []
    threads = [threading.Thread(target=lambda: results.append([wire.pack(v) for v in values * 200]))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = [msgpack.packb(v, use_bin_type=True, datetime=False) for v in values * 200]
    assert results == [expected] * 4


def test_a_large_pack_does_not_stay_in_the_threads_packer():
    before = wire._packers.plain
    assert len(wire.pack(b"x" * (wire.PACKER_KEEP + 1))) > wire.PACKER_KEEP
    assert wire._packers.plain is not before
    kept = wire._packers.plain
    wire.pack(b"x" * 100)
    assert wire._packers.plain is kept


def _subscriber(address: str, topic: bytes) -> zmq.Socket:
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(address)
    return sub


def _write_until_heard(db, sub: zmq.Socket, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count += 1
        db["a"]["b"] = count
        if sub.poll(50):
            return sub.recv()
    raise AssertionError(f"no feed message in {timeout:g} s")


def test_invalidations_reach_a_late_subscriber_and_only_it():
    with EmbeddedService("--durability", "batch") as service:
        db = service.client()
        db["a"] = {"b": 0}
        for count in range(50):        # no cache subscribes: nothing to build
            db["a"]["b"] = count
        seq_only = _subscriber(service.feed, b"seq")
        inv = _subscriber(service.feed, invalidation.TOPIC)
        try:
            frame = _write_until_heard(db, inv)
            first, last, identity, prefixes = invalidation.parse(frame)
            assert first <= last and ("a", "b") in prefixes and identity
            for count in range(20):
                db["x"] = count
            deadline = time.monotonic() + 5
            heard = []
            while time.monotonic() < deadline and len(heard) < 5:
                if seq_only.poll(100):
                    heard.append(seq_only.recv())
            assert heard and all(message.startswith(b"seq") for message in heard)
            inv.close()          # the last inv subscriber leaves; seq announcements go on
            time.sleep(0.3)
            db["x"] = -1
            assert _write_until_heard(db, seq_only).startswith(b"seq")
        finally:
            seq_only.close()
            inv.close()
