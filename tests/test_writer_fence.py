"""One writer per broker: a second RW server gets no requests, a promotion's higher term fences the old one.

Real processes on free loopback ports: a broker with a health socket, RW
servers each on its own store, a streaming replica whose copy is promoted.
A client appends 0, 1, 2, ... to one list and records what was acknowledged;
every acknowledged number must be in the holder's store, once, in order.
"""
import os
import signal
import threading
import time

from pyzdb.broker.fence import GRACE, WriterFence
from pyzdb.broker.health import query_status
from pyzdb.client import client
from pyzdb.server.database import Database
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal
from pyzdb.testing import free_ports, start_process, stop_process, wait_answering
from pyzdb.transport.heartbeat import INTERVAL, LIVENESS


class Deployment:
    """A broker and the servers a test starts against it, with their logs, on free loopback ports."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        ports = free_ports(7)      # all at once: ports asked for one by one can collide
        self.rw_uri, self.rw_back, self.ro_uri, self.ro_back, self.health, self.status_feed, self.replication = (
            f"tcp://127.0.0.1:{p}" for p in ports)
        self.procs = {}

    def log(self, name):
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name, args):
        self.procs[name] = start_process(args, str(self.dir / f"{name}.log"))
        return self.procs[name]

    def start_broker(self, *extra):
        self.start("broker", ["broker", "--rw-front", self.rw_uri, "--rw-back", self.rw_back,
                              "--ro-front", self.ro_uri, "--ro-back", self.ro_back, "--health", self.health, *extra])

    def rw_args(self, data, replication=""):
        return ["server", "--data", str(self.dir / data), "--back", self.rw_back, "--health", self.health,
                "--feed", "", "--replication", replication, "--durability", "none"]

    def stop(self, name, sig=signal.SIGTERM):
        stop_process(self.procs.get(name), sig)

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        for name in self.procs:
            self.stop(name, signal.SIGKILL)

    def wait_log(self, name, text, timeout=20.0):
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            assert time.monotonic() < deadline, f"{name} never logged {text!r}:\n{self.log(name)}"
            time.sleep(0.1)

    def table(self):
        return query_status(self.health, 2.0) or {}

    def wait_holder(self, pid, timeout=20.0):
        """Until the broker's table says the server with ``pid`` holds it; the table."""
        deadline = time.monotonic() + timeout
        while True:
            table = self.table()
            if any(s.get("pid") == pid and s.get("holds") for s in table.get("servers", [])):
                return table
            assert time.monotonic() < deadline, f"pid {pid} never held the broker: {table}"
            time.sleep(0.1)


def stored_list(data_dir, key="log"):
    """The list at ``key`` in the (stopped) store in ``data_dir``; None if there is none."""
    store = open_store(f"sqlite:///{data_dir / 'pyzdb.db'}", create=False)
    try:
        db = Database(Journal(store))
        db.open(clean=False)
        value = db.engine.tree.get(key)
        return None if value is None else list(value)
    finally:
        store.close()


def append_acknowledged(uri, numbers, acknowledged, timeout=30.0):
    """Append each number to ``log`` through the broker; the ones acknowledged go into ``acknowledged``."""
    db, _ = client(uri, timeout=timeout)
    try:
        for n in numbers:
            db["log"].append(n)
            acknowledged.append(n)
    finally:
        db._conn.close()


def test_a_second_rw_server_on_another_store_gets_no_requests_and_says_why(tmp_path):
    dep = Deployment(tmp_path)
    try:
        dep.start_broker()
        first = dep.start("first", dep.rw_args("first"))
        wait_answering(dep.rw_uri, 20, "the first RW server", lambda: dep.log("first"), first)
        db, _ = client(dep.rw_uri, timeout=20)
        db["log"] = []
        db._conn.close()
        dep.wait_holder(first.pid)
        second = dep.start("second", dep.rw_args("second"))
        dep.wait_log("second", "holds this broker; refusing to serve")
        assert f"another RW server (pid {first.pid}" in dep.log("second")
        acknowledged = []
        append_acknowledged(dep.rw_uri, range(40), acknowledged)
        table = dep.wait_holder(first.pid)
        rows = {s["pid"]: s for s in table["servers"] if s.get("role") == "rw"}
        assert rows[first.pid]["holds"] and not rows[second.pid]["holds"] and rows[second.pid]["alive"], table
        assert second.poll() is None            # it waits, refused, rather than serving
        assert "refused RW server" in dep.log("broker")
        dep.stop("second")
        dep.stop("first")
        assert stored_list(tmp_path / "first") == acknowledged == list(range(40))
        assert stored_list(tmp_path / "second") is None     # not one request reached it
    finally:
        dep.close()


