"""Kyoto Tycoon's binary protocol: magic bytes, limits, request encoding and reply decoding.

Names follow ktremotedb.h (``BMSETBULK`` ...). Every integer is big-endian.
"""
from __future__ import annotations

import struct
from typing import Any, NamedTuple, Sequence

from pyzdb.errors import RecordTooLarge
from pyzdb.kvnet.errors import ProtocolError, ServerError
from pyzdb.kvnet.pool import KvConnection

BMNOP = 0xB0            # replication keep-alive (server -> client)
BMREPLICATION = 0xB1
BMPLAYSCRIPT = 0xB4
BMSETBULK = 0xB8
BMREMOVEBULK = 0xB9
BMGETBULK = 0xBA
BMERROR = 0xBF

BONOREPLY = 1           # flags: the server sends no reply (set/remove bulk, play_script)
WHITESID = 1            # replication flags: send only the requester's own sid

XT_NEVER = 0x7FFFFFFFFFFFFFFF   # sent as "never expires"
XT_MAX = (1 << 40) - 1          # what "never" reads back as
DATAMAXSIZ = 1 << 28            # largest key or value the server accepts
MAX_DATABASES = 200

_FLAGS_N = struct.Struct(">BII")
_SET_HEAD = struct.Struct(">HIIq")
_KEY_HEAD = struct.Struct(">HI")
_SCRIPT_HEAD = struct.Struct(">BIII")
_PAIR_HEAD = struct.Struct(">II")
_REPL_REQ = struct.Struct(">BIQH")
U32 = struct.Struct(">I")


class Record(NamedTuple):
    """One record of a bulk request or reply: database index, key, value and expiry (bytes on the wire)."""

    db: int
    key: Any
    value: Any
    xt: int = XT_NEVER


def check_size(what: str, data: bytes) -> None:
    """Refuse a key or value over ``DATAMAXSIZ`` before anything is sent."""
    if len(data) > DATAMAXSIZ:
        raise RecordTooLarge(f"Kyoto Tycoon {what} of {len(data)} bytes is over the limit of {DATAMAXSIZ} bytes")


def encode_set_bulk(records: Sequence[Record], flags: int = 0) -> bytes:
    """``BMSETBULK`` request for ``records``."""
    parts = [_FLAGS_N.pack(BMSETBULK, flags, len(records))]
    head = _SET_HEAD.pack
    for db, key, value, xt in records:
        check_size("key", key)
        check_size("value", value)
        parts += (head(db, len(key), len(value), xt), key, value)
    return b"".join(parts)


def encode_keys(magic: int, keys: Sequence[tuple[int, bytes]], flags: int = 0) -> bytes:
    """``BMGETBULK`` or ``BMREMOVEBULK`` request for ``(db, key)`` pairs."""
    parts = [_FLAGS_N.pack(magic, flags, len(keys))]
    head = _KEY_HEAD.pack
    for db, key in keys:
        check_size("key", key)
        parts += (head(db, len(key)), key)
    return b"".join(parts)


def encode_play_script(name: bytes, pairs: Sequence[tuple[bytes, bytes]], flags: int = 0) -> bytes:
    """``BMPLAYSCRIPT`` request calling script ``name`` with ``pairs``."""
    check_size("script name", name)
    parts = [_SCRIPT_HEAD.pack(BMPLAYSCRIPT, flags, len(name), len(pairs)), name]
    for key, value in pairs:
        check_size("key", key)
        check_size("value", value)
        parts += (_PAIR_HEAD.pack(len(key), len(value)), key, value)
    return b"".join(parts)


def encode_replication(ts: int, sid: int, flags: int = 0) -> bytes:
    """``BMREPLICATION`` request: stream updates newer than ``ts`` to server id ``sid``."""
    return _REPL_REQ.pack(BMREPLICATION, flags, ts, sid)


def read_count(conn: KvConnection, magic: int, what: str) -> int:
    """Read a reply's magic byte and count; ``BMERROR`` raises ``ProtocolError``, a stray byte ``ServerError``."""
    got = conn.read(1)[0]
    if got == BMERROR:
        raise ProtocolError(f"Kyoto Tycoon failed {what}")
    if got != magic:
        raise ServerError(f"Kyoto Tycoon answered {what} with byte 0x{got:02X}, expected 0x{magic:02X}")
    return conn.unpack(U32)[0]


def read_records(conn: KvConnection, n: int) -> list[Record]:
    """Read ``n`` records of a ``BMGETBULK`` reply."""
    records = []
    for _ in range(n):
        db, ksiz, vsiz, xt = conn.unpack(_SET_HEAD)
        data = conn.read(conn.check_length("key size", ksiz, DATAMAXSIZ) + conn.check_length("value size", vsiz, DATAMAXSIZ))
        records.append(Record(db, data[:ksiz], data[ksiz:], xt))
    return records
