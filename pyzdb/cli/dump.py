"""``pyzdb dump`` / ``pyzdb load``: the tree to and from a dump file (``dumpfile``), through a running service.

``dump`` reads the root's ``[key, value]`` pairs in pages by cursor
(``iter`` with ``items``, tree/cursors.py; a page is read on a thread while
the one before it is encoded). Every key present for the whole dump is
dumped exactly once, with its value as its page found it; a key deleted
meanwhile at most once, one added meanwhile not at all. The dump as a whole
is not a snapshot of one instant unless writers are paused (``db.lock()``).
``load`` sets top-level keys with one ``update`` of the root per page of
records (decoded on a thread while the page before it is sent): each page
is applied atomically as one write (one log record, one undo step) and
exactly once under retries; keys not in the file are left alone. ``-`` as
the file is standard output / standard input (give ``--format``). A key
whose deadline has passed is not dumped; the others' deadlines go with them
and ``load`` sets them again in the same write (cli/dump_expiry.py).
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import os
import sys
import time
from typing import Any, BinaryIO, Iterator

from pyzdb.cli.dump_expiry import expire_queries, is_deadline_list, with_deadlines, write_batches
from pyzdb.cli.dumpfile import DumpFileError, choose_format, encode_page, encode_record, header, read_dump
from pyzdb.cli.prefetch import prefetched
from pyzdb.cli.progress import Progress
from pyzdb.client import client
from pyzdb.client.pages import CONSISTENCY, PageWalk
from pyzdb.errors import Error, MessageTooLarge, ProtocolError, QueryError, RequestTooCostly
from pyzdb.tree.expiry import Expiries, deadlines_op
from pyzdb.tree.values import to_storable

READ_PAGE = 20_000          # pairs read per request (a quarter as many while a page is over a budget)
WRITE_KEYS = 20_000         # records set per request
WRITE_BYTES = 8 << 20       # bytes of records set per request


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic GC paused: records are plain data with no cycles, so its passes over them would find nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- dump ----------------------------------------------------------------------------
def read_pages_of_items(db: Any) -> Iterator[list]:
    """The root's ``[key, value]`` pairs, a page per request by cursor (pages shrink while one is over a budget)."""
    walk, count = PageWalk([], READ_PAGE, items=True), 0
    while not walk.done:
        try:
            page = walk.take(db._conn.read(walk.query(), CONSISTENCY))
        except (RequestTooCostly, MessageTooLarge):
            if not walk.shrink(4):
                if walk.cursor is None:
                    raise       # the first page: its snapshot of the root alone is over --max-work (as it says)
                raise MessageTooLarge(f"reading the top-level key after the first {count:,} alone is over the "
                                      "message or work limit (--max-message, --max-work)") from None
            continue
        if page:
            yield _page_deadlines(db, page)
        count += len(page)
        walk.size = min(READ_PAGE, walk.size * 2)


def _page_deadlines(db: Any, page: list) -> list:
    """The dump records of a page: its keys' deadlines read from the service (none from a pyzdb without them)."""
    if getattr(db, "_no_deadlines", False):
        return page
    query = {"op": "deadlines", "path": [], "keys": [pair[0] for pair in page]}
    try:
        found = db._conn.read(query, CONSISTENCY)
    except QueryError:      # a server from before the deadlines op: the dump has none, as before
        print("pyzdb dump: the service does not tell expiry deadlines (an older pyzdb): keys are dumped "
              "without them", file=sys.stderr)
        db._no_deadlines = True
        return page
    return with_deadlines(page, found["deadlines"], found["now"])


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
        total = db._conn.read({"op": "len", "path": []}, "strong")
        code = _write_dump(path, fmt, total, prefetched(read_pages_of_items(db)))
        db.close()
        return code
    except (Error, DumpFileError, OSError, TypeError, ValueError) as exc:
        print(f"pyzdb dump: {exc}", file=sys.stderr)
        return 1


