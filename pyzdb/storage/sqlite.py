"""The embedded default store: one sqlite table in WAL mode, from the standard library."""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from typing import Iterable, Mapping

from pyzdb.errors import CorruptStore, NoDatabase, NotDurable, StoreError
from pyzdb.storage.base import Store
from pyzdb.storage.journal_keys import LOG_PREFIX, log_seq
from pyzdb.storage.logfile import LogFile
from pyzdb.storage.private import create_private_file, make_private_dir, warn_if_exposed

# sqlite caps bound parameters per statement (32766 in 3.32+); stay well under it.
_CHUNK = 900
_SYNC = {"always": "FULL", "batch": "NORMAL", "none": "OFF"}
FLUSH_SECONDS = 1.0
WAL_SIZE_LIMIT = 64 << 20   # bytes the WAL is cut back to after a checkpoint
BULK_VALUE_BYTES = 64 << 10
BULK_QUIET_SECONDS = 2.0
LOCKED_CHECKPOINT_FRAMES = 2048   # WAL frames left for the pass under the writers' lock to copy (~2 MiB: a few ms)
log = logging.getLogger("pyzdb.store")


def _split(keys: Iterable[bytes]) -> tuple[list[bytes], dict[int, bytes]]:
    """(keys of the kv table, {seq: key} of the log table)."""
    plain, logged = [], {}
    for key in keys:
        seq = log_seq(key)
        if seq is None:
            plain.append(key)
        else:
            logged[seq] = key
    return plain, logged


