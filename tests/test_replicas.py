"""Read replicas as real processes: a broker, a RW server and read-only servers sharing one sqlite store."""
import os
import subprocess
import sys
import threading
import time

import pytest

from pyzdb.client import client
from pyzdb.errors import QueryError, ReadOnlyError, ServiceUnavailable, WatchGap
from pyzdb.testing import Cluster, free_ports


@pytest.fixture(scope="module")
def cluster():
    with Cluster(2, "--durability", "none", "--lock-lease", "3") as c:
        yield c


@pytest.fixture
def db(cluster):
    db = cluster.client(ro=True)
    yield db
    db._conn.close()


def rw_seq(cluster) -> int:
    rw = cluster.client()
    try:
        return rw.status()["seq"]
    finally:
        rw._conn.close()


def wait_caught_up(cluster, indexes=(0, 1), timeout=10.0) -> dict:
    """Reports of the replicas once each has applied the RW server's current seq."""
    target, deadline = rw_seq(cluster), time.monotonic() + timeout
    while True:
        reports = cluster.wait_replicas(indexes)
        if all(r["seq"] >= target for r in reports.values()) or time.monotonic() > deadline:
            return reports


def ro_call(db, query, timeout=3.0):
    """Send a query to the RO queue only (no fallback to the RW server)."""
    return db._conn._call(db._conn.ro, query, timeout)


# --- following the log ---------------------------------------------------------------------
def test_replicas_apply_every_write(cluster, db):
    lags = []
    for i in range(20):
        db["x"] = i
        written = time.monotonic()
        while db["x"]._run(consistency="eventual") != i:
            assert time.monotonic() - written < 30, "a replica never applied the write"
        lags.append(time.monotonic() - written)
    print(f"replica lag: median {sorted(lags)[len(lags) // 2] * 1000:.1f} ms (bench/ measures speed)")
    reports = wait_caught_up(cluster)
    assert {r["seq"] for r in reports.values()} == {rw_seq(cluster)}


def test_every_kind_of_write_reaches_the_replicas(cluster, db):
    db["doc"] = {"l": [1, 2, 3], "n": 0}
    db["doc"]["l"].append(4)
    db["doc"]["n"] += 5
    with db.batch() as batch:
        batch["doc"]["m"] = "x"
        batch["doc"]["l"].pop(0)
    with db.lock():
        db["doc"]["locked"] = True
    db["doc"]["tmp"] = 1
    db.undo()
    db.undo()
    db.redo()
    expected = {"l": [2, 3, 4], "n": 5, "m": "x", "locked": True}
    assert db["doc"]._run(consistency="strong") == expected
    wait_caught_up(cluster)
    for _ in range(6):   # round-robin: both replicas answer
        assert db["doc"]._run(consistency="eventual") == expected


def test_reads_are_spread_over_the_replicas(cluster, db):
    db["r"] = 1
    before = wait_caught_up(cluster)
    for _ in range(100):
        assert db["r"]._run() == 1
    deadline = time.monotonic() + 10
    while True:     # a report can be older than the last reads: wait for one that counts them all
        after = cluster.wait_replicas([0, 1])
        served = [after[name]["reads"] - before[name]["reads"] for name in ("ro0", "ro1")]
        if sum(served) >= 100 or time.monotonic() > deadline:
            break
    assert sum(served) >= 100 and min(served) >= 25, served


def test_replica_refuses_writes_locks_and_undo_naming_the_op(cluster, db):
    db["l"] = [1]
    for query, named in [({"op": "set", "path": ["l"], "value": 2}, "set"),
                         ({"op": "call", "path": ["l"], "method": "append", "args": [2]}, "append()"),
                         ({"op": "del", "path": ["l"]}, "del"),
                         ({"op": "lock"}, "lock"), ({"op": "undo"}, "undo"), ({"op": "redo"}, "redo")]:
        with pytest.raises(ReadOnlyError, match=named.replace("(", r"\(").replace(")", r"\)")):
            ro_call(db, query)
    assert db["l"]._run(consistency="strong") == [1]
    assert ro_call(db, {"op": "ping"}) == "pong"
    assert ro_call(db, {"op": "status"})["role"] == "ro"


def test_reads_inside_a_lock_go_to_the_rw_server(cluster, db):
    db["t"] = 0
    with db.lock():
        db["t"] = 1
        assert db["t"]._run() == 1          # only the RW server has the uncommitted write
    assert db["t"]._run() == 1


