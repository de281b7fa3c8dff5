"""The procedures of pyzdb/kt/scripts/pyzdb.lua, run in Python by the protocol test server (a test double of ktserver -scr).

Each takes the input map (bytes to bytes) and the server's KTData, and
returns the output map, as the Lua function of the same name does.
"""
from __future__ import annotations

import re
import time
from typing import Callable

from protocol_peer import varint

XT_MAX = (1 << 40) - 1
Proc = Callable[[dict, object], dict]
PROCEDURES: dict[bytes, Proc] = {}


def procedure(fn: Proc) -> Proc:
    """Register ``fn`` under its name."""
    PROCEDURES[fn.__name__.encode()] = fn
    return fn


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    num = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        num = (num << 7) | (byte & 0x7F)
        if byte < 0x80:
            return num, pos
    raise ValueError("truncated")


def mapload(data: bytes) -> dict[bytes, bytes]:
    out, pos = {}, 0
    while len(data) - pos > 1:
        ksiz, pos = read_varint(data, pos)
        vsiz, pos = read_varint(data, pos)
        out[data[pos:pos + ksiz]] = data[pos + ksiz:pos + ksiz + vsiz]
        pos += ksiz + vsiz
    return out


def mapdump(table: dict[bytes, bytes]) -> bytes:
    return b"".join(varint(len(k)) + varint(len(v)) + k + v for k, v in sorted(table.items()))


