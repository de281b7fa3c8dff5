"""Hostile requests against real servers: none stops the RW server, a replica, the broker or the health socket,
none changes what is stored, and none grows a server's memory by what the attack asked for.

Each attack is one the review of issue 13 reproduced, at a modest size: the servers run with a 1 MiB
``--max-message`` so that a reply the attack asks for is far over it while the test stays fast. Memory is the
server process's peak resident set (``VmHWM`` in /proc/PID/status, reset before each attack).
"""
import time

import pytest
import zmq
from hostile import ask, ask_many, error_name, peak_growth_mib, reset_peak

from pyzdb.broker.health import query_status
from pyzdb.testing import Cluster, EmbeddedService
from pyzdb.transport import wire
from pyzdb.transport.heartbeat import BEAT
from pyzdb.tree.files import File

MAX_MESSAGE = 1 << 20
VALUE = b"v" * (64 << 10)                  # 64 KiB
BIG_LIST = 1_000_000
TEXT = "t" * 100_000


def build(db) -> None:
    """The values the attacks aim at (written in parts: each write is under the 1 MiB limit)."""
    db["value"] = VALUE
    db["big"] = []
    for start in range(0, BIG_LIST, 100_000):
        db["big"].extend(list(range(start, start + 100_000)))
    db["text"] = TEXT
    db["huge"] = []
    for _ in range(3):
        db["huge"].append("h" * 500_000)   # 1.5 MB: one get of it is over the reply limit
    db["nul"] = File("/tmp/pyzdb-\0-nul")
    db["keep"] = {"n": 1, "l": [1, 2, 3]}


@pytest.fixture(scope="module")
def service():
    with EmbeddedService("--max-message", str(MAX_MESSAGE)) as svc:
        db = svc.client(timeout=30)
        build(db)
        db._conn.close()
        yield svc


@pytest.fixture(scope="module")
def cluster():
    with Cluster(1, "--max-message", str(MAX_MESSAGE), broker_args=("--ro-high-water", "10")) as cl:
        db = cl.client(timeout=30)
        build(db)
        db._conn.close()
        for _ in range(200):               # the replica has applied every write
            if ask(cl.ro_uri, {"op": "get", "path": ["keep"]}).get("ok") == {"n": 1, "l": [1, 2, 3]}:
                break
        yield cl


def targets(request):
    """(uri, pid) of the server under attack: the RW server of ``pyzdb serve``, or the cluster's replica."""
    if request.param == "rw":
        svc = request.getfixturevalue("service")
        return svc.rw_uri, svc.proc.pid
    cl = request.getfixturevalue("cluster")
    return cl.ro_uri, cl.replicas[0].pid


@pytest.fixture(params=["rw", "replica"])
def target(request):
    uri, pid = targets(request)
    before = ask(uri, {"op": "get", "path": ["keep"]})["ok"]
    yield uri, pid
    assert ask(uri, {"op": "ping"})["ok"] == "pong", "the server stopped answering"
    assert ask(uri, {"op": "get", "path": ["keep"]})["ok"] == before, "stored data changed"
    assert ask(uri, {"op": "len", "path": ["big"]})["ok"] == BIG_LIST


def test_an_op_that_is_not_a_string_is_refused(target):
    uri, _ = target
    reply = ask(uri, {"op": [1]})
    assert error_name(reply) == "QueryError"
    assert "must be a str" in reply["err"][1]
    assert ask(uri, {"op": [1]})["err"][0] == "QueryError"     # the client's retry too


def test_file_read_of_a_path_with_a_nul_byte_is_refused(target):
    uri, _ = target
    reply = ask(uri, {"op": "file_read", "path": ["nul"], "offset": 0, "size": 10})
    assert error_name(reply) == "FileAccessError"
    assert "NUL" in reply["err"][1]


def test_a_batch_of_gets_over_the_reply_limit_is_refused_before_it_is_built(target):
    uri, pid = target
    before = reset_peak(pid)
    reply = ask(uri, {"op": "batch", "ops": [{"op": "get", "path": ["value"]}] * 2000})   # a 128 MiB reply
    assert error_name(reply) == "MessageTooLarge", reply
    assert peak_growth_mib(pid, before) < 16


def test_one_get_of_a_value_over_the_reply_limit_is_refused_before_encoding(target):
    uri, pid = target
    before = reset_peak(pid)
    reply = ask(uri, {"op": "get", "path": ["huge"]})
    assert error_name(reply) == "MessageTooLarge", reply
    assert peak_growth_mib(pid, before) < 1                     # encoding it would take 1.5 MB


