"""Benchmark: restart speed. Load time of a store with 10**6 top-level keys, and of one with a list of 10**6 items.

Each store is built directly through the journal (a checkpoint in 1 MiB
chunks plus a tail of log records), then loaded twice: in-process
(``Database.open``) and by a real ``pyzdb serve`` from start to its first
answer. The server's progress lines are shown.

    python bench/bench_load.py [--items 1000000] [--log-records 2000] [--chunk-size 1048576]

Measured 2026-11-23 (2 cores): 10**6 top-level keys (14.8 MB checkpoint, 15
chunks, + 2000 log records) load in 0.9 s in-process, 1.2 s from starting
``pyzdb serve`` to its first answer (~0.85-1.1 M keys/s); a list of 10**6
items (4.9 MB) in 0.15 s / 0.3 s. With --chunk-size 1024 (14,412 chunks)
the server prints progress lines and loads in 1.3 s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from pyzdb.server.database import Database
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal
from pyzdb.testing import EmbeddedService


def build(path: str, tree: dict, log_records: int, chunk_size: int) -> dict:
    """Write ``tree`` as a checkpoint, then ``log_records`` small writes after it; return the meta."""
    store = open_store(f"sqlite:///{path}", durability="none")
    db = Database(Journal(store, chunk_size=chunk_size))
    db.open()
    db.engine.tree = tree
    data, seq, crc = db.snapshot()
    meta = db.journal.write_checkpoint(data, seq, crc)
    for rid in range(1, log_records + 1):
        db.handle(b"bench", rid, {"op": "set", "path": ["tail"], "value": rid})
        if rid % 100 == 0:
            db.commit()
    db.commit()
    store.close()
    return meta


def load_in_process(path: str) -> float:
    """Seconds ``Database.open`` takes on the store."""
    store = open_store(f"sqlite:///{path}")
    started = time.perf_counter()
    Database(Journal(store)).open()
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def load_by_server(data_dir: str) -> tuple[float, str]:
    """Seconds from starting ``pyzdb serve`` on the store to its first answer, and what it printed."""
    service = EmbeddedService(data_dir=data_dir)
    started = time.perf_counter()
    service.start(timeout=600)
    elapsed = time.perf_counter() - started
    output = service.log()
    service.stop()
    return elapsed, output


def run_case(name: str, tree: dict, items: int, log_records: int, chunk_size: int) -> None:
    """Build one store, load it both ways, print the times and rates."""
    directory = tempfile.mkdtemp(prefix="pyzdb-bench-load-")
    path = os.path.join(directory, "pyzdb.db")
    try:
        started = time.perf_counter()
        meta = build(path, tree, log_records, chunk_size)
        built = time.perf_counter() - started
        size = os.path.getsize(path)
        print(f"\n{name}: checkpoint {meta['size'] / 1e6:.1f} MB in {meta['chunks']} chunks + {log_records} log "
              f"records; file {size / 1e6:.1f} MB, built in {built:.1f} s")
        seconds = load_in_process(path)
        print(f"  Database.open:          {seconds:6.2f} s  {items / seconds:12,.0f} items/s")
        seconds, output = load_by_server(directory)
        print(f"  pyzdb serve to ready:   {seconds:6.2f} s  {items / seconds:12,.0f} items/s")
        for line in output.splitlines():
            if line.startswith(("loading", "pyzdb:")):
                print(f"    server: {line}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run both cases."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--log-records", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=1 << 20, help="checkpoint chunk size (small: many chunks)")
    args = parser.parse_args(argv)
    run_case(f"{args.items:,} top-level keys", {f"key{i}": i for i in range(args.items)}, args.items,
             args.log_records, args.chunk_size)
    run_case(f"one list of {args.items:,} items", {"l": list(range(args.items))}, args.items, args.log_records,
             args.chunk_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