def arrayload(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size, pos = read_varint(data, pos)
        out.append(data[pos:pos + size])
        pos += size
    return out


def arraydump(items: list[bytes]) -> bytes:
    return b"".join(varint(len(item)) + item for item in items)


def _db(inmap: dict) -> int:
    return int(inmap.get(b"db", b"0"))


def _others(inmap: dict, skip: bytes = b"") -> dict:
    return {k: v for k, v in inmap.items() if k not in (b"db", skip)}


def _num(n: int, field: bytes = b"num") -> dict:
    return {field: str(n).encode()}


# --- expire times, records, whole database -------------------------------------------------
@procedure
def touch_bulk(inmap, data):
    db, out = _db(inmap), {}
    for key, xt in _others(inmap).items():
        rec = data.get(db, key)
        if rec:
            data.set(db, key, rec[0], int(xt))
            out[key] = str(rec[1]).encode()
    return out


@procedure
def touch_bulk_relative(inmap, data):
    db, out = _db(inmap), {}
    for key, n in _others(inmap).items():
        rec = data.get(db, key)
        if rec:
            xt = rec[1] + int(n)
            data.set(db, key, rec[0], -xt)
            out[key] = str(xt).encode()
    return out


@procedure
def expire_time(inmap, data):
    rec = data.get(_db(inmap), inmap.get(b"key", b""))
    return {b"xt": str(rec[1]).encode()} if rec else {}


@procedure
def count(inmap, data):
    now = int(time.time())
    return {b"count": str(sum(1 for _, xt in data.dbs[_db(inmap)].values() if xt >= now)).encode()}


@procedure
def clear(inmap, data):
    data.clear(_db(inmap))
    return {}


@procedure
def seize(inmap, data):
    db, key = _db(inmap), inmap.get(b"key", b"")
    rec = data.get(db, key)
    if not rec:
        return {}
    data.remove(db, key)
    return {b"value": rec[0]}


@procedure
def get_error(inmap, data):
    return {b"code": b"0", b"message": b"no error"}


def _write(inmap, data, ok_if_exists, new_value):
    db, key = _db(inmap), inmap[b"key"]
    rec = data.get(db, key)
    if (rec is not None) != ok_if_exists and ok_if_exists is not None:
        return _num(0)
    data.set(db, key, new_value(rec), int(inmap.get(b"xt", b"9223372036854775807")))
    return _num(1)


@procedure
def add(inmap, data):
    return _write(inmap, data, False, lambda rec: inmap[b"value"])


@procedure
def replace(inmap, data):
    return _write(inmap, data, True, lambda rec: inmap[b"value"])


@procedure
def append(inmap, data):
    return _write(inmap, data, None, lambda rec: (rec[0] if rec else b"") + inmap[b"value"])


@procedure
def cas(inmap, data):
    db, key = _db(inmap), inmap[b"key"]
    rec = data.get(db, key)
    if (rec[0] if rec else None) != inmap.get(b"old"):
        return _num(0)
    if b"new" in inmap:
        data.set(db, key, inmap[b"new"], int(inmap.get(b"xt", b"9223372036854775807")))
    elif rec:
        data.remove(db, key)
    return _num(1)


@procedure
def increment(inmap, data):
    """Kyoto Cabinet's counter: an 8-byte big-endian integer; another size fails."""
    db, key = _db(inmap), inmap[b"key"]
    rec = data.get(db, key)
    if rec is not None and len(rec[0]) != 8:
        return None
    old = int.from_bytes(rec[0], "big", signed=True) if rec else int(inmap.get(b"orig", b"0"))
    total = old + int(inmap.get(b"num", b"1"))
    data.set(db, key, total.to_bytes(8, "big", signed=True), int(inmap.get(b"xt", b"9223372036854775807")))
    return _num(total)


@procedure
def increment_double(inmap, data):
    """Kyoto Cabinet's real counter: 8-byte big-endian integral part, 8-byte fraction x 10^15; another size fails."""
    db, key = _db(inmap), inmap[b"key"]
    rec = data.get(db, key)
    if rec is not None and len(rec[0]) != 16:
        return None
    if rec:
        integ, fract = int.from_bytes(rec[0][:8], "big", signed=True), int.from_bytes(rec[0][8:], "big", signed=True)
        old = integ + fract / 10**15
    else:
        old = float(inmap.get(b"orig", b"0"))
    total = old + float(inmap.get(b"num", b"1"))
    integ = int(total)
    raw = integ.to_bytes(8, "big", signed=True) + int((total - integ) * 10**15).to_bytes(8, "big", signed=True)
    data.set(db, key, raw, int(inmap.get(b"xt", b"9223372036854775807")))
    return {b"num": repr(total).encode()}


def _live_keys(inmap, data):
    db = _db(inmap)
    return sorted(k for k in data.dbs[db] if data.get(db, k))


def _limit(keys, inmap):
    limit = int(inmap.get(b"max", b"-1"))
    return {k: b"" for k in (keys if limit < 0 else keys[:limit])}


@procedure
def match_prefix(inmap, data):
    prefix = inmap.get(b"prefix", b"")
    return _limit([k for k in _live_keys(inmap, data) if k.startswith(prefix)], inmap)


@procedure
def match_regex(inmap, data):
    pattern = re.compile(inmap.get(b"regex", b""))
    return _limit([k for k in _live_keys(inmap, data) if pattern.search(k)], inmap)


def _distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@procedure
def match_similar(inmap, data):
    """Keys within a Levenshtein distance of ``origin`` (characters with utf, else bytes)."""
    utf = inmap.get(b"utf") == b"true"
    origin, limit = inmap.get(b"origin", b""), int(inmap.get(b"range", b"1"))
    text = (lambda b: b.decode("utf-8", "replace")) if utf else (lambda b: b.decode("latin-1"))
    return _limit([k for k in _live_keys(inmap, data) if _distance(text(k), text(origin)) <= limit], inmap)


# --- Hash and Set: a mapdump record ------------------------------------------------------------
def _load(inmap, data, field, load):
    rec = data.get(_db(inmap), inmap[field])
    return load(rec[0]) if rec else load(b"")


def _store(inmap, data, field, value, dump):
    """Write the container back only if it changed, keeping the record's expire time (an empty one stays)."""
    db, key = _db(inmap), inmap[field]
    rec, raw = data.get(db, key), dump(value)
    if (rec is None and not raw) or (rec is not None and rec[0] == raw):
        return
    data.set(db, key, raw, -rec[1] if rec else 0x7FFFFFFFFFFFFFFF)


def record_proc(field: bytes, load, dump):
    """A decorator: register ``fn(inmap, container)`` run on the container loaded from record ``inmap[field]``,
    written back (or removed when empty) after it."""
    def wrap(fn):
        def run(inmap, data):
            container = _load(inmap, data, field, load)
            out = fn(inmap, container)
            _store(inmap, data, field, container, dump)
            return out
        run.__name__ = fn.__name__
        return procedure(run)
    return wrap


_hash_proc = record_proc(b"table_key", mapload, mapdump)
_set_proc = record_proc(b"key", mapload, mapdump)


@_hash_proc
def hmset(inmap, table):
    fields = _others(inmap, b"table_key")
    table.update(fields)
    return _num(len(fields))


@_hash_proc
def hmget(inmap, table):
    return {k: table[k] for k in _others(inmap, b"table_key") if k in table}


@_hash_proc
def hmdel(inmap, table):
    return _num(sum(1 for k in _others(inmap, b"table_key") if table.pop(k, None) is not None))


@_hash_proc
def hgetall(inmap, table):
    return dict(table)


@_hash_proc
def hset(inmap, table):
    table[inmap[b"key"]] = inmap[b"value"]
    return _num(1)


@_hash_proc
def hsetnx(inmap, table):
    if inmap[b"key"] in table:
        return _num(0)
    table[inmap[b"key"]] = inmap[b"value"]
    return _num(1)


@_hash_proc
def hget(inmap, table):
    return {b"value": table[inmap[b"key"]]} if inmap[b"key"] in table else {}


@_hash_proc
def hdel(inmap, table):
    return _num(0 if table.pop(inmap[b"key"], None) is None else 1)


@_hash_proc
def hlen(inmap, table):
    return _num(len(table))


@_hash_proc
def hcontains(inmap, table):
    return _num(int(inmap[b"key"] in table))


@_set_proc
def sadd(inmap, members):
    new = {v for v in _others(inmap, b"key").values() if v not in members}
    members.update(dict.fromkeys(new, b""))
    return _num(len(new))


@_set_proc
def srem(inmap, members):
    return _num(sum(1 for v in set(_others(inmap, b"key").values()) if members.pop(v, None) is not None))


@_set_proc
def scard(inmap, members):
    return _num(len(members))


@_set_proc
def sismember(inmap, members):
    return _num(int(inmap[b"value"] in members))


@_set_proc
def smembers(inmap, members):
    return {str(i).encode(): m for i, m in enumerate(members)}


@_set_proc
def spop(inmap, members):
    if not members:
        return _num(0)
    member = next(iter(members))
    del members[member]
    return {b"num": b"1", b"value": member}


def _set_op(keep):
    def run(inmap, data):
        a = _load(inmap, data, b"key", mapload)
        b = _load({b"db": inmap.get(b"db", b"0"), b"key": inmap[b"key2"]}, data, b"key", mapload)
        result = {m: b"" for m in {**a, **b} if keep(m in a, m in b)}
        if b"dest" in inmap:
            _store({b"db": inmap.get(b"db", b"0"), b"key": inmap[b"dest"]}, data, b"key", result, mapdump)
        return {str(i).encode(): m for i, m in enumerate(result)}
    return run


PROCEDURES[b"sinter"] = _set_op(lambda in_a, in_b: in_a and in_b)
PROCEDURES[b"sunion"] = _set_op(lambda in_a, in_b: in_a or in_b)
PROCEDURES[b"sdiff"] = _set_op(lambda in_a, in_b: in_a and not in_b)
