"""The Tokyo Tyrant half of tests/protocol_server.py: its commands, failure codes and misc functions."""
from __future__ import annotations

import os
import re
import struct
import threading
import time
from typing import Iterator

from protocol_peer import Hangup, Peer

LIMIT_TT = 256 << 20
INT_MIN = -(1 << 31)


class TTData:
    """One on-memory tree database (ttserver '+'), its shared iterator and its update log."""

    def __init__(self, sid: int = 1) -> None:
        self.map: dict[bytes, bytes] = {}
        self.lock = threading.Condition()
        self.iter_keys: Iterator[bytes] = iter(())
        self.started = time.time()
        self.sid = sid
        self.log: list[tuple[int, bytes]] = []  # (ts in microseconds, command bytes + result byte)

    def record(self, cmd: int, args: bytes, ok: bool = True) -> None:
        """Log a command as ttserver's ulog does (under the lock): ``C8 cmd args result``."""
        ts = max(int(time.time() * 1_000_000), self.log[-1][0] + 1 if self.log else 0)
        self.log.append((ts, bytes([0xC8, cmd]) + args + (b"\x00" if ok else b"\x01")))
        self.lock.notify_all()


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
        data.record(0x10 if cmd == 0x18 else cmd, struct.pack(">II", ksiz, vsiz) + key + value, code == 0)
    if cmd != 0x18:  # putnr: no reply at all
        peer.send(bytes([code]))


def tt_key(cmd: int, peer: Peer, data: TTData) -> None:
    """out 20 / get 30 / vsiz 38: code 1 for a missing key."""
    key = peer.read(_size(peer))
    with data.lock:
        value = data.map.get(key)
        if cmd == 0x20:
            missing = data.map.pop(key, None) is None
            data.record(cmd, struct.pack(">I", len(key)) + key, not missing)
            peer.send(b"\x01" if missing else b"\x00")
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
        if num:  # ttserver logs no addition of zero
            operand = struct.pack(">i", num) if cmd == 0x60 else struct.pack(">qq", integ, fract)
            data.record(cmd, struct.pack(">I", ksiz) + operand + key, not (cmd == 0x60 and total == INT_MIN))
    if cmd == 0x60 and total == INT_MIN:
        peer.send(b"\x01")  # ttserver answers a sum of INT_MIN as failure, having stored it
        return
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
            data.record(cmd, b"")
            peer.send(b"\x00")
            return
        rnum, size = len(data.map), sum(len(k) + len(v) for k, v in data.map.items())
    if cmd in (0x80, 0x81):
        peer.send(struct.pack(">BQ", 0, rnum if cmd == 0x80 else size))
        return
    text = (f"version\t1.1.41\nlibver\t316\nprotver\t0.91\ntime\t{time.time():.6f}\npid\t{os.getpid()}\n"
            f"sid\t{data.sid}\ntype\ton-memory tree\nrnum\t{rnum}\nsize\t{size}\nbigend\t0\n"
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
    elif name in (b"getpart", b"regex", b"range"):
        return _misc_read(name, args, table)
    elif name not in (b"sync", b"optimize"):
        return None
    return []


def _misc_read(name: bytes, args: list[bytes], table: dict[bytes, bytes]) -> list[bytes] | None:
    """getpart (key, offset, length), regex (POSIX ERE on keys, ``*`` ignores case), range (start, max, stop)."""
    if name == b"getpart":
        value = table.get(args[0]) if args else None
        off = max(int(args[1]), 0) if len(args) > 1 else 0
        size = int(args[2]) if len(args) > 2 else -1
        if value is None or off >= len(value):
            return None
        return [value[off:] if size < 0 else value[off:off + size]]
    if name == b"regex":
        if not args:
            return None
        flags, pattern = (re.IGNORECASE, args[0][1:]) if args[0].startswith(b"*") else (0, args[0])
        limit = int(args[1]) if len(args) > 1 and int(args[1]) > 0 else None
        found = [k for k in sorted(table) if re.search(pattern, k, flags)][:limit]
    else:
        start = args[0] if args else b""
        limit = int(args[1]) if len(args) > 1 and int(args[1]) > 0 else None
        stop = args[2] if len(args) > 2 else None
        found = [k for k in sorted(table) if k >= start and (stop is None or k < stop)][:limit]
    return [x for k in found for x in (k, table[k])]


def tt_misc(cmd: int, peer: Peer, data: TTData) -> None:
    """misc 90: code 1 and a zero count on failure."""
    nsiz, opts, n = peer.unpack(">iii")
    if nsiz < 0 or nsiz >= 256 or n < 0 or n > 1 << 20:
        raise Hangup()
    name = peer.read(nsiz)
    args = [peer.read(_size(peer)) for _ in range(n)]
    with data.lock:
        out = run_misc(name, args, data)
        if not opts & 1:  # RDBMONOULOG leaves it out of the log
            logged = [struct.pack(">I", len(a)) + a for a in args]
            data.record(0x90, struct.pack(">II", nsiz, n) + name + b"".join(logged), out is not None)
    if out is None:
        peer.send(struct.pack(">BI", 1, 0))
        return
    peer.send(struct.pack(">BI", 0, len(out)), *[struct.pack(">I", len(e)) + e for e in out])


TT_COMMANDS = {0x10: tt_put, 0x11: tt_put, 0x12: tt_put, 0x18: tt_put, 0x20: tt_key, 0x30: tt_key,
               0x38: tt_key, 0x31: tt_mget, 0x50: tt_iter, 0x51: tt_iter, 0x58: tt_fwmkeys,
               0x60: tt_add, 0x61: tt_add, 0x72: tt_whole, 0x80: tt_whole, 0x81: tt_whole,
               0x88: tt_whole, 0x90: tt_misc}


def tt_session(peer: Peer, data: TTData) -> None:
    """``C8 cmd`` requests until a protocol violation or the client leaves."""
    while True:
        magic, cmd = peer.read(2)
        command = TT_COMMANDS.get(cmd) if magic == 0xC8 else None
        if command is None:
            return
        command(cmd, peer, data)
