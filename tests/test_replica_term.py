"""A replica's copy carries the RW server's promotion term; a promotion goes above it; two equal terms never both hold.

Real processes on free loopback ports (tests/test_writer_fence.py's
``Deployment``): a broker with a health socket, RW servers on their own
stores, replicas streaming into copies that are then promoted without asking
the broker (``promote --health ''``), so only the copy's own term decides.
"""
import os
import signal
import time

import pytest
from test_writer_fence import Deployment, append_acknowledged, stored_list

from pyzdb.broker.fence import GRACE, WriterFence
from pyzdb.broker.routed import NO_HOLDER_WARN
from pyzdb.client import client
from pyzdb.errors import NoAnswer
from pyzdb.server.local_copy import CopyFollower, LocalCopy
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal
from pyzdb.testing import start_process, wait_answering
from pyzdb.transport.heartbeat import INTERVAL, LIVENESS


def copy_meta(data_dir):
    """The ``meta`` record of the (stopped) store in ``data_dir``."""
    store = open_store(f"sqlite:///{data_dir / 'pyzdb.db'}", create=False)
    try:
        return Journal(store).read_meta()
    finally:
        store.close()


def follow(dep, names, replication, seq, stop=True):
    """Start streaming replicas ``names`` (a name or a list) of the RW server on ``replication``; once each holds
    ``seq``, stop them (unless not ``stop``)."""
    names = [names] if isinstance(names, str) else names
    for name in names:
        dep.start(name, ["server", "--ro", "--data", str(dep.dir / name), "--back", dep.ro_back, "--follow",
                         replication, "--health", dep.health, "--status-feed", dep.status_feed, "--name", name])
    deadline = time.monotonic() + 30
    while not all(any(s.get("name") == name and s.get("seq", 0) >= seq for s in dep.table().get("servers", []))
                  for name in names):
        assert time.monotonic() < deadline, [dep.log(name) for name in names]
        time.sleep(0.2)
    for name in names if stop else ():
        dep.stop(name)


def promote_alone(dep, name):
    """``pyzdb promote`` of the copy in ``name`` without the broker's table: its term comes from the copy alone."""
    log = dep.dir / f"promote-{name}.log"
    promoted = start_process(["promote", "--data", str(dep.dir / name), "--health", ""], str(log))
    assert promoted.wait(60) == 0, log.read_text()
    return copy_meta(dep.dir / name)


def new_log(dep):
    """An empty list at ``log`` through the broker (seq 1)."""
    db, _ = client(dep.rw_uri, timeout=20)
    db["log"] = []
    db._conn.close()


def start_rw(dep, name, data=None, replication=""):
    """Start a RW server ``name`` on the store in ``data`` (default: ``name``) against the broker."""
    return dep.start(name, dep.rw_args(data or name, replication))


def start_first_rw(dep):
    """The broker and RW server ``a`` (streaming to replicas), answering, with an empty list at ``log``."""
    dep.start_broker()
    a = start_rw(dep, "a", replication=dep.replication)
    wait_answering(dep.rw_uri, 20, "a", lambda: dep.log("a"), a)
    new_log(dep)


def test_a_promoted_stream_replica_takes_a_term_above_the_rw_server_it_followed(tmp_path):
    """RW server at term 1 (itself a promoted copy), its replica promoted without the broker: term 2; the old RW
    server restarted is fenced, by the broker that saw both and by a restarted one that hears only the old
    server and a replica of the promoted one."""
    dep = Deployment(tmp_path)
    try:
        start_first_rw(dep)
        acknowledged = []
        append_acknowledged(dep.rw_uri, range(10), acknowledged)
        follow(dep, "b", dep.replication, 11)
        dep.stop("a")
        assert promote_alone(dep, "b")["term"] == 1
        b = start_rw(dep, "b", replication=dep.replication)
        dep.wait_holder(b.pid)
        append_acknowledged(dep.rw_uri, range(10, 20), acknowledged)
        follow(dep, "c", dep.replication, 21)
        assert copy_meta(tmp_path / "c")["term"] == 1        # the stream told the copy its RW server's term
        dep.stop("b")
        meta = promote_alone(dep, "c")
        assert meta["term"] == 2, meta                       # on main: 1, the old RW server's own term
        c = start_rw(dep, "c", replication=dep.replication)
        dep.wait_holder(c.pid)
        b_again = start_rw(dep, "b-again", "b")
        dep.wait_log("b-again", "promoted to term 2 on this broker; this server's term is 1; refusing to serve")
        append_acknowledged(dep.rw_uri, range(20, 30), acknowledged)
        follow(dep, "d", dep.replication, 31, stop=False)   # a replica of c: its copy holds term 2
        dep.stop("c")
        dep.stop("broker", signal.SIGKILL)                   # a broker that forgot, with only the old RW server
        dep.start_broker()                                   # and c's replica beating
        time.sleep(GRACE + INTERVAL * LIVENESS)
        table = dep.table()
        assert table["terms"] == {meta["id"]: 2}, table     # learnt from the replica's beats (on main: 1)
        assert [s["holds"] for s in table["servers"] if s.get("pid") == b_again.pid] == [False], table
        c_again = start_rw(dep, "c-again", "c")
        dep.wait_holder(c_again.pid)
        append_acknowledged(dep.rw_uri, range(30, 40), acknowledged)
        dep.stop("d")
        dep.stop("b-again")
        dep.stop("c-again")
        assert stored_list(tmp_path / "c") == acknowledged == list(range(40))
        assert stored_list(tmp_path / "b") == list(range(20))   # nothing after the promotion reached it
    finally:
        dep.close()


