"""A pure-Python stand-in for ktserver and ttserver speaking their binary protocols, for tests.

Follows /work/shared/protocols.md and the servers' own behaviour: Kyoto Tycoon's
error byte BF then close after a failed bulk op (a failed script keeps the
connection), close on an unknown magic byte, the no-reply flag, unknown
database indexes skipped, expiry, scripts, and the replication stream with
keep-alives; Tokyo Tyrant's commands, failure codes, putnr without reply and
close on any protocol violation.

    python tests/protocol_server.py --kt-port 0 --tt-port 0
    {"kt_port": 40123, "tt_port": 40124, "pid": 4242}
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Iterator

LIMIT_KT = 1 << 28
LIMIT_TT = 256 << 20
XT_MAX = (1 << 40) - 1
B_NOP, B_REPL, B_SCRIPT, B_SET, B_REMOVE, B_GET, B_ERROR = 0xB0, 0xB1, 0xB4, 0xB8, 0xB9, 0xBA, 0xBF
OP_SET, OP_REMOVE, OP_CLEAR = 0xA1, 0xA2, 0xA5


class Hangup(Exception):
    """The peer went away, or the session must end without a reply."""


class Peer:
    """The client end of one connection: exact reads and whole writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or Hangup."""
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise Hangup()
        return data

    def unpack(self, fmt: str) -> tuple:
        """Read and unpack one struct."""
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))

    def send(self, *parts: bytes) -> None:
        """Send the parts as one write."""
        self.sock.sendall(b"".join(parts))


def varint(num: int) -> bytes:
    """Kyoto Cabinet's varint: 7 bits a byte, most significant first."""
    out = [num & 0x7F]
    num >>= 7
    while num:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    return bytes(reversed(out))


# --- Kyoto Tycoon ----------------------------------------------------------------------
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
    """The built-in scripts: echo (its input back), count and clear (database 0); others fail."""
    if name == b"echo":
        return pairs
    if name == b"count":
        return {b"count": str(len(data.dbs[0])).encode()}
    if name == b"clear":
        with data.cond:
            data.clear(0)
        return {}
    return None


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


KT_COMMANDS = {B_SET: kt_set_bulk, B_REMOVE: kt_remove_bulk, B_GET: kt_get_bulk,
               B_SCRIPT: kt_play_script, B_REPL: kt_replication}


# --- Tokyo Tyrant ----------------------------------------------------------------------
class TTData:
    """One on-memory hash database and its shared iterator."""

    def __init__(self) -> None:
        self.map: dict[bytes, bytes] = {}
        self.lock = threading.Lock()
        self.iter_keys: Iterator[bytes] = iter(())
        self.started = time.time()


def _size(peer: Peer, fmt: str = ">i") -> int:
    size = peer.unpack(fmt)[0]
    if size < 0 or size > LIMIT_TT:
        raise Hangup()  # a bad length closes the connection without a reply
    return size


def tt_put(cmd: int, peer: Peer, data: TTData) -> None:
    """put 10 / putkeep 11 / putcat 12 / putnr 18 (no reply)."""
    ksiz, vsiz = _size(peer), _size(peer)
    key, value = peer.read(ksiz), peer.read(vsiz)
    code = 0
    with data.lock:
        if cmd == 0x11 and key in data.map:
            code = 1
        elif cmd == 0x12:
            data.map[key] = data.map.get(key, b"") + value
        else:
            data.map[key] = value
    if cmd != 0x18:  # putnr: no reply at all
        peer.send(bytes([code]))


def tt_key(cmd: int, peer: Peer, data: TTData) -> None:
    """out 20 / get 30 / vsiz 38: code 1 for a missing key."""
    key = peer.read(_size(peer))
    with data.lock:
        value = data.map.get(key)
        if cmd == 0x20:
            peer.send(b"\x01" if data.map.pop(key, None) is None else b"\x00")
        elif value is None:
            peer.send(b"\x01")
        elif cmd == 0x30:
            peer.send(struct.pack(">BI", 0, len(value)), value)
        else:  # vsiz
            peer.send(struct.pack(">BI", 0, len(value)))


