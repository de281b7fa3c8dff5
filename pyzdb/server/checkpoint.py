"""Checkpoints in the background: when the log is long, old or large, snapshot and write it on a thread."""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyzdb.server.database import Database

log = logging.getLogger("pyzdb.checkpoint")


class Checkpointer:
    """Decides when to checkpoint and writes the chunks off the serving thread.

    The snapshot itself is taken on the caller's thread (one msgpack encode of
    the committed tree, which is fast C code); only the store writes run in
    the background, so serving goes on while chunks are written.
    """

    def __init__(self, db: "Database", every_records: int, every_bytes: int, every_seconds: float) -> None:
        self.db = db
        self.every_records = every_records
        self.every_bytes = every_bytes
        self.every_seconds = every_seconds
        self.last = time.monotonic()
        self.thread: threading.Thread | None = None

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
        data, seq, crc = self.db.snapshot()
        covered = self.db.journal.appended_bytes
        self.last = time.monotonic()
        self.thread = threading.Thread(target=self._write, args=(data, seq, crc, covered), name="pyzdb-checkpoint",
                                       daemon=True)
        self.thread.start()
        return True

    def _write(self, data: bytes, seq: int, crc: int, covered: int) -> None:
        started = time.monotonic()
        try:
            self.db.journal.write_checkpoint(data, seq, crc, covered)
        except Exception as exc:    # counted and shown in status (the database's checkpoint_failures); never silent
            self.db.checkpoint_failures += 1
            self.db.checkpoint_error = f"checkpoint at seq {seq}: {type(exc).__name__}: {exc}"
            log.error("checkpoint at seq %d failed (the log still holds every write): %s", seq, exc)
            return
        log.info("checkpoint at seq %d: %d bytes in %.2f s", seq, len(data), time.monotonic() - started)

    def wait(self) -> None:
        """Block until a running checkpoint has finished."""
        if self.thread is not None:
            self.thread.join()
