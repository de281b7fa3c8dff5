"""The client cache under faults: reads held in a group with a later write, a silent feed, hostile feed frames, huge values."""
from __future__ import annotations

import threading
import time

import pytest

from pyzdb.testing import EmbeddedService


@pytest.fixture(scope="module")
def service():
    with EmbeddedService("--lock-lease", "5", "--lock-wait", "10") as running:
        yield running


def wait_seen(db, seq: int, timeout: float = 10.0) -> None:
    """Until the cache of ``db``'s client has applied the feed up to ``seq``."""
    cache = db._conn.cache
    deadline = time.monotonic() + timeout
    while (cache.seen or 0) < seq:
        assert time.monotonic() < deadline, f"the feed did not reach seq {seq} (seen {cache.seen})"
        time.sleep(0.01)


def test_a_read_run_before_another_clients_write_of_its_group_is_not_cached_stale(service):
    """A read held behind a lock and released together with a later write of the same path shares that write's
    group: its reply carries the group's seq, though it read the state before the write. Cached, it would be
    stale until the path is written again."""
    reader = service.client(cache=True, feed=service.feed)
    writer, locker = service.client(), service.client()
    pad = b"p" * (1 << 20)     # a big reply: the feed's small invalidation overtakes it in the client
    stale = []
    for i in range(8):
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
        wait_seen(reader, writer._conn.last_seq)
        if reader[key]._run()["v"] != 1:
            stale.append(key)
    assert stale == [], f"reads cached stale after the feed delivered the write: {stale}"
