"""Benchmark: the durability trade-off. Writes/s and latency for --durability always | batch | none, 1 and 4 clients.

``always`` fsyncs before every reply (writes that arrive together share one
fsync); ``batch`` gathers writes into groups (waiting up to --batch-ms only
for writers it expects) and hands each group to the OS before the replies,
with the WAL fsynced once a second in the background (Redis's ``appendfsync
everysec``: a killed server loses nothing, a power cut at most the last
second); ``none`` never fsyncs. Each client is its own process doing
``db['counter<n>'] += 1`` in a loop for --seconds.

    python -m bench.bench_durability [--seconds 3] [--clients 1 4] [--batch-ms 2]

Measured 2026-11-24 (2 cores, ext4 on a virtual disk where one fsync'ed
sqlite commit costs ~0.26 ms, --batch-ms 2, a shared machine):

    durability   clients    writes/s   median ms
    always             1       1,536        0.60
    always             4       4,187        0.86
    batch              1       2,138        0.38
    batch              4       5,019        0.72
    none               1       2,407        0.40
    none               4       5,795        0.65
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

from pyzdb.client import client
from pyzdb.storage.sqlite import SqliteStore
from pyzdb.testing import EmbeddedService

MODES = ("always", "batch", "none")


def client_loop(uri: str, number: int, seconds: float, start_at: float, out: "multiprocessing.Queue") -> None:
    """One client process: increment a counter of its own until the time is up; report latencies."""
    db, _ = client(uri, timeout=30)
    key = f"counter{number}"
    db[key] = 0
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while time.time() < end:
        began = time.perf_counter()
        db[key].increment()
        latencies.append(time.perf_counter() - began)
    out.put(latencies)


def measure(uri: str, clients: int, seconds: float) -> tuple[float, float]:
    """(writes/s, median latency in ms) of ``clients`` concurrent client processes."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 1.5        # time for the processes to start and connect
    procs = [context.Process(target=client_loop, args=(uri, n, seconds, start_at, out)) for n in range(clients)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for proc in procs:
        proc.join()
    latencies = [value for result in results for value in result]
    return len(latencies) / seconds, statistics.median(latencies) * 1000


def commit_cost(durability: str, count: int = 300) -> float:
    """Milliseconds one small sqlite commit takes at a durability level on this disk."""
    directory = tempfile.mkdtemp(prefix="pyzdb-bench-sync-")
    store = SqliteStore(os.path.join(directory, "s.db"), durability=durability)
    started = time.perf_counter()
    for i in range(count):
        store.set_bulk({b"log/%d" % i: b"x" * 100})
    elapsed = time.perf_counter() - started
    store.close()
    shutil.rmtree(directory, ignore_errors=True)
    return elapsed / count * 1000


def main(argv: list[str] | None = None) -> int:
    """Print a table of writes/s per mode and client count, with ratios to ``always`` with 1 client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch-ms", default="2")
    args = parser.parse_args(argv)
    rows = []
    for mode in MODES:
        with EmbeddedService("--durability", mode, "--batch-ms", args.batch_ms) as service:
            for clients in args.clients:
                rate, median = measure(service.rw_uri, clients, args.seconds)
                rows.append((mode, clients, rate, median))
    baseline = rows[0][2]
    print(f"{'durability':<12}{'clients':>8}{'writes/s':>12}{'median ms':>12}{'vs always/1':>13}")
    for mode, clients, rate, median in rows:
        print(f"{mode:<12}{clients:>8}{rate:>12,.0f}{median:>12.2f}{rate / baseline:>12.2f}x")
    print(f"(sqlite store, --batch-ms {args.batch_ms}, {args.seconds:g} s per row, each client a process)")
    print(f"one sqlite commit here: {commit_cost('always'):.3f} ms with fsync, {commit_cost('none'):.3f} ms without; "
          "batch pays off only where an fsync costs more than the batch window")
    return 0


if __name__ == "__main__":
    sys.exit(main())
