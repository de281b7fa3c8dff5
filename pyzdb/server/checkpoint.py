"""Checkpoints in the background: when the log is long, old or large, snapshot and write it on a thread.

Where ``os.fork`` exists the snapshot is encoded in a forked child
(``forked_snapshot``): the serving loop pays for the fork (page tables, not
the tree) and the encode runs beside it; elsewhere it is encoded on the
serving thread, as before.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from pyzdb.server.forked_snapshot import CAN_FORK, ForkedSnapshot

if TYPE_CHECKING:
    from pyzdb.server.database import Database

log = logging.getLogger("pyzdb.checkpoint")


class Checkpointer:
    """Decides when to checkpoint and writes the chunks off the serving thread.

    With ``fork`` (the default where the OS has it) a child encodes the state
    as it was at the fork and a thread here streams its bytes to the store;
    without, the snapshot is one msgpack encode on the caller's thread and
    only the store writes run in the background.
    """

    def __init__(self, db: "Database", every_records: int, every_bytes: int, every_seconds: float,
                 fork: bool = CAN_FORK) -> None:
        self.db = db
        self.every_records = every_records
        self.every_bytes = every_bytes
        self.every_seconds = every_seconds
        self.last = time.monotonic()
        self.thread: threading.Thread | None = None
        self.fork = fork
        self.paused = 0.0

    def due(self) -> bool:
        """True when the log since the last checkpoint is long, large or old enough."""
        journal = self.db.journal
        if journal.log_records == 0:
            return False
        return (journal.log_records >= self.every_records or journal.log_bytes >= self.every_bytes
                or time.monotonic() - self.last >= self.every_seconds)

    def maybe_start(self, force: bool = False) -> bool:
        """Start a checkpoint if one is due and none is running; call only between commits."""
        if not (force or self.due()):
            return False
        if self.thread is not None and self.thread.is_alive():
            return False
        # seq, crc and covered bytes are read with the tree as it is now: between commits, so they match it
        seq, crc, covered = self.db.journal.seq, self.db.journal.last_crc, self.db.journal.appended_bytes
        started = time.monotonic()
        if self.fork:
            try:
                state: bytes | ForkedSnapshot = ForkedSnapshot(self._encode, self.db.journal.chunk_size)
            except OSError as exc:   # no memory or processes left for a child: counted, tried again when due
                self._failed(seq, exc)
                self.last = time.monotonic()
                return False
        else:
            state = self._encode()
        self.last = time.monotonic()
        self.paused = self.last - started   # what this checkpoint cost the serving loop
        self.thread = threading.Thread(target=self._write, args=(state, seq, crc, covered), name="pyzdb-checkpoint",
                                       daemon=True)
        self.thread.start()
        return True

    def _encode(self) -> bytes:
        return self.db.snapshot()[0]

    def _failed(self, seq: int, exc: BaseException) -> None:
        self.db.checkpoint_failures += 1
        self.db.checkpoint_error = f"checkpoint at seq {seq}: {type(exc).__name__}: {exc}"
        log.error("checkpoint at seq %d failed (the log still holds every write): %s", seq, exc)

    def _write(self, state: "bytes | ForkedSnapshot", seq: int, crc: int, covered: int) -> None:
        started = time.monotonic()
        try:
            chunks = state.chunks() if isinstance(state, ForkedSnapshot) else state
            meta = self.db.journal.write_checkpoint(chunks, seq, crc, covered)
        except Exception as exc:    # counted and shown in status (the database's checkpoint_failures); never silent
            self._failed(seq, exc)
            return
        finally:
            if isinstance(state, ForkedSnapshot):
                state.close()
        log.info("checkpoint at seq %d: %d bytes in %.2f s; the serving loop paused %.1f ms for it", seq, meta["size"],
                 time.monotonic() - started, self.paused * 1000)

    def wait(self) -> None:
        """Block until a running checkpoint has finished."""
        if self.thread is not None:
            self.thread.join()
