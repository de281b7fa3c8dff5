"""Single-client round trips per second: pyzdb get and set beside echo servers with nothing to do.

``zmtp echo`` has pyzdb serve's own topology (the client's ``ZmtpDealer``, a
``ZmtpRouter`` in the server's loop); ``zmq echo`` a pyzmq client through the
zmq ROUTER/proxy/DEALER topology that ``pyzdb serve --curve`` keeps;
``pyzdb get (pyzmq)`` is a get from a client forced to pyzmq
(``transport='zmq'``). All in the same run; the report is the median of
several runs and each case's ratio to the zmtp echo.

    python -m bench.bench_roundtrip [--runs 5] [--seconds 1] [--durability always|batch|none]
"""
from __future__ import annotations

import argparse
import os
import time

import zmq

from pyzdb.testing import EmbeddedService, free_ports, stop_process
from pyzdb.transport import wire
from pyzdb.transport.dealer import ZmtpDealer

from . import echo_broker
from .timing import median_of, ratio, timed_loop

MAX_OPS = 200_000


class EchoClient:
    """A pyzmq DEALER socket sending pyzdb-shaped requests to an echo server, one at a time."""

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


class ZmtpEchoClient(EchoClient):
    """The same requests from a ``ZmtpDealer``, pyzdb's own client transport."""

    def __init__(self, uri: str) -> None:
        self.socket = ZmtpDealer([uri])
        self.payload = wire.encode_request(os.urandom(16), 1, {"op": "get", "path": ["k"]})

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Send until the echo answers (the process may still be binding)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.socket.send([b"", self.payload])
            if self.socket.receive(200) is not None:
                return
        raise RuntimeError("the zmtp echo did not answer")

    def roundtrip(self) -> None:
        """One request and its echo."""
        self.socket.send([b"", self.payload])
        self.socket.receive(5000)


def measure(runs: int, seconds: float, durability: str) -> dict[str, dict]:
    """Median stats per case ('pyzdb get', 'pyzdb set', 'zmq echo') over ``runs`` interleaved runs."""
    front, zmtp_front = (f"tcp://127.0.0.1:{port}" for port in free_ports(2))
    echo_procs = [echo_broker.start(front, "zmq"), echo_broker.start(zmtp_front, "zmtp")]
    service = EmbeddedService("--durability", durability)
    try:
        service.start()
        echo, zmtp_echo = EchoClient(front), ZmtpEchoClient(zmtp_front)
        echo.wait_ready()
        zmtp_echo.wait_ready()
        db, pyzmq_db = service.client(), service.client(transport="zmq")
        db["k"] = "v" * 16
        cases = {"pyzdb get": lambda: db["k"]._run(),
                 "pyzdb set": lambda: db.__setitem__("k", "v" * 16),
                 "pyzdb get (pyzmq)": lambda: pyzmq_db["k"]._run(),
                 "zmtp echo": zmtp_echo.roundtrip,
                 "zmq echo": echo.roundtrip}
        results: dict[str, list] = {name: [] for name in cases}
        for _ in range(runs):
            for name, call in cases.items():
                results[name].append(timed_loop(call, ops=MAX_OPS, seconds=seconds))
        echo.close()
        zmtp_echo.close()
        db._conn.close()
        pyzmq_db._conn.close()
        return {name: median_of(stats) for name, stats in results.items()}
    finally:
        service.close()
        for proc in echo_procs:
            stop_process(proc)


def report(medians: dict[str, dict], durability: str) -> str:
    """The result table: round trips/s, p50/p99 and the ratio to the zmtp echo."""
    base = medians["zmtp echo"]["ops_per_s"]
    lines = [f"single-client round trips (durability={durability}; medians)",
             f"{'case':18} {'rt/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'vs echo':>8}"]
    for name, stats in medians.items():
        lines.append(f"{name:18} {stats['ops_per_s']:9.0f} {stats['p50_us']:8.1f} {stats['p99_us']:8.1f} "
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
