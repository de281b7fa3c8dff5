"""Benchmark: cached gets (``client(..., cache=True)``) against redis-py GET and uncached pyzdb gets, one client.

Rounds alternate (pyzdb cached, pyzdb uncached, redis GET), each ``--seconds`` long; the medians and the
ratios from the same run are printed. Also the cost on the write path: what building the invalidation
message of a one-``set`` commit takes in the server (prefixes + encode), in microseconds.

    python -m bench.bench_client_cache [--seconds 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
import timeit

from bench import servers
from pyzdb.testing import EmbeddedService
from pyzdb.transport import invalidation

VALUE = "v" * 16


def rate(call, seconds: float) -> float:
    """Calls per second of ``call`` over ``seconds``."""
    for _ in range(100):
        call()
    count, clock = 0, time.perf_counter
    deadline = clock() + seconds
    while clock() < deadline:
        for _ in range(100):
            call()
        count += 100
    return count / seconds


def write_path_cost_us() -> float:
    """Server time per one-set commit spent on the invalidation message."""
    batch = [[{"k": "w", "ops": [{"op": "set", "path": ["key1234"], "value": VALUE}], "cid": b"c" * 16, "rid": 1}]]
    number = 20_000
    took = timeit.timeit(lambda: invalidation.message(
        5, 5, "0" * 32, invalidation.prefixes_of(e for entries in batch for e in entries)), number=number)
    return took / number * 1e6


def main() -> None:
    """Alternated rounds, medians, ratios."""
    import redis
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    running = servers.start_redis()
    try:
        with EmbeddedService("--durability", "batch") as service:
            cached = service.client(cache=True, feed=service.feed)
            plain = service.client()
            plain["k"] = VALUE
            while (cached._conn.cache.seen or 0) < plain._conn.last_seq:
                time.sleep(0.01)
            host, port = running.spec["address"]
            conn = redis.Redis(host=host, port=port)
            conn.set("k", VALUE)
            rounds: dict[str, list[float]] = {"cached": [], "uncached": [], "redis": []}
            for _ in range(args.rounds):
                rounds["cached"].append(rate(lambda: cached["k"]._run(), args.seconds))
                rounds["uncached"].append(rate(lambda: plain["k"]._run(), args.seconds))
                rounds["redis"].append(rate(lambda: conn.get("k"), args.seconds))
            hits = cached._conn.cache.hits
    finally:
        running.stop()
    med = {name: statistics.median(values) for name, values in rounds.items()}
    print(f"cached gets, 1 client, load average {os.getloadavg()[0]:.1f}, medians of {args.rounds} alternated rounds: "
          f"pyzdb cache=True {med['cached']:.0f} gets/s, pyzdb uncached {med['uncached']:.0f}, redis-py GET "
          f"{med['redis']:.0f}; cached / redis GET {med['cached'] / med['redis']:.1f}x (goal >= 5x), "
          f"cached / uncached {med['cached'] / med['uncached']:.1f}x ({hits} hits); invalidation message on the "
          f"write path {write_path_cost_us():.1f} us per one-set commit", flush=True)


if __name__ == "__main__":
    main()
