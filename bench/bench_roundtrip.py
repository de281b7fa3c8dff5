"""Single-client round trips per second: pyzdb get and set through the broker, beside a raw pyzmq echo.

Both go through the same topology in a separate process (ROUTER front,
zmq.proxy, DEALER back, a Python loop behind it), measured in the same
run; the report is the median of several runs and pyzdb's ratio to the echo.

    python -m bench.bench_roundtrip [--runs 5] [--seconds 1] [--durability always|batch|none]
"""
from __future__ import annotations

import argparse
import os
import time

import zmq

from pyzdb import wire
from pyzdb.testing import EmbeddedService, free_ports, stop_process

from . import echo_broker
from .timing import median_of, ratio, timed_loop

MAX_OPS = 200_000


class EchoClient:
    """A DEALER socket sending pyzdb-shaped requests to the echo broker, one at a time."""

    def __init__(self, uri: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(uri)
        self.payload = wire.encode_request(os.urandom(16), 1, {"op": "get", "path": ["k"]})

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Send until the echo answers (the process may still be binding)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.socket.send_multipart([b"", self.payload])
            if self.socket.poll(200):
                self.socket.recv_multipart()
                return
        raise RuntimeError("the echo broker did not answer")

    def roundtrip(self) -> None:
        """One request and its echo."""
        self.socket.send_multipart([b"", self.payload])
        self.socket.recv_multipart()

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()


def measure(runs: int, seconds: float, durability: str) -> dict[str, dict]:
    """Median stats per case ('pyzdb get', 'pyzdb set', 'zmq echo') over ``runs`` interleaved runs."""
    front = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    echo_proc = echo_broker.start(front)
    service = EmbeddedService("--durability", durability)
    try:
        service.start()
        echo = EchoClient(front)
        echo.wait_ready()
        db = service.client()
        db["k"] = "v" * 16
        cases = {"pyzdb get": lambda: db["k"]._run(),
                 "pyzdb set": lambda: db.__setitem__("k", "v" * 16),
                 "zmq echo": echo.roundtrip}
        results: dict[str, list] = {name: [] for name in cases}
        for _ in range(runs):
            for name, call in cases.items():
                results[name].append(timed_loop(call, ops=MAX_OPS, seconds=seconds))
        echo.close()
        db._conn.close()
        return {name: median_of(stats) for name, stats in results.items()}
    finally:
        service.close()
        stop_process(echo_proc)


def report(medians: dict[str, dict], durability: str) -> str:
    """The result table: round trips/s, p50/p99 and the ratio to the raw echo."""
    base = medians["zmq echo"]["ops_per_s"]
    lines = [f"single-client round trips through the broker (durability={durability}; medians)",
             f"{'case':12} {'rt/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'vs echo':>8}"]
    for name, stats in medians.items():
        lines.append(f"{name:12} {stats['ops_per_s']:9.0f} {stats['p50_us']:8.1f} {stats['p99_us']:8.1f} "
                     f"{ratio(stats['ops_per_s'], base):7.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse options, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case per run")
    parser.add_argument("--durability", default="always", choices=("always", "batch", "none"))
    args = parser.parse_args(argv)
    print(report(measure(args.runs, args.seconds, args.durability), args.durability))


if __name__ == "__main__":
    main()
