"""The write-ahead log and checkpoints of one tree, laid out on any key-value store.

Keys: ``meta`` (the commit point), ``ckpt/<gen>/<i>`` (checkpoint chunks),
``ckpt/pending`` (the generation being written, so a crash's chunks are
removed), ``claim`` (the writer's lease record on KT/TT, see claim.py),
``log/<seq>`` (one record per committed write, 20-digit seq). State = the
checkpoint ``meta`` names + every log record after its seq, read in order
until one is missing or does not chain to the one before (each record holds
the crc32 of its predecessor, so stale records of an earlier run are never
taken for new ones). ``meta`` also holds the database's identity (``id``, a
random hex string, and ``created``), made by the first read-write server; a
database never checkpointed has a ``meta`` of generation 0 (no chunks).
"""
from __future__ import annotations

import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from pyzdb.errors import CorruptStore
from pyzdb.storage.base import Store
from pyzdb.storage.checkpoint_state import FORMAT_VERSION, LOG_FILE_VERSION, check_version, decode_state
from pyzdb.storage.journal_cleanup import READ_BATCH, WRITE_GROUP_BYTES, JournalCleanup, _paced
from pyzdb.storage.journal_keys import LOG_PREFIX, META_KEY, PENDING_KEY, chunk_key, log_key, log_seq
from pyzdb.transport import wire

if TYPE_CHECKING:
    from pyzdb.storage.claim import Claim

FORMAT = "pyzdb-journal"
META_FIELDS = {"gen": int, "seq": int, "crc": int, "chunks": int, "crcs": list}
WRITER_FIELDS = ("term", "writer")   # meta fields every checkpoint keeps: the promotion term and this store's writer id
DEFAULT_CHUNK_SIZE = 1 << 18   # a 1 MiB chunk held the sqlite store's lock (and appends) for 4-10 ms
__all__ = ["LOG_PREFIX", "META_KEY", "PENDING_KEY", "READ_BATCH", "Journal", "chunk_key", "log_key", "log_seq"]


def encode_record(seq: int, prev_crc: int, entries: list) -> bytes:
    """The stored bytes of one log record (an entry's ``wire.Packed`` ops are written from their bytes)."""
    return wire.pack_record(seq, prev_crc, entries)


def decode_record(data: bytes, what: str) -> list:
    """``[seq, crc32 of the previous record, entries]`` of a stored log record; CorruptStore naming ``what``."""
    return _decode(data, what)


def _decode(data: bytes, what: str) -> Any:
    try:
        return wire.unpack(data, max_size=None)
    except Exception as exc:
        raise CorruptStore(f"{what} does not decode as msgpack: {exc}") from None


