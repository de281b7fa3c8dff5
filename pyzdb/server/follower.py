"""Following the journal from another process: load the checkpoint, replay the log, apply new records as they come.

A ``Follower`` is the state half of a read-only replica: it knows no sockets.
The replica calls ``catch_up()`` when the change feed announces a new seq
and on a timer (polling, for a missed notification).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from pyzdb.errors import CorruptStore, Error
from pyzdb.storage.journal import Journal
from pyzdb.tree.engine import Engine

log = logging.getLogger("pyzdb.follower")
RECENT_RECORDS = 4096
RELOAD_INTERVAL = 1.0
GONE_AFTER = 2.0    # seconds an announced record may be "not replicated yet" (a KT slave) before it counts as gone


class Follower:
    """The tree as of the newest log record this process has applied.

    >>> follower = Follower(Journal(open_store('sqlite:///data/pyzdb.db'))); follower.load()  # doctest: +SKIP
    >>> follower.catch_up(); follower.engine.tree                                             # doctest: +SKIP
    """

    def __init__(self, journal: Journal, recent: int = RECENT_RECORDS) -> None:
        self.journal = journal
        self.engine = Engine()
        self.seq = 0          # the last record applied
        self.crc = 0          # crc32 of that record, to chain the next one
        self.recent: deque[tuple[int, list]] = deque(maxlen=recent)   # (seq, entries) of the newest records
        self.reloads = 0
        self.stale = False    # a record failed to apply: the tree must be loaded again
        self.identity: str | None = None   # the database id in the store's meta record
        self._last_reload = 0.0
        self.missing_since: float | None = None   # when an announced record was first not there (not yet / gone)

    def load(self) -> int:
        """Read the newest checkpoint and every record after it; return the seq reached."""
        meta, state = self._read_checkpoint()
        self.identity = meta.get("id")
        self.engine = Engine(state["tree"] if state is not None else {})
        if state is not None:
            self.engine.expiries.restore(state.get("expiries"))
        self.seq, self.crc = meta.get("seq", 0), meta.get("crc", 0)
        self.recent.clear()
        self.stale = False
        self._last_reload = time.monotonic()
        self._apply_new()
        return self.seq

    def _read_checkpoint(self) -> tuple[dict, Any]:
        """(meta, state) of the newest checkpoint, read again if the writer replaced it while it was read."""
        while True:
            meta = self.journal.read_meta()
            try:
                return meta, (self.journal.load_checkpoint(meta) if meta.get("gen") else None)
            except CorruptStore:
                if self.journal.read_meta().get("gen") == meta.get("gen"):
                    raise   # the same checkpoint is still current: it is really damaged
                log.info("checkpoint generation %s was replaced while it was read; reading the new one", meta["gen"])

    def catch_up(self, known_seq: int = 0) -> int:
        """Apply every record after the current one; return how many were applied.

        When the next record is gone (a newer checkpoint covers it and removed
        it, or it was announced ``GONE_AFTER`` seconds ago and is still not
        there) the tree is loaded again from the checkpoint. A record the feed
        announced that the store does not hold yet (a KT slave that has not
        copied it: "not replicated yet") is only waited for: ``waiting`` is
        True and the caller asks again shortly.
        """
        applied = self._apply_new()
        if applied:
            self.missing_since = None
        if applied or not (self.stale or self._missing(known_seq)):
            return applied
        if time.monotonic() - self._last_reload < RELOAD_INTERVAL:
            return 0
        before = self.seq
        self.reloads += 1
        log.info("record %d is gone or does not chain; reloading from the checkpoint", before + 1)
        self.load()
        return max(self.seq - before, 0)

    @property
    def waiting(self) -> bool:
        """True while an announced record is not in the store yet (ask again soon, do not reload)."""
        return self.missing_since is not None

    def _missing(self, known_seq: int) -> bool:
        """True if the next record is gone (reload); notes one that is only not replicated yet."""
        if self.journal.read_meta().get("seq", 0) > self.seq:
            return True    # gone: a checkpoint covers it
        if known_seq <= self.seq:
            self.missing_since = None
            return False
        now = time.monotonic()
        if self.missing_since is None:
            self.missing_since = now
        if now - self.missing_since < GONE_AFTER:
            return False   # not replicated yet: wait for it
        self.missing_since = None
        return True

    def _apply_new(self) -> int:
        applied = 0
        for seq, crc, entries in self.journal.records_after(self.seq, self.crc):
            try:
                for entry in entries:
                    self.engine.apply(entry["ops"])
            except Error as exc:   # cannot happen with a sound log; start again from the checkpoint
                log.error("record %d does not apply (%s); reloading", seq, exc)
                self.stale = True
                return applied
            self.seq, self.crc = seq, crc
            self.recent.append((seq, entries))
            applied += 1
        return applied

    def recent_after(self, since: int) -> list[tuple[int, list]] | None:
        """The (seq, entries) kept in memory after ``since``, or None if some of them are not kept."""
        if since >= self.seq:
            return []
        if not self.recent or self.recent[0][0] > since + 1:
            return None
        start = since + 1 - self.recent[0][0]
        return [self.recent[i] for i in range(start, len(self.recent))]
