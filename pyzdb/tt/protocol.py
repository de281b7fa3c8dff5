"""Tokyo Tyrant's original binary protocol: command bytes, limits, request encoding and reply reading.

Names follow tcrdb.h / ttserver.c (``TTCMDPUT`` ...). Every integer is big-endian.
"""
from __future__ import annotations

import math
import struct
from typing import Sequence

from pyzdb.errors import RecordTooLarge
from pyzdb.kvnet.errors import ProtocolError
from pyzdb.kvnet.pool import KvConnection

TTMAGICNUM = 0xC8
TTCMDPUT = 0x10
TTCMDPUTKEEP = 0x11
TTCMDPUTCAT = 0x12
TTCMDPUTSHL = 0x13
TTCMDPUTNR = 0x18
TTCMDOUT = 0x20
TTCMDGET = 0x30
TTCMDMGET = 0x31
TTCMDVSIZ = 0x38
TTCMDITERINIT = 0x50
TTCMDITERNEXT = 0x51
TTCMDFWMKEYS = 0x58
TTCMDADDINT = 0x60
TTCMDADDDOUBLE = 0x61
TTCMDEXT = 0x68
TTCMDSYNC = 0x70
TTCMDOPTIMIZE = 0x71
TTCMDVANISH = 0x72
TTCMDCOPY = 0x73
TTCMDRESTORE = 0x74
TTCMDSETMST = 0x78
TTCMDRNUM = 0x80
TTCMDSIZE = 0x81
TTCMDSTAT = 0x88
TTCMDMISC = 0x90
TTCMDREPL = 0xA0

RDBMONOULOG = 1          # misc opts: leave the call out of the update log
RDBXOLCKREC = 1          # ext opts: lock the record the script works on
RDBXOLCKGLB = 2          # ext opts: lock the whole database while the script runs
RDBROCHKCON = 1          # restore / setmst opts: check consistency of the log replayed
TCULMAGICNUM = 0xC9      # a replication frame
TCULMAGICNOP = 0xCA      # a replication keep-alive byte
INT_MIN = -(1 << 31)
MAXARGSIZ = 256 << 20    # largest key or value the server accepts
MAXARGNUM = 1 << 20      # most keys of one mget
TRILLION = 1_000_000_000_000

U8 = struct.Struct(">B")
U32 = struct.Struct(">I")
I32 = struct.Struct(">i")
U64 = struct.Struct(">Q")
DOUBLE = struct.Struct(">qq")
_KV = struct.Struct(">BBII")
_K = struct.Struct(">BBI")
_CMD = struct.Struct(">BB")
_FWM = struct.Struct(">BBIi")
_ADDINT = struct.Struct(">BBIi")
_ADDDOUBLE = struct.Struct(">BBIqq")
_MISC = struct.Struct(">BBIII")
_PUTSHL = struct.Struct(">BBIII")
_EXT = struct.Struct(">BBIIII")
_SIZED = struct.Struct(">BBI")
_RESTORE = struct.Struct(">BBIQI")
_SETMST = struct.Struct(">BBIIQI")
_REPL = struct.Struct(">BBQI")


def check_size(what: str, data: bytes) -> None:
    """Refuse a key or value over ``MAXARGSIZ`` before anything is sent."""
    if len(data) > MAXARGSIZ:
        raise RecordTooLarge(f"Tokyo Tyrant {what} of {len(data)} bytes is over the limit of {MAXARGSIZ} bytes")


def encode_kv(cmd: int, key: bytes, value: bytes) -> bytes:
    """put / putkeep / putcat / putnr request."""
    check_size("key", key)
    check_size("value", value)
    return b"".join((_KV.pack(TTMAGICNUM, cmd, len(key), len(value)), key, value))


def encode_key(cmd: int, key: bytes) -> bytes:
    """out / get / vsiz request."""
    check_size("key", key)
    return _K.pack(TTMAGICNUM, cmd, len(key)) + key


def encode_bare(cmd: int) -> bytes:
    """A request with no arguments (iterinit, vanish, rnum, size, stat ...)."""
    return _CMD.pack(TTMAGICNUM, cmd)


def encode_mget(keys: Sequence[bytes]) -> bytes:
    """mget request."""
    parts = [_K.pack(TTMAGICNUM, TTCMDMGET, len(keys))]
    for key in keys:
        check_size("key", key)
        parts += (U32.pack(len(key)), key)
    return b"".join(parts)


def encode_fwmkeys(prefix: bytes, max_keys: int) -> bytes:
    """fwmkeys request (``max_keys`` < 0: no limit)."""
    check_size("prefix", prefix)
    return _FWM.pack(TTMAGICNUM, TTCMDFWMKEYS, len(prefix), max_keys) + prefix


