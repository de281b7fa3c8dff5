"""Tokyo Tyrant's update-log stream (``repl``): reading its frames and decoding the commands they carry."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from pyzdb.errors import StoreConnectionError
from pyzdb.kvnet.errors import ReplicationError
from pyzdb.kvnet.pool import KvConnection
from pyzdb.kvnet.stream import LogStream
from pyzdb.tt import protocol as p

_FRAME = struct.Struct(">QII")
_U32 = struct.Struct(">I")
_KV = struct.Struct(">II")
_KVW = struct.Struct(">III")
_KI = struct.Struct(">Ii")
_KD = struct.Struct(">Iqq")

_NAMES = {p.TTCMDPUT: "put", p.TTCMDPUTKEEP: "putkeep", p.TTCMDPUTCAT: "putcat", p.TTCMDPUTSHL: "putshl",
          p.TTCMDOUT: "out", p.TTCMDADDINT: "addint", p.TTCMDADDDOUBLE: "adddouble", p.TTCMDVANISH: "vanish",
          p.TTCMDSYNC: "sync", p.TTCMDOPTIMIZE: "optimize", p.TTCMDMISC: "misc"}


@dataclass(frozen=True)
class TTReplicationEvent:
    """One command of the server's update log, as the server ran it.

    ``op`` is the command's name (``'put'``, ``'putkeep'``, ``'putcat'``,
    ``'putshl'``, ``'out'``, ``'addint'``, ``'adddouble'``, ``'vanish'``,
    ``'sync'``, ``'optimize'``, ``'misc'``); ``key`` and ``value`` are bytes
    where the command has them (``value`` holds optimize's parameters);
    ``number`` is addint's or adddouble's operand or putshl's width;
    ``name`` and ``args`` are a misc call's; ``ok`` is whether it succeeded.
    ``ts`` is in microseconds; ``origin_sid`` is the server id it came from.
    """

    ts: int
    origin_sid: int
    op: str
    key: bytes | None = None
    value: bytes | None = None
    number: int | float | None = None
    name: str | None = None
    args: tuple[bytes, ...] = ()
    ok: bool = True


def decode_command(ts: int, sid: int, body: bytes) -> TTReplicationEvent:
    """Decode one logged command: ``C8 cmd`` and its request bytes, then one result byte (0 = success)."""
    if len(body) < 3 or body[0] != p.TTMAGICNUM or body[1] not in _NAMES:
        raise ReplicationError(f"Tokyo Tyrant replication frame at ts {ts} holds no command it knows")
    cmd, ok, args = body[1], body[-1] == 0, body[2:-1]
    base = {"ts": ts, "origin_sid": sid, "op": _NAMES[cmd], "ok": ok}
    try:
        return TTReplicationEvent(**base, **_fields(cmd, args))
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise ReplicationError(f"Tokyo Tyrant replication frame at ts {ts} ({_NAMES[cmd]}) is truncated: {exc}") from None


def _fields(cmd: int, data: bytes) -> dict:
    if cmd in (p.TTCMDPUT, p.TTCMDPUTKEEP, p.TTCMDPUTCAT):
        ksiz, vsiz = _KV.unpack_from(data)
        return {"key": _cut(data, 8, ksiz), "value": _cut(data, 8 + ksiz, vsiz)}
    if cmd == p.TTCMDPUTSHL:
        ksiz, vsiz, width = _KVW.unpack_from(data)
        return {"key": _cut(data, 12, ksiz), "value": _cut(data, 12 + ksiz, vsiz), "number": width}
    if cmd == p.TTCMDOUT:
        ksiz, = _U32.unpack_from(data)
        return {"key": _cut(data, 4, ksiz)}
    if cmd == p.TTCMDADDINT:
        ksiz, num = _KI.unpack_from(data)
        return {"key": _cut(data, 8, ksiz), "number": num}
    if cmd == p.TTCMDADDDOUBLE:
        ksiz, integ, fract = _KD.unpack_from(data)
        return {"key": _cut(data, 20, ksiz), "number": p.unpack_double(integ, fract)}
    if cmd == p.TTCMDOPTIMIZE:
        psiz, = _U32.unpack_from(data)
        return {"value": _cut(data, 4, psiz)}
    if cmd == p.TTCMDMISC:
        return _misc(data)
    return {}  # vanish, sync


def _cut(data: bytes, pos: int, size: int) -> bytes:
    if pos + size > len(data):
        raise IndexError(f"{size} bytes wanted at {pos} of {len(data)}")
    return data[pos:pos + size]


def _misc(data: bytes) -> dict:
    nsiz, n = _KV.unpack_from(data)
    name, pos, args = _cut(data, 8, nsiz).decode("utf-8"), 8 + nsiz, []
    for _ in range(n):
        size, = _U32.unpack_from(data, pos)
        args.append(_cut(data, pos + 4, size))
        pos += 4 + size
    return {"name": name, "args": tuple(args)}


class TTReplication(LogStream):
    """An iterator over a Tokyo Tyrant server's update log, from a timestamp on.

    >>> with tt.replication(ts=1, sid=99) as events:      # doctest: +SKIP
    ...     for event in events:
    ...         print(event.op, event.key)

    The server sends keep-alive bytes while idle (no answer needed) and
    leaves out entries whose origin is ``sid``. ``ts`` advances past every
    frame read: resume from ``ts + 1``. ``close()`` (from any thread) ends it.
    """

    def __init__(self, conn: KvConnection, *, ts: int = 1, sid: int = 0xFFFF) -> None:
        super().__init__(conn, ts)
        conn.send(p.encode_repl(max(ts, 1), max(sid, 1)))
        try:
            self.master_sid = conn.unpack(_U32)[0]
        except StoreConnectionError:
            conn.close()
            raise ReplicationError(f"Tokyo Tyrant refused replication from ts {ts} to sid {sid} "
                                   "(is -ulog set, and is sid not the server's own?)") from None

    def _next_event(self) -> TTReplicationEvent:
        conn = self._conn
        while True:
            magic = conn.read(1)[0]
            if magic == p.TCULMAGICNOP:
                continue
            if magic != p.TCULMAGICNUM:
                raise ReplicationError(f"Tokyo Tyrant replication sent byte 0x{magic:02X}")
            ts, sid, size = conn.unpack(_FRAME)
            body = conn.read(conn.check_length("update-log frame size", size, 2 * p.MAXARGSIZ + 64))
            self.ts = max(self.ts, ts)
            return decode_command(ts, sid, body)
