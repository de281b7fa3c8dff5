"""The Kyoto Tycoon half of tests/protocol_server.py: databases, bulk commands, scripts, replication, HTTP /rpc/add."""
from __future__ import annotations

import bisect
import struct
import threading
import time
import urllib.parse

import protocol_lua_list  # noqa: F401 - registers the List and Queue procedures
from protocol_lua import PROCEDURES
from protocol_peer import Peer, varint

LIMIT_KT = 1 << 28
XT_MAX = (1 << 40) - 1
B_NOP, B_REPL, B_SCRIPT, B_SET, B_REMOVE, B_GET, B_ERROR = 0xB0, 0xB1, 0xB4, 0xB8, 0xB9, 0xBA, 0xBF
OP_SET, OP_REMOVE, OP_CLEAR = 0xA1, 0xA2, 0xA5


class KTData:
    """Databases of (value, absolute xt) records and the update log, under one condition."""

    def __init__(self, dbs: int, sid: int, keepalive: float) -> None:
        self.dbs: list[dict[bytes, tuple[bytes, int]]] = [{} for _ in range(dbs)]
        self.sid, self.keepalive = sid, keepalive
        self.cond = threading.Condition()
        self.log_ts: list[int] = []
        self.log_msg: list[bytes] = []

    @staticmethod
    def clock() -> int:
        """The update log's clock: unix milliseconds x 10^6."""
        return int(time.time() * 1000) * 1_000_000

    def _log(self, db: int, body: bytes) -> None:
        ts = max(self.clock(), self.log_ts[-1] + 1 if self.log_ts else 0)
        self.log_ts.append(ts)
        self.log_msg.append(struct.pack(">HH", self.sid, db) + body)
        self.cond.notify_all()

    def set(self, db: int, key: bytes, value: bytes, xt: int) -> None:
        """Store with xt as ktserver reads it: negative absolute, else seconds from now."""
        now = int(time.time())
        xt = -xt if xt < 0 else min(xt, (1 << 62)) + now
        xt = min(xt, XT_MAX)
        self.dbs[db][key] = (value, xt)
        self._log(db, bytes([OP_SET]) + varint(len(key)) + varint(len(value) + 5) + key + xt.to_bytes(5, "big") + value)

    def get(self, db: int, key: bytes) -> tuple[bytes, int] | None:
        """The (value, xt) of a live record."""
        rec = self.dbs[db].get(key)
        if rec is None or int(time.time()) > rec[1]:
            return None
        return rec

    def remove(self, db: int, key: bytes) -> bool:
        """Remove; True if a live record existed."""
        existed = self.get(db, key) is not None
        self.dbs[db].pop(key, None)
        self._log(db, bytes([OP_REMOVE]) + varint(len(key)) + key)
        return existed

    def clear(self, db: int) -> None:
        """Remove every record of a database."""
        self.dbs[db].clear()
        self._log(db, bytes([OP_CLEAR]))


def kt_set_bulk(peer: Peer, data: KTData) -> bool:
    """B8 set_bulk: store records; BF and close on an oversized record."""
    flags, n = peer.unpack(">II")
    stored, ok = 0, True
    for _ in range(n):
        db, ksiz, vsiz, xt = peer.unpack(">HIIq")
        if ksiz > LIMIT_KT or vsiz > LIMIT_KT:
            ok = False
            break
        key, value = peer.read(ksiz), peer.read(vsiz)
        if db < len(data.dbs):
            with data.cond:
                data.set(db, key, value, xt)
            stored += 1
    return _bulk_reply(peer, flags, B_SET, stored, ok)


def _bulk_reply(peer: Peer, flags: int, magic: int, count: int, ok: bool) -> bool:
    if not flags & 1:
        peer.send(struct.pack(">BI", magic, count) if ok else bytes([B_ERROR]))
    return ok


def _read_keys(peer: Peer, n: int) -> list[tuple[int, bytes]] | None:
    keys = []
    for _ in range(n):
        db, ksiz = peer.unpack(">HI")
        if ksiz > LIMIT_KT:
            return None
        keys.append((db, peer.read(ksiz)))
    return keys


def kt_remove_bulk(peer: Peer, data: KTData) -> bool:
    """B9 remove_bulk: count only keys that existed; every remove is logged."""
    flags, n = peer.unpack(">II")
    keys = _read_keys(peer, n)
    removed = 0
    with data.cond:
        for db, key in keys or ():
            if db < len(data.dbs):
                removed += data.remove(db, key)
    return _bulk_reply(peer, flags, B_REMOVE, removed, keys is not None)


