"""Removing what a journal no longer needs: covered log records, old and crashed checkpoint chunks, a log's tail."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from pyzdb.errors import CorruptStore, StoreError
from pyzdb.storage.journal_keys import META_KEY, PENDING_KEY, chunk_key, log_key
from pyzdb.transport import wire

if TYPE_CHECKING:
    from pyzdb.storage.base import Store

READ_BATCH = 512
WRITE_GROUP_BYTES = 1 << 18   # checkpoint bytes per store write: each holds the store's lock, appends wait
LET_APPENDS_IN_SECONDS = 0.0005
LONG_WRITE_SECONDS = 0.0005   # a checkpoint store write this long may have kept an append waiting
SMALL_RECORD_BYTES = 2048   # log records this small on average are removed 64 to a store write


class JournalCleanup:
    """The removal half of ``Journal`` (its base): what ``clean_up`` and a checkpoint's commit remove."""

    store: Store
    meta: dict
    seq: int
    chunk_size: int
    retain: Callable[[], int] | None

    def clean_up(self) -> None:
        """After ``recover``, in the one writer only: remove what earlier runs left behind.

        That is the chunks and log records a committed checkpoint made
        obsolete, the chunks of a checkpoint a crash interrupted, and log
        records past the end of the recovered log. A read-only follower must
        never call this: the writer may be appending right past its end. A
        log file's records past that end are damage and refused first
        (``check_log_follows``), before anything is removed.
        """
        check = getattr(self.store, "check_log_follows", None)
        if check is not None:
            check(self.seq)
        self._remove_leftovers()
        self._remove_crashed_generation()
        truncate = getattr(self.store, "truncate_log_after", None)
        if truncate is not None:
            truncate(self.seq)
        self._remove_run(log_key, self.seq + 1)

    def _remove_leftovers(self, removed_bytes: int | None = None) -> None:
        """Remove the previous generation's chunks and the log records the checkpoint covers.

        ``removed_bytes`` is given on the checkpoint thread (-1: unknown): covered
        records then go 64 to a store write only when small on average, else one
        by one (64 of a bulk load's 600 KB held appends back 220 ms), paced. At start-up: 64 at once.
        """
        meta = self.meta
        if not meta or meta.get("removed_to") == meta["seq"]:
            return
        # small groups: each store write holds the store's lock, and appends wait for it
        chunks = [chunk_key(meta["prev_gen"], i) for i in range(meta["prev_chunks"])]
        step = max(1, WRITE_GROUP_BYTES // max(self.chunk_size, 1))
        for start in range(0, len(chunks), step):
            _paced(self.store.remove_bulk, chunks[start:start + step], removed_bytes is not None)
        upto = meta["seq"] if self.retain is None else max(meta["prev_seq"], min(meta["seq"], self.retain()))
        beside_loop = removed_bytes is not None
        average = removed_bytes // max(1, meta["seq"] - meta["prev_seq"]) if beside_loop else 0
        group = 64 if 0 <= average <= SMALL_RECORD_BYTES else 1
        drop = getattr(self.store, "drop_log_through", None)
        if drop is not None:   # a log file: its segments go whole; only records of an older store's table one by one
            drop(upto)
        table_upto = min(upto, getattr(self.store, "log_table_last", upto))
        for start in range(meta["prev_seq"] + 1, table_upto + 1, group):
            _paced(self.store.remove_bulk, [log_key(s) for s in range(start, min(start + group, table_upto + 1))], beside_loop)
        meta["removed_to"] = upto
        try:
            self.store.set_bulk({META_KEY: wire.pack(meta)})
        except StoreError:
            pass  # removal is retried from the same meta at the next start

    def _remove_crashed_generation(self) -> None:
        """Remove the chunks of a checkpoint that a crash left unfinished (never committed)."""
        raw = self.store.get_bulk([PENDING_KEY]).get(PENDING_KEY)
        if raw is None:
            return
        try:
            gen = int(raw)
        except ValueError:
            raise CorruptStore(f"record {PENDING_KEY.decode()} is not a generation number: {raw[:40]!r}") from None
        if gen > self.meta.get("gen", 0):
            self._remove_run(lambda i: chunk_key(gen, i), 0)
        self.store.remove_bulk([PENDING_KEY])

    def _remove_run(self, key_of: Callable[[int], bytes], first: int) -> None:
        """Remove keys ``key_of(first)``, ``key_of(first + 1)``, … up to the first batch with none present."""
        while True:
            keys = [key_of(i) for i in range(first, first + READ_BATCH)]
            found = list(self.store.get_bulk(keys))
            if not found:
                return
            self.store.remove_bulk(found)
            first += READ_BATCH


def _paced(write: Callable[[Any], None], argument: Any, pace: bool = True) -> None:
    """A checkpoint-thread store write; after a long one (``pace``), a pause for the append waiting behind it.

    The store's lock is not fair: without the pause the thread took it again
    before the waiting serving loop woke (an append waited 150 ms behind two writes).
    """
    started = time.perf_counter()
    write(argument)
    if pace and time.perf_counter() - started >= LONG_WRITE_SECONDS:
        time.sleep(LET_APPENDS_IN_SECONDS)
