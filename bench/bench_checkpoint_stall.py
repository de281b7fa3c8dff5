"""Benchmark: get latency while a writer forces checkpoints, on a tree of N small keys.

Starts ``pyzdb serve --durability batch --checkpoint-records R`` (sqlite), loads N top-level keys of
16-byte values, then runs a writer process (a ``set`` loop, so a checkpoint is due every R writes)
while this process times single gets for ``--seconds``. Prints get p50 / p99.9 / max and how many
checkpoints ran meanwhile.

    python -m bench.bench_checkpoint_stall [--keys 1000000] [--seconds 20] [--records 2000]
        [--rounds 3 --modes fork,thread] [-- SERVER FLAGS]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import sys
import time

from pyzdb.server.forked_snapshot import NO_FORK_ENV
from pyzdb.testing import EmbeddedService

VALUE = "v" * 16


def load(service: EmbeddedService, keys: int, batch: int = 20_000) -> None:
    """``keys`` top-level keys ``k0000000…`` of 16-byte strings, ``batch`` per update."""
    db = service.client(timeout=600)
    for start in range(0, keys, batch):
        db.update({f"k{i:08}": VALUE for i in range(start, min(start + batch, keys))})
    db.close()


def writer(rw_uri: str, stop: "multiprocessing.synchronize.Event") -> None:
    """Set one key over and over until ``stop``."""
    from pyzdb.client import client
    db, _ = client(rw_uri, timeout=600)
    i = 0
    while not stop.is_set():
        db["w"] = i
        i += 1


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    return values[min(len(values) - 1, int(round(fraction * (len(values) - 1))))]


def measure(service: EmbeddedService, seconds: float) -> dict:
    """Get latencies (ms) with a writer running; the checkpoints that ran meanwhile."""
    db = service.client(timeout=600)
    before = db.status()["checkpoint_gen"]
    stop = multiprocessing.Event()
    proc = multiprocessing.Process(target=writer, args=(service.rw_uri, stop), daemon=True)
    proc.start()
    latencies: list[float] = []
    clock = time.perf_counter
    deadline = clock() + seconds
    key = "k00000007"
    while (start := clock()) < deadline:
        db[key]._run()
        latencies.append((clock() - start) * 1000)
    stop.set()
    proc.join(30)
    status = db.status()
    latencies.sort()
    return {"gets": len(latencies), "p50_ms": percentile(latencies, 0.5), "p999_ms": percentile(latencies, 0.999),
            "max_ms": latencies[-1], "checkpoints": status["checkpoint_gen"] - before,
            "checkpoint_failures": status["checkpoint_failures"], "seq": status["seq"]}


def main() -> None:
    """Load, measure, print one line."""
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--records", type=int, default=2000, help="--checkpoint-records of the server")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each mode, alternated")
    parser.add_argument("--modes", default="fork",
                        help="fork,fork-thp,thread: thread = PYZDB_NO_FORK=1 (the old way), fork-thp = fork with the "
                             "server's heap on transparent huge pages (PYTHONMALLOC=malloc, glibc.malloc.hugetlb=1)")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    results: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for mode in args.modes.split(","):
            results.setdefault(mode, []).append(run(mode, args.keys, args.seconds, args.records, flags))
    for mode, runs in results.items():
        p999 = statistics.median(r["p999_ms"] for r in runs)
        worst = statistics.median(r["max_ms"] for r in runs)
        print(f"checkpoint stall, {args.keys} keys, {mode}: median of {len(runs)} rounds: get p99.9 {p999:.2f} ms, "
              f"max {worst:.1f} ms (goal p99.9 <= 5 ms, max <= 25 ms)", flush=True)


HUGE_PAGES_ENV = {"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def run(mode: str, keys: int, seconds: float, records: int, flags: list[str]) -> dict:
    """One round: a fresh server in ``mode``, loaded, measured; prints its line.

    ``fork-thp``: the forked snapshot with the server's heap on transparent huge pages (every object from
    glibc's malloc, which asks for them): fork copies a 2 MiB page's one entry instead of 512.
    """
    os.environ[NO_FORK_ENV] = "1" if mode == "thread" else "0"
    for name, value in HUGE_PAGES_ENV.items():
        if mode == "fork-thp":
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    with EmbeddedService("-v", "--durability", "batch", "--checkpoint-records", str(records), *flags) as service:
        started = time.monotonic()
        load(service, keys)
        loaded = time.monotonic() - started
        skip = len(fork_pauses(service.log()))
        result = measure(service, seconds)
        pauses = fork_pauses(service.log())[skip:]
        print(f"checkpoint stall, {keys} keys, {mode} (loaded in {loaded:.0f} s), load average "
              f"{os.getloadavg()[0]:.1f}: get p50 {result['p50_ms']:.2f} ms, p99.9 {result['p999_ms']:.2f} ms, "
              f"max {result['max_ms']:.1f} ms over {result['gets']} gets; {result['checkpoints']} checkpoints "
              f"({result['checkpoint_failures']} failed) while the writer ran; the serving loop's pause to start "
              f"each (fork): {', '.join(f'{p:.1f}' for p in pauses) or '-'} ms", flush=True)
        return result


def fork_pauses(log: str) -> list[float]:
    """The serving loop's pause (ms) to start each checkpoint, from the server's -v log lines."""
    return [float(match) for match in re.findall(r"the serving loop paused ([0-9.]+) ms", log)]


if __name__ == "__main__":
    main()