def test_replica_behind_min_seq_answers_service_unavailable(cluster, db):
    with pytest.raises(ServiceUnavailable, match="behind the requested seq"):
        ro_call(db, {"op": "get", "path": [], "min_seq": 10 ** 9})


# --- consistency ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_cluster():
    """One replica that misses every feed notification: it only polls the log (every 0.2 s)."""
    dead_feed = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    with Cluster(1, "--durability", "none", replica_args=("--feed", dead_feed, "--ro-wait", "0.05")) as c:
        yield c


def replica_reads(cluster, indexes=(0,)) -> int:
    """How many reads the replicas have answered, from their newest status reports."""
    return sum(report["reads"] for report in cluster.wait_replicas(indexes).values())


def wait_replica_reads(cluster, at_least: int, indexes=(0,)) -> int:
    """The replicas' read count once it reaches ``at_least`` (status reports come every half second)."""
    deadline = time.monotonic() + 15
    while (reads := replica_reads(cluster, indexes)) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    return reads


def test_eventual_reads_may_be_stale_read_your_writes_never(slow_cluster):
    """Eventual reads are answered by the replica, with a value written before (stale or not); the default never stale."""
    eventual = slow_cluster.client(ro=True, consistency="eventual")
    default = slow_cluster.client(ro=True)
    default["x"] = -1
    wait_caught_up(slow_cluster, (0,))
    before, stale = replica_reads(slow_cluster), 0
    for i in range(20):
        eventual["x"] = i
        value = eventual["x"]._run()
        assert -1 <= value <= i, value     # this value or an earlier one, never one not yet written
        stale += value != i
    for i in range(20):
        default["x"] = 100 + i
        value = default["x"]._run(consistency="eventual")
        assert value in (*range(-1, 20), *range(100, 101 + i)), value
        stale += value != 100 + i
    print(f"eventual reads that were stale: {stale} of 40")
    assert wait_replica_reads(slow_cluster, before + 40) >= before + 40, \
        "eventual reads (or the per-read override) skipped the replica"
    for i in range(20):
        default["x"] = i
        assert default["x"]._run() == i
        assert default["x"]._run(consistency="strong") == i


@pytest.mark.parametrize("transport", ["zmtp", "zmq"])
@pytest.mark.parametrize("dead_first", [True, False])
def test_reads_fail_over_from_a_dead_ro_address_to_a_live_one(cluster, db, transport, dead_first):
    """A client given two RO addresses, one with nobody listening, still reads from the replicas."""
    dead = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    ro_uris = [dead, cluster.ro_uri] if dead_first else [cluster.ro_uri, dead]
    reader, _ = client(cluster.rw_uri, *ro_uris, timeout=10, attempt_timeout=0.3, consistency="eventual",
                       transport=transport)
    try:
        db["f"] = "over"
        wait_caught_up(cluster)
        before = replica_reads(cluster, (0, 1))
        for _ in range(10):
            assert reader["f"]._run() == "over"
        assert reader._conn.ro_skip_until == 0.0, "a read found no replica and fell back to the RW server"
        assert wait_replica_reads(cluster, before + 10, (0, 1)) >= before + 10, "the reads skipped the replicas"
    finally:
        reader._conn.close()


def test_unknown_consistency_is_refused(cluster, db):
    with pytest.raises(QueryError, match="consistency"):
        db["x"]._run(consistency="sometimes")


# --- watch ----------------------------------------------------------------------------------
def test_watch_yields_every_change_under_a_path_in_order(cluster, db):
    db["w"] = []
    changes = db["w"].watch(timeout=1.0)
    writer = cluster.client()
    for i in range(30):
        writer["w"].append(i)
        writer["other"] = i
    writer["w"].append("last")
    writer.undo()
    seen = list(changes)
    writer._conn.close()
    assert [c["kind"] for c in seen] == ["w"] * 31 + ["u"]
    assert [c["ops"][0]["args"] for c in seen[:31]] == [[i] for i in range(30)] + [["last"]]
    assert all(op["path"][0] == "w" for c in seen for op in c["ops"])
    seqs = [c["seq"] for c in seen]
    assert seqs == sorted(set(seqs))