class SqliteStore(Store):
    """A key-value table in one sqlite file.

    ``durability='always'`` fsyncs each ``set_bulk`` (WAL, synchronous=FULL).
    ``'batch'`` hands each ``set_bulk`` to the OS (synchronous=NORMAL) and a
    thread fsyncs the WAL once every ``flush_seconds`` when something was
    written, as Redis's ``appendfsync everysec`` does: a killed process loses
    nothing, a power cut loses at most the last second. That thread also runs
    sqlite's WAL checkpoint (with its fsyncs), which sqlite would otherwise
    run inside a write (bench/README.md has the measurements). When a
    flush fails (an ``OSError`` from open or fsync), the thread logs it, sets
    ``fault`` (shown in ``pyzdb status``) and retries every interval; until a
    flush succeeds again every write raises ``NotDurable``, so nothing is
    acknowledged that could not be made durable. ``'none'`` never
    calls fsync (synchronous=OFF). The file never shrinks: space freed by
    removed records is reused.

    The journal's commit path (``append_log``) writes its records to a log
    file beside the database (``<path>-log/``, storage/logfile.py): one
    ``write()`` per commit group, fdatasync'd before the ack under
    ``always``, fsync'd by the flush thread under ``batch``. The file carries
    the store's token (table ``log_file``), so one from another store is
    refused. Log keys (``log/`` and 20 digits) given to ``set_bulk``, and
    those of a store written before the log file, live in a table keyed by
    the integer, ``log``; ``get_bulk`` reads both. Every other key is in ``kv``.

    ``create=False`` (replicas, ``pyzdb check``) opens only a file that
    exists and holds the ``kv`` table, and creates no directory or file.
    """

    def __init__(self, path: str, *, durability: str = "always", flush_seconds: float = FLUSH_SECONDS,
                 create: bool = True) -> None:
        self.path = path
        self.url = f"sqlite://{path}"
        self.durability = durability
        if not create and not os.path.isfile(path):
            raise NoDatabase(f"no pyzdb database at {path}: the file does not exist (a wrong --data or --store?); "
                             f"only a read-write server creates one")
        if create:
            make_private_dir(os.path.dirname(os.path.abspath(path)))
        if not (create and create_private_file(path)):
            warn_if_exposed(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if not create:
                self._require_table("kv")
            # a new file only: small pages make each log record's WAL frame (and the batch fsync) small
            self._db.execute("PRAGMA page_size=1024")
            self._db.execute(f"PRAGMA synchronous={_SYNC[durability]}")
            self._db.execute("PRAGMA journal_mode=WAL")
            # Debian builds sqlite with secure_delete on: zeroing every freed page made removing a checkpoint's
            # old chunks and a bulk load's log records 10x dearer (9.6 -> 0.96 ms per 600 KB record), appends waiting
            self._db.execute("PRAGMA secure_delete=FAST")
            if durability == "batch":
                self._db.execute("PRAGMA wal_autocheckpoint=0")   # the flush thread checkpoints
                self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            # a rowid table: small records are deleted beside MiB-sized chunks without moving them
            self._db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            self._move_log_keys()
            self.log_file = self._open_log_file(create)
            self._log_file_looked = time.monotonic()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open sqlite store {path!r}: {exc}") from exc
        row = self._db.execute("SELECT max(seq) FROM log").fetchone()
        self.log_table_last = row[0] or 0   # the newest record in the table (the older layout's log)
        self.flushes = 0
        self._checkpoint_db: sqlite3.Connection | None = None   # the flush thread's, for WAL checkpoints
        self._bulk_at = 0.0   # when a value of BULK_VALUE_BYTES or more was last written
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._flusher = None
        if durability == "batch":
            self._flusher = threading.Thread(target=self._flush_loop, args=(flush_seconds,),
                                             name="pyzdb-sqlite-flush", daemon=True)
            self._flusher.start()

    def _open_log_file(self, create: bool) -> LogFile | None:
        """The store's log file (its token made on a new store), or None for a reader of a store without one."""
        self._log_started = False
        if create:
            self._db.execute("CREATE TABLE IF NOT EXISTS log_file (token BLOB NOT NULL, started INTEGER NOT NULL)")
            self._db.execute("INSERT INTO log_file SELECT ?, 0 WHERE NOT EXISTS (SELECT 1 FROM log_file)",
                             (uuid.uuid4().bytes,))
        elif not self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='log_file'").fetchone():
            return None
        row = self._db.execute("SELECT token, started FROM log_file").fetchone()
        if row is None:
            return None
        self._log_started = bool(row[1])
        log_file = LogFile(self.path + "-log", bytes(row[0]), durability=self.durability)
        if self._log_started and not log_file.segments:
            log_file.close()
            raise CorruptStore(f"the log file {self.path}-log of {self.path} is missing: it holds the records after "
                               f"the newest checkpoint (copy it along with the database file)")
        return log_file

    def _require_table(self, name: str) -> None:
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone():
            self._db.close()
            raise NoDatabase(f"{self.path} is not a pyzdb store (it has no {name!r} table)")

    def _flush_loop(self, seconds: float) -> None:
        """fsync the WAL, then checkpoint it, once per interval in which something was written (or a flush failed)."""
        while not self._closed.wait(seconds):
            if not (self._dirty.is_set() or self.fault):
                continue
            self._dirty.clear()
            try:
                self.flush()
            except Exception as exc:    # any failure withdraws durability: never let the thread end silently
                if self.fault is None:
                    log.error("sqlite store %r: fsync failed, refusing writes until it succeeds: %s", self.path, exc)
                self.fault = f"fsync thread: {type(exc).__name__}: {exc}"
                continue
            if self.fault is not None:
                log.warning("sqlite store %r: fsync works again, accepting writes", self.path)
                self.fault = None
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL's pages into the database file (sqlite's PASSIVE checkpoint).

        The bulk of it runs on a connection of its own, outside the writers'
        lock: a PASSIVE checkpoint waits for no writer and no writer waits for
        it, so copying the pages of a big pyzdb checkpoint (tens of MB) does not
        hold the serving loop's appends back. Once the WAL has grown past
        ``WAL_SIZE_LIMIT``, a second pass holding the lock copies the pages
        written meanwhile, so it ends with the whole WAL copied and the next
        write starts the WAL over: when at most ``LOCKED_CHECKPOINT_FRAMES``
        are left and no value of ``BULK_VALUE_BYTES`` or more (a pyzdb
        checkpoint's chunk) was written in the last ``BULK_QUIET_SECONDS``, or
        the WAL is 8 times the limit (a 10^7-key checkpoint is 320 MB, and the
        locked pass's fsync during it held appends back for 200-330 ms).
        Below the limit no pass takes the lock: at 10^6 keys the locked pass
        and its fsync were the serving loop's longest wait (38 ms).
        """
        try:
            if self._checkpoint_db is None:
                self._checkpoint_db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            _, frames, copied = self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            wal = self._wal_size()
            waiting = (frames - copied > LOCKED_CHECKPOINT_FRAMES
                       or time.monotonic() - self._bulk_at < BULK_QUIET_SECONDS)
            if wal < WAL_SIZE_LIMIT or (waiting and wal < 8 * WAL_SIZE_LIMIT):
                return   # the next interval copies more, or a pyzdb checkpoint is being written: no stall now
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:
            pass   # a follower's read may hold it back; the next interval tries again

    def _wal_size(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def flush(self) -> None:
        """fsync the log file, the database's WAL (and file) now."""
        if self.log_file is not None:
            self.log_file.flush()
        for name in (self.path + "-wal", self.path):
            try:
                fd = os.open(name, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.flushes += 1

    def _move_log_keys(self) -> None:
        """Move log records a file written before the ``log`` table keeps in ``kv`` (once; then there are none)."""
        with self._lock:
            rows = self._db.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ?", (LOG_PREFIX, b"log0")).fetchall()
            moved = [(log_seq(bytes(k)), bytes(k), v) for k, v in rows if log_seq(bytes(k)) is not None]
            if not moved:
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO log (seq, v) VALUES (?, ?)", [(s, v) for s, _, v in moved])
                self._db.executemany("DELETE FROM kv WHERE k = ?", [(k,) for _, k, _ in moved])
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise

    def get_bulk(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Return the values of the keys that exist."""
        plain, logged = _split(keys)
        found: dict[bytes, bytes] = {}
        if logged and self.log_file is None and time.monotonic() - self._log_file_looked >= 1.0:
            with self._lock:   # a reader opened before the writer made the log file (an upgrade): look again
                self._log_file_looked = time.monotonic()
                try:
                    self.log_file = self.log_file or self._open_log_file(False)
                except sqlite3.Error as exc:
                    raise StoreError(f"sqlite store {self.path!r}: {exc}") from exc
        if logged and self.log_file is not None:
            for seq, value in self.log_file.get(logged).items():
                found[logged.pop(seq)] = value
        with self._lock:
            for i in range(0, len(plain), _CHUNK):
                part = plain[i:i + _CHUNK]
                rows = self._db.execute(f"SELECT k, v FROM kv WHERE k IN ({','.join('?' * len(part))})", part)
                found.update((bytes(k), bytes(v)) for k, v in rows)
            seqs = list(logged)
            for i in range(0, len(seqs), _CHUNK):
                part = seqs[i:i + _CHUNK]
                rows = self._db.execute(f"SELECT seq, v FROM log WHERE seq IN ({','.join('?' * len(part))})", part)
                found.update((logged[seq], bytes(v)) for seq, v in rows)
        return found

    def set_bulk(self, items: Mapping[bytes, bytes]) -> None:
        """Store all pairs in one transaction."""
        plain, logged = [], []
        for key, value in items.items():
            seq = log_seq(key)
            if seq is None:
                if len(value) >= BULK_VALUE_BYTES:
                    self._bulk_at = time.monotonic()
                plain.append((key, value))
            else:
                logged.append((seq, value))
        self._write([("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", plain),
                     ("INSERT OR REPLACE INTO log (seq, v) VALUES (?, ?)", logged)])

    def append_log(self, records: list[tuple[int, bytes]]) -> None:
        """Store journal log records as (seq, bytes) in the log file: one ``write()`` for them all.

        The journal's commit path (``Journal.append``) writes through this;
        ``get_bulk`` of their ``log/<seq>`` keys reads them back.
        """
        if self.log_file is None:
            self._write([("INSERT OR REPLACE INTO log (seq, v) VALUES (?, ?)", records)])
            return
        if self.fault is not None:
            raise NotDurable(f"sqlite store {self.path!r} cannot make writes durable ({self.fault}); "
                             "writes are refused until a flush succeeds")
        if not self._log_started:
            self._write([("UPDATE log_file SET started = ?", [(1,)])])
            self._log_started = True
        self.log_file.append(records)
        if not self._dirty.is_set():
            self._dirty.set()

    def drop_log_through(self, seq: int) -> None:
        """The journal's checkpoint covers records up to ``seq``: the log file's segments they fill are removed."""
        if self.log_file is not None:
            if self.durability == "batch" and self.log_file.would_remove(seq):
                self.flush()   # the checkpoint's meta (not yet fsync'd under batch) reaches the disk before its records go
            self.log_file.drop_through(seq)

    def check_log_follows(self, seq: int) -> None:
        """CorruptStore if a recovery ending at ``seq`` left log file records after it: ``seq + 1`` missing
        (``LogFile.check_follows``) or not chaining (``LogFile.check_ends_at``)."""
        if self.log_file is not None:
            self.log_file.check_follows(seq)
            self.log_file.check_ends_at(seq)

    def truncate_log_after(self, seq: int) -> None:
        """In the writer at start-up, after ``check_log_follows`` (``JournalCleanup.clean_up`` asks it first, before
        anything is removed): remove the log file's records after ``seq``."""
        if self.log_file is not None:
            self.log_file.truncate_after(seq)

    def remove_bulk(self, keys: Iterable[bytes]) -> None:
        """Remove the keys in one transaction."""
        plain, logged = _split(keys)
        self._write([("DELETE FROM kv WHERE k = ?", [(k,) for k in plain]),
                     ("DELETE FROM log WHERE seq = ?", [(seq,) for seq in logged])])

    def _write(self, statements: list[tuple[str, list]]) -> None:
        statements = [(sql, rows) for sql, rows in statements if rows]
        if not statements:
            return
        if self.fault is not None:
            raise NotDurable(f"sqlite store {self.path!r} cannot make writes durable ({self.fault}); "
                             "writes are refused until a flush succeeds")
        with self._lock:
            try:
                if len(statements) == 1 and len(statements[0][1]) == 1:
                    # one statement commits atomically by itself, without BEGIN/COMMIT
                    self._db.execute(statements[0][0], statements[0][1][0])
                else:
                    self._db.execute("BEGIN")
                    for sql, rows in statements:
                        self._db.executemany(sql, rows)
                    self._db.execute("COMMIT")
                if not self._dirty.is_set():   # set() takes a lock each call
                    self._dirty.set()
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"sqlite store {self.path!r}: {exc}") from exc

    def close(self) -> None:
        """Flush what ``batch`` has not flushed yet, and close the database file."""
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join()
            if self._dirty.is_set():
                self.flush()
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
        if self.log_file is not None:
            self.log_file.close()
        with self._lock:
            self._db.close()

    def byte_size(self) -> int:
        """Bytes on disk of the database, its WAL and its log file."""
        segments = [segment.path for segment in self.log_file.segments] if self.log_file is not None else []
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal", *segments) if os.path.exists(p))

    def used_bytes(self) -> int:
        """Bytes of the database's pages in use (the file size less its free pages)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def key_count(self) -> int:
        """How many records the store holds."""
        in_file = self.log_file.count() if self.log_file is not None else 0
        with self._lock:
            return in_file + sum(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                                 for table in ("kv", "log"))
