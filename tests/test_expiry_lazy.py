"""Lazy expiry: a key whose deadline has passed reads as deleted everywhere, before the active deletion reaches it.

The mass of keys is due first and the probes a moment later, so the
server's active deletion (earliest deadline first, EXPIRE_BATCH per step)
reaches the probes last: the reads below run while it is still stepping.
"""
import os
import signal
import time

import pytest
from hostile import ask, error_name, peak_growth_mib, reset_peak

from pyzdb.errors import PathKeyError
from pyzdb.server.database import Database
from pyzdb.server.fast_get import FastGets
from pyzdb.server.replica import collect_status
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore
from pyzdb.testing import Cluster, EmbeddedService, free_ports, start_process, stop_process
from pyzdb.transport import wire

MASS = 40_000
PROBES = [f"p{i}" for i in range(20)]


def expire_mass_then_probes(db, lead: float = 3.0) -> float:
    """``MASS`` keys under ``many`` due at one moment, ``PROBES`` under ``many`` and at the top just after it,
    ``later`` under ``many`` an hour on; return the probes' deadline (unix time). Set again with twice the lead
    if a load spike made setting them take longer than it."""
    for _ in range(4):
        db["many"] = {**{f"k{i}": i for i in range(MASS)}, **{p: p for p in PROBES}, "later": "still here"}
        for p in PROBES:
            db[p] = [p]
        started = time.time()
        expire(db, [(["many", f"k{i}"], started + 3600) for i in range(5000)])    # how long one batch takes
        lead = max(lead, 2 * (MASS // 5000 + 1) * (time.time() - started))
        print(f"deadlines {lead:.1f} s ahead")
        at = time.time() + lead
        for start in range(0, MASS, 5000):
            expire(db, [(["many", f"k{i}"], at) for i in range(start, start + 5000)])
        expire(db, [(["many", p], at + 0.05) for p in PROBES] + [([p], at + 0.05) for p in PROBES]
               + [(["many", "later"], time.time() + 3600)])
        if time.time() < at:
            return at + 0.05
        lead *= 2
    raise AssertionError("setting the deadlines took longer than the lead four times")


def expire(db, deadlines: list) -> None:
    """One batch of ``expire`` requests with absolute deadlines (``at``, unix seconds)."""
    db._conn.write({"op": "batch", "ops": [{"op": "expire", "path": path, "at": at} for path, at in deadlines]})


def wait_deadlines_known(replica, at: float) -> None:
    """Until the replica has applied the probes' deadlines (else it reads them as keys without one)."""
    while replica["many"][PROBES[-1]].ttl() is None or replica[PROBES[-1]].ttl() is None:
        assert time.time() < at, "the replica did not apply the deadlines before they passed: give a longer lead"
        time.sleep(0.01)


def replica_reads_probes_as_deleted(replica) -> None:
    """The reads of due keys a read-only server answers as after their delete, while it has not applied it."""
    assert still_stepping(replica), "the replica applied every delete before the reads: the test shows nothing"
    for p in PROBES[:10]:
        with pytest.raises(PathKeyError):
            replica["many"][p]._run()
        with pytest.raises(PathKeyError):
            replica[p][0]._run()
        assert p not in replica["many"]
        assert replica["many"].get(p, "absent") == "absent"
        if p == PROBES[0]:      # the probes' deletes come after every key still there: these reads preceded them
            assert still_stepping(replica), "the replica applied every delete during the reads: they show nothing"
    with pytest.raises(PathKeyError, match="batch operation 1"):
        _raw_batch(replica, [["many", "later"], ["many", PROBES[10]]])
    assert not set(PROBES) & set(replica["many"]._run())
    assert replica["many"]["later"]._run() == "still here"


def wait_past(moment: float) -> None:
    while time.time() < moment + 0.01:
        time.sleep(0.005)


def still_stepping(db) -> bool:
    """True while keys due before the probes are left: the active deletion has not reached the probes (``len``
    counts due keys until their delete, lazy_expiry.py)."""
    return len(db["many"]) > 2 * len(PROBES) + 2


def test_due_keys_read_and_write_as_deleted_on_the_read_write_server_while_deletion_steps():
    with EmbeddedService("--durability", "none") as svc:
        db = svc.client(timeout=60)
        at = expire_mass_then_probes(db)
        wait_past(at)
        assert still_stepping(db), "the active deletion finished before the reads: the test shows nothing"
        for p in PROBES[:10]:
            with pytest.raises(PathKeyError):
                db["many"][p]._run()                       # a plain get: the short way
            with pytest.raises(PathKeyError):
                db[p][0]._run()                            # below a due key
            assert p not in db["many"]                      # ``in`` on its dict
            assert db["many"].get(p, "absent") == "absent"
            with pytest.raises(PathKeyError):
                db[p].ttl()
        with pytest.raises(PathKeyError, match="batch operation 1"):
            _raw_batch(db, [["many", "later"], ["many", PROBES[10]]])
        assert not set(PROBES) & set(db["many"]._run())      # a get of their dict: a copy without them
        assert db["many"]["later"]._run() == "still here"   # a deadline in the future: still read
        # writes: as on a deleted key
        assert db["many"].setdefault(PROBES[11], "anew") == "anew"
        assert db["many"][PROBES[11]].ttl() is None
        with pytest.raises(PathKeyError):
            db[PROBES[11]].append("x")
        db[PROBES[12]] = "set again"
        assert db[PROBES[12]]._run() == "set again" and db[PROBES[12]].ttl() is None
        assert still_stepping(db), "the active deletion finished during the reads: they show nothing"


def _raw_batch(db, paths):
    return db._conn.read({"op": "batch", "ops": [{"op": "get", "path": p} for p in paths]})


def test_the_short_way_leaves_a_due_key_to_the_generic_path_which_deletes_it_first():
    db = Database(Journal(MemoryStore()))
    db.open()
    db.handle(b"w", 1, {"op": "set", "path": ["k"], "value": "v"})
    db.handle(b"w", 2, {"op": "set", "path": ["soon"], "value": "v"})
    db.handle(b"w", 3, {"op": "expire", "path": ["k"], "at": time.time() - 1})
    db.handle(b"w", 4, {"op": "expire", "path": ["soon"], "at": time.time() + 3600})
    db.commit()
    fast = FastGets(db, 1 << 20)
    assert fast.answer(b"r", 1, {"op": "get", "path": ["k"]}) is None
    reply = wire.unpack(fast.answer(b"r", 2, {"op": "get", "path": ["soon"]}))
    assert reply["ok"] == "v" and reply["until"] > time.time()     # the client cache keeps it until then
    answer = db.handle(b"r", 3, {"op": "get", "path": ["k"]})
    assert answer["err"][0] == "PathKeyError", answer
    assert db.pending and db.pending[0]["ops"] == [{"op": "del", "path": ["k"]}]   # journaled with the read
    db.commit()
    assert "k" not in db.engine.tree and not db.engine.expiries.get(("k",))


def test_due_keys_read_as_deleted_on_a_replica_and_from_the_client_cache_while_deletion_steps():
    with Cluster(1, "--durability", "none") as cluster:
        writer = cluster.client(timeout=60)
        replica = cluster.client(ro=True, consistency="eventual", timeout=60)
        cached = cluster.client(cache=True, feed=cluster.feed, timeout=60)
        at = expire_mass_then_probes(writer)
        for p in PROBES:
            assert cached["many"][p]._run() == p         # cached before the deadline
        assert cached._conn.cache.entries
        wait_deadlines_known(replica, at)
        wait_past(at)
        replica_reads_probes_as_deleted(replica)
        for p in PROBES:
            with pytest.raises(PathKeyError):
                cached["many"][p]._run()
        assert cached["many"]["later"]._run() == "still here"


def test_due_keys_read_as_deleted_on_a_streaming_replica_while_deletion_steps(tmp_path):
    with EmbeddedService("--durability", "none") as svc:
        status_feed = f"tcp://127.0.0.1:{free_ports(1)[0]}"
        proc = start_process(["server", "--ro", "--data", str(tmp_path), "--back", svc.ro_back, "--follow",
                              svc.replication, "--health", svc.health, "--status-feed", status_feed,
                              "--name", "lazy"], str(tmp_path / "replica.log"))
        try:
            assert "lazy" in collect_status(status_feed, 20, want={"lazy"}), (tmp_path / "replica.log").read_text()
            writer = svc.client(timeout=60)
            replica = svc.client(ro=True, consistency="eventual", timeout=60)
            at = expire_mass_then_probes(writer)
            wait_deadlines_known(replica, at)
            wait_past(at)
            replica_reads_probes_as_deleted(replica)
        finally:
            stop_process(proc)


def test_the_deadline_index_answers_as_a_scan_of_every_deadline_would():
    import random

    from pyzdb.tree.expiry import Expiries
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    table, model = Expiries(), {}
    keys = [tuple(rng.choice("ab") for _ in range(rng.randint(1, 3))) for _ in range(40)]
    for _ in range(2000):
        path, now = rng.choice(keys), 50.0
        if rng.random() < 0.6:
            at = rng.choice([None, rng.uniform(0, 100)])
            table.put(path, at)
            if at is None:
                model.pop(path, None)
            else:
                model[path] = at
        else:
            dropped = dict(table.drop_under(path))
            assert dropped == {p: at for p, at in model.items() if p[:len(path)] == path}
            model = {p: at for p, at in model.items() if p[:len(path)] != path}
        probe = list(rng.choice(keys))
        related = [at for p, at in model.items() if p[:len(probe)] == tuple(probe) or tuple(probe)[:len(p)] == p]
        assert table.earliest(probe) == min(related, default=None)
        above = [p for p in model if tuple(probe)[:len(p)] == p and model[p] <= now]
        assert table.due_prefix(probe, now) == min(above, key=len, default=None)
        assert set(table.tops) == {p[0] for p in model}


def test_a_batch_with_a_due_key_on_a_replica_is_refused_by_its_whole_reply_size_before_it_is_encoded():
    """300 gets of 512 KiB with one due key's d.get() in a batch, against a 1 MiB --max-message: before, each part
    passed the budgets alone and the replica encoded the 150 MB reply (peak +300 MiB) before refusing it."""
    with Cluster(1, "--max-message", str(1 << 20)) as cluster:
        db = cluster.client(timeout=30)
        db["value"], db["d"] = b"v" * (512 << 10), {"k": 1, "j": 2}
        seq = ask(cluster.rw_uri, {"op": "expire", "path": ["d", "k"], "seconds": 1.0})["seq"]
        while ask(cluster.ro_uri, {"op": "sync"})["ok"] < seq:
            time.sleep(0.05)
        os.kill(cluster.rw.pid, signal.SIGSTOP)     # its delete of the due key never reaches the replica
        try:
            wait_past(time.time() + 1.0)
            due_get = {"op": "call", "path": ["d"], "method": "get", "args": ["k", "gone"], "kwargs": {}}
            pid = cluster.replicas[0].pid
            before = reset_peak(pid)
            reply = ask(cluster.ro_uri, {"op": "batch", "ops": [due_get] + [{"op": "get", "path": ["value"]}] * 300})
            assert error_name(reply) == "MessageTooLarge" and "at least" in reply["err"][1], reply
            assert peak_growth_mib(pid, before) < 40
            small = ask(cluster.ro_uri, {"op": "batch", "ops": [{"op": "get", "path": ["d", "j"]}, due_get,
                                                                  {"op": "contains", "path": ["d"], "value": "k"}]})
            assert small["ok"] == [2, "gone", False], small
            missing = ask(cluster.ro_uri, {"op": "batch", "ops": [due_get, {"op": "get", "path": ["nothing"]}]})
            assert error_name(missing) == "PathKeyError" and "batch operation 1" in missing["err"][1], missing
        finally:
            os.kill(cluster.rw.pid, signal.SIGCONT)