def tt_mget(cmd: int, peer: Peer, data: TTData) -> None:
    """mget 31: hits in request order."""
    n = peer.unpack(">i")[0]
    if n < 0 or n > 1 << 20:
        raise Hangup()
    keys = [peer.read(_size(peer)) for _ in range(n)]
    with data.lock:
        hits = [(k, data.map[k]) for k in keys if k in data.map]
    body = [struct.pack(">II", len(k), len(v)) + k + v for k, v in hits]
    peer.send(struct.pack(">BI", 0, len(hits)), *body)


def tt_iter(cmd: int, peer: Peer, data: TTData) -> None:
    """iterinit 50 / iternext 51 over the iterator shared by every connection."""
    with data.lock:
        if cmd == 0x50:  # iterinit
            data.iter_keys = iter(list(data.map))
            peer.send(b"\x00")
            return
        key = next((k for k in data.iter_keys if k in data.map), None)
    peer.send(b"\x01" if key is None else struct.pack(">BI", 0, len(key)) + key)


def tt_fwmkeys(cmd: int, peer: Peer, data: TTData) -> None:
    """fwmkeys 58: keys with a prefix (sorted here; a real hash db gives any order)."""
    psiz, limit = _size(peer), peer.unpack(">i")[0]
    prefix = peer.read(psiz)
    with data.lock:
        keys = sorted(k for k in data.map if k.startswith(prefix))
    keys = keys if limit < 0 else keys[:limit]
    peer.send(struct.pack(">BI", 0, len(keys)), *[struct.pack(">I", len(k)) + k for k in keys])


def tt_add(cmd: int, peer: Peer, data: TTData) -> None:
    """addint 60 / adddouble 61 on 4-byte / 8-byte little-endian records; code 1 on another size."""
    ksiz = _size(peer)
    if cmd == 0x60:
        num, width, native = peer.unpack(">i")[0], 4, "<i"
    else:
        integ, fract = peer.unpack(">qq")
        num, width, native = integ + fract / 1e12, 8, "<d"
    key = peer.read(ksiz)
    with data.lock:
        old = data.map.get(key)
        if old is not None and len(old) != width:
            peer.send(b"\x01")
            return
        total = num + (struct.unpack(native, old)[0] if old is not None else 0)
        if cmd == 0x60:
            total = (total + (1 << 31)) % (1 << 32) - (1 << 31)  # C int wraps around
        data.map[key] = struct.pack(native, total)
    if cmd == 0x60:
        peer.send(struct.pack(">Bi", 0, total))
    else:
        integ = int(total)
        peer.send(struct.pack(">Bqq", 0, integ, int((total - integ) * 1e12)))


def tt_whole(cmd: int, peer: Peer, data: TTData) -> None:
    """vanish 72, rnum 80, size 81, stat 88."""
    with data.lock:
        if cmd == 0x72:
            data.map.clear()
            peer.send(b"\x00")
            return
        rnum, size = len(data.map), sum(len(k) + len(v) for k, v in data.map.items())
    if cmd in (0x80, 0x81):
        peer.send(struct.pack(">BQ", 0, rnum if cmd == 0x80 else size))
        return
    text = (f"version\t1.1.41\nlibver\t316\nprotver\t0.91\ntime\t{time.time():.6f}\npid\t{os.getpid()}\n"
            f"sid\t0\ntype\ton-memory hash\nrnum\t{rnum}\nsize\t{size}\nbigend\t0\n"
            f"ru_real\t{time.time() - data.started:.6f}\n").encode()
    peer.send(struct.pack(">BI", 0, len(text)), text)


