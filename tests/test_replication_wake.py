"""The serving loop wakes the replication thread only while a replica streams (a wake per commit cost more CPU than
the write); a replica that attaches later still gets every record committed before it came."""
from __future__ import annotations

import zmq

from pyzdb.server.replication import ReplicationServer
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore
from pyzdb.testing import free_ports
from pyzdb.transport import wire


def commit(journal: Journal, replication: ReplicationServer, value: int) -> None:
    journal.append([[{"k": "w", "ops": [{"op": "set", "path": ["x"], "value": value}], "cid": None, "rid": None,
                      "res": None}]])
    replication.committed(journal.seq)


def test_commits_without_a_replica_wake_nothing_and_a_later_replica_gets_them_all():
    journal = Journal(MemoryStore())
    journal.recover()
    journal.ensure_identity()
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    replication = ReplicationServer(journal, address)
    context = zmq.Context.instance()
    try:
        for value in range(3):        # the thread is not running yet: any wake would wait in its socket
            commit(journal, replication, value)
        assert not replication._wake_in.poll(0), "a commit woke the replication thread with no replica streaming"
        replication.start()
        replica = context.socket(zmq.DEALER)
        replica.setsockopt(zmq.LINGER, 0)
        replica.connect(address)
        replica.send(wire.pack({"op": "from", "epoch": 1, "seq": 0, "crc": 0, "info": {"name": "test"}}))
        records: list = []
        while len(records) < 4:
            assert replica.poll(10_000), f"the replica got {len(records)} of 4 records"
            message = wire.unpack(replica.recv())
            if message["t"] == "log":
                records += message["records"]
            if message["t"] == "hello":
                commit(journal, replication, 3)   # committed while the replica streams: pushed to it
        assert [wire.unpack(raw)[0] for raw in records] == [1, 2, 3, 4]
        replica.close()
    finally:
        replication.stop()