def test_a_promoted_replica_fences_the_old_rw_server_frozen_then_resumed_and_restarted(tmp_path):
    dep = Deployment(tmp_path)
    replication = dep.replication
    try:
        dep.start_broker()
        old = dep.start("old", dep.rw_args("old", replication))
        wait_answering(dep.rw_uri, 20, "the old RW server", lambda: dep.log("old"), old)
        db, _ = client(dep.rw_uri, timeout=20)
        db["log"] = []
        db._conn.close()
        acknowledged = []
        append_acknowledged(dep.rw_uri, range(20), acknowledged)
        dep.start("replica", ["server", "--ro", "--data", str(tmp_path / "copy"), "--back", dep.ro_back,
                              "--follow", replication, "--health", dep.health,
                              "--status-feed", dep.status_feed, "--name", "copy"])
        deadline = time.monotonic() + 30
        while not any(s.get("role") == "ro" and s.get("seq", 0) >= 21 for s in dep.table().get("servers", [])):
            assert time.monotonic() < deadline, dep.log("replica")
            time.sleep(0.2)
        dep.stop("replica")
        os.kill(old.pid, signal.SIGSTOP)        # cut off, alive, with its store
        writer = threading.Thread(target=append_acknowledged, args=(dep.rw_uri, range(20, 40), acknowledged, 60))
        writer.start()                          # its first write goes to the frozen old server and waits there
        time.sleep(2.5)                         # its beats run out in the broker's table
        promoted = start_process(["promote", "--data", str(tmp_path / "copy"), "--health", dep.health],
                                 str(tmp_path / "promote.log"))
        assert promoted.wait(60) == 0, (tmp_path / "promote.log").read_text()
        assert "term 1" in (tmp_path / "promote.log").read_text()
        new = dep.start("new", dep.rw_args("copy"))
        dep.wait_holder(new.pid)
        os.kill(old.pid, signal.SIGCONT)
        dep.wait_log("old", "refusing to serve")
        writer.join(90)
        assert not writer.is_alive() and acknowledged == list(range(40)), acknowledged
        dep.stop("old")
        restarted = dep.start("old-again", dep.rw_args("old", replication))
        dep.wait_log("old-again", "promoted to term 1 on this broker; this server's term is 0; refusing to serve")
        append_acknowledged(dep.rw_uri, range(40, 50), acknowledged)
        table = dep.wait_holder(new.pid)
        assert [s["holds"] for s in table["servers"] if s.get("pid") == restarted.pid] == [False], table
        dep.stop("old-again")
        dep.stop("new")
        for name in ("new-again", "new-third"):      # the term is in the store's meta, through checkpoints too
            again = dep.start(name, [*dep.rw_args("copy"), "--checkpoint-records", "5"])
            table = dep.wait_holder(again.pid)
            assert [s["term"] for s in table["servers"] if s.get("pid") == again.pid] == [1], table
            append_acknowledged(dep.rw_uri, range(len(acknowledged), len(acknowledged) + 10), acknowledged)
            dep.stop(name)
        assert stored_list(tmp_path / "copy") == acknowledged == list(range(70))
        # the write in flight to the frozen server may be in its own store too (resumed, it applied what it
        # had read), but its reply was dropped; nothing sent after the fence reached it
        assert stored_list(tmp_path / "old") in (list(range(20)), list(range(21)))
    finally:
        dep.close()