def kt_get_bulk(peer: Peer, data: KTData) -> bool:
    """BA get_bulk: hits in request order, missing and expired keys left out."""
    _flags, n = peer.unpack(">II")
    keys = _read_keys(peer, n)
    if keys is None:
        peer.send(bytes([B_ERROR]))
        return False
    parts = []
    with data.cond:
        for db, key in keys:
            rec = data.get(db, key) if db < len(data.dbs) else None
            if rec is not None:
                parts += (struct.pack(">HIIq", db, len(key), len(rec[0]), rec[1]), key, rec[0])
    peer.send(struct.pack(">BI", B_GET, len(parts) // 3), *parts)
    return True


def run_script(name: bytes, pairs: dict[bytes, bytes], data: KTData) -> dict[bytes, bytes] | None:
    """echo (its input back), or a procedure of pyzdb.lua (protocol_lua, protocol_lua_list); others fail.

    A procedure naming a database the server does not have fails, as the Lua
    ``kt.dbs[idx + 1]`` would be nil.
    """
    if name == b"echo":
        return pairs
    proc = PROCEDURES.get(name)
    if proc is None or not 0 <= int(pairs.get(b"db", b"0")) < len(data.dbs):
        return None
    with data.cond:
        return proc(pairs, data)


def kt_play_script(peer: Peer, data: KTData) -> bool:
    """B4 play_script: output pairs sorted by key; BF but no close when the script fails."""
    flags, nsiz, n = peer.unpack(">III")
    if nsiz > LIMIT_KT:
        return False
    name, pairs = peer.read(nsiz), {}
    for _ in range(n):
        ksiz, vsiz = peer.unpack(">II")
        if ksiz > LIMIT_KT or vsiz > LIMIT_KT:
            return False
        key = peer.read(ksiz)
        pairs[key] = peer.read(vsiz)
    out = run_script(name, pairs, data)
    if flags & 1:
        return True
    if out is None:
        peer.send(bytes([B_ERROR]))  # a failed script keeps the connection
        return True
    body = [struct.pack(">II", len(k), len(v)) + k + v for k, v in sorted(out.items())]
    peer.send(struct.pack(">BI", B_SCRIPT, len(body)), *body)
    return True


def kt_replication(peer: Peer, data: KTData) -> bool:
    """B1 replication: frames newer than ts, filtered by sid; B0 keep-alive answered by B1."""
    flags, ts, sid = peer.unpack(">IQH")
    white, rts, miss = flags & 1, 0, 0
    peer.send(bytes([B_REPL]))
    while True:
        with data.cond:
            start = bisect.bisect_right(data.log_ts, ts)
            if start == len(data.log_ts):
                data.cond.wait(data.keepalive)
                start = bisect.bisect_right(data.log_ts, ts)
            entries = list(zip(data.log_ts[start:], data.log_msg[start:]))
        if not entries:
            cc = data.clock()
            cc = max(cc - 10**9 if cc > 10**9 else cc, rts)
            peer.send(struct.pack(">BQ", B_NOP, cc))
            if peer.read(1) != bytes([B_REPL]):
                return False
            continue
        for mts, msg in entries:
            origin = struct.unpack_from(">H", msg)[0]
            if (origin == sid) == bool(white):
                miss = 0
                peer.send(struct.pack(">BQI", B_REPL, mts, len(msg)), msg)
            else:
                miss += 1
                if miss >= 256:
                    peer.send(struct.pack(">BQI", B_REPL, mts, 0))
                    miss = 0
            ts, rts = max(ts, mts), max(rts, mts)


def kt_http(peer: Peer, data: KTData, first: bytes) -> bool:
    """An HTTP request on the same port (a first byte below 0x80): ``/rpc/add`` only, 200 stored / 450 exists; then close."""
    lines = [first + peer.rfile.readline()]
    while lines[-1] not in (b"\r\n", b"\n", b""):
        lines.append(peer.rfile.readline())
    target = lines[0].split(b" ")[1].decode("latin-1") if len(lines[0].split(b" ")) > 1 else ""
    path, _, query = target.partition("?")
    params = {k: urllib.parse.unquote_to_bytes(v) for k, _, v in (p.partition("=") for p in query.split("&") if p)}
    status = "501 Not Implemented"
    if path == "/rpc/add" and "key" in params:
        db = int(params.get("DB", b"0"))
        with data.cond:
            if db >= len(data.dbs):
                status = "400 Bad Request"
            elif data.get(db, params["key"]) is not None:
                status = "450 Logical Inconsistency"
            else:
                data.set(db, params["key"], params.get("value", b""), XT_MAX)
                status = "200 OK"
    peer.send(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
    return False


KT_COMMANDS = {B_SET: kt_set_bulk, B_REMOVE: kt_remove_bulk, B_GET: kt_get_bulk,
               B_SCRIPT: kt_play_script, B_REPL: kt_replication}


def kt_session(peer: Peer, data: KTData) -> None:
    """Binary requests until one fails (failed bulk op, unknown magic byte) or the client leaves."""
    while True:
        first = peer.read(1)
        if first[0] < 0x80 and first[0] != 0:
            kt_http(peer, data, first)
            return
        command = KT_COMMANDS.get(first[0])
        if not (command and command(peer, data)):
            return
