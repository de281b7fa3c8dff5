"""The log file's format: a segment's header, a record's frame, reading frames back, taking disk space ahead.

See storage/logfile.py for the log file as a whole.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import zlib
from array import array

MAGIC = b"PYZDBLOG"
LOG_VERSION = 1
HEADER = struct.Struct("<8sI16sQ")   # magic, version, store token, first seq; then the crc32 of those
HEADER_SIZE = HEADER.size + 4
FRAME = struct.Struct("<IIQ")        # payload length, payload crc32, seq
SEGMENT_BYTES = 64 << 20             # a new segment once the active one is this big
SUFFIX = ".log"
READ_BYTES = 4 << 20                 # records read back with one pread, up to about this many bytes
RESERVE_BYTES = 1 << 20              # disk space taken ahead of the appends, beyond the end (the size stays)
FALLOC_FL_KEEP_SIZE = 1


def _libc_fallocate():
    """Linux's ``fallocate(2)``, which can take space beyond a file's end without changing its size; else None."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return function


_FALLOCATE = _libc_fallocate()


def reserve(fd: int, offset: int, length: int) -> None:
    """Take disk space for ``length`` bytes at ``offset`` without changing the file's size; OSError (ENOSPC) if not.

    Without ``fallocate(2)`` (or a file system refusing its mode) the space
    is taken with ``posix_fallocate``, which does change the size.
    """
    if _FALLOCATE is not None and _FALLOCATE(fd, FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return
    code = ctypes.get_errno() if _FALLOCATE is not None else errno.EOPNOTSUPP
    if code not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        raise OSError(code, os.strerror(code))
    os.posix_fallocate(fd, offset, length)


def segment_name(first: int) -> str:
    """The file name of the segment whose first record is ``first``."""
    return "%020d%s" % (first, SUFFIX)


def encode_frames(records: list[tuple[int, bytes]]) -> bytes:
    """The bytes of one append: each (seq, record bytes) framed."""
    pack, crc32 = FRAME.pack, zlib.crc32
    parts = []
    for seq, data in records:
        parts.append(pack(len(data), crc32(data), seq))
        parts.append(data)
    return b"".join(parts)


class Segment:
    """One segment file: its first seq, the offset of each record's frame, the end of its last good frame."""

    def __init__(self, path: str, first: int, fd: int) -> None:
        self.path, self.first, self.fd = path, first, fd
        self.offsets = array("Q")
        self.end = HEADER_SIZE
        self.tail_checked = -1    # the file size at which a bad tail was last found to be only a tail
        self.reserved = 0         # the writer's disk space taken up to this offset

    @property
    def last(self) -> int:
        """The seq of its last good record (``first - 1`` when it has none)."""
        return self.first + len(self.offsets) - 1

    def read(self, first: int, last: int) -> list[bytes]:
        """The bytes of records ``first`` to ``last`` (which this segment holds): one ``pread`` per READ_BYTES."""
        offsets, records = self.offsets, []
        index, stop_index = first - self.first, last - self.first + 1
        while index < stop_index:
            base, upto = offsets[index], index + 1
            while upto < stop_index and offsets[upto] - base < READ_BYTES:
                upto += 1
            data = os.pread(self.fd, (offsets[upto] if upto < len(offsets) else self.end) - base, base)
            for number in range(index, upto):
                end = (offsets[number + 1] if number + 1 < len(offsets) else self.end) - base
                records.append(data[offsets[number] - base + FRAME.size:end])
            index = upto
        return records


def good_frame_after(buffer: bytes, position: int, seq: int) -> tuple[int, int] | None:
    """(offset, seq) of a whole, crc-checked frame after the bad one at ``position``, if any."""
    candidates = []
    length = FRAME.unpack_from(buffer, position)[0] if position + FRAME.size <= len(buffer) else 0
    if 0 < length and position + FRAME.size + length + FRAME.size <= len(buffer):
        candidates.append(position + FRAME.size + length)   # a payload flipped: its own length leads on
    for number in range(seq, seq + 4):
        pattern = struct.pack("<Q", number)
        found = buffer.find(pattern, position + 1)
        while found != -1:
            candidates.append(found - 8)
            found = buffer.find(pattern, found + 1)
    for offset in sorted(set(candidates)):
        if offset <= position or offset + FRAME.size > len(buffer):
            continue
        length, crc, number = FRAME.unpack_from(buffer, offset)
        start = offset + FRAME.size
        if number >= seq and 0 < length and start + length <= len(buffer) and zlib.crc32(buffer[start:start + length]) == crc:
            return offset, number
    return None
