"""A reply answers the value as it was when its request ran, though it is encoded after its whole commit group.

Two clients' requests are put in one commit group by sending both while the server is stopped (SIGSTOP) and
letting it go on: it then reads them in one step. The first reads (or ``setdefault`` answers) a container that
the second changes in place; the first's reply, and its retry from the reply table, must not show the change.
"""
import os
import signal

import pytest
import zmq
from hostile import ask

from pyzdb.server.database import Database
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore
from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire


def call(path, method, *args):
    return {"op": "call", "path": path, "method": method, "args": list(args), "kwargs": {}}


@pytest.fixture(scope="module")
def service():
    with EmbeddedService() as svc:
        yield svc


def in_one_group(service, requests: list[tuple[bytes, int, dict]]) -> list[dict]:
    """Send every (client id, request id, query) while the server is stopped; the replies, in request order."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(service.rw_uri)
    try:
        assert ask(service.rw_uri, {"op": "ping"})["ok"] == "pong"
        sock.send_multipart([b"", wire.encode_request(b"p" * 16, 1, {"op": "ping"})])   # connected before the stop
        assert sock.poll(10_000)
        sock.recv_multipart()
        os.kill(service.proc.pid, signal.SIGSTOP)
        try:
            for cid, rid, query in requests:
                sock.send_multipart([b"", wire.encode_request(cid, rid, query)])
        finally:
            os.kill(service.proc.pid, signal.SIGCONT)
        replies = {}
        for _ in requests:
            assert sock.poll(10_000), "no reply"
            reply = wire.unpack(sock.recv_multipart()[-1])
            replies[reply["rid"]] = reply
        return [replies[rid] for _, rid, _ in requests]
    finally:
        sock.close()


def test_setdefault_answers_the_stored_value_as_it_was_before_a_later_write_in_its_group(service):
    assert ask(service.rw_uri, {"op": "set", "path": ["m"], "value": {"k": [0]}})["ok"] is None
    first, second = in_one_group(service, [(b"A" * 16, 1, call(["m"], "setdefault", "k", [])),
                                           (b"B" * 16, 2, call(["m", "k"], "append", 1))])
    assert first["ok"] == [0] and second["ok"] is None
    assert ask(service.rw_uri, {"op": "get", "path": ["m", "k"]})["ok"] == [0, 1]
    retry = ask(service.rw_uri, wire.encode_request(b"A" * 16, 1, call(["m"], "setdefault", "k", [])))   # its kept reply
    assert retry.get("ok") == [0], retry


@pytest.mark.parametrize("read", [{"op": "get", "path": ["d"]}, call(["d"], "get", "a"),
                                  {"op": "iter", "path": ["d"], "items": True},
                                  {"op": "batch", "ops": [{"op": "get", "path": ["d", "a"]}]}],
                         ids=["get", "dict.get", "iter-items", "batch"])
def test_a_read_answers_the_value_as_it_was_before_a_later_write_in_its_group(service, read):
    assert ask(service.rw_uri, {"op": "set", "path": ["d"], "value": {"a": {"x": 1}}})["ok"] is None
    expected = ask(service.rw_uri, read)["ok"]
    tag = read["op"].encode() + read.get("method", "").encode()
    first, second = in_one_group(service, [(tag.ljust(16, b"r"), 1, read),
                                           (tag.ljust(16, b"w"), 2, {"op": "set", "path": ["d", "a", "x"], "value": 2})])
    assert first["ok"] == expected and second["ok"] is None
    assert ask(service.rw_uri, {"op": "get", "path": ["d", "a", "x"]})["ok"] == 2


def test_a_write_elsewhere_does_not_copy_an_earlier_result_and_one_under_it_does():
    db = Database(Journal(MemoryStore()))
    db.open()
    db.handle(b"w", 1, {"op": "set", "path": ["d"], "value": {"a": [1]}})
    db.commit()
    read = db.handle(b"r", 1, {"op": "get", "path": ["d", "a"]})
    db.handle(b"w", 2, {"op": "set", "path": ["e"], "value": [2]})          # another key
    db.handle(b"w", 3, {"op": "set", "path": ["d", "b"], "value": 3})       # d itself: not inside d["a"]
    assert read["ok"] is db.engine.tree["d"]["a"]
    db.handle(b"w", 4, call(["d", "a"], "append", 5))
    assert read["ok"] == [1] and db.engine.tree["d"]["a"] == [1, 5]
    db.commit()


def test_a_setdefault_is_journaled_with_the_value_it_answered():
    db = Database(Journal(MemoryStore()))
    db.open()
    db.handle(b"w", 1, {"op": "set", "path": ["m"], "value": {"k": [0]}})
    db.commit()
    assert db.handle(b"a", 1, call(["m"], "setdefault", "k", []))["ok"] == [0]
    db.handle(b"b", 1, call(["m", "k"], "append", 1))
    db.commit()
    *_, setdefault, append = db.journal.records_after(0, 0)     # (seq, crc, entries) of every record
    assert setdefault[2][0]["res"] == [0] and append[2][0]["res"] is None


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def test_many_reads_of_one_big_value_before_a_write_in_their_group_share_one_copy():
    """300 clients' gets of one 10,000-key dict, then a write into it, in one group: each reply answers the dict
    as it was, from one copy; before, each get's result was copied on its own (about 300 x 0.6 MiB here)."""
    big = {f"k{i}": i for i in range(10_000)}
    with EmbeddedService() as service:
        assert ask(service.rw_uri, {"op": "set", "path": ["big"], "value": big})["ok"] is None
        in_one_group(service, [(b"warm".ljust(16, b"r"), 1, {"op": "get", "path": ["big"]})])
        before = _peak_rss_mib(service.proc.pid)
        requests = [(b"r%015d" % i, 1, {"op": "get", "path": ["big"]}) for i in range(300)]
        replies = in_one_group(service, requests + [(b"w" * 16, 2, {"op": "set", "path": ["big", "new"], "value": 1})])
        grown = _peak_rss_mib(service.proc.pid) - before
        assert all(reply["ok"] == big for reply in replies[:-1]) and replies[-1]["ok"] is None
        assert grown < 40, f"the server's peak RSS grew {grown:.0f} MiB for one value's copies"


def test_results_that_are_one_object_are_copied_once_when_a_write_changes_it():
    db = Database(Journal(MemoryStore()))
    db.open()
    db.handle(b"w", 1, {"op": "set", "path": ["d"], "value": {"a": [1]}})
    db.commit()
    reads = [db.handle(b"r%d" % i, 1, {"op": "get", "path": ["d"]}) for i in range(3)]
    db.handle(b"w", 2, call(["d", "a"], "append", 2))
    assert reads[0]["ok"] == {"a": [1]} and reads[0]["ok"] is reads[1]["ok"] is reads[2]["ok"]
    db.commit()
