"""The read-write state machine: engine + undo history + exactly-once table + lock, committed through the journal.

``Database.handle`` answers one request or defers it (another client holds
the lock); ``Database.commit`` makes every write since the last commit
durable in one journal append, or rolls them all back. It knows no sockets.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pyzdb.errors import CorruptStore, Error, LockError, LockLost, ReadOnlyError
from pyzdb.server.group import CommitGroup, journal_error, rewrite
from pyzdb.server.live_results import LiveResults
from pyzdb.server.replies import ReplyTable
from pyzdb.storage.checkpoint_state import encode_state
from pyzdb.storage.journal import Journal, log_key
from pyzdb.transport.wire import Packed, error_reply, ok_reply
from pyzdb.tree import expiry, files, lazy_expiry
from pyzdb.tree import query as q
from pyzdb.tree.engine import Engine
from pyzdb.tree.history import DEFAULT_BYTES, DEFAULT_DEPTH, History

DEFER = object()
EXPIRE_BATCH = 500   # keys deleted per expiry step: a million due at once must not stall the serving loop
FREE_OPS = frozenset({"ping", "status", "renew"})        # never held behind another client's lock
WRITE_CONTROL_OPS = frozenset({"undo", "redo", "lock", "unlock", "abort", "renew"})
READ_CONTROL_OPS = frozenset({"status", "sync", "file_read"})   # read the state: run again if their group fails


@dataclass
class Savepoint:
    """What is needed to roll back every write since it was taken (the history notes its own changes)."""

    entries: list = field(default_factory=list)   # [entry, ops that revert it, its reply]
    locked: bool = False                           # a lock session: commits as one record


@dataclass
class Lock:
    """One client's exclusive access, with a lease that its requests renew."""

    holder: bytes
    expires: float


