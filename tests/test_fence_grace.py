"""The writer fence's start-up grace is ``pyzdb broker --fence-grace``; with none, one RW server still holds alone.

``pyzdb.testing.Cluster`` starts its broker with a grace of 0 (it runs one
RW server), so the fence must keep two RW servers apart without one: both
started at once on their own stores, each beating, exactly one holds and
every acknowledged append is in its store alone. Real processes on free
loopback ports (the ``Deployment`` of tests/test_writer_fence.py).
"""
import time

from test_writer_fence import Deployment, append_acknowledged, stored_list

from pyzdb.broker.fence import GRACE, WriterFence
from pyzdb.cli.arguments import build_parser
from pyzdb.client import client
from pyzdb.testing import wait_answering


def rw_rows(dep):
    """The broker's table rows of RW servers, by pid."""
    return {s["pid"]: s for s in dep.table().get("servers", []) if s.get("role") == "rw"}


def test_with_no_grace_two_rw_servers_started_at_once_still_have_one_holder(tmp_path):
    dep = Deployment(tmp_path)
    try:
        dep.start_broker("--fence-grace", "0")
        servers = {name: dep.start(name, dep.rw_args(name)) for name in ("a", "b")}
        deadline = time.monotonic() + 30
        while not all(rw_rows(dep).get(p.pid, {}).get("alive") for p in servers.values()):   # both have beaten
            assert time.monotonic() < deadline, f"{rw_rows(dep)}\n{dep.log('a')}\n{dep.log('b')}"
            time.sleep(0.1)
        holders = [name for name, p in servers.items() if rw_rows(dep)[p.pid]["holds"]]
        assert len(holders) == 1, rw_rows(dep)
        holder, other = holders[0], ({"a", "b"} - set(holders)).pop()
        dep.wait_log(other, "holds this broker; refusing to serve")
        db, _ = client(dep.rw_uri, timeout=20)
        db["log"] = []
        db._conn.close()
        acknowledged = []
        append_acknowledged(dep.rw_uri, range(30), acknowledged)
        rows = rw_rows(dep)
        assert rows[servers[holder].pid]["holds"] and not rows[servers[other].pid]["holds"], rows
        assert servers[other].poll() is None            # refused, it waits rather than serving
        dep.stop("a")
        dep.stop("b")
        assert stored_list(tmp_path / holder) == acknowledged == list(range(30))
        assert stored_list(tmp_path / other) is None    # not one request reached it
    finally:
        dep.close()


def test_the_broker_grants_nothing_for_the_grace_it_was_given(tmp_path):
    """A write waits out ``--fence-grace`` after the broker starts, though the RW server beats before then."""
    grace = 2.5
    dep = Deployment(tmp_path)
    try:
        server = dep.start("rw", dep.rw_args("rw"))          # it connects and beats as soon as the broker binds
        started = time.monotonic()
        dep.start_broker("--fence-grace", str(grace))
        wait_answering(dep.rw_uri, 30, "the RW server", lambda: dep.log("rw"), server)
        assert time.monotonic() - started >= grace
        assert rw_rows(dep)[server.pid]["holds"]
    finally:
        dep.close()


def test_the_grace_is_the_fences_own_and_the_default_is_unchanged():
    """``WriterFence(grace=...)`` decides when it first grants; ``pyzdb broker`` defaults to ``GRACE`` (1.5 s)."""
    assert build_parser().parse_args(["broker"]).fence_grace == GRACE == 1.5
    first = {"back_id": "rw-a", "database": "d1", "term": 0, "pid": 1}
    second = {"back_id": "rw-b", "database": "d2", "term": 0, "pid": 2}
    none = WriterFence(started=0.0, grace=0.0)
    assert none.beat(first, 0.0)["holds"] and not none.beat(second, 0.0)["holds"]
    longer = WriterFence(started=0.0, grace=3.0)
    assert longer.beat(first, 2.9) == {} and longer.route_id is None
    assert longer.beat(first, 3.0)["holds"] and longer.route_id == b"rw-a"
