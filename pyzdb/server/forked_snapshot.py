"""A snapshot encoded in a forked child, as Redis's BGSAVE does: the serving loop pays for the fork, not the encode.

The parent freezes its objects out of the cyclic GC (``gc.freeze``, so the
child's collections write to no page of them) and forks; copy-on-write keeps
the child's view of the tree exactly as it was at the fork while the parent
goes on changing its own. The child encodes the state, writes its length
(8 bytes, big-endian) and then the bytes to a pipe, and leaves with
``os._exit`` (no atexit hooks, no zmq context or store connection touched).
A thread of the parent reads the pipe as chunks for ``Journal.write_checkpoint``.
A child that dies, or sends fewer bytes than it announced, fails the
checkpoint before any ``meta`` names it.
"""
from __future__ import annotations

import ctypes
import gc
import os
import signal
import time
from typing import Callable, Iterator

from pyzdb.errors import SnapshotFailed

NO_FORK_ENV = "PYZDB_NO_FORK"   # "1": encode on the serving thread as before (to compare, or where fork misbehaves)
CAN_FORK = hasattr(os, "fork") and os.environ.get(NO_FORK_ENV, "") in ("", "0")
PAUSE_ENV = "PYZDB_SNAPSHOT_CHILD_PAUSE"   # tests only: seconds the child waits after its first chunk
PIPE_WRITE = 1 << 20
PAUSE_AFTER = 1 << 16     # with PAUSE_ENV: the bytes written before the pause
MAX_FD = 1 << 20
PR_SET_PDEATHSIG = 1
CHILD_NICENESS = 10   # the encode yields the cores to the serving loop and its clients, yet moves on a busy machine


class ForkedSnapshot:
    """One child encoding ``encode()``; ``chunks()`` yields its bytes in ``chunk_size`` pieces.

    >>> snap = ForkedSnapshot(lambda: b'state', 1 << 20)   # doctest: +SKIP
    >>> b''.join(snap.chunks())                              # doctest: +SKIP
    b'state'
    """

    def __init__(self, encode: Callable[[], bytes], chunk_size: int) -> None:
        self.chunk_size = chunk_size
        gc.freeze()   # never unfrozen: the tree is plain data with no cycles, and frozen objects cost no GC pass
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:   # the child: encode, write, leave; nothing of the parent's I/O is touched
            code = 1
            try:
                gc.disable()
                os.nice(CHILD_NICENESS)
                _leave_parent_resources(write_end)
                _write_all(write_end, encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self.pid: int | None = pid
        self.fd: int | None = read_end

    def chunks(self) -> Iterator[bytes]:
        """The child's bytes in ``chunk_size`` pieces; raises ``SnapshotFailed`` if the child did not finish."""
        header = self._read_exactly(8)
        expected = int.from_bytes(header, "big") if len(header) == 8 else -1
        received = 0
        buffer = bytearray()
        while True:
            data = os.read(self.fd, max(PIPE_WRITE, self.chunk_size - len(buffer)))
            if not data:
                break
            buffer += data
            while len(buffer) >= self.chunk_size:
                received += self.chunk_size
                yield bytes(buffer[:self.chunk_size])
                del buffer[:self.chunk_size]
        received += len(buffer)
        status = self._reap()
        if expected < 0 or received != expected or status != 0:
            raise SnapshotFailed(f"the snapshot child {_how(status)} after {received} of "
                                 f"{expected if expected >= 0 else '?'} bytes")
        if buffer or received == 0:
            yield bytes(buffer)

    def _read_exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = os.read(self.fd, size - len(data))
            if not more:
                break
            data += more
        return data

    def _reap(self) -> int | None:
        """Wait for the child; its wait status (0: exited cleanly)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.pid is None:
            return None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return status

    def close(self) -> None:
        """End a child whose bytes were not all read (the store failed meanwhile), and reap it."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap()


def _leave_parent_resources(keep: int) -> None:
    """In the child: close every inherited descriptor but ``keep``, and die with the parent.

    Closing them matters for the store's claim: a child that outlived a
    killed server would otherwise hold its lock file's flock, and the next
    server could not start until the child ended.
    """
    os.closerange(3, keep)
    os.closerange(keep + 1, MAX_FD)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):   # not Linux: the closed descriptors are what matters
        pass
    if os.getppid() == 1:               # the parent died before prctl took effect
        os._exit(1)


def _how(status: int | None) -> str:
    if status is None:
        return "was not reaped"
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _write_all(fd: int, data: bytes) -> None:
    """In the child: the length, then the bytes (with the tests' pause after the first piece)."""
    os.write(fd, len(data).to_bytes(8, "big"))
    view = memoryview(data)
    pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
    offset = 0
    while offset < len(view):
        offset += os.write(fd, view[offset:offset + (PAUSE_AFTER if pause else PIPE_WRITE)])
        if pause:
            time.sleep(pause)
            pause = 0.0
    os.close(fd)