class Database:
    """The tree a read-write server serves, and the rules for changing it.

    >>> db = Database(Journal(open_store('memory://'))); db.open()      # doctest: +SKIP
    >>> db.handle(b'c1', 1, {'op': 'set', 'path': ['x'], 'value': 3}); db.commit()  # doctest: +SKIP
    """

    def __init__(self, journal: Journal, *, history_depth: int = DEFAULT_DEPTH, lock_lease: float = 5.0,
                 file_roots: list[str] | None = None, durability: str = "always",
                 history_bytes: int = DEFAULT_BYTES, max_work: int | None = None,
                 max_reply: int | None = None) -> None:
        self.journal = journal
        self.max_work, self.max_reply = max_work, max_reply    # budgets of one request (tree/budget.py)
        self.durability = durability
        self.engine = Engine()
        self.history = History(history_depth, history_bytes)
        self.replies = ReplyTable()
        self.lock: Lock | None = None
        self.lock_lease = lock_lease
        self.lost_locks: OrderedDict[bytes, float] = OrderedDict()
        self.file_roots = file_roots or []
        self.savepoint: Savepoint | None = None
        self.pending: list[list] = []      # entries of the writes not yet committed
        self.checkpoint_failures = 0       # counted by the checkpointer's thread, shown in status
        self.checkpoint_error: str | None = None
        self.group = CommitGroup()
        self.live = LiveResults()   # replies whose result may share a container with the tree, until sent

    # --- start-up ------------------------------------------------------------------
    def open(self, progress=None, *, clean: bool = True) -> int:
        """Recover the tree, history and exactly-once table from the journal; return the seq.

        With ``clean`` (the writer), what earlier runs left behind is removed
        afterwards and a database without an identity gets one; ``pyzdb check``
        opens with ``clean=False`` and changes nothing.
        """
        state, records = self.journal.recover(progress)
        if state is not None:
            try:
                self.engine.tree = state["tree"]
                self.history.restore(state["history"])
                self.replies.restore(state["replies"])
                self.engine.expiries.restore(state.get("expiries"))
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptStore(f"checkpoint of generation {self.journal.meta['gen']} is not a pyzdb state: "
                                   f"{type(exc).__name__}: {exc}") from None
        first = self.journal.meta.get("seq", 0) + 1
        for offset, entries in enumerate(records):
            try:
                for entry in entries:
                    self.replay(entry)
            except (Error, KeyError, TypeError) as exc:
                raise CorruptStore(f"log record {log_key(first + offset).decode()} does not replay: {exc}") from None
            if progress:
                progress(offset + 1, len(records), "replaying log records")
        if clean:
            self.journal.clean_up()
            self.journal.ensure_identity()
        return self.journal.seq

    def replay(self, entry: dict) -> None:
        """Apply one logged entry exactly as it was applied when it was first committed."""
        kind = entry["k"]
        if kind == "w":
            inverse = self.engine.apply(entry["ops"])
            self.history.record(entry["ops"], inverse)
        elif kind in ("u", "r"):
            # the record holds the operations the undo/redo applied: apply those, so a restart with a
            # smaller --history-depth or --history-bytes (fewer entries kept) replays exactly the same tree
            self.engine.apply(entry["ops"])
            self.history.shift(kind)
        self._remember(entry)

    def snapshot(self) -> tuple[bytes, int, int]:
        """The committed state as bytes, with the seq and crc of the record it follows."""
        state = {"tree": self.engine.tree, "history": self.history.state(),
                 "replies": self.replies.state(), "expiries": self.engine.expiries.state()}
        return encode_state(state), self.journal.seq, self.journal.last_crc

    # --- requests ----------------------------------------------------------------
    def handle(self, cid: bytes, rid: int, query: dict, now: float | None = None, *, read_only: bool = False) -> Any:
        """Answer one request with a reply map, or return DEFER while another client holds the lock.

        A query flagged ``"locked": True`` was sent by a client that believes it
        holds the lock; if it does not (lease ended, server restarted) the
        answer is LockLost, never a write applied outside the lock session.
        ``read_only`` (a read-only CURVE key) refuses every write with ReadOnlyError.
        ``query`` is used in place, not copied: ``locked`` is popped out of it and
        ``q.validate`` fills in defaults (each request decodes a dict of its own).
        A request id at or below the client's high-water mark never runs again:
        a retry of its newest request gets the first reply, an older id
        StaleRequest (``replies.ReplyTable``).
        """
        now = time.monotonic() if now is None else now
        try:
            in_session = query.pop("locked", False) if isinstance(query, dict) else False
            q.validate(query)
            op = query["op"]
            seen = self.replies.check(cid, rid, renew=op == "renew")
            if seen is not None:
                return seen         # a retry of the newest request, already answered: its first reply again
        except Error as exc:        # malformed, or a late copy of an earlier request: refused, nothing runs
            return error_reply(rid, exc, self.journal.seq)
        try:
            reply = self._dispatch(cid, rid, query, op, in_session, now, read_only)
        except Error as exc:
            reply = error_reply(rid, exc, self.journal.seq)
        if reply is DEFER or op in ("ping", "renew"):
            return reply
        read = self._is_read(query, op)
        entry = self.replies.get(cid)
        if read or entry is None or entry[0] != rid:   # a write's entry was recorded when it was added
            # kept in memory and checkpoints: a write that changed nothing is not logged
            self.replies.record(cid, rid, None if read and "ok" in reply else reply)
        self.group.add(reply, query if read else None)
        return reply

    def _is_read(self, query: dict, op: str) -> bool:
        """True for a request that cannot change anything in any state (so a retry of it may run again)."""
        if op in q.CONTROL_OPS:
            return op in READ_CONTROL_OPS
        return not self.engine.may_write(query)

    def _dispatch(self, cid: bytes, rid: int, query: dict, op: str, in_session: bool, now: float,
                  read_only: bool) -> Any:
        """Run one checked request: a reply map, or DEFER."""
        holds = self.lock is not None and self.lock.holder == cid
        if in_session and not holds and op != "lock":
            raise self._lost_or(cid, LockLost("this client's lock ended (lease ran out or the server restarted);"
                                              " the writes made under it were rolled back"))
        if self.lock and not holds and op not in FREE_OPS:
            return DEFER
        if holds:
            self.lock.expires = now + self.lock_lease
        if read_only and (op in WRITE_CONTROL_OPS or (op not in q.CONTROL_OPS and self.engine.is_write(query))):
            raise ReadOnlyError(f"{op}: this client's key is read-only")
        if op in q.CONTROL_OPS:
            return ok_reply(rid, self._control(cid, rid, query, now), self.journal.seq)
        return self._execute(cid, rid, query)

    def _execute(self, cid: bytes, rid: int, query: dict) -> dict:
        """Run a tree query once; what it changed (``outcome.is_write``) is recorded for undo and the journal."""
        if cid in self.lost_locks and self.engine.is_write(query):   # refused before it runs, as it always was
            del self.lost_locks[cid]
            raise LockLost("the lock's lease ended before this request; the writes made under it were rolled back")
        live, expiries = self.live, self.engine.expiries
        self._delete_expired(expiry.due_touched(expiries, query) if expiries.deadlines else ())   # lazy expiry
        if live.buckets:            # earlier replies' results it would change in place are copied first
            live.before(query)
        outcome = self.engine.run(query, self.max_work, self.max_reply, packed=True, owner=cid)
        container = outcome.result.__class__ is list or outcome.result.__class__ is dict   # it may be the tree's own
        if not outcome.is_write:
            reply = lazy_expiry.reply_of(expiries, query, ok_reply(rid, outcome.result, self.journal.seq))
            if container:
                live.note(reply, None, query)
            return reply
        self._begin()
        # the tree may share a call's arguments: the journal and the history take its bytes from before it ran
        forward = outcome.forward if outcome.packed is None else Packed(outcome.forward, outcome.packed)
        self.history.record(forward, outcome.inverse)
        # no inverse in the record (replay computes it again): a write's record costs O(its forward ops)
        entry = {"k": "w", "ops": forward, "cid": cid, "rid": rid, "res": outcome.result}
        reply = self._add_entry(entry, outcome.inverse)
        if container:               # setdefault answers the stored value itself
            live.note(reply, entry, query)
        return reply

    def expire_due(self, now: float | None = None, limit: int = EXPIRE_BATCH) -> int:
        """Delete up to ``limit`` keys whose deadline has passed, each as one write of no client (journaled, undoable,
        seen by replicas and ``watch``); return how many were due. Not while a lock is held (its session comes
        first). The server calls it again at once while it returns ``limit``, serving between."""
        expiries = self.engine.expiries
        due = [] if self.lock is not None or not expiries.deadlines else expiries.due(now, limit)
        self._delete_expired(due)
        return len(due)

    def _delete_expired(self, paths: list[tuple] | tuple) -> None:
        for path in paths:
            try:
                self.live.before(query := {"op": "del", "path": list(path)})
                outcome = self.engine.execute(query)
            except Error:
                self.engine.expiries.put(path, None)     # the key is gone already: nothing to delete
                continue
            self._begin()
            self.history.record(outcome.forward, outcome.inverse)
            self._add_entry({"k": "w", "ops": outcome.forward, "cid": None, "rid": None, "res": None},
                            outcome.inverse)

    def _undo_redo(self, cid: bytes, rid: int, kind: str) -> Any:
        self.live.freeze_all()
        self._begin()
        applied, revert = self.history.undo(self.engine) if kind == "u" else self.history.redo(self.engine)
        self._add_entry({"k": kind, "ops": applied, "cid": cid, "rid": rid, "res": None}, revert)
        return None

    def next_seq(self) -> int:
        """The seq the next write will be committed under."""
        locked = self.savepoint is not None and self.savepoint.locked
        return self.journal.seq + 1 if locked else self.journal.seq + len(self.pending) + 1

    def _begin(self) -> None:
        if self.savepoint is None:
            self.savepoint = Savepoint()
            self.history.mark()

    def _add_entry(self, entry: dict, inverse: list | None) -> dict | None:
        seq = self.next_seq()
        self.pending.append(entry)
        reply = self._remember(entry, seq)
        self.savepoint.entries.append([entry, inverse, reply])
        return reply

    def _remember(self, entry: dict, seq: int | None = None) -> dict | None:
        """Keep the reply to the entry's request for a retry of it; return that reply."""
        cid = entry.get("cid")
        if cid is None:
            return None
        seq = self.journal.seq if seq is None else seq
        reply = ok_reply(entry["rid"], entry.get("res"), seq)
        self.replies.record(bytes(cid), entry["rid"], reply)
        return reply

    # --- control operations ----------------------------------------------------------
    def _control(self, cid: bytes, rid: int, query: dict, now: float) -> Any:
        op = query["op"]
        if op == "ping":
            return "pong"
        if op == "status":
            return self.status()
        if op == "sync":
            return self.journal.seq
        if op in ("undo", "redo"):
            return self._undo_redo(cid, rid, op[0])
        if op == "file_read":
            value = lazy_expiry.resolve(self.engine, q.check_path(query.get("path", [])))   # a due key: deleted
            return files.read_chunk(value, self.file_roots, query.get("offset", 0), query.get("size", 0))
        return self._lock_op(cid, rid, op, now)

    def _lock_op(self, cid: bytes, rid: int, op: str, now: float) -> Any:
        """lock, renew, unlock or abort."""
        if op in ("lock", "renew"):
            if op == "renew" and (self.lock is None or self.lock.holder != cid):   # another's lease is its own
                raise self._lost_or(cid, LockError("renew: this client holds no lock"))
            if self.lock is None:
                self.commit()       # others' writes before the lock are not part of its session
                self.lost_locks.pop(cid, None)
                self.lock = Lock(cid, now + self.lock_lease)
                self._begin()
                self.savepoint.locked = True
            return {"lease": self.lock_lease}
        if self.lock is None:                       # unlock or abort
            raise self._lost_or(cid, LockError(f"{op}: this client holds no lock"))
        self.lock = None
        if op == "abort":
            self.rollback(LockLost("the lock session was aborted; its writes were rolled back"))
        self._begin()   # the end of the session is logged with it, so a retried unlock is answered once
        self._add_entry({"k": "l", "ops": [], "cid": cid, "rid": rid, "res": None}, [])
        self.commit()
        return None

    def _lost_or(self, cid: bytes, error: Error) -> Error:
        if self.lost_locks.pop(cid, None) is not None:
            return LockLost("the lock's lease ended before this request; the writes made under it were rolled back")
        return error

    def expire_lock(self, now: float | None = None) -> bool:
        """End a lock whose lease has run out, rolling back its writes; True if one ended."""
        now = time.monotonic() if now is None else now
        if self.lock is None or self.lock.expires > now:
            return False
        self.lost_locks[self.lock.holder] = now
        while len(self.lost_locks) > 10_000:
            self.lost_locks.popitem(last=False)
        self.lock = None
        self.rollback(LockLost("the lock's lease ended; the writes made under it were rolled back"))
        return True

    # --- commit ------------------------------------------------------------------
    def commit(self) -> bool:
        """Make the pending writes durable as one journal record each, or one for a lock session.

        Nothing is committed while a lock is held (its writes commit at unlock).
        Every reply since the last commit then carries a seq at least that of
        the state it read. On any failure (store, or a record that does not
        encode) every pending write is rolled back and answered with the
        error, the reads among those replies are run again on the state
        without them, and the error is raised.
        """
        if self.lock is not None or not self.pending:
            if self.lock is None:
                self.savepoint = None
                self.history.release()
            self.group.settle(self.journal.seq)
            return False
        batch = [self.pending] if self.savepoint.locked else [[entry] for entry in self.pending]
        try:
            self.journal.append(batch)
        except Exception as exc:
            error = journal_error(exc)
            self.rollback(error)
            self.group.fail(error, self.journal.seq, self._read_again)
            raise error from None
        self.pending, self.savepoint = [], None
        self.history.release()
        self.group.settle(self.journal.seq)
        return True

    def _read_again(self, rid: int, query: dict) -> dict:
        try:
            if query["op"] in q.CONTROL_OPS:
                return ok_reply(rid, self._control(b"", rid, query, time.monotonic()), self.journal.seq)
            return ok_reply(rid, self.engine.execute(query).result, self.journal.seq)
        except Error as exc:
            return error_reply(rid, exc, self.journal.seq)

    def rollback(self, reason: Error | None = None) -> None:
        """Undo every write since the savepoint, in reverse, and restore the history as it was.

        With ``reason``, the replies kept for those writes become that error, so
        a retry learns that its write was rolled back.
        """
        self.live.freeze_all()
        point = self.savepoint
        if point is None:
            return
        for entry, revert, reply in reversed(point.entries):
            self.engine.apply(revert)
            if reason is not None and reply is not None:
                rewrite(reply, error_reply(entry["rid"], reason, self.journal.seq))
        self.history.rollback()
        self.pending, self.savepoint = [], None

    def status(self) -> dict:
        """Sequence number, log length, checkpoint, store, durability, sizes, lock and background-failure facts.

        ``store_fault`` names what the store's background thread failed at while
        writes are refused for it; ``checkpoint_failures`` and ``checkpoint_error``
        count the failed background checkpoints since start and name the last.
        """
        journal, meta = self.journal, self.journal.meta
        store = journal.store
        return {"role": "rw", "database": journal.identity, "seq": journal.seq, "log_records": journal.log_records, "log_bytes": journal.log_bytes,
                "checkpoint_gen": meta.get("gen", 0), "checkpoint_seq": meta.get("seq", 0),
                "checkpoint_time": meta.get("time"), "checkpoint_bytes": meta.get("size", 0),
                "checkpoint_chunks": meta.get("chunks", 0), "store": store.url, "durability": self.durability,
                "store_bytes": store.byte_size() if hasattr(store, "byte_size") else None,
                "store_used_bytes": store.used_bytes() if hasattr(store, "used_bytes") else None,
                "locked": self.lock is not None, **self.history.status(), "top_level_keys": len(self.engine.tree),
                "store_fault": getattr(store, "fault", None), "checkpoint_failures": self.checkpoint_failures,
                "checkpoint_error": self.checkpoint_error, **self.engine.cursors.facts(),
                **(journal.claim.status() if journal.claim is not None else {}), **self.replies.facts()}
