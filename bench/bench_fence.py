"""The writer fence's cost: ping and set round trips through ``pyzdb broker`` + ``pyzdb server``.

``fenced``: broker and server with ``--health`` (the read-write queue is
``pyzdb.broker.routed``'s relay loop, requests to the holder alone);
``proxy``: both with ``--health ''`` (unfenced: ``relay.relay``; zmq's C proxy until it was dropped for spinning). Rounds
alternate the two in one run; the report is each case's median and the
median of the per-round ratios.

    python -m bench.bench_fence [--rounds 6] [--pings 2000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from pyzdb.client import client
from pyzdb.testing import free_ports, start_process, stop_process, wait_answering


def round_trips(fenced: bool, pings: int) -> dict[str, float]:
    """µs per ping and per set, one client, through a fresh broker and server."""
    data = tempfile.mkdtemp(prefix="pyzdb-bench-fence-")
    rw_front, rw_back, ro_front, ro_back, health = (f"tcp://127.0.0.1:{p}" for p in free_ports(5))
    beats = ["--health", health if fenced else ""]
    broker = start_process(["broker", "--rw-front", rw_front, "--rw-back", rw_back, "--ro-front", ro_front,
                            "--ro-back", ro_back, *beats], os.path.join(data, "broker.log"))
    server = start_process(["server", "--data", data, "--back", rw_back, "--feed", "", "--replication", "",
                            "--durability", "none", *beats], os.path.join(data, "server.log"))
    try:
        wait_answering(rw_front, 20, "the RW server", lambda: open(os.path.join(data, "server.log")).read(), server)
        db, _ = client(rw_front, timeout=10)
        for _ in range(200):
            db.ping()
        started = time.perf_counter()
        for _ in range(pings):
            db.ping()
        ping = (time.perf_counter() - started) / pings * 1e6
        started = time.perf_counter()
        for n in range(pings // 2):
            db["x"] = n
        result = {"ping": ping, "set": (time.perf_counter() - started) / (pings // 2) * 1e6}
        db._conn.close()
        return result
    finally:
        stop_process(server)
        stop_process(broker)


def main() -> None:
    """Alternate fenced and proxy rounds; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each case (default %(default)s)")
    parser.add_argument("--pings", type=int, default=2000, help="pings per round; half as many sets (default %(default)s)")
    args = parser.parse_args()
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for index in range(args.rounds):
        for fenced in ((True, False) if index % 2 == 0 else (False, True)):
            results[fenced].append(round_trips(fenced, args.pings))
    print(f"load average {os.getloadavg()[0]:.1f}")
    for op in ("ping", "set"):
        ratios = [f[op] / p[op] for f, p in zip(results[True], results[False])]
        print(f"{op}: fenced {statistics.median(r[op] for r in results[True]):.0f} µs, proxy "
              f"{statistics.median(r[op] for r in results[False]):.0f} µs; fenced/proxy median "
              f"{statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
