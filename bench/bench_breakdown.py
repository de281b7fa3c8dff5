"""Where a request's time goes: each stage of a get, set and append timed alone, in this process.

Stages: the client building the query (proxy path + dict), encoding it,
the server decoding it, ``Database.handle`` (validation + engine + history),
the journal commit (sqlite, each durability), encoding the reply, the
client decoding it. Put beside a measured round trip (bench_roundtrip), the
rest is zmq, the broker hop and the server loop.

    python -m bench.bench_breakdown
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Callable

import msgpack

from pyzdb.client import Proxy
from pyzdb.server.database import Database
from pyzdb.server.fast_get import FastGets
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal
from pyzdb.transport import wire
from pyzdb.tree.files import ext_hook

VALUE = "v" * 16
QUERIES = {"get": {"op": "get", "path": ["k"]},
           "set": {"op": "set", "path": ["k"], "value": VALUE},
           "append": {"op": "call", "path": ["nest", "l"], "method": "append", "args": [VALUE], "kwargs": {}}}


def per_call_us(call: Callable[[], Any], seconds: float = 0.3) -> float:
    """Mean µs per call of ``call`` over about ``seconds``."""
    for _ in range(100):
        call()
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            call()
        count += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / count * 1e6


class _Sink:
    """A connection that only records the query a proxy would send."""

    def read(self, query: dict, consistency: str | None = None) -> None:
        """Keep the query instead of sending it."""
        self.query = query

    write = read


def _client_build(op: str) -> Callable[[], Any]:
    db = Proxy(_Sink())
    return {"get": lambda: db["k"]._run(), "set": lambda: db.__setitem__("k", VALUE),
            "append": lambda: db["nest"]["l"].append(VALUE)}[op]


def _database(directory: str, durability: str) -> Database:
    db = Database(Journal(open_store(f"sqlite:///{directory}/{durability}.db", durability=durability)))
    db.open()
    db.handle(b"c" * 16, 1, {"op": "set", "path": ["k"], "value": VALUE})
    db.handle(b"c" * 16, 2, {"op": "set", "path": ["nest"], "value": {"l": []}})
    db.commit()
    return db


def stages(op: str, db: Database, durabilities: dict[str, Database]) -> dict[str, float]:
    """µs per stage of one ``op`` request."""
    query, cid = QUERIES[op], os.urandom(16)
    payload = wire.encode_request(cid, 1, query)
    rid = iter(range(10, 10**9))
    reply = db.handle(cid, next(rid), dict(query))
    db.commit()
    reply_bytes = wire.encode_reply(reply)
    out = {"client: build query (proxy)": per_call_us(_client_build(op)),
           "client: encode request": per_call_us(lambda: wire.encode_request(cid, 1, query)),
           "server: decode request": per_call_us(lambda: wire.decode_request(payload)),
           "server: Database.handle": per_call_us(lambda: db.handle(cid, next(rid), wire.decode_request(payload)[2]))
           - per_call_us(lambda: wire.decode_request(payload))}
    if op == "get":   # the short way a plain get takes on pyzdb serve's front (server/fast_get.py)
        fast, fast_rid = FastGets(db, wire.DEFAULT_MAX_MESSAGE), iter(range(10**9, 2 * 10**9))
        assert fast.answer_payload(wire.encode_request(cid, next(fast_rid), query)) is not None, "not the short way"
        out["server: fast_get answer_payload (decode, look up, record, encode)"] = per_call_us(
            lambda: fast.answer_payload(wire.encode_request(cid, next(fast_rid), query))) - out["client: encode request"]
    db.rollback()
    if op != "get":
        for name, ddb in durabilities.items():
            def handle_commit(ddb: Database = ddb) -> None:
                ddb.handle(cid, next(rid), wire.decode_request(payload)[2])
                ddb.commit()
            out[f"server: journal commit ({name})"] = max(0.0, per_call_us(handle_commit, 0.5) - out[
                "server: Database.handle"] - out["server: decode request"])
    out["server: encode reply"] = per_call_us(lambda: wire.encode_reply(reply))
    out["client: decode reply"] = per_call_us(lambda: wire.raise_for_reply(
        msgpack.unpackb(reply_bytes, raw=False, strict_map_key=False, ext_hook=ext_hook)))
    return out


def main() -> None:
    """Print the per-stage table for get, set and append."""
    directory = tempfile.mkdtemp(prefix="bench-breakdown-")
    try:
        durabilities = {d: _database(directory, d) for d in ("always", "batch", "none")}
        db = durabilities["none"]
        for op in QUERIES:
            print(f"{op}:")
            for name, us in stages(op, db, durabilities).items():
                print(f"  {name:40} {us:8.1f} µs")
        for ddb in durabilities.values():
            ddb.journal.store.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
