"""CPU time per request, per thread, in the client and in ``pyzdb serve`` (or the raw zmq echo broker, or a Manager dict).

Reads each thread's user+system time from /proc before and after N
requests, so the split (server loop, broker proxy threads, zmq I/O threads,
client Python, client zmq I/O thread) does not depend on how busy the
machine is. Linux only.

    python -m bench.bench_cpu [--requests 20000] [--durability always]
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Callable

from pyzdb.testing import EmbeddedService, free_ports, stop_process

from . import echo_broker, servers
from .bench_roundtrip import EchoClient
from .manager_server import connect_dict

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """Seconds of CPU per thread group of ``pid`` ('main', 'zmq io' (ZMQbg/*), 'other threads'), user and system."""
    groups: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        group = "main" if int(tid) == pid else ("zmq io" if name.startswith("ZMQbg") else "other threads")
        for kind, ticks in (("user", fields[11]), ("sys", fields[12])):
            groups[f"{group} {kind}"] = groups.get(f"{group} {kind}", 0.0) + int(ticks) / TICK
    return groups


def per_request(server_pid: int, call: Callable[[], object], count: int) -> dict[str, float]:
    """µs of CPU per request in each thread group of the server and of this (client) process."""
    for _ in range(500):
        call()
    before = {"server": thread_cpu(server_pid), "client": thread_cpu(os.getpid())}
    started = time.perf_counter()
    for _ in range(count):
        call()
    wall = time.perf_counter() - started
    after = {"server": thread_cpu(server_pid), "client": thread_cpu(os.getpid())}
    out = {"wall (round trip)": wall / count * 1e6}
    for side in ("client", "server"):
        for group, seconds in after[side].items():
            out[f"{side}: {group}"] = (seconds - before[side].get(group, 0.0)) / count * 1e6
    return out


def measure(count: int, durability: str) -> dict[str, dict[str, float]]:
    """Per-request CPU for the echo, a SyncManager DictProxy get (bench/manager_server.py), pyzdb get and pyzdb set."""
    results = {}
    front = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    echo_proc = echo_broker.start(front)
    try:
        echo = EchoClient(front)
        echo.wait_ready()
        results["zmq echo"] = per_request(echo_proc.pid, echo.roundtrip, count)
        echo.close()
    finally:
        stop_process(echo_proc)
    manager = servers.start_manager()
    try:
        proxy = connect_dict(*manager.spec["address"], bytes.fromhex(manager.spec["authkey"]))
        proxy["k"] = "v" * 16
        results["manager get"] = per_request(manager.extra["pid"], lambda: proxy.get("k"), count)
    finally:
        manager.stop()
    with EmbeddedService("--durability", durability) as service:
        db = service.client()
        db["k"] = "v" * 16
        results["pyzdb get"] = per_request(service.proc.pid, lambda: db["k"]._run(), count)
        results["pyzdb set"] = per_request(service.proc.pid, lambda: db.__setitem__("k", "v" * 16), count // 4)
        db._conn.close()
    return results


def main(argv: list[str] | None = None) -> None:
    """Print µs of CPU per request by thread group."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--durability", default="always", choices=("always", "batch", "none"))
    args = parser.parse_args(argv)
    results = measure(args.requests, args.durability)
    rows = sorted({row for stats in results.values() for row in stats})
    print(f"µs per request (durability={args.durability}; CPU from /proc, wall from the client)")
    print(f"{'':26}" + "".join(f"{name:>12}" for name in results))
    for row in rows:
        print(f"{row:26}" + "".join(f"{stats.get(row, 0.0):12.1f}" for stats in results.values()))


if __name__ == "__main__":
    main()
