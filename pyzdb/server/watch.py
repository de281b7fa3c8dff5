"""The ``watch`` read operation: the committed changes after a seq that touch a path, read from the log.

Query ``{"op": "watch", "path": [...], "since": n | None, "wait": s}``;
answer ``{"seq": last seq looked at, "changes": [{"seq", "kind", "ops"}]}``.
Changes come from the journal's records (a replica's in-memory tail first),
so a subscriber that falls behind resumes where it left off; only changes a
checkpoint has already removed from the log are lost, and that is an error.
An answer that reaches the server's newest seq also names, in ``expired``,
the keys on, above or below the path whose deadline has passed but whose
delete is not in the log yet (tree/lazy_expiry.py): they read as deleted
already, and the client's watch yields each as a delete of kind
``expired`` (client/remote.py) before the server's own delete arrives.
"""
from __future__ import annotations

from typing import Any, Iterable

from pyzdb.errors import QueryError, WatchGap
from pyzdb.storage.journal import READ_BATCH, Journal, decode_record, log_key
from pyzdb.tree import lazy_expiry
from pyzdb.tree import query as q
from pyzdb.tree.expiry import Expiries

MAX_CHANGES = 1000
MAX_WAIT = 5.0
PAGE_BYTES = 4 << 20   # bytes of stored log records one watch request reads (at least one record)


def parse(query: dict) -> tuple[list, int | None, float]:
    """Check a watch query; return (path prefix, since or None, seconds it may be held)."""
    path = q.check_path(query.get("path", []))
    since, wait = query.get("since"), query.get("wait", 0)
    if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
        raise QueryError(f"watch: 'since' must be a non-negative int or None, not {since!r}")
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0:
        raise QueryError(f"watch: 'wait' must be a non-negative number of seconds, not {wait!r}")
    return path, since, min(float(wait), MAX_WAIT)


def touches(op_path: list, prefix: list) -> bool:
    """True when a write at ``op_path`` can change the value at ``prefix`` (one is a prefix of the other).

    >>> touches(['l', 4], ['l']), touches(['l'], ['l', 4]), touches(['m'], ['l'])
    (True, True, False)
    """
    for a, b in zip(op_path, prefix):
        if a != b and not (q.is_slice(a) or q.is_slice(b)):
            return False   # a slice step may cover any index: it matches conservatively
    return True


def matching_ops(ops: Iterable[dict], prefix: list) -> list[dict]:
    """The operations (batches looked into) whose paths touch ``prefix``."""
    found = []
    for op in ops:
        if op.get("op") == "batch":
            found += matching_ops(op.get("ops", []), prefix)
        elif touches(op.get("path", []), prefix):
            found.append(op)
    return found


def changes(records: Iterable[tuple[int, list]], prefix: list, limit: int = MAX_CHANGES) -> tuple[int | None, list]:
    """(last seq looked at, changes under ``prefix``) of records in seq order, stopping after ``limit`` changes."""
    last, found = None, []
    for seq, entries in records:
        for entry in entries:
            ops = matching_ops(entry.get("ops", []), prefix)
            if ops:
                found.append({"seq": seq, "kind": entry.get("k"), "ops": ops})
        last = seq
        if len(found) >= limit:
            break
    return last, found


def read_log(journal: Journal, since: int, upto: int) -> list[tuple[int, list]]:
    """(seq, entries) of the stored records ``since+1 .. upto``: at most one read batch, and past
    ``PAGE_BYTES`` of records only the first (one request must not read a log of big records whole).

    Records up to ``upto`` are known committed, so they chain; a missing one
    was removed by a newer checkpoint and the watcher has lost changes.
    """
    stop, seq, size = min(upto, since + READ_BATCH), since, 0
    records: list[tuple[int, list]] = []
    while seq < stop and size < PAGE_BYTES:
        ahead = 1 if not records else max(1, (PAGE_BYTES - size) * len(records) // max(size, 1))
        keys = [log_key(s) for s in range(seq + 1, min(stop, seq + ahead) + 1)]
        found = journal.store.get_bulk(keys)
        for key in keys:
            raw = found.get(key)
            if raw is None:
                raise WatchGap(f"watch: the changes after seq {since} are no longer in the log (a checkpoint "
                               f"removed record {seq + 1}); read the value again and watch from seq {upto}")
            if records and size + len(raw) > PAGE_BYTES:
                return records
            seq, size = seq + 1, size + len(raw)
            records.append((seq, decode_record(raw, f"log record {key.decode()}")[2]))
    return records


def answer(query: dict, journal: Journal, applied: int, recent: Any = None, expiries: Expiries | None = None) -> dict:
    """The answer to a watch query against a tree at seq ``applied`` (``recent``: a Follower's tail), with
    ``expired`` from ``expiries`` (the tree's deadlines) when it reaches ``applied`` and some key is due.

    ``since`` None asks where the log is now: ``{"seq": applied, "changes": []}``.
    """
    path, since, _ = parse(query)
    if since is None or since >= applied:
        return _with_expired({"seq": applied if since is None else since, "changes": []}, path, expiries,
                             since is not None)
    records = recent.recent_after(since) if recent is not None else None
    if records is None:
        records = read_log(journal, since, applied)
    last, found = changes(records, path)
    page = {"seq": last if last is not None else since, "changes": found}
    return _with_expired(page, path, expiries, page["seq"] >= applied)


def _with_expired(page: dict, path: list, expiries: Expiries | None, present: bool) -> dict:
    """``page`` with ``expired`` when it reaches the present and due keys touch ``path``."""
    if present and expiries is not None and expiries.deadlines:
        expired = lazy_expiry.expired_under(expiries, path, MAX_CHANGES)
        if expired:
            page["expired"] = expired
    return page