class Journal(JournalCleanup):
    """Append-only log records and chunked checkpoints over a ``Store``.

    >>> j = Journal(open_store('memory://'))            # doctest: +SKIP
    >>> state, records = j.recover(); j.append([[...]])  # doctest: +SKIP

    ``append`` runs on the serving thread and ``write_checkpoint`` on the
    checkpoint thread; the counters each touches are its own.
    """

    def __init__(self, store: Store, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.store = store
        self.chunk_size = chunk_size
        self.meta: dict = {}
        self.seq = 0               # last record appended (or recovered)
        self.last_crc = 0          # crc32 of that record's bytes
        self.appended_bytes = 0    # bytes of log records appended or recovered by this process
        self.covered_bytes = 0     # of those, the bytes the newest checkpoint covers
        self.claim: Claim | None = None   # the writer's claim, checked before each append and checkpoint commit
        self.on_append: Callable[[int, int, list[list]], None] | None = None   # (first seq, last seq, batch)
        self.retain: Callable[[], int] | None = None   # log records after this seq outlive checkpoints (replicas)
        self.meta_extra: dict = {}        # fields every checkpoint's meta carries (a replica copy's mark)
        # (seq, bytes) records straight to the store's log, skipping the log/<seq> keys (sqlite: SqliteStore.append_log)
        self._append_log: Callable[[list[tuple[int, bytes]]], None] | None = getattr(store, "append_log", None)
        # the version this journal writes: LOG_FILE_VERSION where the records go to a log file beside the store
        self.version = LOG_FILE_VERSION if hasattr(store, "drop_log_through") else FORMAT_VERSION

    @property
    def log_records(self) -> int:
        """Log records after the newest checkpoint."""
        return self.seq - self.meta.get("seq", 0)

    @property
    def log_bytes(self) -> int:
        """Bytes of the log records after the newest checkpoint."""
        return max(0, self.appended_bytes - self.covered_bytes)

    @property
    def identity(self) -> str | None:
        """The database's id (None before ``recover``, or for a store an older pyzdb wrote and no writer opened since)."""
        return self.meta.get("id")

    # --- reading -----------------------------------------------------------------
    def holds_database(self) -> bool:
        """True when the store holds a pyzdb database: a ``meta`` record, or the first record of a log without one."""
        return bool(self.store.get_bulk([META_KEY, log_key(1)]))

    def read_meta(self) -> dict:
        """The current ``meta`` record, or {} for an empty store."""
        raw = self.store.get_bulk([META_KEY]).get(META_KEY)
        if raw is None:
            return {}
        meta = _decode(raw, "meta record")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CorruptStore("meta record is not a pyzdb journal meta record (foreign data in the store?)")
        check_version(meta.get("version"))
        for name, kind in META_FIELDS.items():
            if not isinstance(meta.get(name), kind):
                raise CorruptStore(f"meta record has no valid {name!r} field")
        if len(meta["crcs"]) != meta["chunks"]:
            raise CorruptStore(f"meta record names {meta['chunks']} chunks but holds {len(meta['crcs'])} crc32s")
        return meta

    def load_checkpoint(self, meta: dict, progress: Callable[[int, int, str], None] | None = None) -> Any:
        """Read and check every chunk of the checkpoint ``meta`` names; return the decoded state.

        The chunks are copied into one buffer of the checkpoint's size as they
        are read (no list of chunks joined into a second copy), then decoded
        by ``checkpoint_state.decode_state``; ``progress(done, total, stage)``
        is told of each stage (the chunks read, the decode, the tree built).
        """
        gen, count = meta["gen"], meta["chunks"]
        size = meta.get("size")
        buffer = bytearray(size) if isinstance(size, int) and size >= 0 else bytearray()
        filled = 0
        for start in range(0, count, 64):
            keys = [chunk_key(gen, i) for i in range(start, min(start + 64, count))]
            found = self.store.get_bulk(keys)
            for offset, key in enumerate(keys):
                chunk = found.pop(key, None)
                if chunk is None:
                    raise CorruptStore(f"checkpoint chunk {key.decode()} is missing (meta names {count} chunks)")
                if zlib.crc32(chunk) != meta["crcs"][start + offset]:
                    raise CorruptStore(f"checkpoint chunk {key.decode()} fails its crc32 check")
                buffer[filled:filled + len(chunk)] = chunk
                filled += len(chunk)
            if progress:
                progress(min(start + 64, count), count, "reading checkpoint chunks")
        del buffer[filled:]
        return decode_state(buffer, f"checkpoint of generation {gen}", progress)

    def records_after(self, seq: int, prev_crc: int) -> Iterator[tuple[int, int, list]]:
        """Yield (seq, crc, entries) of each record after ``seq`` that chains to ``prev_crc``.

        It stops at a record that does not chain. Where records are keys (KT/TT,
        the sqlite ``log`` table of older stores) that is a leftover a partly
        failed bulk write left past the end, and the writer's ``clean_up``
        removes it. In the sqlite store's append-only log file nothing is left
        past the end, so there it is damage: the writer's start-up and ``pyzdb
        check`` refuse it (``check_log_follows``); a follower only stops there.
        """
        while True:
            keys = [log_key(s) for s in range(seq + 1, seq + 1 + READ_BATCH)]
            found = self.store.get_bulk(keys)
            for key in keys:
                raw = found.get(key)
                if raw is None:
                    return
                record = _decode(raw, f"log record {key.decode()}")
                if not (isinstance(record, list) and len(record) == 3 and record[0] == seq + 1):
                    raise CorruptStore(f"log record {key.decode()} is not a pyzdb log record")
                if record[1] != prev_crc:
                    return  # past the end of this log (see the docstring)
                seq, prev_crc = seq + 1, zlib.crc32(raw)
                yield seq, prev_crc, record[2]

    def recover(self, progress: Callable[[int, int, str], None] | None = None) -> tuple[Any, list[list]]:
        """Load the newest checkpoint state (None if none) and the entries of every record after it."""
        self.meta = self.read_meta()
        state = self.load_checkpoint(self.meta, progress) if self.meta.get("gen") else None
        self.seq = self.meta.get("seq", 0)
        self.last_crc = self.meta.get("crc", 0)
        records = []
        for seq, crc, entries in self.records_after(self.seq, self.last_crc):
            records.append(entries)
            self.seq, self.last_crc = seq, crc
        self.appended_bytes = self.covered_bytes = 0
        return state, records

    # --- writing -----------------------------------------------------------------
    def ensure_identity(self) -> str:
        """In the writer, after ``recover``: give the database an identity if it has none; return its id.

        A new database gets a ``meta`` of generation 0; one an older pyzdb
        wrote keeps its ``meta`` and gains ``id`` and ``created``; a store without a ``writer`` id (made
        here, or by a promotion) gains one. An older
        ``meta`` on a store with a log file becomes ``LOG_FILE_VERSION`` here, before the
        first record goes to that file, so an older pyzdb refuses the store
        instead of missing those records.
        """
        upgrade = self.version == LOG_FILE_VERSION and self.meta.get("version", 1) < LOG_FILE_VERSION
        if self.meta.get("id") and self.meta.get("writer") and not upgrade:
            return self.meta["id"]
        meta = dict(self.meta) or {"format": FORMAT, "version": self.version, "gen": 0, "seq": 0, "crc": 0,
                                   "chunks": 0, "crcs": [], "size": 0, "removed_to": 0}
        if upgrade:
            meta["version"] = LOG_FILE_VERSION   # before the first record goes to the log file
        if not meta.get("id"):
            meta.update(id=uuid.uuid4().hex, created=time.time())
        if not meta.get("writer"):   # this store's own id among the writers of the database (broker/fence.py)
            meta["writer"] = uuid.uuid4().hex
        self._check_claim()
        self.store.set_bulk({META_KEY: wire.pack(meta)})
        self.meta = meta
        return meta["id"]

    def _check_claim(self) -> None:
        if self.claim is not None:
            self.claim.check()

    def append(self, batch: list[list]) -> int:
        """Store one record per item of ``batch`` (each a list of entries); return the last seq.

        The journal's position moves only once the store has taken every
        record, so a failed append can be retried or rolled back cleanly.
        """
        self._check_claim()
        records, seq, crc, size = [], self.seq, self.last_crc, 0
        for entries in batch:
            seq += 1
            data = encode_record(seq, crc, entries)
            crc = zlib.crc32(data)
            records.append((seq, data))
            size += len(data)
        if self._append_log is not None:
            self._append_log(records)
        else:
            self.store.set_bulk({log_key(number): data for number, data in records})
        first = self.seq + 1
        self.seq, self.last_crc = seq, crc
        self.appended_bytes += size
        if self.on_append is not None:
            self.on_append(first, seq, batch)
        return self.seq

    def write_checkpoint(self, state: bytes | Iterable[bytes], seq: int, crc: int,
                         covered_bytes: int | None = None) -> dict:
        """Store a checkpoint of the state after record ``seq`` and switch ``meta`` to it.

        ``state`` is the encoded state, or an iterable of its chunks (each
        ``chunk_size`` bytes but the last, as a forked snapshot streams them);
        if the iterable raises, the chunks written so far are removed and no
        ``meta`` names them. Chunks go under a new generation (named in
        ``ckpt/pending`` first, so a crash's partial chunks are found and
        removed); the ``meta`` write is the commit point; old chunks and covered
        log records are removed after it. ``covered_bytes`` is
        ``appended_bytes`` at the time of the snapshot.
        """
        old = self.meta or {"gen": 0, "chunks": 0, "seq": 0}
        gen = old["gen"] + 1
        if isinstance(state, (bytes, bytearray, memoryview)):
            state = [state[i:i + self.chunk_size] for i in range(0, len(state), self.chunk_size)] or [b""]
        self.store.set_bulk({PENDING_KEY: b"%d" % gen})
        crcs: list[int] = []
        total = 0
        try:
            total = self._write_chunks(gen, state, crcs)
        except BaseException:
            self._remove_partial(gen, len(crcs))
            raise
        meta = {"format": FORMAT, "version": max(self.version, old.get("version", 1)), "gen": gen, "seq": seq, "crc": crc,
                "chunks": len(crcs), "crcs": crcs, "size": total,
                "time": time.time(), "prev_gen": old["gen"], "prev_chunks": old["chunks"],
                "prev_seq": old.get("removed_to", old["seq"]), "id": old.get("id"), "created": old.get("created"),
                **{name: old[name] for name in WRITER_FIELDS if name in old}, **self.meta_extra}
        self._check_claim()
        self.store.set_bulk({META_KEY: wire.pack(meta)})
        self.meta = meta
        removed_bytes = -1   # unknown: removed one by one
        if covered_bytes is not None:
            removed_bytes = covered_bytes - self.covered_bytes
            self.covered_bytes = covered_bytes
        self._remove_leftovers(removed_bytes)
        self.store.remove_bulk([PENDING_KEY])
        return meta

    def _write_chunks(self, gen: int, chunks: Iterable[bytes], crcs: list[int]) -> int:
        """Store each chunk as ``ckpt/<gen>/<i>``, appending its crc32 to ``crcs``; return the bytes stored."""
        group: dict[bytes, bytes] = {}
        size = total = 0
        for chunk in chunks:   # about 1 MiB per store write, so log appends interleave
            group[chunk_key(gen, len(crcs))] = chunk
            crcs.append(zlib.crc32(chunk))
            size += len(chunk)
            total += len(chunk)
            if size >= WRITE_GROUP_BYTES:
                _paced(self.store.set_bulk, group)
                group, size = {}, 0
        if group or not crcs:
            if not crcs:
                group[chunk_key(gen, 0)] = b""
                crcs.append(zlib.crc32(b""))
            self.store.set_bulk(group)
        return total

    def _remove_partial(self, gen: int, written: int) -> None:
        """Best effort after a failed checkpoint: remove its chunks and the pending mark (a restart would too)."""
        try:
            keys = [chunk_key(gen, i) for i in range(written)]
            for start in range(0, len(keys), 64):
                self.store.remove_bulk(keys[start:start + 64])
            self.store.remove_bulk([PENDING_KEY])
        except Exception:   # noqa: BLE001 - the start-up clean-up removes them then
            pass
