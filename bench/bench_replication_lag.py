"""Replication lag under a steady write load: p50/p99 from the RW server's commit notice to each replica applying it.

A real cluster on loopback (broker, RW server, ``--replicas`` replicas). A
writer thread writes at ``--rate`` writes/s for ``--seconds``. This process
subscribes to the RW server's change feed (the moment a seq is committed)
and listens to the replicas' status reports, which a replica publishes each
time its applied seq moves. Lag of seq s on a replica = when that replica
reported s (or later) - when the feed announced s. Both times are taken in
this process, so no clocks are compared. The baseline is a write's own
round trip, measured in the same run.

    python -m bench.bench_replication_lag [--rate 500] [--seconds 5] [--replicas 2] [--durability none]
"""
from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

import zmq

from pyzdb.server import feed
from pyzdb.server.replica import STATUS_TOPIC, bind_when_free
from pyzdb.testing import Cluster
from pyzdb.transport import wire

from .timing import percentile


def write_steadily(cluster: Cluster, rate: float, seconds: float, round_trips: list[float]) -> None:
    """Write ``db['n'] = i`` at ``rate`` per second for ``seconds``, recording each write's round trip."""
    db = cluster.client()
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        began = time.monotonic()
        db["n"] = i
        round_trips.append(time.monotonic() - began)
    db._conn.close()


def listen(cluster: Any, until: threading.Event) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Receive feed announcements and replica reports until ``until`` is set.

    ``cluster`` has the addresses ``feed`` (the RW server's change feed) and ``status_feed`` (bound here: the
    replicas connect to it), as ``pyzdb.testing.Cluster`` and bench_stream_lag's setup do.
    Returns (seq -> when the feed announced it, replica name -> seq -> when that replica reported it applied).
    """
    context = zmq.Context.instance()
    announcements, reports = context.socket(zmq.SUB), context.socket(zmq.SUB)
    announcements.setsockopt(zmq.SUBSCRIBE, feed.TOPIC)
    announcements.connect(cluster.feed)
    reports.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC)
    bind_when_free(reports, cluster.status_feed)
    committed: dict[int, float] = {}
    applied: dict[str, dict[int, float]] = {}
    poller = zmq.Poller()
    poller.register(announcements, zmq.POLLIN)
    poller.register(reports, zmq.POLLIN)
    while not until.is_set():
        for sock, _ in poller.poll(100):
            frames, now = sock.recv_multipart(), time.monotonic()
            if sock is announcements:
                parsed = feed.parse(frames)
                if parsed is not None:
                    committed.setdefault(parsed[0], now)
                continue
            report = wire.unpack(frames[-1])
            seen = applied.setdefault(report["name"], {})
            for seq in range(max(seen, default=report["seq"] - 1) + 1, report["seq"] + 1):
                seen[seq] = now
    announcements.close()
    reports.close()
    return committed, applied


def main(argv: list[str] | None = None) -> None:
    """Run the load, then print p50/p99/max lag per replica and overall."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--durability", default="none", choices=("always", "batch", "none"))
    options = parser.parse_args(argv)
    load = os.getloadavg()[0]   # other work on the machine delays the replicas' wake-ups
    with Cluster(options.replicas, "--durability", options.durability) as cluster:
        cluster.client()["n"] = -1
        done, result, round_trips = threading.Event(), {}, []
        listener = threading.Thread(target=lambda: result.update(zip(("c", "a"), listen(cluster, done))))
        listener.start()
        time.sleep(0.5)   # the replicas reconnect their status sockets to this process
        write_steadily(cluster, options.rate, options.seconds, round_trips)
        time.sleep(0.5)
        done.set()
        listener.join()
    committed, applied = result["c"], result["a"]
    rt50 = percentile(sorted(round_trips), 0.5) * 1000
    print(f"{len(round_trips)} writes at {options.rate:g}/s, durability {options.durability}; "
          f"write round trip p50 {rt50:.2f} ms (baseline); load average at start {load:.1f}, {os.cpu_count()} cores")
    everything = []
    for name in sorted(applied):
        lags = [(applied[name][s] - t) * 1000 for s, t in committed.items() if s in applied[name]]
        everything += lags
        print(f"{name}: {len(lags)} seqs, lag p50 {percentile(sorted(lags), 0.5):.2f} ms, p99 {percentile(sorted(lags), 0.99):.2f} ms, "
              f"max {max(lags, default=float('nan')):.2f} ms; unseen {len(committed) - len(lags)}")
    everything.sort()
    p50, p99 = percentile(everything, 0.5), percentile(everything, 0.99)
    print(f"all replicas: lag p50 {p50:.2f} ms ({p50 / rt50:.2f}x a write round trip), p99 {p99:.2f} ms "
          f"({p99 / rt50:.2f}x)")


if __name__ == "__main__":
    main()
