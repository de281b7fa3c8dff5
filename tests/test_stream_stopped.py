"""A stream replica SIGSTOPped for longer than the RW server remembers it, while writes and checkpoints go on:
when it wakes, its seq is no longer in the log and it is sent the checkpoint."""
from __future__ import annotations

import os
import signal
import time

from hostile import peak_growth_mib, reset_peak
from test_stream_replica import StreamReplica

from pyzdb.server.replication import FORGET_AFTER
from pyzdb.testing import EmbeddedService, free_ports


def replica_reads(svc):
    """A client whose reads go to the replicas' queue only (eventual: no fallback for being behind)."""
    return svc.client(ro=True, consistency="eventual")


def test_a_replica_stopped_past_forget_after_costs_a_bounded_buffer_and_catches_up_when_woken():
    replication = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    with EmbeddedService("--replication", replication, "--checkpoint-records", "50", "--durability", "none") as svc:
        db = svc.client(timeout=30)
        db["v"] = 0
        replica = StreamReplica(svc, replication, "stopped").start()
        try:
            received = replica.wait_seq(db.status()["seq"])["checkpoints_received"]
            before = reset_peak(svc.proc.pid)
            os.kill(replica.proc.pid, signal.SIGSTOP)
            deadline = time.monotonic() + FORGET_AFTER + 3
            written = 0
            while time.monotonic() < deadline:      # 64 KiB writes and a checkpoint every 50 of them
                written += 1
                db["v"] = written
                db["pad"] = b"p" * (64 << 10)
                time.sleep(0.01)
            growth = peak_growth_mib(svc.proc.pid, before)
            os.kill(replica.proc.pid, signal.SIGCONT)
            print(f"{written} rounds while stopped; RW server peak growth {growth:.1f} MiB")
            assert growth < 64, f"the RW server grew {growth:.0f} MiB for a stopped replica"
            report = replica.wait_seq(db.status()["seq"], timeout=60)
            print("replica report after waking:", {k: report.get(k) for k in ("seq", "checkpoints_received")})
            assert report["seq"] == db.status()["seq"]
            assert report["checkpoints_received"] > received   # its seq was no longer in the log: it got a checkpoint
            assert replica_reads(svc)["v"] == written
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
            replica.close()
