"""Benchmark of the kt:// and tt:// stores against sqlite, and of KT's binary protocol against its HTTP/RPC.

    python bench/bench_stores.py [--records N] [--repeats R]

Real servers come from ``PYZDB_KT=host:port`` and ``PYZDB_TT=host:port``;
without them the protocol test server (pure Python) stands in, and the output
says so. Every number is the median of R runs in this one process; ratios are
to sqlite (durability='always') measured in the same run.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pyzdb.storage import open_store  # noqa: E402

VALUE = b"v" * 100


def keys_for(n: int, run: int) -> list[bytes]:
    """``n`` distinct small keys for one run."""
    return [b"bench-%d-%07d" % (run, i) for i in range(n)]


def timed_write(store, keys: list[bytes], batch: int) -> float:
    """Seconds to write every key with ``set_bulk`` calls of ``batch`` records."""
    start = time.perf_counter()
    for i in range(0, len(keys), batch):
        store.set_bulk({k: VALUE for k in keys[i:i + batch]})
    return time.perf_counter() - start


def timed_read(store, keys: list[bytes], batch: int) -> float:
    """Seconds to read every key back with ``get_bulk`` calls of ``batch`` keys."""
    start = time.perf_counter()
    for i in range(0, len(keys), batch):
        found = store.get_bulk(keys[i:i + batch])
        if len(found) != len(keys[i:i + batch]):
            raise RuntimeError(f"{store!r} lost records during the benchmark")
    return time.perf_counter() - start


def measure(store, load: str, batch: int, records: int, repeats: int) -> float:
    """Median records per second of ``load`` ('write' or 'read') over ``repeats`` runs."""
    rates = []
    for run in range(repeats):
        keys = keys_for(records, run)
        if load == "write":
            seconds = timed_write(store, keys, batch)
        else:
            timed_write(store, keys, 100)
            seconds = timed_read(store, keys, batch)
        rates.append(records / seconds)
        store.remove_bulk(keys)
    return statistics.median(rates)


class KTHttp:
    """Kyoto Tycoon's HTTP/RPC set_bulk / get_bulk over one keep-alive connection (benchmark only)."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=10)

    def _rpc(self, name: str, rows: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
        body = b"".join(base64.b64encode(k) + b"\t" + base64.b64encode(v) + b"\n" for k, v in rows)
        self.conn.request("POST", f"/rpc/{name}", body,
                          {"Content-Type": "text/tab-separated-values; colenc=B"})
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"KT HTTP {name} answered {reply.status}: {data[:200]!r}")
        return parse_tsv(data, reply.getheader("Content-Type", ""))

    def set_bulk(self, items: Mapping[bytes, bytes]) -> None:
        """POST /rpc/set_bulk."""
        self._rpc("set_bulk", ((b"_" + k, v) for k, v in items.items()))

    def get_bulk(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """POST /rpc/get_bulk."""
        out = self._rpc("get_bulk", ((b"_" + k, b"") for k in keys))
        return {k[1:]: v for k, v in out.items() if k.startswith(b"_")}

    def remove_bulk(self, keys: list[bytes]) -> None:
        """POST /rpc/remove_bulk."""
        self._rpc("remove_bulk", ((b"_" + k, b"") for k in keys))

    def close(self) -> None:
        """Close the HTTP connection."""
        self.conn.close()


def parse_tsv(data: bytes, content_type: str) -> dict[bytes, bytes]:
    """Decode a KT RPC TSV reply (colenc B, U or none)."""
    decode: Callable[[bytes], bytes] = lambda x: x  # noqa: E731
    if "colenc=B" in content_type:
        decode = base64.b64decode
    elif "colenc=U" in content_type:
        decode = lambda x: urllib.parse.unquote_to_bytes(x)  # noqa: E731
    rows = (line.split(b"\t", 1) for line in data.splitlines() if b"\t" in line)
    return {decode(k): decode(v) for k, v in rows}


def start_stand_in() -> tuple[object, str, str]:
    """The protocol test server as a subprocess; its KT and TT URLs."""
    from kttt_fixtures import start_protocol_server
    server = start_protocol_server()
    return server, f"kt://127.0.0.1:{server.kt_port}", f"tt://127.0.0.1:{server.tt_port}"


def backends(tmp: str) -> tuple[dict[str, str], object | None, str]:
    """Store URLs to compare, the stand-in server to stop (if any), and a line saying what was used."""
    kt, tt = os.environ.get("PYZDB_KT"), os.environ.get("PYZDB_TT")
    server = None
    note = f"real servers: KT {kt or '-'}, TT {tt or '-'}"
    if not (kt and tt):
        server, kt_url, tt_url = start_stand_in()
        note = ("the protocol test server (pure Python, tests/protocol_server.py) stands in for "
                + " and ".join(n for n, v in (("KT", kt), ("TT", tt)) if not v)
                + "; its numbers say nothing about the real servers")
    urls = {"sqlite": f"sqlite://{tmp}/bench.db", "sqlite-nosync": f"sqlite://{tmp}/bench-nosync.db",
            "kt": f"kt://{kt}" if kt else kt_url, "tt": f"tt://{tt}" if tt else tt_url}
    return urls, server, note


def open_bench_store(name: str, url: str):
    """Open a store of the table; ``sqlite-nosync`` is sqlite with durability 'none'."""
    return open_store(url, durability="none" if name == "sqlite-nosync" else "always")


def run_stores(urls: dict[str, str], records: int, repeats: int) -> None:
    """Print the store table: every load and batch size, median rate and ratio to sqlite."""
    print(f"{'load':6} {'batch':>5} {'backend':14} {'records/s':>12} {'vs sqlite':>10}")
    for load in ("write", "read"):
        for batch in (1, 100):
            base = None
            for name, url in urls.items():
                with open_bench_store(name, url) as store:
                    rate = measure(store, load, batch, records if batch > 1 else records // 5, repeats)
                base = base or rate
                print(f"{load:6} {batch:5} {name:14} {rate:12,.0f} {rate / base:9.2f}x", flush=True)


def run_kt_http(kt: str, records: int, repeats: int) -> None:
    """Print KT's binary client against its HTTP/RPC on the same loads."""
    from pyzdb.storage.kt import KyotoTycoonStore
    host, _, port = kt.rpartition(":")
    print(f"\nKyoto Tycoon at {kt}: binary protocol vs HTTP/RPC (TSV, keep-alive)")
    print(f"{'load':6} {'batch':>5} {'binary rec/s':>13} {'http rec/s':>11} {'binary/http':>12}")
    binary, web = KyotoTycoonStore(host, int(port)), KTHttp(host, int(port))
    try:
        for load in ("write", "read"):
            for batch in (1, 100):
                n = records if batch > 1 else records // 5
                rate_b = measure(binary, load, batch, n, repeats)
                rate_h = measure(web, load, batch, n, repeats)
                print(f"{load:6} {batch:5} {rate_b:13,.0f} {rate_h:11,.0f} {rate_b / rate_h:11.2f}x", flush=True)
    finally:
        binary.close()
        web.close()


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000, help="records per run (a fifth with batches of 1)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        urls, server, note = backends(tmp)
        print(f"pyzdb store benchmark: {note}")
        print(f"{args.records} records of {len(VALUE)} bytes a run ({args.records // 5} with batches of 1), "
              f"median of {args.repeats} runs\n")
        try:
            run_stores(urls, args.records, args.repeats)
            if os.environ.get("PYZDB_KT"):
                run_kt_http(os.environ["PYZDB_KT"], args.records, args.repeats)
            else:
                print("\nKT binary vs HTTP/RPC: skipped (needs a real server: set PYZDB_KT=host:port)")
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
