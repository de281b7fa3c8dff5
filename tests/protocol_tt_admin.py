"""The Tokyo Tyrant commands of tests/protocol_server.py beyond records: putshl, ext, sync, optimize, copy, restore,
setmst and the update-log stream (repl). Importing this module adds them to protocol_tt.TT_COMMANDS."""
from __future__ import annotations

import bisect
import os
import struct

from protocol_peer import Hangup, Peer
from protocol_tt import TT_COMMANDS, TTData, _size

KEEPALIVE = 0.2  # seconds between the idle stream's CA bytes (ttserver: 1 s)


def ext_function(name: bytes, key: bytes, value: bytes) -> bytes | None:
    """The test server's Lua stand-ins: echo (the value back), concat (key + value); others fail."""
    if name == b"echo":
        return value
    if name == b"concat":
        return key + value
    return None


def tt_putshl(cmd: int, peer: Peer, data: TTData) -> None:
    """putshl 13: append, then keep the last ``width`` bytes."""
    ksiz, vsiz, width = _size(peer), _size(peer), _size(peer)
    key, value = peer.read(ksiz), peer.read(vsiz)
    with data.lock:
        joined = data.map.get(key, b"") + value
        data.map[key] = joined[-width:] if width else b""
        data.record(cmd, struct.pack(">III", ksiz, vsiz, width) + key + value)
    peer.send(b"\x00")


def tt_ext(cmd: int, peer: Peer, data: TTData) -> None:
    """ext 68: ``00 rsiz result`` from the function, ``01`` when it fails or does not exist."""
    nsiz, _opts, ksiz, vsiz = peer.unpack(">iiii")
    if nsiz < 0 or nsiz >= 256 or not 0 <= ksiz <= 256 << 20 or not 0 <= vsiz <= 256 << 20:
        raise Hangup()
    name, key, value = peer.read(nsiz), peer.read(ksiz), peer.read(vsiz)
    out = ext_function(name, key, value)
    peer.send(b"\x01" if out is None else struct.pack(">BI", 0, len(out)) + out)


def tt_admin(cmd: int, peer: Peer, data: TTData) -> None:
    """sync 70, optimize 71 (params), copy 73 (path), restore 74 (path ts opts), setmst 78 (host port ts opts)."""
    code = 0
    if cmd == 0x70:
        with data.lock:
            data.record(cmd, b"")
    elif cmd == 0x71:
        params = peer.read(_size(peer))
        with data.lock:
            data.record(cmd, struct.pack(">I", len(params)) + params)
    elif cmd == 0x73:
        code = _copy(peer.read(_size(peer)), data)
    elif cmd == 0x74:
        psiz, _ts, _opts = _size(peer), *peer.unpack(">Qi")
        path = peer.read(psiz)
        code = 0 if os.path.isdir(path) else 1  # nothing to replay here; a missing log directory fails
    else:
        hsiz, port, _ts, _opts = _size(peer), *peer.unpack(">iQi")
        if port < 0:
            raise Hangup()
        data.master = (peer.read(hsiz), port)
    peer.send(bytes([code]))


def _copy(path: bytes, data: TTData) -> int:
    """Write the records to ``path`` (one ``key<TAB>value`` line each: not a Tokyo Cabinet file); 1 if it fails."""
    try:
        with open(path, "wb") as out, data.lock:
            out.writelines(k + b"\t" + v + b"\n" for k, v in sorted(data.map.items()))
    except OSError:
        return 1
    return 0


def tt_repl(cmd: int, peer: Peer, data: TTData) -> None:
    """repl A0: the server's sid, then ``C9 ts sid size body`` frames (ts >= asked, other sids), ``CA`` when idle."""
    ts, sid = peer.unpack(">QI")
    if ts < 1 or sid < 1 or sid == data.sid:
        raise Hangup()  # ttserver closes without a reply
    peer.send(struct.pack(">I", data.sid))
    start = 0
    while True:
        with data.lock:
            start = max(start, bisect.bisect_left([t for t, _ in data.log], ts))
            if start == len(data.log):
                data.lock.wait(KEEPALIVE)
            entries, start = data.log[start:], len(data.log)
        if not entries:
            peer.send(b"\xca")
            continue
        peer.send(*[struct.pack(">BQII", 0xC9, t, data.sid, len(body)) + body for t, body in entries])


TT_COMMANDS.update({0x13: tt_putshl, 0x68: tt_ext, 0x70: tt_admin, 0x71: tt_admin, 0x73: tt_admin,
                    0x74: tt_admin, 0x78: tt_admin, 0xA0: tt_repl})
