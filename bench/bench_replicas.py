"""Read throughput with 0, 1 and 2 read-only replicas, and the CPU time per read of every server process.

Each case is a real cluster on loopback (broker, RW server, N replicas, all
separate processes) read by ``--workers`` client processes for ``--seconds``.
"RW alone" sends the reads to the RW server; the replica cases send them to
the RO queue. CPU time comes from /proc/<pid>/stat (utime + stime), so the
reads/s one core of each role can give is projected as 1 / (CPU s per read).

    python -m bench.bench_replicas [--seconds 2] [--workers 4] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from pyzdb.client import client
from pyzdb.testing import Cluster

from .bench_cpu import thread_cpu

KEYS = 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of a process, from /proc."""
    return sum(thread_cpu(pid).values())


def worker(uris: list[str], seconds: float, start_at: float) -> None:
    """Read random keys in a loop from ``start_at`` for ``seconds``; print the count."""
    db, _ = client(*uris, timeout=10)
    data = db["data"]
    db["data"]["k0"]._run()
    while time.time() < start_at:
        time.sleep(0.001)
    count, stop, i = 0, start_at + seconds, 0
    while time.time() < stop:
        data[f"k{i % KEYS}"]._run()
        count += 1
        i += 7
    print(count, flush=True)
    time.sleep(1.0)   # alive while the parent reads this process's CPU time


def run_case(replicas: int, workers: int, seconds: float) -> dict:
    """One cluster, ``workers`` reader processes; reads/s and CPU s per read of each server process."""
    with Cluster(replicas, "--durability", "none") as cluster:
        db = cluster.client()
        db["data"] = {f"k{i}": {"n": i, "text": "x" * 64} for i in range(KEYS)}
        if replicas:
            cluster.wait_replicas(range(replicas))
        uris = [cluster.rw_uri] + ([cluster.ro_uri] if replicas else [])
        start_at = time.time() + 1.5
        procs = [subprocess.Popen([sys.executable, "-m", "bench.bench_replicas", "--worker", str(seconds), str(start_at), *uris],
                                  stdout=subprocess.PIPE, text=True) for _ in range(workers)]
        servers = {"broker": cluster.broker, "rw": cluster.rw,
                   **{f"ro{i}": proc for i, proc in enumerate(cluster.replicas)}}
        time.sleep(max(0.0, start_at - time.time()))
        before = {name: cpu_seconds(proc.pid) for name, proc in servers.items()}
        clients_before = sum(cpu_seconds(proc.pid) for proc in procs)
        time.sleep(seconds)
        after = {name: cpu_seconds(proc.pid) for name, proc in servers.items()}
        after["clients"] = sum(cpu_seconds(proc.pid) for proc in procs)
        before["clients"] = clients_before
        reads = sum(int(proc.communicate(timeout=30)[0].split()[-1]) for proc in procs)
        db._conn.close()
    cpu = {name: after[name] - before[name] for name in after}
    return {"reads_per_s": reads / seconds, "reads": reads, "cpu": cpu}


def report(results: dict[str, dict]) -> None:
    """A table: reads/s, ratio to RW alone, CPU µs per read of each process, and what one core would give."""
    base, columns = results["RW alone"]["reads_per_s"], ("clients", "broker", "rw", "ro0", "ro1")
    print(f"{'case':12} {'reads/s':>8} {'ratio':>6}   CPU µs per read: " + " ".join(f"{c:>7}" for c in columns)
          + "   serving µs/read -> reads/s per serving core")
    for name, result in results.items():
        per_read = {proc: 1e6 * seconds / result["reads"] for proc, seconds in result["cpu"].items()}
        cells = " ".join(f"{per_read[p]:7.1f}" if p in per_read else f"{'-':>7}" for p in columns)
        # the reading servers' CPU over all reads: the replicas', or the RW server's when it reads alone
        serving = sum(v for p, v in per_read.items() if p.startswith("ro")) or per_read["rw"]
        print(f"{name:12} {result['reads_per_s']:8.0f} {result['reads_per_s'] / base:6.2f}   {'':16} {cells}"
              f"   {serving:8.1f} -> {1e6 / serving:7.0f}")
    broker = min(1e6 * r["cpu"]["broker"] / r["reads"] for r in results.values())
    print(f"projection: N replicas on N free cores serve about N x the per-core figure, until the broker's "
          f"{broker:.1f} µs per read caps one broker core at {1e6 / broker:.0f} reads/s (clients need cores too)")


def main(argv: list[str] | None = None) -> None:
    """Run the three cases and print the table."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=3.0)
    args.add_argument("--workers", type=int, default=4, help="client processes reading at once")
    args.add_argument("--runs", type=int, default=3, help="runs of each case, interleaved; the median run is shown")
    options = args.parse_args(argv)
    load = os.getloadavg()[0]   # other work on the machine skews every number below
    cases = (("RW alone", 0), ("1 replica", 1), ("2 replicas", 2))
    runs: dict[str, list[dict]] = {name: [] for name, _ in cases}
    for _ in range(options.runs):
        for name, replicas in cases:
            runs[name].append(run_case(replicas, options.workers, options.seconds))
            print(f"{name}: {runs[name][-1]['reads_per_s']:.0f} reads/s", file=sys.stderr, flush=True)
    results = {name: sorted(done, key=lambda r: r["reads_per_s"])[len(done) // 2] for name, done in runs.items()}
    print(f"{options.workers} reader processes, {options.seconds:g} s per case, median of {options.runs} runs, "
          f"{os.cpu_count()} cores, load average at start {load:.1f}")
    report(results)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[4:], float(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
