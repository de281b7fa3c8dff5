"""A stream replica whose own copy's disk fills up: it stays behind without lying, and catches up once there is room."""
from __future__ import annotations

import os
import time

from test_disk_full import fill, small_disk  # noqa: F401 - the fixture
from test_stream_replica import StreamReplica

from pyzdb.testing import EmbeddedService, free_ports


def test_a_replica_whose_disk_is_full_stays_behind_and_catches_up_when_space_returns(small_disk):  # noqa: F811
    replication = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    with EmbeddedService("--replication", replication, "--durability", "none") as svc:
        db = svc.client(ro=True, timeout=30)           # reads on the replicas' queue, read-your-writes
        db["v"] = 0
        replica = StreamReplica(svc, replication, "full", data=os.path.join(small_disk, "copy"))
        os.makedirs(replica.data)
        replica.start()
        try:
            replica.wait_seq(db.status()["seq"])
            filler = os.path.join(small_disk, "filler")
            fill(filler)
            for i in range(1, 41):
                db["v"] = i
                db[f"pad{i}"] = b"p" * (256 << 10)      # 10 MiB the copy has no room for
            deadline = time.monotonic() + 20
            while not (stuck := replica.report())["copy_fault"]:
                assert time.monotonic() < deadline, f"the replica's status never named the fault: {stuck}"
            assert replica.proc.poll() is None, replica.log()
            assert stuck["seq"] < db.status()["seq"]
            assert "disk is full" in stuck["copy_fault"] and stuck["lag"] > 0, stuck      # its status says why
            assert replica.log().count("Traceback") == 0 and replica.log().count("asking again every") == 1
            eventual = svc.client(ro=True, consistency="eventual")
            assert eventual["v"] < 40 or stuck["seq"] >= db.status()["seq"]   # behind, never ahead of its copy
            assert db["v"] == 40                        # read-your-writes: the RW server answers for the replica
            os.remove(filler)
            report = replica.wait_seq(db.status()["seq"], timeout=60)
            assert report["seq"] == db.status()["seq"], replica.log()
            assert replica.report()["copy_fault"] is None
            assert svc.client(ro=True, consistency="eventual")["v"] == 40
        finally:
            replica.close()