def test_the_fence_rules_beat_by_beat():
    """The holder decided from beats alone (times given): first holds, higher term takes over, lower is refused."""
    fence = WriterFence(started=-GRACE)
    a = {"back_id": "rw-a", "database": "d1", "term": 0, "pid": 1}
    b = {"back_id": "rw-b", "database": "d1", "term": 0, "pid": 2}
    other = {"back_id": "rw-o", "database": "d2", "term": 5, "pid": 3}
    promoted = {"back_id": "rw-p", "database": "d1", "term": 1, "pid": 4}
    assert fence.beat({"database": "d1"}, 0.0) == {}                  # bound at its own front: no candidate
    assert fence.beat(a, 0.0)["holds"] and fence.route_id == b"rw-a"
    refused = fence.beat(b, 0.1)
    assert not refused["holds"] and "another RW server (pid 1, back id rw-a" in refused["reason"]
    assert not fence.beat(other, 0.2)["holds"]                      # another database, even with a higher term
    assert fence.beat(a, 1.0)["holds"]
    assert fence.beat(b, 1.0 + INTERVAL * LIVENESS + 0.1)["holds"]  # a holder silent 1.5 s is replaced
    assert fence.route_id == b"rw-b"
    assert fence.beat(promoted, 3.0)["holds"] and fence.route_id == b"rw-p"   # at once, from a live holder
    for late in (a, b):                                             # a lower term: refused even with no holder
        assert "promoted to term 1" in fence.beat(late, 100.0)["reason"]
    assert fence.route_id == b"rw-p" and fence.terms == {"d1": 1}


def test_a_restarted_broker_learns_the_terms_before_it_lets_a_server_hold():
    """In its first GRACE seconds a broker grants nothing: the old server that beats first cannot take it."""
    fence = WriterFence(started=0.0)
    old = {"back_id": "rw-old", "database": "d1", "term": 0, "pid": 1}
    promoted = {"back_id": "rw-new", "database": "d1", "term": 1, "pid": 2}
    assert fence.beat(old, 0.1) == {} and fence.beat(promoted, 0.4) == {} and fence.route_id is None
    assert not fence.beat(old, GRACE + 0.1)["holds"]
    assert fence.beat(promoted, GRACE + 0.4)["holds"] and fence.route_id == b"rw-new"


def test_an_old_rw_server_once_fenced_never_takes_a_restarted_broker_while_the_promoted_one_is_silent(tmp_path):
    """Promote a copy, let the old server be refused once, freeze the promoted one and restart the broker:
    past its grace the broker knows no higher term. Before, the old server then took the read-write queue and
    acknowledged writes on its stale store that the promoted one never got."""
    dep = Deployment(tmp_path)
    try:
        dep.start_broker()
        old = dep.start("old", dep.rw_args("old", dep.replication))
        wait_answering(dep.rw_uri, 20, "the old RW server", lambda: dep.log("old"), old)
        acknowledged = []
        db, _ = client(dep.rw_uri, timeout=20)
        db["log"] = []
        db._conn.close()
        append_acknowledged(dep.rw_uri, range(5), acknowledged)
        dep.start("replica", ["server", "--ro", "--data", str(tmp_path / "copy"), "--back", dep.ro_back,
                              "--follow", dep.replication, "--health", dep.health, "--name", "copy"])
        deadline = time.monotonic() + 30
        while not any(s.get("role") == "ro" and s.get("seq", 0) >= 6 for s in dep.table().get("servers", [])):
            assert time.monotonic() < deadline, dep.log("replica")
            time.sleep(0.2)
        dep.stop("replica")
        os.kill(old.pid, signal.SIGSTOP)
        time.sleep(INTERVAL * LIVENESS + 1)         # its beats run out in the broker's table
        promoted = start_process(["promote", "--data", str(tmp_path / "copy"), "--health", dep.health],
                                 str(tmp_path / "promote.log"))
        assert promoted.wait(60) == 0, (tmp_path / "promote.log").read_text()
        new = dep.start("new", dep.rw_args("copy"))
        dep.wait_holder(new.pid)
        os.kill(old.pid, signal.SIGCONT)
        dep.wait_log("old", "refusing to serve")
        os.kill(new.pid, signal.SIGSTOP)            # the promoted server silent through the broker's restart
        dep.stop("broker")
        dep.start_broker()
        time.sleep(GRACE + INTERVAL * LIVENESS + 1)
        table = dep.table()
        assert not any(s.get("holds") for s in table.get("servers", [])), table
        late = []
        writer = threading.Thread(target=append_acknowledged, args=(dep.rw_uri, [5], late, 60))
        writer.start()
        time.sleep(2)
        assert late == []                           # held in the broker: no server holds it
        os.kill(new.pid, signal.SIGCONT)
        dep.wait_holder(new.pid)
        writer.join(60)
        assert late == [5]
        dep.stop("new")
        assert stored_list(tmp_path / "copy") == acknowledged + late == list(range(6))
    finally:
        dep.close()
