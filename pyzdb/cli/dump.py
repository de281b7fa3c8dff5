"""``pyzdb dump`` / ``pyzdb load``: the tree to and from a dump file (``dumpfile``), through a running service.

``dump`` reads the top-level keys, then their values in batches of gets
(each key read atomically; a key deleted meanwhile is left out; the dump as
a whole is not a snapshot of one instant unless writers are paused with
``db.lock()``). ``load`` sets top-level keys with one ``update`` of the root
per group of records: each group is applied atomically as one write (one
log record, one undo step); keys not in the file are left alone. ``-`` as
the file is standard output / standard input (give ``--format``).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, BinaryIO, Iterator

from pyzdb.cli.dumpfile import DumpFileError, check_header, choose_format, encode_record, header, read_records
from pyzdb.cli.progress import Progress
from pyzdb.client import client
from pyzdb.errors import Error, MessageTooLarge, PathKeyError, RequestTooCostly

READ_BATCH = 2000           # keys read per request (halved while a reply is too large)
PAGE_KEYS = 50_000          # top-level keys listed per request when one keys() is over a budget
WRITE_KEYS = 5000           # records set per request
WRITE_BYTES = 4 << 20       # bytes of records set per request
_MISSING = "\x00pyzdb-dump-missing\x00"


# --- dump ----------------------------------------------------------------------------
def _fetch(db: Any, keys: list, tolerate_missing: bool) -> list:
    """The values of ``keys`` in one batch: plain gets (the server's fast path), or ``get(key, MISSING)``."""
    batch = db.batch()
    if tolerate_missing:
        get = batch.root.get
        for key in keys:
            get(key, _MISSING)
    else:
        for key in keys:
            batch[key]._run()
    return batch.execute()


def read_values(db: Any, keys: list) -> Iterator[tuple[Any, Any]]:
    """(key, value) of each key still present, read in batches (halved when a reply is too large)."""
    if not keys:
        return
    try:
        try:
            values = _fetch(db, keys, tolerate_missing=False)
        except PathKeyError:    # a key was deleted since the listing: ask again, leaving it out
            values = _fetch(db, keys, tolerate_missing=True)
    except MessageTooLarge:
        if len(keys) == 1:
            raise MessageTooLarge(f"the value of top-level key {keys[0]!r} is over the message limit") from None
        middle = len(keys) // 2
        yield from read_values(db, keys[:middle])
        yield from read_values(db, keys[middle:])
        return
    for key, value in zip(keys, values):
        if not (type(value) is str and value == _MISSING):
            yield key, value


def top_level_keys(db: Any) -> list:
    """Every top-level key: one ``keys()`` (atomic), or for a tree over the work or reply budget, pages of ``iter``.

    Pages follow the dict's order, so a key deleted while they are read can
    shift a later one out of the listing; a small tree is listed at once.
    """
    try:
        return db.keys()
    except (RequestTooCostly, MessageTooLarge):
        pass
    keys, size = [], PAGE_KEYS
    while True:
        try:
            page = db._conn.read({"op": "iter", "path": [], "start": len(keys), "limit": size}, "strong")
        except (RequestTooCostly, MessageTooLarge):
            if size == 1:
                raise
            size = max(1, size // 4)
            continue
        keys.extend(page)
        if len(page) < size:
            return keys


@contextlib.contextmanager
def _output(path: str) -> Iterator[BinaryIO]:
    """The file to write (replaced whole at the end, so a failed dump leaves the old file), or stdout for ``-``."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    temporary = path + ".tmp"
    try:
        with open(temporary, "wb") as out:
            yield out
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def dump(uri: str, path: str, fmt: str | None = None, **options: Any) -> int:
    """Write every top-level key of the service at ``uri`` to ``path`` (``-``: stdout); return an exit code.

    >>> dump('tcp://127.0.0.1:5559', 'tree.jsonl')     # doctest: +SKIP
    0
    """
    try:
        fmt = choose_format(path, fmt)
        db, _ = client(uri, timeout=30, **options)
        keys = top_level_keys(db)
        code = _write_dump(path, fmt, keys, lambda part: read_values(db, part))
        db.close()
        return code
    except (Error, DumpFileError, OSError, TypeError, ValueError) as exc:
        print(f"pyzdb dump: {exc}", file=sys.stderr)
        return 1


def dump_tree(tree: dict, path: str, fmt: str | None = None) -> int:
    """Write a tree read offline from a store (``pyzdb dump --data/--store``) to ``path``; return an exit code."""
    try:
        fmt = choose_format(path, fmt)
        return _write_dump(path, fmt, list(tree), lambda part: ((key, tree[key]) for key in part))
    except (Error, DumpFileError, OSError, TypeError, ValueError) as exc:
        print(f"pyzdb dump: {exc}", file=sys.stderr)
        return 1


def _write_dump(path: str, fmt: str, keys: list, read: Any) -> int:
    """The header and one record per key that ``read(keys)`` still yields, into ``path``; the exit code 0."""
    progress = Progress("dump", len(keys), unit="keys")
    count = 0
    with _output(path) as out:
        out.write(encode_record(header(len(keys)), fmt))
        for start in range(0, len(keys), READ_BATCH):
            part = keys[start:start + READ_BATCH]
            chunk = [encode_record([key, value], fmt) for key, value in read(part)]
            out.write(b"".join(chunk))
            count += len(chunk)
            progress.add(len(part))
    progress.finish()
    print(f"pyzdb dump: {count} top-level keys written to {path} ({fmt})", file=sys.stderr)
    return 0


# --- load ----------------------------------------------------------------------------
def _groups(records: Iterator[tuple[Any, int]], path: str) -> Iterator[tuple[dict, int]]:
    """The records as maps of at most WRITE_KEYS records and about WRITE_BYTES bytes, with their record count.

    A key that comes twice keeps its last value, as setting the keys one by one would.
    """
    group: dict = {}
    size = taken = 0
    for number, (record, length) in enumerate(records, 1):
        if not (isinstance(record, list) and len(record) == 2):
            raise DumpFileError(f"record {number} of {path} is not a [key, value] pair")
        group[record[0]] = record[1]
        size += length
        taken += 1
        if size >= WRITE_BYTES or taken >= WRITE_KEYS:
            yield group, taken
            group, size, taken = {}, 0, 0
    if group:
        yield group, taken


def load(uri: str, path: str, fmt: str | None = None, **options: Any) -> int:
    """Set each top-level key of a dump file (``-``: stdin) on the service at ``uri``; return an exit code."""
    count = 0
    try:
        fmt = choose_format(path, fmt)
        db, _ = client(uri, timeout=30, **options)
        db.ping()       # an empty file still says at once when nothing is there
        with (open(path, "rb") if path != "-" else contextlib.nullcontext(sys.stdin.buffer)) as handle:
            records = read_records(handle, fmt)
            progress = Progress("load", check_header(next(records, (None, 0))[0], path), unit="keys")
            for group, taken in _groups(records, path):
                db.update(group)
                count += taken
                progress.add(taken)
            progress.finish()
        db.close()
    except (Error, DumpFileError, OSError) as exc:
        print(f"pyzdb load: {exc}", file=sys.stderr)
        return 1
    print(f"pyzdb load: {count} top-level keys set from {path} ({fmt})", file=sys.stderr)
    return 0
