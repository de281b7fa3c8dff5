"""``watch`` and file reads see a key whose deadline has passed as deleted, as ``get`` does (tree/lazy_expiry.py).

A client holds the RW server's lock, so its active deletion (which waits
for the session) cannot delete the due keys: every read below runs while a
key is due and its delete is not in the log, on the RW server and on a
replica (a Cluster: broker, RW server, one replica, on free loopback ports).
"""
import os
import time

import pytest

from pyzdb.client.remote import ExpiredKeys
from pyzdb.errors import PathKeyError
from pyzdb.testing import Cluster
from pyzdb.tree.files import File

LEAD = 2.0   # seconds from setting the deadlines to their passing: the lock is taken well before


@pytest.fixture(scope="module")
def cluster():
    with Cluster(1, "--durability", "none") as running:
        yield running


def due_under_lock(cluster, keys, replica=None):
    """``keys`` set (each ``f*`` a File of a small file under the files root), due in LEAD s; the writer's lock
    taken before they are due, and held (returned) once they are, with ``replica`` (if given) holding them."""
    root = os.path.join(cluster.data_dir, "files")
    os.makedirs(root, exist_ok=True)
    writer = cluster.client(timeout=20)
    for key in keys:
        path = os.path.join(root, f"{key}.bin")
        with open(path, "wb") as out:
            out.write(b"secret " + key.encode())
        writer[key] = File(path) if key.startswith("f") else "v"
    at = time.time() + LEAD
    writer._conn.write({"op": "batch", "ops": [{"op": "expire", "path": [key], "at": at} for key in keys]})
    while replica is not None and not all(has_deadline(replica, key) for key in keys):
        time.sleep(0.01)
    writer.lock()
    assert time.time() < at, "the lock came after the deadlines: the test shows nothing"
    while time.time() < at + 0.05:
        time.sleep(0.01)
    return writer


def has_deadline(db, key):
    """True once ``db`` (a replica's client) has applied the key and its deadline."""
    try:
        return db[key].ttl() is not None
    except PathKeyError:     # not applied yet
        return False


def until_expired(watching):
    """The changes ``watching`` yields up to and with the first of kind ``expired`` (all of them if none comes)."""
    changes = []
    for change in watching:
        changes.append(change)
        if change["kind"] == "expired":
            break
    return changes


def test_on_the_rw_server_a_due_file_reads_as_deleted_and_a_watch_yields_its_expiry_once(cluster):
    watcher = cluster.client(timeout=20)
    watching = watcher["k"].watch(timeout=5)             # from now
    writer = due_under_lock(cluster, ["f", "k"])
    try:
        with pytest.raises(PathKeyError):
            writer["f"].open().read()                    # on main: b'secret f', the file of an expired key
        changes = until_expired(watching)                # on main: the set and expire, then nothing
        assert [c["kind"] for c in changes] == ["w", "w", "expired"], changes
        assert changes[-1]["ops"] == [{"op": "del", "path": ["k"]}], changes
    finally:
        writer.unlock()
    writer["k"] = "again"                                # after the unlock the server deletes k, then this
    second = next(watching)
    assert second["kind"] == "w" and second["ops"][0]["op"] == "set", second   # the delete is not yielded twice
    with pytest.raises(PathKeyError):
        writer["f"]._run()                               # deleted for good by now


def test_on_a_replica_a_due_file_reads_as_deleted_and_a_watch_yields_its_expiry(cluster):
    replica = cluster.client(ro=True, consistency="eventual", timeout=20)
    watching = replica["k2"].watch(timeout=5)
    writer = due_under_lock(cluster, ["f2", "k2"], replica)
    try:
        with pytest.raises(PathKeyError):
            replica["f2"]._run()                         # as get reads it
        with pytest.raises(PathKeyError):
            replica["f2"].open().read()                  # on main: b'secret f2'
        changes = until_expired(watching)                # on main: the set and expire, then its timeout ends it
        assert [c["kind"] for c in changes] == ["w", "w", "expired"], changes
    finally:
        writer.unlock()


def test_a_watch_yields_each_expired_key_once_and_forgets_it_when_it_is_written():
    expired = ExpiredKeys()
    assert [c["kind"] for c in expired.changes({"seq": 5, "changes": [], "expired": [["k"], ["m", "x"]]})] == [
        "expired", "expired"]
    assert expired.changes({"seq": 5, "changes": [], "expired": [["k"], ["m", "x"]]}) == []     # asked again
    delete = {"seq": 6, "kind": "w", "ops": [{"op": "del", "path": ["k"]}]}
    overwrite = {"seq": 7, "kind": "w", "ops": [{"op": "set", "path": ["m"], "value": {}}]}
    assert expired.changes({"seq": 7, "changes": [delete, overwrite]}) == [overwrite]   # the server's own delete
    assert expired.yielded == set()
    assert expired.changes({"seq": 8, "changes": [delete]}) == [delete]   # a later delete of k is a change again