def encode_addint(key: bytes, num: int) -> bytes:
    """addint request."""
    check_size("key", key)
    return _ADDINT.pack(TTMAGICNUM, TTCMDADDINT, len(key), num) + key


def pack_double(num: float) -> tuple[int, int]:
    """A float as Tokyo Tyrant's (integral part, fraction × 10^12) pair."""
    if math.isnan(num):
        return -(1 << 63), -(1 << 63)
    if math.isinf(num):
        return ((1 << 63) - 1 if num > 0 else -(1 << 63)), 0
    fract, integ = math.modf(num)
    return int(integ), int(fract * TRILLION)


def unpack_double(integ: int, fract: int) -> float:
    """The float of a (integral part, fraction × 10^12) pair."""
    return integ + fract / TRILLION


def encode_adddouble(key: bytes, num: float) -> bytes:
    """adddouble request."""
    check_size("key", key)
    return _ADDDOUBLE.pack(TTMAGICNUM, TTCMDADDDOUBLE, len(key), *pack_double(num)) + key


def encode_misc(name: bytes, args: Sequence[bytes], opts: int = 0) -> bytes:
    """misc request calling function ``name`` with ``args``."""
    parts = [_MISC.pack(TTMAGICNUM, TTCMDMISC, len(name), opts, len(args)), name]
    for arg in args:
        check_size("misc argument", arg)
        parts += (U32.pack(len(arg)), arg)
    return b"".join(parts)


def encode_putshl(key: bytes, value: bytes, width: int) -> bytes:
    """putshl request: append ``value``, then keep the last ``width`` bytes."""
    check_size("key", key)
    check_size("value", value)
    return b"".join((_PUTSHL.pack(TTMAGICNUM, TTCMDPUTSHL, len(key), len(value), width), key, value))


def encode_ext(name: bytes, key: bytes, value: bytes, opts: int = 0) -> bytes:
    """ext request: call the server's Lua function ``name`` with ``key`` and ``value``."""
    check_size("key", key)
    check_size("value", value)
    return b"".join((_EXT.pack(TTMAGICNUM, TTCMDEXT, len(name), opts, len(key), len(value)), name, key, value))


def encode_path(cmd: int, path: bytes) -> bytes:
    """optimize (tuning parameters) or copy (destination path) request."""
    check_size("argument", path)
    return _SIZED.pack(TTMAGICNUM, cmd, len(path)) + path


def encode_restore(path: bytes, ts: int, opts: int = 0) -> bytes:
    """restore request: replay the update log in directory ``path`` from ``ts`` (microseconds)."""
    return _RESTORE.pack(TTMAGICNUM, TTCMDRESTORE, len(path), ts, opts) + path


def encode_setmst(host: bytes, port: int, ts: int, opts: int = 0) -> bytes:
    """setmst request: follow the master at ``host:port`` from ``ts`` (an empty host stops following)."""
    return _SETMST.pack(TTMAGICNUM, TTCMDSETMST, len(host), port, ts, opts) + host


def encode_repl(ts: int, sid: int) -> bytes:
    """repl request: stream the update log from ``ts`` (microseconds) to a reader of server id ``sid``."""
    return _REPL.pack(TTMAGICNUM, TTCMDREPL, ts, sid)


def read_code(conn: KvConnection) -> int:
    """The status byte starting every reply (0 = success)."""
    return conn.read(1)[0]


def expect_ok(conn: KvConnection, what: str) -> None:
    """Read a status byte; anything but success raises ``ProtocolError``."""
    code = conn.read(1)[0]
    if code:
        raise ProtocolError(f"Tokyo Tyrant failed {what} (code {code})")


def read_sized(conn: KvConnection) -> bytes:
    """A ``size:u32`` then that many bytes."""
    return conn.read(conn.check_length("size", conn.unpack(U32)[0], MAXARGSIZ))


def read_list(conn: KvConnection, n: int) -> list[bytes]:
    """``n`` × ``size:u32 bytes`` (fwmkeys and misc replies)."""
    return [read_sized(conn) for _ in range(conn.check_length("count", n, MAXARGNUM))]


def read_pairs(conn: KvConnection) -> list[tuple[bytes, bytes]]:
    """A ``count:u32`` then that many ``ksiz:u32 vsiz:u32 key value`` (the mget reply)."""
    return conn.read_pairs(conn.check_length("count", conn.unpack(U32)[0], MAXARGNUM), MAXARGSIZ)
