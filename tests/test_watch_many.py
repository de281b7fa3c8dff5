"""A replica facing more watchers than it may hold: bounded memory and work, watchers answered, writes still seen."""
from __future__ import annotations

import time

import zmq
from hostile import memory_kib

from pyzdb.server.replica import MAX_HELD
from pyzdb.testing import Cluster
from pyzdb.transport import wire

WATCHERS = 2 * MAX_HELD


def test_a_replica_holds_at_most_max_held_watchers_and_answers_the_rest_at_once():
    with Cluster(1, "--durability", "none") as cluster:
        db = cluster.client(ro=True)
        db["w"] = 0
        seq = db.status()["seq"]
        replica = cluster.replicas[0].pid
        before = memory_kib(replica)
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(cluster.ro_uri)
        try:
            for number in range(WATCHERS):      # each its own client id, each a 5 s long poll far ahead of the log
                query = {"op": "watch", "path": ["nothing"], "since": seq + 10**6, "wait": 5}
                sock.send_multipart([b"", wire.encode_request(b"watcher%d" % number, 1, query)])
            answered, deadline = 0, time.monotonic() + 4
            while answered < WATCHERS - MAX_HELD and sock.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                reply = wire.unpack(sock.recv_multipart()[-1])
                if "err" in reply:     # the broker's read-only queue was full and refused it: answered at once too
                    assert reply["err"][0] == "NoAnswer", reply
                else:
                    assert reply["ok"]["changes"] == [], reply
                answered += 1
            assert answered >= WATCHERS - MAX_HELD, f"only {answered} of the watchers over the bound were answered"
            growth = (memory_kib(replica) - before) / 1024
            print(f"replica RSS growth with {WATCHERS} watchers: {growth:.1f} MiB")
            db["w"] = 1
            assert cluster.client(ro=True)["w"] == 1      # read-your-writes through the replica still works
        finally:
            sock.close()
