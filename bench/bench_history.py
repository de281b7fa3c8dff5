"""Benchmark: what the undo history costs. Server RSS and store size after N one-byte ``+=`` on a big string,
and checkpoint size and restart time after a big dict is loaded and cleared.

The first two run through a real ``pyzdb serve`` (sqlite, default limits unless given after ``--``),
the third in-process on a memory store.

    python bench/bench_history.py [--mib 32] [--appends 40] [--keys 1000000] [-- SERVER FLAGS]

Measured 2026-12-01 (2 cores, shared with other test runs, load average 4-8), before = without the
byte budget, the truncate inverse and the encoded entries; after = with them:

| case | before | after |
|---|---|---|
| 40 one-byte `+=` on a 32 MiB str: time | 112.8 s | 3.7 s |
| … server RSS (peak) | 3,562 MB (3,696 MB) | 99 MB (230 MB) |
| … store on disk | 3,087 MiB | 65 MiB |
| … restart | 62.8 s | 4.8 s |
| 10^6 keys by 100 `update`s, then `clear()`: checkpoint | 58.7 MB | 58.7 MB (≤ 64 MiB budget) |
| … restart | 21.0 s | 3.0 s |
| … store in use | 131 MB | 112 MB |
| 10^6 top-level keys by batches of 1000 `set`s, root `clear()`, one key set (in-process): checkpoint | 76.6 MB, 1000 entries | 67.06 MB, 841 entries |
| … reopen | 12.9 s | 0.2 s |

(The 100 `update`s fit the 64 MiB budget either way, so that checkpoint is the same size; the faster
restart there comes from the entries being kept encoded.)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from pyzdb.server.database import Database
from pyzdb.storage.journal import Journal
from pyzdb.storage.memory import MemoryStore
from pyzdb.testing import EmbeddedService


def rss_mb(pid: int) -> str:
    """Resident and peak resident size of a process, in MB."""
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            fields[name] = int(value.split()[0]) // 1000 if name in ("VmRSS", "VmHWM") else None
    return f"RSS {fields['VmRSS']} MB (peak {fields['VmHWM']} MB)"


def disk_mib(path: str) -> int:
    """MiB of the files under a directory."""
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names) >> 20


def appends(mib: int, count: int, flags: list[str]) -> None:
    """``count`` one-byte ``+=`` on a ``mib`` MiB string, then a restart."""
    with EmbeddedService(*flags) as service:
        db = service.client(timeout=300)
        db["s"] = "x" * (mib << 20)
        started = time.monotonic()
        for _ in range(count):
            db["s"] += "y"
        took = time.monotonic() - started
        time.sleep(1)
        print(f"{count} one-byte += on {mib} MiB: {took:.1f} s; server {rss_mb(service.proc.pid)}; "
              f"store {disk_mib(service.data_dir)} MiB; history {db.status().get('history_bytes')} bytes")
        started = time.monotonic()
        service.restart(timeout=300)
        print(f"  restart {time.monotonic() - started:.1f} s")


def cleared(keys: int, flags: list[str]) -> None:
    """``keys`` keys loaded into one dict by updates of 10^4, then cleared; checkpoint and restart."""
    with EmbeddedService("--checkpoint-records", "1", *flags) as service:
        db = service.client(timeout=300)
        db["d"] = {}
        for start in range(0, keys, 10_000):
            db["d"].update({f"key{i:07}": i for i in range(start, start + 10_000)})
        db["d"].clear()
        deadline = time.monotonic() + 300
        status = db.status()
        while status["checkpoint_seq"] != status["seq"] and time.monotonic() < deadline:
            time.sleep(0.2)
            status = db.status()
        print(f"{keys} keys loaded and cleared: checkpoint {status['checkpoint_bytes']} bytes, history "
              f"{status.get('history_bytes')} bytes, store in use {status['store_used_bytes']} bytes")
        started = time.monotonic()
        service.restart(timeout=300)
        print(f"  restart {time.monotonic() - started:.1f} s")


def batched_sets_cleared(keys: int) -> None:
    """In-process: ``keys`` top-level keys set by batches of 1000, the root cleared, one key set; checkpoint, reopen."""
    db = Database(Journal(MemoryStore()))
    db.open()
    queries = [{"op": "batch", "ops": [{"op": "set", "path": [f"key{i:07}"], "value": i}
                                       for i in range(start, min(start + 1000, keys))]} for start in range(0, keys, 1000)]
    queries += [{"op": "call", "path": [], "method": "clear", "args": [], "kwargs": {}},
                {"op": "set", "path": ["only"], "value": 1}]
    for rid, query in enumerate(queries, 1):
        db.handle(b"bench", rid, query)
        db.commit()
    data, seq, crc = db.snapshot()
    db.journal.write_checkpoint(data, seq, crc)
    started = time.monotonic()
    Database(Journal(db.journal.store)).open()
    print(f"{keys} top-level keys set and cleared: checkpoint {len(data)} bytes, {len(db.history.undo_stack)} undo "
          f"entries; reopen {time.monotonic() - started:.1f} s")


def main() -> None:
    """Run every case."""
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--appends", type=int, default=40)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    appends(args.mib, args.appends, flags)
    cleared(args.keys, flags)
    batched_sets_cleared(args.keys)


if __name__ == "__main__":
    main()
