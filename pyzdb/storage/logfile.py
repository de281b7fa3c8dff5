"""The journal's log records in append-only segment files beside a sqlite store: one ``write()`` per commit group.

A segment ``<20-digit first seq>.log`` starts with a header (magic, version,
the store's token, its first seq, the header's crc32); each record follows as
a frame (payload length, crc32 of the payload, seq) and the record's bytes.
Records are numbered without gaps across segments. The last segment may end
in a torn tail (a partial frame, a bad crc32, zeros after a crash): it is
dropped, and the writer cuts it off before its first append. A bad frame
followed by a good one is damage, not a tail: the log refuses to open
(``CorruptStore``) rather than lose the acknowledged records after it.

Only the writer appends (it holds an ``flock`` on the directory besides the
server's claim); readers in other processes find new records as they grow.
"""
from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import zlib
from typing import Iterable

from pyzdb.errors import ClaimHeld, CorruptStore, NotDurable, StoreError, WrongDatabase
from pyzdb.storage.log_segment import (
    FRAME,
    HEADER,
    HEADER_SIZE,
    LOG_VERSION,
    MAGIC,
    RESERVE_BYTES,
    SEGMENT_BYTES,
    SUFFIX,
    Segment,
    encode_frames,
    good_frame_after,
    reserve,
    segment_name,
)

__all__ = ["FRAME", "HEADER_SIZE", "LogFile", "SEGMENT_BYTES"]