def dump_tree(tree: dict, path: str, fmt: str | None = None, expiries: Expiries | None = None) -> int:
    """Write a tree read offline from a store (``pyzdb dump --data/--store``) to ``path``; return an exit code."""
    try:
        fmt = choose_format(path, fmt)
        items = iter(tree.items())
        pages = iter(lambda: list(map(list, itertools.islice(items, READ_PAGE))), [])
        if expiries is not None and len(expiries):
            pages = (with_deadlines(page, **deadlines_op(expiries, {"path": [], "keys": [pair[0] for pair in page]}))
                     for page in pages)
        return _write_dump(path, fmt, len(tree), pages)
    except (Error, DumpFileError, OSError, TypeError, ValueError) as exc:
        print(f"pyzdb dump: {exc}", file=sys.stderr)
        return 1


def _write_dump(path: str, fmt: str, total: int, pages: Iterator[list]) -> int:
    """The header (announcing ``total`` keys) and one record per pair of ``pages``, into ``path``; exit code 0."""
    progress = Progress("dump", total, unit="keys")
    count = 0
    with _no_cyclic_gc(), _output(path) as out:
        out.write(encode_record(header(total), fmt))
        for page in pages:
            out.write(encode_page(page, fmt))
            count += len(page)
            progress.add(len(page))
    progress.finish()
    print(f"pyzdb dump: {count} top-level keys written to {path} ({fmt})", file=sys.stderr)
    return 0


# --- load ----------------------------------------------------------------------------
def _groups(pages: Iterator[tuple[list, bool]], path: str) -> Iterator[tuple[dict, int, list]]:
    """Each page of records as the map it sets, its record count and the ``expire`` queries of its deadlines
    (a repeated key keeps its last value and deadlines; a key due already is not set)."""
    before = 0
    for records, may_hold_files in pages:
        try:
            if all(type(record) is list and len(record) == 2 for record in records):
                group = dict(records)
                yield (to_storable(group) if may_hold_files else group), len(records), []
                before += len(records)
                continue
            if all(_is_record(record) for record in records):
                kept, queries = expire_queries(records, time.time())
                group = {record[0]: record[1] for record in kept}
                yield (to_storable(group) if may_hold_files else group), len(records), queries
                before += len(records)
                continue
        except TypeError:       # an unhashable key
            pass
        number = next(i for i, r in enumerate(records, 1) if not (_is_record(r) and not isinstance(r[0], (list, dict))))
        raise DumpFileError(f"record {before + number} of {path} is not a [key, value] pair of a str or int key "
                            f"(or [key, value, deadlines])")


def _is_record(record: Any) -> bool:
    """A ``[key, value]`` or ``[key, value, deadlines]`` record (its key's type is checked by the dict it goes in)."""
    return type(record) is list and (len(record) == 2 or len(record) == 3 and is_deadline_list(record[2]))


def load(uri: str, path: str, fmt: str | None = None, **options: Any) -> int:
    """Set each top-level key of a dump file (``-``: stdin) on the service at ``uri``; return an exit code."""
    count = 0
    try:
        fmt = choose_format(path, fmt)
        db, _ = client(uri, timeout=30, **options)
        db.ping()       # an empty file still says at once when nothing is there
        with _no_cyclic_gc(), (open(path, "rb") if path != "-" else contextlib.nullcontext(sys.stdin.buffer)) as handle:
            total, pages = read_dump(handle, fmt, path, WRITE_KEYS, WRITE_BYTES)
            progress = Progress("load", total, unit="keys")
            for group, taken, deadlines in prefetched(_groups(pages, path)):
                try:
                    for query in write_batches(group, deadlines):
                        db._conn.write(query)
                except ProtocolError:   # the page does not encode: name the value (an int over 64 bits)
                    to_storable(group)
                    raise
                count += taken
                progress.add(taken)
            progress.finish()
        db.close()
    except (Error, DumpFileError, OSError) as exc:
        print(f"pyzdb load: {exc}", file=sys.stderr)
        return 1
    print(f"pyzdb load: {count} top-level keys set from {path} ({fmt})", file=sys.stderr)
    return 0
