"""A full disk: writes fail by name, reads and pings of the same group are answered, nothing acknowledged is lost.

The service's data directory is a small tmpfs the test mounts (root is
needed; the test skips if the mount is refused).
"""
import os
import subprocess
import tempfile

import pytest
import zmq

from pyzdb.errors import Error
from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire

BIG = b"x" * (1 << 20)


@pytest.fixture
def small_disk():
    mount_point = tempfile.mkdtemp(prefix="pyzdb-tmpfs-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mount_point],
                          capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(mount_point)
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", mount_point], check=False)
    os.rmdir(mount_point)


def fill(path: str) -> None:
    """Write a file until the disk refuses more."""
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
        except OSError:
            pass


def group_of(uri: str, cid: bytes, first_rid: int) -> list[dict]:
    """Send a write, a read and a ping back to back (one commit group) and return their replies in rid order."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(uri)
    try:
        queries = [{"op": "set", "path": ["big"], "value": BIG}, {"op": "get", "path": ["k0"]}, {"op": "ping"}]
        for offset, query in enumerate(queries):
            sock.send_multipart([b"", wire.encode_request(cid, first_rid + offset, query)])
        replies = []
        for _ in queries:
            assert sock.poll(20_000), "no reply"
            replies.append(wire.unpack(sock.recv_multipart()[-1]))
        return sorted(replies, key=lambda reply: reply["rid"])
    finally:
        sock.close()


@pytest.mark.parametrize("durability", ["always", "batch"])
def test_a_full_disk_fails_only_the_writes(small_disk, durability):
    data = os.path.join(small_disk, "data")
    filler = os.path.join(small_disk, "filler")
    with EmbeddedService("--durability", durability, data_dir=data) as svc:
        db = svc.client(timeout=20)
        acked = {}
        for i in range(20):
            db[f"k{i}"] = i
            acked[f"k{i}"] = i
        fill(filler)
        failures = 0
        for attempt in range(3):
            write, read, ping = group_of(svc.rw_uri, b"disk-full-%d" % attempt, 1)
            failures += "err" in write
            assert read.get("ok") == 0 and ping.get("ok") == "pong", (read, ping)   # the group's reads stand
            assert read["seq"] == ping["seq"] or "err" not in write
        assert failures, "the disk never filled: the test showed nothing"
        with pytest.raises(Error, match="full|space|No space"):
            for _ in range(5):
                db["big"] = BIG
        assert db.ping() == "pong" and db["k3"]._run() == 3             # still serving
        os.remove(filler)
        db["after"] = "space again"
        acked["after"] = "space again"
        svc.restart()
        db = svc.client(timeout=20)
        assert {key: db[key]._run() for key in acked} == acked
        assert os.listdir(os.path.join(data, "pyzdb.db-log")), "the records were not in the log file"


def test_reads_of_a_failed_group_are_answered_from_the_state_without_its_writes():
    from store_fakes import FailingStore
    from test_database import open_db
    store = FailingStore()
    db = open_db(store)
    db.handle(b"w", 1, {"op": "set", "path": ["a"], "value": 1})
    db.commit()
    store.fail_set = lambda items: True
    write = db.handle(b"w", 2, {"op": "set", "path": ["a"], "value": 2})
    read = db.handle(b"r", 1, {"op": "get", "path": ["a"]})
    status = db.handle(b"r", 2, {"op": "status"})
    ping = db.handle(b"r", 3, {"op": "ping"})
    assert read["ok"] == 2                     # before the commit, the read saw the pending write
    with pytest.raises(Error, match="injected store failure"):
        db.commit()
    assert write["err"][0] == "StoreError"
    assert read == {"rid": 1, "ok": 1, "seq": 1} and status["ok"]["seq"] == 1 and status["seq"] == 1
    assert ping["ok"] == "pong" and ping["seq"] == 1
    assert db.handle(b"r", 2, {"op": "status"})["ok"]["top_level_keys"] == 1   # a read's retry runs again
    assert db.handle(b"w", 2, {"op": "set", "path": ["a"], "value": 2})["err"][0] == "StoreError"   # a write's: not