def test_a_batch_of_iter_over_a_long_string_is_too_costly(target):
    uri, pid = target
    before = reset_peak(pid)
    reply = ask(uri, {"op": "batch", "ops": [{"op": "iter", "path": ["text"]}] * 150})
    assert error_name(reply) == "RequestTooCostly", reply
    assert "--max-work" in reply["err"][1]
    assert peak_growth_mib(pid, before) < 16                    # building it: 15 million characters as a list
    assert ask(uri, {"op": "iter", "path": ["text"], "start": 0, "limit": 10})["ok"] == ["t"] * 10


def test_iter_with_items_of_the_root_over_the_reply_limit_is_refused_before_encoding(target):
    uri, pid = target
    before = reset_peak(pid)
    reply = ask(uri, {"op": "iter", "path": [], "items": True})     # every pair: the 1.5 MB "huge" among them
    assert error_name(reply) == "MessageTooLarge", reply
    assert peak_growth_mib(pid, before) < 4
    page = ask(uri, {"op": "iter", "path": [], "start": 0, "limit": 1, "items": True})["ok"]
    assert page == [["value", VALUE]]                             # a page within the limit is answered


def test_a_batch_of_iter_with_items_over_the_reply_limit_is_refused_before_it_is_built(target):
    uri, pid = target
    before = reset_peak(pid)
    pair = {"op": "iter", "path": [], "start": 0, "limit": 1, "items": True}    # [["value", 64 KiB]]
    reply = ask(uri, {"op": "batch", "ops": [pair] * 2000})                     # a 128 MiB reply
    assert error_name(reply) == "MessageTooLarge", reply
    assert peak_growth_mib(pid, before) < 16


def test_a_batch_of_list_count_over_a_long_list_is_too_costly(target):
    uri, _ = target
    count = {"op": "call", "path": ["big"], "method": "count", "args": [7], "kwargs": {}}
    reply = ask(uri, {"op": "batch", "ops": [count] * 1500})
    assert error_name(reply) == "RequestTooCostly", reply
    assert ask(uri, count)["ok"] == 1                            # one count is within the budget
    sort = {"op": "call", "path": ["big"], "method": "sort", "args": [], "kwargs": {"reverse": True}}
    assert error_name(ask(uri, sort)) in ("RequestTooCostly", "ReadOnlyError")


def test_the_read_only_queue_with_no_replica_answers_service_unavailable(service):
    pid = service.proc.pid
    before = reset_peak(pid)
    payload = {"op": "get", "path": ["keep"], "pad": b"p" * (900 << 10)}
    replies = ask_many(service.ro_uri, [payload] * 40)          # 36 MiB that nothing will serve
    assert {error_name(reply) for reply in replies} == {"NoAnswer"}           # a ServiceUnavailable
    assert peak_growth_mib(pid, before) < 16
    db = service.client(ro=True)
    assert db["keep"]["n"]._run() == 1                          # a client's read goes to the RW server at once
    db._conn.close()


def test_the_read_only_queue_holds_a_bounded_number_of_requests(cluster):
    """A replica that stops reading: the broker holds its high-water mark (10 here) and refuses the rest."""
    pid = cluster.broker.pid
    payload = {"op": "get", "path": ["keep"], "pad": b"p" * (500 << 10)}
    before = reset_peak(pid)
    cluster.pause_replica(0)
    try:
        replies = _send_while_paused(cluster.ro_uri, payload, 60)
    finally:
        cluster.resume_replica(0)
    refused = [r for r in replies if error_name(r) == "NoAnswer"]
    assert refused, "no request was refused while the replica was paused"
    assert peak_growth_mib(pid, before) < 20                    # 60 x 500 KiB = 30 MiB sent
    deadline = time.monotonic() + 30                            # the replica works off what the queue held
    while ask(cluster.ro_uri, {"op": "ping"}).get("ok") != "pong":
        assert cluster.replicas[0].poll() is None, cluster.log("ro0")
        assert time.monotonic() < deadline, "the replica did not answer again after it was resumed"
        time.sleep(0.1)


