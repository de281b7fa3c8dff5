"""Benchmark: server memory for N small keys (16-byte values) against redis-server holding the same keys,
and the restart time of that pyzdb store after a kill -9.

pyzdb: ``pyzdb serve --durability batch`` (sqlite), N top-level keys set by ``update``s of 20,000, one
checkpoint forced afterwards, RSS read from /proc after the load and again after the restart.
redis: ``redis-server`` (bench/servers.py), the same keys by pipelined SETs, ``used_memory_rss``.

    python bench/bench_memory.py [--keys 1000000,10000000] [-- SERVER FLAGS]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from bench import servers
from pyzdb.testing import EmbeddedService

VALUE = "v" * 16
BATCH = 20_000


def rss_mib(pid: int) -> float:
    """Resident size of a process in MiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pyzdb_memory(keys: int, flags: list[str]) -> dict:
    """RSS after the load and after a kill -9 + restart; the restart's time."""
    with EmbeddedService("--durability", "batch", "--checkpoint-records", "1000000000", "--checkpoint-seconds", "2",
                         *flags) as service:
        db = service.client(timeout=900)
        started = time.monotonic()
        for start in range(0, keys, BATCH):
            db.update({f"k{i:08}": VALUE for i in range(start, min(start + BATCH, keys))})
        loaded = time.monotonic() - started
        while (status := db.status())["checkpoint_seq"] != status["seq"]:   # the restart loads one checkpoint
            time.sleep(0.5)
        loaded_rss = rss_mib(service.proc.pid)
        time.sleep(1.5)   # the batch fsync
        service.kill()
        started = time.monotonic()
        service.start(timeout=900)
        restart = time.monotonic() - started
        db = service.client(timeout=900)
        assert len(db) == keys
        progress = [line for line in service.log().splitlines() if line.startswith("restart: ")][-1:]
        return {"rss": loaded_rss, "rss_clean": rss_mib(service.proc.pid), "loaded_s": loaded, "restart_s": restart,
                "progress": progress[0].strip() if progress else "(none)"}


def redis_memory(keys: int) -> float:
    """redis-server's used_memory_rss in MiB with the same keys and values."""
    import redis
    running = servers.start_redis()
    try:
        host, port = running.spec["address"]
        conn = redis.Redis(host=host, port=port)
        for start in range(0, keys, BATCH):
            pipe = conn.pipeline(transaction=False)
            for i in range(start, min(start + BATCH, keys)):
                pipe.set(f"k{i:08}", VALUE)
            pipe.execute()
        return conn.info("memory")["used_memory_rss"] / (1 << 20)
    finally:
        running.stop()


def main() -> None:
    """One line per key count."""
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", default="1000000")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    for keys in [int(k) for k in args.keys.split(",")]:
        redis_rss = redis_memory(keys)
        ours = pyzdb_memory(keys, flags)
        print(f"memory, {keys} keys of 16-byte values, load average {os.getloadavg()[0]:.1f}: pyzdb RSS "
              f"{ours['rss']:.0f} MiB after the load, {ours['rss_clean']:.0f} MiB after a restart; redis-server "
              f"{redis_rss:.0f} MiB; ratio {ours['rss'] / redis_rss:.2f}x loaded, {ours['rss_clean'] / redis_rss:.2f}x "
              f"restarted (goal <= 2.0x); restart after kill -9 {ours['restart_s']:.1f} s (goal <= 10 s); "
              f"last progress line: {ours['progress']}", flush=True)


if __name__ == "__main__":
    main()
