"""``pyzdb dump`` and ``pyzdb load`` speed: keys per second through a real service (goal: 10**6 keys in <= 10 s each way).

    python -m bench.bench_dump [--keys 1000000] [--rounds 3]

Each round loads a dump of N small top-level keys ({"n": i, "s": 16 chars})
into an empty `pyzdb serve --durability batch`, then dumps it, in both
formats; the median of the rounds is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from pyzdb.testing import EmbeddedService


def _write_source(path: str, keys: int) -> None:
    with open(path, "w") as out:
        out.write(json.dumps({"format": "pyzdb-dump", "version": 1, "keys": keys}) + "\n")
        for i in range(keys):
            out.write(json.dumps([f"key{i:08d}", {"n": i, "s": "x" * 16}]) + "\n")


def _timed(*args: str) -> float:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pyzdb", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    """Print load and dump keys/s for each format (median of the rounds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="pyzdb-bench-dump-")
    source = os.path.join(work, "source.jsonl")
    _write_source(source, args.keys)
    sources = {"jsonl": source, "msgpack": os.path.join(work, "source.msgpack")}
    with EmbeddedService("--durability", "batch", data_dir=os.path.join(work, "data-prepare")) as service:
        _timed("load", source, "--uri", service.rw_uri)
        _timed("dump", sources["msgpack"], "--uri", service.rw_uri)
    started_load = os.getloadavg()[0]
    times: dict[str, list[float]] = {}
    for round_number in range(args.rounds):
        for fmt in ("jsonl", "msgpack"):     # alternate the formats inside each round
            data = os.path.join(work, f"data-{fmt}-{round_number}")
            with EmbeddedService("--durability", "batch", data_dir=data) as service:
                times.setdefault(f"load {fmt}", []).append(_timed("load", sources[fmt], "--uri", service.rw_uri))
                out = os.path.join(work, f"out.{fmt}")
                times.setdefault(f"dump {fmt}", []).append(_timed("dump", out, "--uri", service.rw_uri))
    print(f"load average {started_load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:13} {args.keys} keys: median {median:6.2f} s = {args.keys / median:9,.0f} keys/s "
              f"(rounds {', '.join(f'{r:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()
