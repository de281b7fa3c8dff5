"""Async gets per second with 100 tasks on one client: pyzdb's asyncio client against ``redis.asyncio``.

    python -m bench.bench_asyncio [--tasks 100] [--seconds 3] [--rounds 3]

Both servers run on loopback (redis-server as in the suite, bench/setup.sh
installs it); rounds alternate pyzdb and redis and the medians and their
ratio are printed.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.servers import start_pyzdb, start_redis


async def _pyzdb_gets(address: str, tasks: int, seconds: float) -> float:
    from pyzdb.asyncio import client
    db, socket = await client(address)
    await db["k"].set("v" * 16)
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await db["k"]
            done += 1
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    rate = done / (time.monotonic() - started)
    await socket.close()
    return rate


async def _redis_gets(port: int, tasks: int, seconds: float) -> float:
    import redis.asyncio as aredis
    r = aredis.Redis(host="127.0.0.1", port=port, max_connections=tasks)
    await r.set("k", "v" * 16)
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await r.get("k")
            done += 1
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    rate = done / (time.monotonic() - started)
    await r.aclose()
    return rate


def main(argv: list[str] | None = None) -> None:
    """Print async gets/s of pyzdb and redis (medians of alternated rounds) and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    pyzdb, redis = start_pyzdb("pyzdb"), start_redis()
    rates: dict[str, list[float]] = {"pyzdb asyncio": [], "redis.asyncio": []}
    try:
        for _ in range(args.rounds):
            rates["pyzdb asyncio"].append(asyncio.run(_pyzdb_gets(pyzdb.spec["address"], args.tasks, args.seconds)))
            rates["redis.asyncio"].append(asyncio.run(_redis_gets(redis.spec["address"][1], args.tasks, args.seconds)))
    finally:
        pyzdb.stop()
        redis.stop()
    medians = {name: statistics.median(runs) for name, runs in rates.items()}
    for name, runs in rates.items():
        print(f"{name:14} {args.tasks} tasks: {medians[name]:9,.0f} gets/s (rounds {', '.join(f'{r:,.0f}' for r in runs)})")
    print(f"ratio pyzdb / redis.asyncio: {medians['pyzdb asyncio'] / medians['redis.asyncio']:.2f}x")


if __name__ == "__main__":
    main()