def test_two_copies_promoted_to_one_term_never_both_hold_the_larger_writer_id_does(tmp_path):
    """Both replicas of one RW server promoted without the broker: one term, two stores. Whichever starts first,
    the store with the larger writer id holds, and the other is refused even while the holder is silent."""
    dep = Deployment(tmp_path)
    try:
        start_first_rw(dep)
        follow(dep, ["x", "y"], dep.replication, 1)
        dep.stop("a")
        metas = {name: promote_alone(dep, name) for name in ("x", "y")}
        assert metas["x"]["term"] == metas["y"]["term"] == 1 and metas["x"]["writer"] != metas["y"]["writer"]
        low, high = sorted(metas, key=lambda name: metas[name]["writer"])
        first = start_rw(dep, low)                           # alone: it holds
        dep.wait_holder(first.pid)
        second = start_rw(dep, high)                         # the same term, a larger writer id: it takes over
        dep.wait_holder(second.pid)
        dep.wait_log(low, "two promoted copies tie, the larger id wins")
        os.kill(second.pid, signal.SIGSTOP)                  # the holder silent: the tie's loser still gets nothing
        time.sleep(INTERVAL * LIVENESS + 1.0)
        table = dep.table()
        assert not [s for s in table["servers"] if s.get("pid") == first.pid and s.get("holds")], table
        os.kill(second.pid, signal.SIGCONT)
        acknowledged = []
        append_acknowledged(dep.rw_uri, range(10), acknowledged)
        dep.stop(low)
        dep.stop(high)
        assert stored_list(tmp_path / high) == acknowledged == list(range(10))
        assert stored_list(tmp_path / low) == []
    finally:
        dep.close()


def test_the_tie_rule_beat_by_beat():
    """Equal terms of one database: the larger writer id holds whatever the order, a restart of it takes over."""
    fence = WriterFence(started=-GRACE)
    low = {"back_id": "rw-low", "database": "d1", "term": 1, "writer": "1a", "pid": 1}
    high = {"back_id": "rw-high", "database": "d1", "term": 1, "writer": "2b", "pid": 2}
    high_again = {**high, "back_id": "rw-high-2", "pid": 3}
    assert fence.beat(low, 0.0)["holds"]
    assert fence.beat(high, 0.1)["holds"] and fence.route_id == b"rw-high"      # at once, from the live holder
    later = 0.2 + INTERVAL * LIVENESS + 1.0
    assert "the larger id wins" in fence.beat(low, later)["reason"]             # silent holder or not
    assert fence.beat(high_again, later)["holds"] and fence.route_id == b"rw-high-2"
    assert fence.terms == {"d1": 1} and fence.writers == {"d1": "2b"}


def test_a_copy_keeps_the_highest_term_it_was_told_through_its_checkpoints(tmp_path):
    """The copy's meta keeps the RW server's term from the stream, never lowers it, and its checkpoints keep it."""
    store = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        copy = LocalCopy(store)
        copy.adopt("d1", 0.0)
        copy.observe_term(3)
        copy.observe_term(2)
        copy.observe_term(True)
        copy.observe_term(1 << 64)                        # does not pack: never kept
        assert copy.term == 3
        assert copy.checkpoint_tree(follower := CopyFollower(copy)) is False   # nothing newer than the meta yet
        follower.seq = 1
        assert copy.checkpoint_tree(follower)
    finally:
        store.close()
    store = open_store(f"sqlite:///{tmp_path / 'copy.db'}", create=False)
    try:
        meta = Journal(store).read_meta()
        assert meta["term"] == 3 and meta["gen"] == 1 and meta["replica"], meta
    finally:
        store.close()


def test_a_rw_server_without_health_at_a_fenced_broker_is_told_and_the_broker_says_why_requests_wait(tmp_path):
    """``server --health ''`` never beats, so the broker never lets it hold: both logs name the cause."""
    dep = Deployment(tmp_path)
    try:
        dep.start_broker()
        args = dep.rw_args("silent")
        args[args.index("--health") + 1] = ""
        dep.start("silent", args)
        dep.wait_log("silent", "warning: no --health, so no beats")
        db, _ = client(dep.rw_uri, timeout=1.0)                # it stays held in the broker after this
        try:
            with pytest.raises(NoAnswer):
                db["k"] = 1
        finally:
            db._conn.close()
        dep.wait_log("broker", "no RW server holds this broker: none beats on its health socket", NO_HOLDER_WARN + 15)
    finally:
        dep.close()
