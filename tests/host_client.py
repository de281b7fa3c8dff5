"""Client workloads run on a simulated host (tests/hosts.py); each prints one JSON line of results.

``host_client.py ryw RW_URI RO_URI N``: N times write a value and read it
back through the read-only queue (read-your-writes); counts stale reads and
times the reads. ``load RW_URI RO_URI SECONDS``: the same in a loop for a
while, counting errors too. ``fill RW_URI N``: write keys k0..kN-1.
``get RW_URI RO_URI KEY``: one read through the RO queue. ``wait HEALTH RW_URI
NAMES TIMEOUT``: wait until the named replicas reached the RW server's seq.
"""
from __future__ import annotations

import json
import sys
import time

from pyzdb.client import client
from pyzdb.errors import Error


def ryw(rw: str, ro: str, count: int) -> dict:
    db, _ = client(rw, ro, timeout=5)
    stale, times = 0, []
    for i in range(count):
        db["ryw"] = i
        started = time.perf_counter()
        value = db["ryw"]._run()
        times.append(time.perf_counter() - started)
        stale += value != i
    times.sort()
    return {"n": count, "stale": stale, "p50_ms": times[len(times) // 2] * 1000,
            "p99_ms": times[int(len(times) * 0.99)] * 1000}


def load(rw: str, ro: str, seconds: float) -> dict:
    db, _ = client(rw, ro, timeout=3)
    writes = reads = stale = errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            db["load"] = writes
            writes += 1
            value = db["load"]._run()
            reads += 1
            stale += value != writes - 1
        except Error:
            errors += 1
    return {"writes": writes, "reads": reads, "stale": stale, "errors": errors}


def fill(rw: str, count: int) -> dict:
    db, _ = client(rw, timeout=10)
    for i in range(count):
        db[f"k{i}"] = i
    return {"seq": db.status()["seq"]}


def get(rw: str, ro: str, key: str) -> dict:
    db, _ = client(rw, ro, timeout=5)
    started = time.perf_counter()
    value = db[key]._run(consistency="eventual")
    return {"value": value, "ms": (time.perf_counter() - started) * 1000}


def wait(health: str, rw: str, names: str, timeout: float) -> dict:
    """Wait until every named replica is alive in the broker's health table at the RW server's seq."""
    from pyzdb.broker.health import query_status
    db, _ = client(rw, timeout=5)
    target, deadline = db.status()["seq"], time.monotonic() + timeout
    while True:
        table = query_status(health, timeout=2) or {}
        seqs = {s.get("name"): s.get("seq", 0) for s in table.get("servers", []) if s.get("alive")}
        if all(seqs.get(name, -1) >= target for name in names.split(",")) or time.monotonic() > deadline:
            return {"target": target, "seqs": seqs}
        time.sleep(0.1)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "ryw":
        result = ryw(args[0], args[1], int(args[2]))
    elif mode == "load":
        result = load(args[0], args[1], float(args[2]))
    elif mode == "fill":
        result = fill(args[0], int(args[1]))
    elif mode == "wait":
        result = wait(args[0], args[1], args[2], float(args[3]))
    else:
        result = get(args[0], args[1], args[2])
    print(json.dumps(result), flush=True)
