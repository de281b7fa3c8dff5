"""Kyoto Cabinet's map and array dumps (Lua ``kt.mapdump`` / ``kt.arraydump``), the layout of Hash, Set and List records.

>>> dump_map({b'a': b'1'}), load_map(b'\\x01\\x01a1'), dump_list([b'x', b'']), load_list(b'\\x01x\\x00')
(b'\\x01\\x01a1', {b'a': b'1'}, b'\\x01x\\x00', [b'x', b''])
"""
from __future__ import annotations

from typing import Iterable, Mapping


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a varint at ``pos``; return it and the next position (ValueError if ``data`` ends inside it).

    >>> read_varint(bytes([0x81, 0x00]), 0)
    (128, 2)
    """
    num = 0
    while True:
        if pos >= len(data):
            raise ValueError("data ends inside a varint")
        byte = data[pos]
        pos += 1
        num = (num << 7) | (byte & 0x7F)
        if byte < 0x80:
            return num, pos


def write_varint(num: int) -> bytes:
    """Kyoto Cabinet's varint: 7 bits a byte, most significant first, high bit on all but the last."""
    out = [num & 0x7F]
    num >>= 7
    while num:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    return bytes(reversed(out))


def dump_map(data: Mapping[bytes, bytes]) -> bytes:
    """``ksiz vsiz key value`` for every pair, in key order (as ``kt.mapdump`` writes a std::map)."""
    return b"".join(write_varint(len(k)) + write_varint(len(v)) + k + v for k, v in sorted(data.items()))


def load_map(data: bytes) -> dict[bytes, bytes]:
    """The pairs of a map dump; a truncated tail is ignored, as ``kt.mapload`` does."""
    out: dict[bytes, bytes] = {}
    pos = 0
    try:
        while len(data) - pos > 1:
            ksiz, pos = read_varint(data, pos)
            vsiz, pos = read_varint(data, pos)
            if pos + ksiz + vsiz > len(data):
                break
            out[data[pos:pos + ksiz]] = data[pos + ksiz:pos + ksiz + vsiz]
            pos += ksiz + vsiz
    except ValueError:
        pass
    return out


def dump_list(items: Iterable[bytes]) -> bytes:
    """``size item`` for every item (as ``kt.arraydump`` writes)."""
    return b"".join(write_varint(len(item)) + item for item in items)


def load_list(data: bytes) -> list[bytes]:
    """The items of an array dump; a truncated tail is ignored, as ``kt.arrayload`` does."""
    out: list[bytes] = []
    pos = 0
    try:
        while pos < len(data):
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                break
            out.append(data[pos:pos + size])
            pos += size
    except ValueError:
        pass
    return out