def test_watch_resumes_from_the_log_after_falling_behind(cluster, db):
    db["v"] = 0
    start = db._conn.last_seq
    for i in range(1, 1201):
        db["v"] = i
    got = [c["ops"][0]["value"] for c in db["v"].watch(since=start, timeout=0.5)]
    assert got == list(range(1, 1201))


def test_watch_works_against_the_rw_server_alone(cluster):
    rw = cluster.client()
    rw["solo"] = 0
    start = rw._conn.last_seq
    rw["solo"] = 1
    rw["solo"] = 2
    assert [c["ops"][0]["value"] for c in rw["solo"].watch(since=start, timeout=0.3)] == [1, 2]
    rw._conn.close()


# --- failures and catching up -----------------------------------------------------------
def test_kill_9_a_replica_under_read_load(cluster, db):
    db["k"] = 0
    wait_caught_up(cluster)   # the readers are other clients: they see the key once the replicas have it
    errors, reads, stop = [], [0, 0], threading.Event()

    def reader(slot):
        rdb = cluster.client(ro=True, timeout=10)
        while not stop.is_set():
            try:
                rdb["k"]._run()
                reads[slot] += 1
            except Exception as exc:   # any error at all fails the test
                errors.append(exc)
        rdb._conn.close()
    threads = [threading.Thread(target=reader, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    cluster.kill_replica(0)
    for i in range(100):
        db["k"] = i
        time.sleep(0.01)
    during_kill = sum(reads)
    time.sleep(1.0)
    assert sum(reads) > during_kill + 50, "reads stalled after a replica died"
    cluster.start_replica(0)
    for i in range(100, 150):
        db["k"] = i
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    reports = wait_caught_up(cluster)
    assert reports["ro0"]["seq"] == rw_seq(cluster)
    assert reports["ro0"]["reads"] > 0, "the restarted replica got no reads"


def test_status_lists_each_replica_with_seq_and_lag(cluster, db):
    db["s"] = 1
    wait_caught_up(cluster)
    out = subprocess.run([sys.executable, "-m", "pyzdb", "status", "--uri", cluster.rw_uri,
                          "--status-feed", cluster.status_feed], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    heading = next(line.split() for line in out.stdout.splitlines() if line.startswith("replicas"))
    assert heading[1:3] == ["2", "reporting"], out.stdout
    seq = rw_seq(cluster)
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.startswith("  ro")}
    assert set(rows) == {"ro0", "ro1"}
    for row in rows.values():
        assert int(row[3]) == seq and int(row[4]) == 0   # name, host, pid, seq, lag, ...


@pytest.fixture(scope="module")
def checkpointing_cluster():
    with Cluster(1, "--durability", "none", "--checkpoint-records", "40") as c:
        yield c


def test_replica_reloads_when_a_checkpoint_removed_the_record_it_needs(checkpointing_cluster):
    cluster = checkpointing_cluster
    db = cluster.client(ro=True)
    db["c"] = 0
    wait_caught_up(cluster, (0,))
    cluster.pause_replica(0)
    for i in range(1, 201):
        db["c"] = i
    # the log file removes a segment once a checkpoint covers all of it: write on until record 2 is gone
    log_dir, i, deadline = os.path.join(cluster.data_dir, "pyzdb.db-log"), 200, time.monotonic() + 60
    while min(int(name[:20]) for name in os.listdir(log_dir)) <= 2 and time.monotonic() < deadline:
        i += 1
        db["c"] = i
    assert db["c"]._run(consistency="strong") == i
    cluster.resume_replica(0)
    reports = wait_caught_up(cluster, (0,))
    assert reports["ro0"]["seq"] == rw_seq(cluster)
    assert reports["ro0"]["reloads"] >= 1
    assert db["c"]._run(consistency="eventual") == i
    with pytest.raises(WatchGap, match="no longer in the log"):
        list(db["c"].watch(since=1, timeout=0.2))
    db._conn.close()


def test_replica_started_later_loads_checkpoint_and_log(checkpointing_cluster):
    cluster = checkpointing_cluster
    db = cluster.client(ro=True)
    cluster.kill_replica(0)
    for i in range(300, 390):
        db["c"] = i
    cluster.start_replica(0)
    assert db["c"]._run(consistency="eventual") == 389
    assert ro_call(db, {"op": "get", "path": ["c"]}) == 389
    db._conn.close()
