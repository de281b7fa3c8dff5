"""The read-only queue with no replica alive: the broker refuses a read at once (the client asks the RW server),
and a read never waits longer than its client's timeout, even with the RW server down too."""
import re
import time

import pytest

from pyzdb.broker.health import query_status
from pyzdb.errors import Error, NoAnswer, ServiceUnavailable
from pyzdb.testing import Cluster, EmbeddedService


def ro_only(db, query, timeout=5.0):
    """Send a query to the RO queue only (no fallback to the RW server)."""
    return db._conn._call(db._conn.ro, query, timeout)


def replica_read_once_caught_up(db, path, seconds=20.0):
    """A get through the RO queue once the replica has applied the client's writes (it may lag under load)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ro_only(db, {"op": "get", "path": path, "min_seq": db._conn.last_seq})
        except Error as exc:          # not caught up within the replica's wait (NotYet), or still refused
            assert time.monotonic() < deadline, f"the replica never served the read: {exc!r}"
            time.sleep(0.1)


def test_with_no_replica_the_read_only_queue_answers_at_once_and_reads_go_to_the_rw_server():
    with EmbeddedService() as service:
        db = service.client(ro=True, timeout=5)
        db["x"] = 1
        with pytest.raises(ServiceUnavailable, match="no ro server can take this request"):
            ro_only(db, {"op": "get", "path": ["x"]})
        for _ in range(20):
            assert db["x"] == 1


def test_a_replica_killed_is_taken_off_the_queue_and_reads_go_on():
    with Cluster(1, "--durability", "none") as cluster:
        db = cluster.client(ro=True, timeout=5)
        db["y"] = 2
        assert replica_read_once_caught_up(db, ["y"]) == 2
        cluster.kill_replica(0)
        deadline = time.monotonic() + 20
        while any(s["role"] == "ro" and s["alive"] for s in query_status(cluster.health)["servers"]):
            assert time.monotonic() < deadline, "the broker never noticed the replica died"
            time.sleep(0.1)
        with pytest.raises(ServiceUnavailable, match="no ro server can take this request"):   # refused, not queued
            ro_only(db, {"op": "get", "path": ["y"]})
        assert db["y"] == 2


def test_with_the_rw_server_down_too_a_read_gives_up_within_its_timeout():
    with Cluster(1, "--durability", "none") as cluster:
        db = cluster.client(ro=True, timeout=2)
        db["z"] = 3
        cluster.kill_replica(0)
        cluster.kill_member("rw")
        with pytest.raises(NoAnswer) as caught:
            db["z"]._run()
        budget = float(re.search(r"within ([\d.]+) s", str(caught.value)).group(1))
        assert budget < 2   # the RW server was given what was left of the read's timeout, not a new one
        cluster.start_member("rw")
