"""Streaming replicas over a delayed link: replica lag p50/p99 and read-after-write, from commit to applied.

Processes on loopback: a broker, a RW server with ``--replication``, and
``--replicas`` replicas that stream the journal into their own data
directories through tests/delay_proxy.py (``--delay-ms`` each way, so the
link's round trip is twice that). A writer writes at ``--rate`` for
``--seconds``; this process hears the RW server's change feed (the commit)
and the replicas' status reports (published each time a replica's applied
seq moves): lag of seq s = when a replica reported s - when the feed
announced it, both taken here. Then a client writes and reads back through
the read-only queue (read-your-writes) ``--ryw`` times.

    python -m bench.bench_stream_lag [--delay-ms 5] [--rate 500] [--seconds 5] [--replicas 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from pyzdb.client import client
from pyzdb.server.replica import collect_status
from pyzdb.testing import free_ports, start_process, stop_process, wait_answering

from .bench_replication_lag import listen
from .timing import percentile

PROXY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "delay_proxy.py")


class StreamSetup:
    """The processes; attribute names as ``bench_replication_lag.listen`` takes them (``feed``, ``status_feed``)."""

    def __init__(self, replicas: int, delay_ms: float) -> None:
        self.root = tempfile.mkdtemp(prefix="pyzdb-bench-stream-")
        ports = free_ports(8 + replicas)
        (self.rw_uri, self.rw_back, self.ro_uri, self.ro_back, self.feed, self.status_feed, self.health,
         self.replication) = (f"tcp://127.0.0.1:{p}" for p in ports[:8])
        self.proxy_ports = ports[8:]
        self.replicas, self.delay_ms = replicas, delay_ms
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        log = os.path.join(self.root, "processes.log")
        self.procs.append(start_process(["broker", "--rw-front", self.rw_uri, "--rw-back", self.rw_back, "--ro-front",
                                         self.ro_uri, "--ro-back", self.ro_back, "--health", self.health], log))
        self.procs.append(start_process(["server", "--data", os.path.join(self.root, "rw"), "--back", self.rw_back,
                                         "--feed", self.feed, "--health", self.health, "--replication",
                                         self.replication, "--durability", "none"], log))
        wait_answering(self.rw_uri, 20, "the RW server", lambda: open(log).read())
        client(self.rw_uri, timeout=5)[0]["n"] = -1
        target = self.replication.rsplit(":", 1)[1]
        for index, port in enumerate(self.proxy_ports):
            proxy = subprocess.Popen([sys.executable, PROXY, f"127.0.0.1:{port}", f"127.0.0.1:{target}",
                                      str(self.delay_ms)], stdout=subprocess.PIPE, text=True)
            proxy.stdout.readline()   # "ready"
            self.procs.append(proxy)
            self.procs.append(start_process(["server", "--ro", "--data", os.path.join(self.root, f"ro{index}"),
                                             "--back", self.ro_back, "--follow", f"tcp://127.0.0.1:{port}",
                                             "--health", self.health, "--status-feed", self.status_feed,
                                             "--name", f"ro{index}"], log))
        names = {f"ro{i}" for i in range(self.replicas)}
        reports = collect_status(self.status_feed, 30, want=names)
        if not names <= set(reports):
            raise RuntimeError(f"replicas did not start:\n{open(log).read()}")

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, timeout=3)
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Print lag p50/p99 per replica and overall, and read-after-write p50/p99 through the replicas."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=5.0, help="one-way delay of the replication link")
    parser.add_argument("--rate", type=float, default=500.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--ryw", type=int, default=500, help="read-your-writes round trips")
    options = parser.parse_args(argv)
    setup = StreamSetup(options.replicas, options.delay_ms)
    try:
        setup.start()
        done, result = threading.Event(), {}
        listener = threading.Thread(target=lambda: result.update(zip(("c", "a"), listen(setup, done))))
        listener.start()
        time.sleep(0.5)
        db, _ = client(setup.rw_uri, timeout=10)
        start = time.monotonic()
        for i in range(int(options.rate * options.seconds)):
            time.sleep(max(0.0, start + i / options.rate - time.monotonic()))
            db["n"] = i
        time.sleep(0.5 + options.delay_ms / 250)
        done.set()
        listener.join()
        ro, _ = client(setup.rw_uri, setup.ro_uri, timeout=10)
        reads = []
        for i in range(options.ryw):
            ro["ryw"] = i
            began = time.perf_counter()
            assert ro["ryw"]._run() == i
            reads.append((time.perf_counter() - began) * 1000)
    finally:
        setup.close()
    committed, applied = result["c"], result["a"]
    print(f"{options.replicas} streaming replicas, link delay {options.delay_ms:g} ms each way "
          f"(round trip {2 * options.delay_ms:g} ms); {len(committed)} commits at {options.rate:g}/s")
    everything = []
    for name in sorted(applied):
        lags = sorted((applied[name][s] - t) * 1000 for s, t in committed.items() if s in applied[name])
        everything += lags
        print(f"{name}: lag p50 {percentile(lags, 0.5):.2f} ms, p99 {percentile(lags, 0.99):.2f} ms "
              f"({len(lags)} seqs)")
    everything.sort()
    reads.sort()
    print(f"all replicas: lag p50 {percentile(everything, 0.5):.2f} ms, p99 {percentile(everything, 0.99):.2f} ms; "
          f"read-after-write through the replicas p50 {percentile(reads, 0.5):.2f} ms, "
          f"p99 {percentile(reads, 0.99):.2f} ms")


if __name__ == "__main__":
    main()
