"""Kyoto Tycoon's replication stream: reading update-log frames, answering keep-alives, decoding events."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from pyzdb.kt import protocol as p
from pyzdb.kt.packing import read_varint
from pyzdb.kvnet.errors import ReplicationError
from pyzdb.kvnet.pool import KvConnection
from pyzdb.kvnet.stream import LogStream

OP_SET = 0xA1
OP_REMOVE = 0xA2
OP_CLEAR = 0xA5

_FRAME = struct.Struct(">QI")
_TS = struct.Struct(">Q")
_MSG_HEAD = struct.Struct(">HHB")
_ACK = bytes([p.BMREPLICATION])


@dataclass(frozen=True)
class ReplicationEvent:
    """One update of the server's log.

    ``op`` is ``'set'``, ``'remove'`` or ``'clear'``; ``key`` is None for a
    clear, ``value`` and ``expire`` are None unless it is a set. ``expire``
    is an absolute unix second, or None for a record that never expires.
    """

    ts: int
    origin_sid: int
    db: int
    op: str
    key: bytes | None = None
    value: bytes | None = None
    expire: int | None = None


def decode_message(ts: int, msg: bytes) -> ReplicationEvent:
    """Decode one update-log message (``origin_sid:u16 dbid:u16 op:u8 body``)."""
    try:
        return _decode(ts, msg)
    except ValueError as exc:
        raise ReplicationError(f"Kyoto Tycoon replication message: {exc}") from None


def _decode(ts: int, msg: bytes) -> ReplicationEvent:
    if len(msg) < _MSG_HEAD.size:
        raise ReplicationError(f"Kyoto Tycoon replication message of {len(msg)} bytes is too short")
    sid, db, op = _MSG_HEAD.unpack_from(msg)
    pos = _MSG_HEAD.size
    if op == OP_CLEAR:
        return ReplicationEvent(ts, sid, db, "clear")
    ksiz, pos = read_varint(msg, pos)
    if op == OP_REMOVE:
        return ReplicationEvent(ts, sid, db, "remove", msg[pos:pos + ksiz])
    if op != OP_SET:
        raise ReplicationError(f"Kyoto Tycoon replication message has unknown op 0x{op:02X}")
    vsiz, pos = read_varint(msg, pos)
    if vsiz < 5 or pos + ksiz + vsiz > len(msg):
        raise ReplicationError("Kyoto Tycoon replication set message is truncated")
    key = msg[pos:pos + ksiz]
    pos += ksiz
    xt = int.from_bytes(msg[pos:pos + 5], "big")
    value = msg[pos + 5:pos + vsiz]
    return ReplicationEvent(ts, sid, db, "set", key, value, None if xt >= p.XT_MAX else xt)


class Replication(LogStream):
    """An iterator over a Kyoto Tycoon server's update log, from a timestamp on.

    >>> with kt.replication(ts=0, sid=9) as events:        # doctest: +SKIP
    ...     for event in events:
    ...         print(event.op, event.key)

    Keep-alives (``B0``) are answered with ``B1`` and advance ``ts``, the
    position to resume from. ``close()`` (from any thread) ends the iteration.
    """

    def __init__(self, conn: KvConnection, *, ts: int = 0, sid: int = 0xFFFF, white_sid: bool = False) -> None:
        super().__init__(conn, ts)
        conn.send(p.encode_replication(ts, sid, p.WHITESID if white_sid else 0))
        answer = conn.read(1)[0]
        if answer != p.BMREPLICATION:
            conn.close()
            raise ReplicationError(
                f"Kyoto Tycoon refused replication from ts {ts} (byte 0x{answer:02X}; is -ulog set?)")

    def _next_event(self) -> ReplicationEvent:
        conn = self._conn
        while True:
            magic = conn.read(1)[0]
            if magic == p.BMNOP:
                self.ts = max(self.ts, conn.unpack(_TS)[0])
                conn.send(_ACK)
                continue
            if magic != p.BMREPLICATION:
                raise ReplicationError(f"Kyoto Tycoon replication sent byte 0x{magic:02X}")
            ts, size = conn.unpack(_FRAME)
            msg = conn.read(conn.check_length("replication frame size", size, 2 * p.DATAMAXSIZ + 64))
            self.ts = max(self.ts, ts)
            if size:  # an empty frame only moves ts past filtered entries
                return decode_message(ts, msg)