def _send_while_paused(uri: str, payload: dict, count: int) -> list[dict]:
    """Send ``count`` requests at once; the replies that come back within a few seconds (the refused ones)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(uri)
    try:
        for rid in range(count):
            sock.send_multipart([b"", wire.encode_request(b"hostile", rid + 1, payload)])
        replies = []
        while sock.poll(3000):
            replies.append(wire.unpack(sock.recv_multipart()[-1]))
        return replies
    finally:
        sock.close()


def test_the_health_socket_survives_garbage(cluster):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(cluster.health)
    for frames in ([b"BEAT", b"\xc1garbage"], [b"BEAT", b"\x93\x01\x02"], [b"BEAT", b"\x81\xa1a\xc7\x01\x05x"],
                   [b"STATUS", b"extra"], [b""], [b"BEAT"] * 5, [b"\x00" * 60000], [b"BEAT", b"\x91" * 5000]):
        sock.send_multipart(frames)
    sock.close()
    status = query_status(cluster.health, timeout=5)
    assert status is not None and any(s.get("role") == "rw" for s in status["servers"])
    assert cluster.broker.poll() is None


def test_beats_that_decode_far_larger_than_they_are_do_not_grow_the_broker(cluster):
    """A beat of 64 KiB (the socket's limit) of nested empty lists from each of 100 peers: before, the broker kept
    each decoded (about 4.5 MB each, 450 MiB in all) in its table for a minute."""
    fat = wire.pack({"role": "ro", "pad": [[]] * 64_000})
    before = reset_peak(cluster.broker.pid)
    socks = []
    try:
        for _ in range(100):
            sock = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(cluster.health)
            sock.send_multipart([BEAT, fat])
            socks.append(sock)
        for sock in socks:
            assert sock.poll(5000), "the health socket did not answer a beat"
        status = query_status(cluster.health, timeout=5)
    finally:
        for sock in socks:
            sock.close()
    assert status is not None and not any("pad" in server for server in status["servers"])
    assert any(server.get("role") == "rw" and server.get("alive") for server in status["servers"])
    assert peak_growth_mib(cluster.broker.pid, before) < 40


def test_a_write_batched_with_reads_over_the_reply_limit_is_undone(service):
    pid = service.proc.pid
    before = reset_peak(pid)
    ops = [{"op": "set", "path": ["planted"], "value": 1}] + [{"op": "get", "path": ["value"]}] * 2000
    assert error_name(ask(service.rw_uri, {"op": "batch", "ops": ops})) == "MessageTooLarge"
    assert peak_growth_mib(pid, before) < 16
    assert error_name(ask(service.rw_uri, {"op": "get", "path": ["planted"]})) == "PathKeyError"
    status = ask(service.rw_uri, {"op": "status"})["ok"]
    assert ask(service.rw_uri, {"op": "undo"}).get("ok") is None            # the newest write is still build()'s
    assert error_name(ask(service.rw_uri, {"op": "get", "path": ["keep"]})) == "PathKeyError"
    assert ask(service.rw_uri, {"op": "redo"}).get("ok") is None
    assert ask(service.rw_uri, {"op": "get", "path": ["keep"]})["ok"] == {"n": 1, "l": [1, 2, 3]}
    assert ask(service.rw_uri, {"op": "status"})["ok"]["seq"] == status["seq"] + 2


@pytest.mark.parametrize("read, count, refusal", [
    ({"op": "iter", "path": [], "start": 0, "limit": 1, "items": True}, 2000, "MessageTooLarge"),   # [["value", 64 KiB]]
    ({"op": "get", "path": []}, 10, "RequestTooCostly")])      # the root: its copy's cost counts the 10^6-item list
def test_reads_before_a_write_in_a_batch_are_refused_before_their_copies_outgrow_the_reply_limit(target, read, count,
                                                                                                  refusal):
    """A read before a write is copied (the write may change it in place): the copies stop at the reply limit,
    or the batch's estimated work, which counts a copy by its size, refuses it before it runs."""
    uri, pid = target
    before = reset_peak(pid)
    ops = [read] * count + [{"op": "set", "path": ["planted"], "value": 1}]
    reply = ask(uri, {"op": "batch", "ops": ops})
    assert error_name(reply) in (refusal, "ReadOnlyError"), reply            # a replica refuses any write at once
    if error_name(reply) == "MessageTooLarge":
        assert f"over the limit of {MAX_MESSAGE:,} bytes" in reply["err"][1]
    assert peak_growth_mib(pid, before) < 16
    assert error_name(ask(uri, {"op": "get", "path": ["planted"]})) == "PathKeyError"     # the batch is atomic
