"""Expiry as in Redis: expire / ttl / persist on dict keys at any depth, journaled, undoable, kept across restarts."""
import time

import pytest

from pyzdb.errors import PathKeyError, QueryError, ValueTypeError
from pyzdb.testing import EmbeddedService
from pyzdb.tree import query as q
from pyzdb.tree.engine import Engine


def run(engine: Engine, query: dict):
    return engine.execute(q.validate(query))


def test_expire_ttl_persist_and_what_clears_a_deadline():
    engine = Engine({"a": 1, "b": 2, "d": {"x": {"y": 1}, "z": 0}, "l": [1]})
    run(engine, {"op": "expire", "path": ["a"], "seconds": 100})
    assert 99 < run(engine, {"op": "ttl", "path": ["a"]}).result <= 100
    assert run(engine, {"op": "ttl", "path": ["b"]}).result is None
    run(engine, {"op": "expire", "path": ["a"], "at": None})          # persist
    assert run(engine, {"op": "ttl", "path": ["a"]}).result is None
    run(engine, {"op": "expire", "path": ["a"], "seconds": 100})
    outcome = run(engine, {"op": "set", "path": ["a"], "value": 5})     # SET clears the deadline ...
    assert run(engine, {"op": "ttl", "path": ["a"]}).result is None
    engine.apply(outcome.inverse)                                       # ... and its undo puts it back
    assert engine.tree["a"] == 1 and run(engine, {"op": "ttl", "path": ["a"]}).result is not None
    run(engine, {"op": "iadd", "path": ["a"], "value": 1})              # += keeps it, as INCRBY does
    assert run(engine, {"op": "ttl", "path": ["a"]}).result is not None
    run(engine, {"op": "expire", "path": ["d", "x", "y"], "seconds": 50})
    run(engine, {"op": "call", "path": ["d"], "method": "pop", "args": ["x"]})   # removing a parent drops it
    assert engine.expiries.deadlines == {("a",): engine.expiries.get(("a",))}
    run(engine, {"op": "expire", "path": ["d", "z"], "seconds": 50})
    run(engine, {"op": "call", "path": ["d"], "method": "clear"})
    assert ("d", "z") not in engine.expiries.deadlines
    with pytest.raises(ValueTypeError, match="only dict keys expire"):
        run(engine, {"op": "expire", "path": ["l", 0], "seconds": 1})
    with pytest.raises(PathKeyError):
        run(engine, {"op": "expire", "path": ["missing"], "seconds": 1})
    for bad in ({"seconds": -1}, {"seconds": "soon"}, {"seconds": float("nan")}, {"at": "later"}, {}):
        with pytest.raises(QueryError):
            q.validate({"op": "expire", "path": ["a"], **bad})
    with pytest.raises(QueryError):
        q.validate({"op": "expire", "path": [], "seconds": 1})


def test_the_engine_replays_expiries_exactly_from_the_forward_ops():
    first = Engine({"k": 1})
    outcome = run(first, {"op": "expire", "path": ["k"], "seconds": 30})
    assert outcome.forward[0]["at"] > time.time()                     # the log holds an absolute deadline
    second = Engine({"k": 1})
    second.apply(outcome.forward)
    assert second.expiries.deadlines == first.expiries.deadlines


def test_a_key_expires_on_the_server_through_the_journal_and_undo_and_restart_keep_deadlines(tmp_path):
    with EmbeddedService(data_dir=str(tmp_path / "data")) as service:
        db = service.client()
        db["short"] = "gone soon"
        db["nested"] = {"session": {"user": 1}, "keep": True}
        db["long"] = "stays"
        db["short"].expire(0.3)
        db["nested"]["session"].expire(0.3)
        db["long"].expire(3600)
        assert 0 < db["short"].ttl() <= 0.3
        deadline = time.monotonic() + 10
        while "short" in db or "session" in db["nested"]:
            assert time.monotonic() < deadline, "keys whose deadline passed were not deleted"
            time.sleep(0.05)
        assert db["nested"] == {"keep": True}
        db["p"] = 1
        db["p"].expire(0.5)
        db["p"].persist()
        assert db["p"].ttl() is None
        db["u"] = 1
        db["u"].expire(100)
        db.undo()                                  # an expire is a write like any other
        assert db["u"].ttl() is None
        db.redo()
        assert db["u"].ttl() is not None
        with pytest.raises(PathKeyError):
            db["short"].ttl()
        service.restart()
        db = service.client()
        assert 3500 < db["long"].ttl() <= 3600 and db["u"].ttl() is not None
        time.sleep(0.7)
        assert db["p"] == 1                        # persisted: still there after its old deadline
        status = db.status()
        assert status["seq"] > 0


def test_replicas_and_watchers_see_an_expiry_as_a_journaled_delete():
    from pyzdb.testing import Cluster
    with Cluster(1, "--durability", "none") as cluster:
        db = cluster.client(ro=True)
        db["s"] = {"token": "abc", "user": 7}
        db["s"]["token"].expire(0.2)
        since = db.status()["seq"]
        changes = db["s"].watch(since=since, timeout=10)
        change = next(changes)
        assert change["ops"] == [{"op": "del", "path": ["s", "token"]}], change
        assert db["s"]["user"] == 7 and db["s"]["user"].ttl() is None
        replica_view = cluster.client(ro=True, consistency="eventual")
        deadline = time.monotonic() + 10
        while replica_view["s"]._run() != {"user": 7}:
            assert time.monotonic() < deadline, "the replica never applied the expiry's delete"
            time.sleep(0.05)
        with pytest.raises(PathKeyError):
            replica_view["s"]["token"].ttl()


def test_clearing_the_root_drops_every_deadline_and_its_undo_restores_them():
    engine = Engine({"a": 1, "d": {"b": 2}})
    run(engine, {"op": "expire", "path": ["a"], "seconds": 10})
    run(engine, {"op": "expire", "path": ["d", "b"], "seconds": 10})
    outcome = run(engine, {"op": "call", "path": [], "method": "clear"})
    assert engine.tree == {} and not engine.expiries.deadlines
    engine.apply(outcome.inverse)
    assert set(engine.expiries.deadlines) == {("a",), ("d", "b")}


def test_many_keys_expiring_at_once_are_deleted_in_steps_with_requests_served_between():
    """10,000 keys due at the same moment: the server deletes them EXPIRE_BATCH at a time and answers the
    requests that arrive between, so a reader sees the count go down in steps, never one stall of all of them."""
    count = 10_000
    with EmbeddedService("--durability", "none") as svc:
        db = svc.client(timeout=60)
        db["many"] = {f"k{i}": i for i in range(count)}
        at = time.time() + 4
        for start in range(0, count, 5000):
            with db.batch() as batch:
                for i in range(start, start + 5000):
                    batch["many"][f"k{i}"].expire(at - time.time())
        while time.time() < at:
            time.sleep(0.01)
        seen = set()
        deadline = time.monotonic() + 60
        while (left := len(db["many"])) > 0:
            seen.add(left)
            assert time.monotonic() < deadline, f"{left} keys still there a minute after their deadline"
        between = {n for n in seen if 0 < n < count}
        assert len(between) >= 2, f"reads saw only {sorted(seen)[:5]} while the keys expired: one stall"
        assert db.status()["seq"] >= count
