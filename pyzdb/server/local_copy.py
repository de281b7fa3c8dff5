"""A replica's own copy of the database: the same journal layout in its own store, marked as a copy.

The stream follower (stream_follower.py) writes the records and checkpoints
the RW server streams into it; the replica's ``Follower`` reads them back
like any journal, so a restart loads the copy and only catches up. Its
``meta`` carries ``replica: True``: it is not a writer's store, and
``pyzdb serve`` / ``pyzdb server`` refuse it until ``pyzdb promote`` clears
the mark. It keeps the RW server's database id and refuses records of another,
and the highest promotion ``term`` the stream told of (``observe_term``), so
a promoted copy takes a term above every writer it followed (cli/promote.py).
"""
from __future__ import annotations

import threading
import time
import zlib
from collections import deque

from pyzdb.errors import CorruptStore, Error, NotReplicaCopy, WrongDatabase
from pyzdb.server.follower import Follower
from pyzdb.storage.base import Store
from pyzdb.storage.journal import FORMAT, FORMAT_VERSION, META_KEY, Journal, log_key
from pyzdb.transport import wire
from pyzdb.tree.history import History

REPLICA_MARK = {"replica": True}
LOCAL_CHECKPOINT_RECORDS = 20_000   # the copy checkpoints its own tree after this many records
MAX_TERM = 1 << 62   # a term at or above it is not kept: a promotion's term + 1 must still pack as a msgpack int


class LocalCopy:
    """The replica's journal over its own store; every write to it goes through here (one lock).

    >>> copy = LocalCopy(open_store('sqlite:///b/pyzdb.db')); copy.adopt(rw_id, created)   # doctest: +SKIP
    """

    def __init__(self, store: Store, chunk_size: int = 1 << 20) -> None:
        self.journal = Journal(store, chunk_size=chunk_size)
        self.journal.meta_extra = dict(REPLICA_MARK)
        self.lock = threading.Lock()
        meta = self.journal.read_meta()
        if meta.get("term"):
            self.journal.meta_extra["term"] = meta["term"]
        if meta and not meta.get("replica"):
            raise NotReplicaCopy(f"{store.url} holds a read-write server's database ({meta.get('id')}), not a "
                                 f"replica's copy: a replica streaming from --follow needs its own --data")
        if not meta and self.journal.holds_database():
            raise NotReplicaCopy(f"{store.url} holds a database log but no meta record: not a replica's copy")
        self.journal.recover()

    @property
    def identity(self) -> str | None:
        """The database id the copy holds (None for an empty copy)."""
        return self.journal.meta.get("id")

    def adopt(self, identity: str, created: float | None) -> None:
        """Take the RW server's database id; WrongDatabase if the copy holds another database."""
        if self.identity == identity:
            return
        if self.identity is not None:
            raise WrongDatabase(f"the read-write server streams database {identity}, but the local copy "
                                f"{self.journal.store.url} holds database {self.identity}: refusing to mix them "
                                f"(give this replica an empty --data)")
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "gen": 0, "seq": 0, "crc": 0, "chunks": 0,
                "crcs": [], "size": 0, "removed_to": 0, "id": identity, "created": created, **REPLICA_MARK}
        with self.lock:
            self.journal.store.set_bulk({META_KEY: wire.pack(meta)})
            self.journal.meta = meta

    @property
    def term(self) -> int:
        """The highest promotion term of the RW servers this copy followed (0: none told of one)."""
        return self.journal.meta.get("term", 0)

    def observe_term(self, term: object) -> None:
        """Keep ``term`` (the RW server's, from the stream) in the copy's meta if it is above the copy's, before
        the records that follow it are stored; a promotion then goes above it."""
        if not isinstance(term, int) or isinstance(term, bool) or not self.term < term < MAX_TERM \
                or not self.journal.meta:
            return
        with self.lock:
            meta = {**self.journal.meta, "term": term}
            self.journal.store.set_bulk({META_KEY: wire.pack(meta)})
            self.journal.meta = meta
            self.journal.meta_extra["term"] = term   # every checkpoint of the copy keeps it

    def append_raw(self, first: int, records: list[bytes]) -> list[tuple[int, int, list]] | None:
        """Store records ``first``, ``first + 1``, … as received; their (seq, crc, entries), or None if they do not
        chain on (then nothing is stored)."""
        journal, items, decoded = self.journal, {}, []
        seq, crc = journal.seq, journal.last_crc
        if first > seq + 1:
            return None
        for offset, raw in enumerate(records):
            number = first + offset
            if number <= seq:
                continue   # already held (a resend after asking again)
            record = wire.unpack(raw, max_size=None)
            if not (isinstance(record, list) and len(record) == 3 and record[0] == number and record[1] == crc):
                return None
            items[log_key(number)] = raw
            seq, crc = number, zlib.crc32(raw)
            decoded.append((seq, crc, record[2]))
        if items:
            with self.lock:
                journal.store.set_bulk(items)
                journal.seq, journal.last_crc = seq, crc
        return decoded

    def install_checkpoint(self, meta: dict, chunks: list[bytes]) -> None:
        """Store the RW server's checkpoint (after record ``meta['seq']``) as this copy's newest one."""
        for index, chunk in enumerate(chunks):
            if zlib.crc32(chunk) != meta["crcs"][index]:
                raise CorruptStore(f"checkpoint chunk {index} of generation {meta['gen']} fails its crc32 check")
        with self.lock:
            self.journal.write_checkpoint(b"".join(chunks), meta["seq"], meta["crc"])
            self.journal.seq, self.journal.last_crc = meta["seq"], meta["crc"]

    def checkpoint_tree(self, follower: Follower) -> bool:
        """Checkpoint the follower's tree into the copy, so the local log stays short; False if it is not newer."""
        state = wire.pack({"tree": follower.engine.tree, "history": History().state(), "replies": []})
        with self.lock:
            if follower.seq <= self.journal.meta.get("seq", 0):
                return False
            self.journal.write_checkpoint(state, follower.seq, follower.crc)
        return True


class CopyFollower(Follower):
    """A ``Follower`` of a local copy: takes the records the stream decoded (``received``) without reading them
    back, and checkpoints the copy every ``every`` records it applies."""

    def __init__(self, copy: LocalCopy, received: deque | None = None, every: int = LOCAL_CHECKPOINT_RECORDS) -> None:
        super().__init__(copy.journal)
        self.copy, self.every = copy, every
        self.received: deque = received if received is not None else deque()
        self.last_checkpoint = time.monotonic()

    def _apply_new(self) -> int:
        received, applied = self.received, 0
        if self.stale:
            return 0   # catch_up loads the copy's checkpoint first
        while received and received[0][0] <= self.seq:
            received.popleft()
        if not received or received[0][0] != self.seq + 1:
            received.clear()
            return super()._apply_new()   # not what follows: read the copy's log
        while received and not self.stale:
            seq, crc, entries = received.popleft()
            try:
                for entry in entries:
                    self.engine.apply(entry["ops"])
            except Error:
                self.stale = True    # reloaded from the copy's checkpoint by catch_up
                received.clear()
                break
            self.seq, self.crc = seq, crc
            self.recent.append((seq, entries))
            applied += 1
        return applied

    def catch_up(self, known_seq: int = 0) -> int:
        """Apply new records (see ``Follower.catch_up``); checkpoint the copy when its log is long."""
        applied = super().catch_up(known_seq)
        if self.seq - self.journal.meta.get("seq", 0) >= self.every:
            self.copy.checkpoint_tree(self)
            self.last_checkpoint = time.monotonic()
        return applied
