"""Monotonic reads: a strong read then a read-your-writes read never goes back in time, over two replicas.

Writer processes keep the RW server's commit groups full of pending
increments while a reader alternates strong reads (the RW server) and
read-your-writes reads (a replica, or the RW server when the replica is
behind). Each read must return at least the value of the read before it.
"""
import os
import subprocess
import sys
import time

import pytest

from pyzdb.testing import Cluster

PAIRS = int(os.environ.get("MONOTONIC_PAIRS", "2000"))
WRITER = """
import sys, time
from pyzdb.client import client
db, _ = client(sys.argv[1], timeout=30)
stop = time.monotonic() + float(sys.argv[2])
while time.monotonic() < stop:
    db['n'] += 1
"""


def run_pairs(pairs: int) -> None:
    with Cluster(2, "--durability", "batch", "--batch-ms", "2") as cluster:
        setup = cluster.client()
        setup["n"] = 0
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, cluster.rw_uri, "600"], start_new_session=True)
                   for _ in range(3)]
        try:
            reader = cluster.client(ro=True, timeout=30)
            regressions, last, started = [], 0, time.monotonic()
            for index in range(pairs):
                strong = reader["n"]._run("strong")
                after = reader["n"]._run("read-your-writes")
                if strong < last or after < strong:
                    regressions.append((index, last, strong, after))
                last = after
            elapsed = time.monotonic() - started
            print(f"{pairs} strong-then-read-your-writes pairs in {elapsed:.1f} s, final n={last}, "
                  f"regressions={len(regressions)}")
            assert last > 0, "the writers wrote nothing: the test would show nothing"
            assert not regressions, f"reads went back in time (index, before, strong, after): {regressions[:10]}"
        finally:
            for proc in writers:
                proc.kill()
                proc.wait()


def test_strong_then_read_your_writes_never_goes_back():
    run_pairs(PAIRS)


@pytest.mark.slow
def test_ten_thousand_pairs_never_go_back():
    run_pairs(10_000)
