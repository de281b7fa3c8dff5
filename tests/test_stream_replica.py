"""Replicas that stream the journal into their own copy (``server --ro --follow``), on loopback processes.

tests/test_hosts.py runs the same across network namespaces standing for hosts.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from pyzdb.server.replica import collect_status
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal
from pyzdb.testing import EmbeddedService, free_ports, start_process, stop_process


class StreamReplica:
    """``pyzdb server --ro --follow`` of ``service`` with its own data directory."""

    def __init__(self, service, replication, name, data=None):
        self.service, self.replication, self.name = service, replication, name
        self.data = data or tempfile.mkdtemp(prefix=f"pyzdb-copy-{name}-")
        self.status_feed = f"tcp://127.0.0.1:{free_ports(1)[0]}"
        self.log_path = os.path.join(self.data, "replica.log")
        self.proc = None

    def start(self, wait=True):
        self.proc = start_process(["server", "--ro", "--data", self.data, "--back", self.service.ro_back,
                                   "--follow", self.replication, "--health", self.service.health,
                                   "--status-feed", self.status_feed, "--name", self.name], self.log_path)
        if wait:
            self.report()
        return self

    def report(self, timeout=20.0):
        reports = collect_status(self.status_feed, timeout, want={self.name})
        assert self.name in reports, self.log()
        return reports[self.name]

    def wait_seq(self, seq, timeout=20.0):
        deadline = time.monotonic() + timeout
        while (report := self.report())["seq"] < seq:
            assert time.monotonic() < deadline, f"replica at {report['seq']}, not {seq}\n{self.log()}"
        return report

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def close(self):
        stop_process(self.proc)
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="module")
def replication():
    return f"tcp://127.0.0.1:{free_ports(1)[0]}"


@pytest.fixture(scope="module")
def service(replication):
    with EmbeddedService("--replication", replication, "--checkpoint-records", "100", "--durability", "none") as svc:
        yield svc


def rw_seq(service):
    db = service.client()
    try:
        return db.status()["seq"]
    finally:
        db._conn.close()


def test_replica_receives_the_checkpoint_then_the_log_into_its_own_copy(service, replication):
    db = service.client()
    for i in range(500):
        db[f"k{i}"] = i
    time.sleep(0.3)   # let a checkpoint remove the log it covers, so the replica needs the checkpoint
    replica = StreamReplica(service, replication, "b").start()
    try:
        report = replica.wait_seq(rw_seq(service))
        assert report["checkpoints_received"] >= 1 and report["database"] == db.status()["database"]
        assert os.path.exists(os.path.join(replica.data, "pyzdb.db"))
        ro = service.client(ro=True)
        before = report["reads"]
        for i in range(0, 500, 50):
            assert ro[f"k{i}"] == i
        ro["fresh"] = "value"
        assert ro["fresh"] == "value"   # read-your-writes: the replica waits for the record or sends it to RW
        assert replica.report()["reads"] > before
    finally:
        replica.close()


def test_a_restart_loads_the_local_copy_and_only_catches_up(service, replication):
    db = service.client()
    db["a"] = 1
    replica = StreamReplica(service, replication, "c").start()
    try:
        held = replica.wait_seq(rw_seq(service))["seq"]
        stop_process(replica.proc)
        for i in range(150):   # a checkpoint (every 100) on the way: the log after its seq must be kept for it
            db["a"] = i
        replica.start()
        loaded = int(re.findall(r"at seq (\d+)", replica.log())[-1])
        assert loaded >= held   # served from its copy, not from an empty tree
        report = replica.wait_seq(rw_seq(service))
        assert report["checkpoints_received"] == 0   # the log after its seq was kept: no checkpoint sent again
    finally:
        replica.close()


def test_a_kill_9_replica_resumes_from_its_copy(service, replication):
    db = service.client()
    replica = StreamReplica(service, replication, "d").start()
    try:
        replica.wait_seq(rw_seq(service))
        stop_process(replica.proc, signal.SIGKILL)
        for i in range(20):
            db["b"] = i
        replica.start()
        assert replica.wait_seq(rw_seq(service))["seq"] == rw_seq(service)
    finally:
        replica.close()


def test_a_writer_store_is_not_taken_for_a_copy(service, replication):
    replica = StreamReplica(service, replication, "e", data=tempfile.mkdtemp())
    store = open_store(f"sqlite:///{os.path.join(replica.data, 'pyzdb.db')}")
    journal = Journal(store)
    journal.recover()
    journal.ensure_identity()   # what a read-write server makes: a database with no replica mark
    store.close()
    try:
        replica.start(wait=False)
        assert replica.proc.wait(20) == 2
        assert "not a replica's copy" in replica.log()
    finally:
        replica.close()


def test_a_copy_of_another_database_is_refused(service, replication):
    replica = StreamReplica(service, replication, "f").start()
    other_replication = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    try:
        replica.wait_seq(rw_seq(service))
        stop_process(replica.proc)
        with EmbeddedService("--replication", other_replication) as other:
            wrong = StreamReplica(other, other_replication, "f", data=replica.data).start(wait=False)
            assert wrong.proc.wait(20) == 3
            assert "refusing to mix them" in wrong.log()
    finally:
        replica.close()


def test_status_lists_each_streaming_replica_with_host_seq_lag_and_reads(service, replication):
    replica = StreamReplica(service, replication, "g").start()
    try:
        replica.wait_seq(rw_seq(service))
        ro = service.client(ro=True)
        ro["status-check"] = 1
        for _ in range(5):
            assert ro["status-check"] == 1
        time.sleep(0.6)   # an acknowledgement carries the reads to the RW server
        out = subprocess.run([sys.executable, "-m", "pyzdb", "status", "--uri", service.rw_uri, "--health",
                              service.health, "--replication", replication, "--status-feed", replica.status_feed,
                              "--listen", "1.0"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        streaming = lines[next(i for i, line in enumerate(lines) if line.startswith("streaming replicas")):]
        row = next(line.split() for line in streaming if line.strip().startswith("g "))
        name, host, address, seq, lag, lag_ms, reads = row
        assert host == socket.gethostname() and address == "127.0.0.1"
        assert int(seq) == rw_seq(service) and int(lag) == 0 and float(lag_ms) == 0 and int(reads) >= 5
        assert any(line.strip().startswith("g ") for line in lines if line not in streaming)   # its own report too
    finally:
        replica.close()


def test_under_curve_only_a_server_role_key_streams_or_asks(tmp_path):
    keys = str(tmp_path / "keys")
    subprocess.run([sys.executable, "-m", "pyzdb", "keygen", keys, "--server", "replica"], check=True,
                   capture_output=True, timeout=30)
    back, feed_address, health, replication = (f"tcp://127.0.0.1:{p}" for p in free_ports(4))
    rw = start_process(["server", "--curve", keys, "--data", str(tmp_path / "a"), "--back", back, "--feed",
                        feed_address, "--health", "", "--replication", replication], str(tmp_path / "rw.log"))
    replica = start_process(["server", "--ro", "--curve", keys, "--server-key", "replica", "--data",
                             str(tmp_path / "b"), "--back", back, "--follow", replication, "--health", "",
                             "--status-feed", "", "--name", "b"], str(tmp_path / "b.log"))
    try:
        from pyzdb.server.replication import query_replication
        from pyzdb.transport import curve as auth
        assert query_replication(replication, 1.0) is None   # no key: no answer at all
        deadline = time.monotonic() + 20
        while not (listed := query_replication(replication, 1.0, auth.server_role_options(keys, peer="default"))):
            assert time.monotonic() < deadline, (tmp_path / "b.log").read_text()
        assert [r["name"] for r in listed] == ["b"]
    finally:
        stop_process(replica)
        stop_process(rw)