def run_misc(name: bytes, args: list[bytes], data: TTData) -> list[bytes] | None:
    """The misc functions of an on-memory hash database (None: failure), as ttserver 1.1.41 answers them."""
    table = data.map
    if name == b"put" and len(args) >= 2:
        table[args[0]] = args[1]
    elif name == b"putlist":
        table.update(zip(args[::2], args[1::2]))  # an odd last argument is ignored
    elif name == b"out" and args and args[0] in table:
        del table[args[0]]
    elif name == b"get" and args and args[0] in table:
        return [table[args[0]]]
    elif name == b"outlist":
        for key in args:
            table.pop(key, None)
    elif name == b"getlist":
        return [x for key in args if key in table for x in (key, table[key])]
    elif name == b"vanish":
        table.clear()
    elif name not in (b"sync", b"optimize"):
        return None
    return []


def tt_misc(cmd: int, peer: Peer, data: TTData) -> None:
    """misc 90: code 1 and a zero count on failure."""
    nsiz, _opts, n = peer.unpack(">iii")
    if nsiz < 0 or nsiz >= 256 or n < 0 or n > 1 << 20:
        raise Hangup()
    name = peer.read(nsiz)
    args = [peer.read(_size(peer)) for _ in range(n)]
    with data.lock:
        out = run_misc(name, args, data)
    if out is None:
        peer.send(struct.pack(">BI", 1, 0))
        return
    peer.send(struct.pack(">BI", 0, len(out)), *[struct.pack(">I", len(e)) + e for e in out])


TT_COMMANDS = {0x10: tt_put, 0x11: tt_put, 0x12: tt_put, 0x18: tt_put, 0x20: tt_key, 0x30: tt_key,
               0x38: tt_key, 0x31: tt_mget, 0x50: tt_iter, 0x51: tt_iter, 0x58: tt_fwmkeys,
               0x60: tt_add, 0x61: tt_add, 0x72: tt_whole, 0x80: tt_whole, 0x81: tt_whole,
               0x88: tt_whole, 0x90: tt_misc}


# --- serving -----------------------------------------------------------------------------
def kt_session(peer: Peer, data: KTData) -> None:
    """Binary requests until one fails (failed bulk op, unknown magic byte) or the client leaves."""
    while (command := KT_COMMANDS.get(peer.read(1)[0])) and command(peer, data):
        pass


def tt_session(peer: Peer, data: TTData) -> None:
    """``C8 cmd`` requests until a protocol violation or the client leaves."""
    while True:
        magic, cmd = peer.read(2)
        command = TT_COMMANDS.get(cmd) if magic == 0xC8 else None
        if command is None:
            return
        command(cmd, peer, data)


class Handler(socketserver.BaseRequestHandler):
    """One connection, served by its server's session function; closed when that returns."""

    def handle(self) -> None:
        """Serve until the session ends, then close."""
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.server.session(Peer(self.request), self.server.data)
        except (Hangup, OSError):
            pass


class Server(socketserver.ThreadingTCPServer):
    """A threaded loopback server holding its protocol's data."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, session, data: object) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.session, self.data = session, data


def serve(kt_port: int = 0, tt_port: int = 0, *, kt_dbs: int = 2, kt_sid: int = 1,
          keepalive: float = 0.1) -> tuple[Server, Server]:
    """Start both servers on threads; return them (``server_address[1]`` is the port)."""
    servers = (Server(kt_port, kt_session, KTData(kt_dbs, kt_sid, keepalive)),
               Server(tt_port, tt_session, TTData()))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return servers


def main(argv: list[str] | None = None) -> None:
    """Run both servers until SIGTERM or SIGINT, after printing their ports as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kt-port", type=int, default=0)
    parser.add_argument("--tt-port", type=int, default=0)
    parser.add_argument("--kt-dbs", type=int, default=2, help="number of Kyoto Tycoon databases")
    parser.add_argument("--kt-sid", type=int, default=1, help="Kyoto Tycoon server id in the update log")
    parser.add_argument("--keepalive", type=float, default=0.1, help="seconds between replication B0s")
    args = parser.parse_args(argv)
    kt, tt = serve(args.kt_port, args.tt_port, kt_dbs=args.kt_dbs, kt_sid=args.kt_sid, keepalive=args.keepalive)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(json.dumps({"kt_port": kt.server_address[1], "tt_port": tt.server_address[1], "pid": os.getpid()}),
          flush=True)
    done.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