class LogFile:
    """The log directory of one sqlite store.

    >>> log = LogFile('/data/pyzdb.db-log', token, durability='batch')   # doctest: +SKIP
    >>> log.append([(1, b'...')]); log.get([1])                          # doctest: +SKIP
    {1: b'...'}
    """

    def __init__(self, directory: str, token: bytes, *, durability: str = "always") -> None:
        self.directory, self.token, self.durability = directory, token, durability
        self.segments: list[Segment] = []
        self.low = 0                 # records below this were dropped (the writer's view)
        self.dirty = False           # appended since the last flush
        self._lock = threading.Lock()
        self._lock_fd: int | None = None    # the writer's flock on the directory
        self._rotate = False
        self._refresh()

    # --- reading --------------------------------------------------------------------
    @property
    def last(self) -> int:
        """The seq of the newest good record (0 when there is none)."""
        return self.segments[-1].last if self.segments else 0

    def get(self, seqs: Iterable[int]) -> dict[int, bytes]:
        """The records the log holds among ``seqs``."""
        wanted = sorted(seqs)
        with self._lock:
            if wanted and wanted[-1] > self.last and self._lock_fd is None:
                self._refresh()
            found: dict[int, bytes] = {}
            for segment in self.segments:
                held = [seq for seq in wanted if max(segment.first, self.low) <= seq <= segment.last]
                run_start = 0
                for index in range(1, len(held) + 1):   # runs of consecutive seqs, one read each
                    if index == len(held) or held[index] != held[index - 1] + 1:
                        first, last = held[run_start], held[index - 1]
                        found.update(zip(range(first, last + 1), segment.read(first, last)))
                        run_start = index
        return found

    def _refresh(self) -> None:
        """Open segments not seen yet, read the frames added to the last one, forget segments removed."""
        try:
            names = sorted(name for name in os.listdir(self.directory) if name.endswith(SUFFIX))
        except FileNotFoundError:
            names = []
        known = {os.path.basename(segment.path): segment for segment in self.segments}
        for segment in self.segments:
            if os.path.basename(segment.path) not in names:
                os.close(segment.fd)
        self.segments = [known[name] for name in names if name in known]
        for name in names:
            if name not in known:
                self._open_segment(os.path.join(self.directory, name), name == names[-1])
        for index, segment in enumerate(self.segments):
            if index and segment.first != self.segments[index - 1].last + 1:
                raise CorruptStore(f"log file {segment.path} starts at record {segment.first} but the segment "
                                   f"before it ends at {self.segments[index - 1].last}: a segment is missing")
            if segment is self.segments[-1] or segment.end < os.fstat(segment.fd).st_size:
                self._scan(segment, last=segment is self.segments[-1])

    def _open_segment(self, path: str, is_last: bool) -> None:
        try:
            first = int(os.path.basename(path)[:-len(SUFFIX)])
        except ValueError:
            raise CorruptStore(f"{path} is not a pyzdb log segment name") from None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return   # the writer removed it since the listing (a checkpoint covered it): nothing to read there
        head = os.pread(fd, HEADER_SIZE, 0)
        if len(head) < HEADER_SIZE or head == b"\0" * HEADER_SIZE:
            if not is_last:
                os.close(fd)
                raise CorruptStore(f"log file {path} has no complete header but later segments follow it")
            os.close(fd)
            return   # a crash while it was being made: holds nothing, the writer makes it again
        magic, version, token, first_in, crc = *HEADER.unpack_from(head), struct.unpack_from("<I", head, HEADER.size)[0]
        if magic != MAGIC or zlib.crc32(head[:HEADER.size]) != crc:
            os.close(fd)
            raise CorruptStore(f"{path} is not a pyzdb log file (bad magic or header crc32)")
        if version != LOG_VERSION:
            os.close(fd)
            raise CorruptStore(f"log file {path} has log version {version}; this pyzdb reads {LOG_VERSION}")
        if token != self.token:
            os.close(fd)
            raise WrongDatabase(f"log file {path} belongs to another store (token {token.hex()}, this store's "
                                f"is {self.token.hex()}): refusing to mix their records")
        if first_in != first:
            os.close(fd)
            raise CorruptStore(f"log file {path} says it starts at record {first_in}, its name says {first}")
        self.segments.append(Segment(path, first, fd))

    def _scan(self, segment: Segment, last: bool) -> None:
        """Index the frames after ``segment.end``; stop at a torn tail, refuse damage followed by good frames."""
        size = os.fstat(segment.fd).st_size
        if size <= segment.end or size == segment.tail_checked:
            return
        buffer = os.pread(segment.fd, size - segment.end, segment.end)
        position, seq, base = 0, segment.last + 1, segment.end
        unpack, crc32, offsets = FRAME.unpack_from, zlib.crc32, segment.offsets
        view = memoryview(buffer)
        while position + FRAME.size <= len(buffer):
            length, crc, number = unpack(buffer, position)
            start = position + FRAME.size
            if number != seq or length == 0 or start + length > len(buffer) or crc32(view[start:start + length]) != crc:
                break
            offsets.append(base + position)
            position, seq = start + length, seq + 1
        segment.end = base + position
        if position == len(buffer):
            return
        following = good_frame_after(buffer, position, seq)
        if following is not None or not last:
            where = f"record {following[1]} follows at offset {base + following[0]}" if following else \
                "later segments follow it"
            raise CorruptStore(f"log file {segment.path}: record {seq} at offset {base + position} is damaged "
                               f"(bad length, seq or crc32) but {where}: refusing to open rather than drop "
                               f"acknowledged writes after it")
        segment.tail_checked = size

    # --- writing (the one writer) -----------------------------------------------------
    def _take(self) -> None:
        """Before the first append: lock the directory, cut off a torn tail, remove a header-less last segment."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise ClaimHeld(f"log file {self.directory} is being written by another process") from None
            raise StoreError(f"cannot lock log file {self.directory}: {exc}") from exc
        self._lock_fd = fd
        self._refresh()
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if name.endswith(SUFFIX) and path not in {segment.path for segment in self.segments}:
                os.unlink(path)   # a header-less segment a crash left
        if self.segments:
            segment = self.segments[-1]
            self._reopen_for_writing(segment)
            if os.fstat(segment.fd).st_size > segment.end:
                os.ftruncate(segment.fd, segment.end)
                self._sync(segment.fd)

    def _reopen_for_writing(self, segment: Segment) -> None:
        fd = os.open(segment.path, os.O_RDWR | os.O_CLOEXEC)
        os.close(segment.fd)
        segment.fd = fd

    def append(self, records: list[tuple[int, bytes]]) -> None:
        """Write the records (seq, bytes) with one ``write()``; with ``always``, fdatasync before returning.

        On a failure the segment is cut back to where it was, so nothing of
        the group remains and the next append follows the last good record.
        """
        if not records:
            return
        with self._lock:
            if self._lock_fd is None:
                self._take()
            first = records[0][0]
            if self.segments and first != self.last + 1 and self.last >= self.low:
                raise StoreError(f"log file {self.directory}: record {first} does not follow record {self.last}")
            segment = self.segments[-1] if self.segments else None
            if segment is None or self._rotate or segment.end >= SEGMENT_BYTES or first != segment.last + 1:
                segment = self._new_segment(first)
            data = encode_frames(records)
            start = segment.end
            try:
                # the space first: a full disk then fails before any frame is written that a reader could see
                if start + len(data) > segment.reserved:
                    want = max(len(data), RESERVE_BYTES)
                    try:
                        reserve(segment.fd, start, want)
                    except OSError:
                        want = len(data)    # what is left may still hold this group
                        reserve(segment.fd, start, want)
                    segment.reserved = start + want
                written = 0
                while written < len(data):
                    written += os.pwrite(segment.fd, data[written:] if written else data, start + written)
                if self.durability == "always":
                    os.fdatasync(segment.fd)
            except OSError as exc:
                self._cut_back(segment, start)
                full = " (the disk is full)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
                raise (NotDurable if self.durability == "always" else StoreError)(
                    f"log file {segment.path}: cannot write records {first}-{records[-1][0]}{full}: {exc}") from None
            offset = start
            for _, record in records:
                segment.offsets.append(offset)
                offset += FRAME.size + len(record)
            segment.end = offset
            self.dirty = True

    def count(self) -> int:
        """How many records the log holds (the writer's view: less those dropped)."""
        with self._lock:
            return sum(max(0, segment.last + 1 - max(segment.first, self.low)) for segment in self.segments)

    def _cut_back(self, segment: Segment, end: int) -> None:
        segment.reserved = 0
        try:
            os.ftruncate(segment.fd, end)
        except OSError as exc:   # the next append would follow garbage: refuse until a restart cuts the tail
            self._lock_fd, fd = None, self._lock_fd
            if fd is not None:
                os.close(fd)
            raise StoreError(f"log file {segment.path}: cannot cut a failed write back: {exc}") from None

    def _new_segment(self, first: int) -> Segment:
        """The segment record ``first`` starts; then the segments a checkpoint covers, and an empty last one, go."""
        old = self.segments[-1] if self.segments else None
        if old is not None and old.first == first and old.last < first:
            # empty and named for ``first`` (a crash right after making it, or truncate_after): it is the new
            # segment already; making it again would open the same path, and removing the empty one would unlink it
            segment = old
            self._sync(segment.fd)
            if self.durability != "none":
                self._sync_directory()
        else:
            segment = self._make_segment(first, old)
        for gone in [s for s in self.segments if s is not segment and (s.last < self.low or s.last < s.first)]:
            self.segments.remove(gone)
            os.close(gone.fd)
            os.unlink(gone.path)
        if segment is not old:
            self.segments.append(segment)
        self._rotate = False
        return segment

    def _make_segment(self, first: int, old: Segment | None) -> Segment:
        if old is not None and old.end > HEADER_SIZE and self.durability != "none":
            os.fsync(old.fd)   # a finished segment is whole on disk before records go to the next
        path = os.path.join(self.directory, segment_name(first))
        head = HEADER.pack(MAGIC, LOG_VERSION, self.token, first)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, head + struct.pack("<I", zlib.crc32(head)))
            if self.durability != "none":
                os.fsync(fd)
                self._sync_directory()
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise StoreError(f"cannot start log file {path}: {exc}") from None
        return Segment(path, first, fd)

    def _sync(self, fd: int) -> None:
        if self.durability != "none":
            os.fsync(fd)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def flush(self) -> None:
        """fsync the active segment (``batch``'s flush thread)."""
        with self._lock:   # a duplicate descriptor: a rotation may close the segment's own while this fsyncs
            fd = os.dup(self.segments[-1].fd) if self.segments and self._lock_fd is not None else None
            self.dirty = False
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def would_remove(self, seq: int) -> bool:
        """Whether ``drop_through(seq)`` would remove a segment file."""
        with self._lock:
            return len(self.segments) > 1 and self.segments[0].last <= seq

    def drop_through(self, seq: int) -> None:
        """Records up to ``seq`` are no longer needed (a checkpoint covers them): remove the segments they fill."""
        with self._lock:
            self.low = max(self.low, seq + 1)
            while len(self.segments) > 1 and self.segments[0].last <= seq:
                segment = self.segments.pop(0)
                os.close(segment.fd)
                os.unlink(segment.path)
            if self.segments and self.segments[0].first <= seq:
                self._rotate = True   # the next append starts a segment, so this one can go at the next drop

    def check_follows(self, seq: int) -> None:
        """CorruptStore if the log holds records after ``seq`` but not ``seq + 1``: the segments between are gone
        (removed by hand), and a recovery that ends at ``seq`` would drop the acknowledged records after them."""
        with self._lock:
            if self.segments and self.last >= self.segments[0].first > seq + 1:
                raise CorruptStore(f"log file {self.directory}: the database's checkpoint ends at record {seq} but "
                                   f"its first segment starts at record {self.segments[0].first}: records {seq + 1}-"
                                   f"{self.segments[0].first - 1} are missing (a segment removed?); refusing to "
                                   f"open rather than drop records {self.segments[0].first}-{self.last} after them")

    def check_ends_at(self, seq: int) -> None:
        """CorruptStore if the log holds record ``seq + 1``, a whole frame, where a recovery stopped at ``seq``.

        The journal stops at a record that does not chain (its crc32 of the
        record before is not record ``seq``'s). In a store whose records are
        keys that is a leftover of a partly failed bulk write; here nothing is
        left past the end (a failed append is cut back, a torn tail cut at
        start-up), so such a record is damage (rewritten), and cutting it would
        drop it and every acknowledged record after it.
        """
        with self._lock:
            if not self.segments or not self.segments[0].first <= seq + 1 <= self.last:
                return
            path = next(segment.path for segment in self.segments if segment.first <= seq + 1 <= segment.last)
            raise CorruptStore(f"log file {path}: record {seq + 1} is a whole frame (its crc32 checks) but does not "
                               f"chain to record {seq} (the crc32 it holds of record {seq} is not that record's): "
                               f"a record rewritten or damaged, not a leftover; refusing to open rather than drop "
                               f"records {seq + 1}-{self.last}")

    def truncate_after(self, seq: int) -> None:
        """In the writer at start-up: remove the records after ``seq`` (past the end of the recovered log)."""
        self.check_follows(seq)
        with self._lock:
            if self.last <= seq:
                return
            if self._lock_fd is None:
                self._take()
            last = self.segments[-1]
            while len(self.segments) > 1 and self.segments[-1].first > seq + 1:
                segment = self.segments.pop()
                os.close(segment.fd)
                os.unlink(segment.path)
            if self.segments[-1] is not last:
                self._reopen_for_writing(self.segments[-1])     # it was opened to be read only
            segment = self.segments[-1]   # the first one stays, emptied if need be: its absence would mean damage
            keep = max(0, seq + 1 - segment.first)
            segment.end = segment.offsets[keep] if keep < len(segment.offsets) else segment.end
            del segment.offsets[keep:]
            segment.reserved = 0
            os.ftruncate(segment.fd, segment.end)
            self._sync(segment.fd)

    def close(self) -> None:
        """fsync what was appended (unless ``none``) and close every file."""
        with self._lock:
            for segment in self.segments:
                if self._lock_fd is not None and self.dirty and self.durability != "none":
                    os.fsync(segment.fd)
                os.close(segment.fd)
            self.segments = []
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
