"""A follower on a store that copies the writer's records late (a KT slave): "not replicated yet" is waited for,
"gone" (a checkpoint removed it) reloads the checkpoint."""
import time

from pyzdb.server import follower as follower_module
from pyzdb.server.database import Database
from pyzdb.server.follower import Follower
from pyzdb.storage.journal import META_KEY, Journal, chunk_key, log_key
from pyzdb.storage.memory import MemoryStore


def write(db, key, value, rid):
    reply = db.handle(b"writer", rid, {"op": "set", "path": [key], "value": value})
    assert "err" not in reply, reply
    db.commit()


def copy(master, slave, keys):
    """What the slave's replication has done so far: these keys copied from the master."""
    slave.set_bulk(master.get_bulk(keys))


def writer_and_follower():
    """A writer's store holding x = 1, a slave that has copied it, and a follower on the slave (not loaded yet)."""
    master, slave = MemoryStore(), MemoryStore()
    db = Database(Journal(master))
    db.open()
    write(db, "x", 1, 1)
    copy(master, slave, [META_KEY, log_key(1)])
    return master, slave, db, Follower(Journal(slave))


def test_an_announced_record_the_slave_does_not_hold_yet_is_waited_for_not_reloaded():
    master, slave, db, follower = writer_and_follower()
    assert follower.load() == 1
    write(db, "x", 2, 2)                          # the feed announces seq 2; the slave has not copied it
    follower._last_reload = 0.0                    # past the reload interval: a gap would reload now
    assert follower.catch_up(known_seq=2) == 0
    assert follower.waiting and follower.reloads == 0
    assert follower.catch_up(known_seq=2) == 0 and follower.reloads == 0   # asked again: still no reload
    copy(master, slave, [log_key(2)])
    assert follower.catch_up(known_seq=2) == 1
    assert follower.engine.tree["x"] == 2 and not follower.waiting and follower.reloads == 0


def test_a_record_a_checkpoint_removed_is_gone_and_the_checkpoint_is_loaded():
    master, slave, db, follower = writer_and_follower()
    follower.load()
    for rid in range(2, 5):
        write(db, "x", rid, rid)
    data, seq, crc = db.snapshot()
    meta = db.journal.write_checkpoint(data, seq, crc)
    copy(master, slave, [META_KEY] + [chunk_key(meta["gen"], i) for i in range(meta["chunks"])])
    slave.remove_bulk([log_key(1)])
    follower._last_reload = 0.0                    # past the reload interval
    follower.catch_up(known_seq=4)
    assert follower.reloads == 1 and follower.seq == 4 and follower.engine.tree["x"] == 4


def test_a_record_still_missing_after_the_grace_time_counts_as_gone(monkeypatch):
    monkeypatch.setattr(follower_module, "GONE_AFTER", 0.05)
    master, slave, db, follower = writer_and_follower()
    follower.load()
    write(db, "x", 2, 2)
    follower.catch_up(known_seq=2)
    assert follower.reloads == 0
    time.sleep(0.06)
    follower._last_reload = 0.0
    follower.catch_up(known_seq=2)
    assert follower.reloads == 1
