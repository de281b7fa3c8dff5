"""``pyzdb dump`` / ``pyzdb load``: the tree to and from a file of JSON lines or msgpack, through a running service.

A dump is a header record ``{"format": "pyzdb-dump", "version": 1, "keys": N}``
followed by one ``[key, value]`` record per top-level key: one JSON document
per line (``.jsonl``) or msgpack objects one after another (``.msgpack``).
JSON has no bytes and only string keys, so bytes are written as
``{"$bytes": base64}``, a File reference as ``{"$file": path}``, and a dict with
a non-string key (or a key starting with ``$``) as ``{"$dict": [[k, v], …]}``.
Each top-level key is read atomically; the dump as a whole is not a snapshot
of one instant unless writers are paused (``db.lock()``).
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any, BinaryIO, Iterator

import msgpack

from pyzdb.client import client
from pyzdb.errors import Error, MessageTooLarge
from pyzdb.tree.files import File, ext_hook

FORMAT = "pyzdb-dump"
VERSION = 1
READ_BATCH = 500            # keys read per request
WRITE_BYTES = 4 << 20       # bytes of records written per request
_MISSING = "\x00pyzdb-dump-missing\x00"
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".msgpack": "msgpack", ".mpk": "msgpack"}


class DumpFileError(Exception):
    """The dump file cannot be read or written (reported, never raised out of dump/load)."""


# --- value encoding ------------------------------------------------------------------
def to_json(value: Any) -> Any:
    """A tree value as JSON-compatible data (bytes, File and non-string keys tagged).

    >>> to_json({1: b'hi'})
    {'$dict': [[1, {'$bytes': 'aGk='}]]}
    """
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, File):
        return {"$file": value.path}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: to_json(v) for k, v in value.items()}
        return {"$dict": [[k, to_json(v)] for k, v in value.items()]}
    return value


def from_json(value: Any) -> Any:
    """The inverse of ``to_json``.

    >>> from_json({'$dict': [[1, {'$bytes': 'aGk='}]]})
    {1: b'hi'}
    """
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == "$bytes":
                return base64.b64decode(inner)
            if tag == "$file":
                return File(inner)
            if tag == "$dict":
                return {k: from_json(v) for k, v in inner}
        return {k: from_json(v) for k, v in value.items()}
    return value


def _pack_default(value: Any) -> Any:
    if isinstance(value, File):
        return value.to_ext()
    raise TypeError(f"cannot write a {type(value).__name__} to a msgpack dump")


def choose_format(path: str, fmt: str | None) -> str:
    """The format named, or the one the file name's extension implies."""
    if fmt:
        return fmt
    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise DumpFileError(f"cannot tell the format of {path!r} from its name: use --format jsonl or msgpack")
    return EXTENSIONS[extension]


# --- progress ----------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, for runs of ``minimum`` items or more."""

    def __init__(self, label: str, total: int, minimum: int = 1000) -> None:
        self.label, self.total, self.done = label, total, 0
        self.shown = total >= minimum
        self.last = 0.0

    def add(self, count: int) -> None:
        """Count ``count`` more items done; redraw at most five times a second."""
        self.done += count
        now = time.monotonic()
        if self.shown and (now - self.last >= 0.2 or self.done >= self.total):
            self.last = now
            part = min(1.0, self.done / max(self.total, 1))
            bar = "#" * int(part * 30)
            sys.stderr.write(f"\r{self.label}: [{bar:<30}] {part:4.0%} {self.done}/{self.total} keys")
            sys.stderr.flush()

    def finish(self) -> None:
        """End the bar's line."""
        if self.shown:
            sys.stderr.write("\n")


# --- dump ----------------------------------------------------------------------------
def read_values(db: Any, keys: list) -> Iterator[tuple[Any, Any]]:
    """(key, value) of each key still present, read in batches (halved when a reply is too large)."""
    if not keys:
        return
    batch = db.batch()
    for key in keys:
        batch.root.get(key, _MISSING)
    try:
        values = batch.execute()
    except MessageTooLarge:
        if len(keys) == 1:
            raise MessageTooLarge(f"the value of top-level key {keys[0]!r} is over the message limit") from None
        middle = len(keys) // 2
        yield from read_values(db, keys[:middle])
        yield from read_values(db, keys[middle:])
        return
    for key, value in zip(keys, values):
        if not (isinstance(value, str) and value == _MISSING):
            yield key, value


def _write_records(out: BinaryIO, fmt: str, records: Iterator[list]) -> None:
    for record in records:
        if fmt == "jsonl":
            out.write(json.dumps(to_json(record), ensure_ascii=False).encode("utf-8") + b"\n")
        else:
            out.write(msgpack.packb(record, use_bin_type=True, default=_pack_default))


def dump(uri: str, path: str, fmt: str | None = None) -> int:
    """Write every top-level key of the service at ``uri`` to ``path``; return an exit code.

    >>> dump('tcp://127.0.0.1:5559', 'tree.jsonl')     # doctest: +SKIP
    0
    """
    try:
        fmt = choose_format(path, fmt)
        db, _ = client(uri, timeout=30)
        keys = db.keys()
        progress = Progress("dump", len(keys))
        temporary = path + ".tmp"
        count = 0
        with open(temporary, "wb") as out:
            _write_records(out, fmt, iter([{"format": FORMAT, "version": VERSION, "keys": len(keys)}]))
            for start in range(0, len(keys), READ_BATCH):
                part = keys[start:start + READ_BATCH]
                records = [[key, value] for key, value in read_values(db, part)]
                _write_records(out, fmt, iter(records))
                count += len(records)
                progress.add(len(part))
        os.replace(temporary, path)
        progress.finish()
    except (Error, DumpFileError, OSError, TypeError, ValueError) as exc:
        print(f"pyzdb dump: {exc}", file=sys.stderr)
        return 1
    print(f"pyzdb dump: {count} top-level keys written to {path} ({fmt})", file=sys.stderr)
    return 0


# --- load ----------------------------------------------------------------------------
def read_records(handle: BinaryIO, fmt: str) -> Iterator[tuple[Any, int]]:
    """Each record of a dump file with its size in bytes."""
    if fmt == "jsonl":
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield from_json(json.loads(line)), len(line)
                except ValueError as exc:
                    raise DumpFileError(f"line {number} is not JSON: {exc}") from None
        return
    unpacker = msgpack.Unpacker(handle, raw=False, strict_map_key=False, ext_hook=ext_hook,
                                max_buffer_size=1 << 30)
    offset = 0
    try:
        for record in unpacker:
            yield record, unpacker.tell() - offset
            offset = unpacker.tell()
    except (ValueError, msgpack.UnpackException) as exc:
        raise DumpFileError(f"the msgpack data after byte {offset} does not decode: {exc}") from None


def _check_header(header: Any, path: str) -> int:
    if not (isinstance(header, dict) and header.get("format") == FORMAT):
        raise DumpFileError(f"{path} is not a pyzdb dump (its first record is not a pyzdb-dump header)")
    if header.get("version") != VERSION:
        raise DumpFileError(f"{path} is a pyzdb dump of version {header.get('version')!r}; this pyzdb reads {VERSION}")
    return int(header.get("keys") or 0)


def _send(db: Any, records: list) -> None:
    batch = db.batch()
    for key, value in records:
        batch[key] = value
    batch.execute()


def load(uri: str, path: str, fmt: str | None = None) -> int:
    """Set each top-level key of a dump file on the service at ``uri``; return an exit code.

    Keys not in the file are left alone; each request sets a group of keys atomically.
    """
    try:
        fmt = choose_format(path, fmt)
        db, _ = client(uri, timeout=30)
        with open(path, "rb") as handle:
            records = read_records(handle, fmt)
            header = next(records, (None, 0))[0]
            progress = Progress("load", _check_header(header, path))
            pending, size, count = [], 0, 0
            for record, length in records:
                if not (isinstance(record, list) and len(record) == 2):
                    raise DumpFileError(f"record {count + 1} of {path} is not a [key, value] pair")
                pending.append(record)
                size += length
                if size >= WRITE_BYTES or len(pending) >= READ_BATCH:
                    _send(db, pending)
                    count += len(pending)
                    progress.add(len(pending))
                    pending, size = [], 0
            _send(db, pending)
            count += len(pending)
            progress.add(len(pending))
            progress.finish()
    except (Error, DumpFileError, OSError) as exc:
        print(f"pyzdb load: {exc}", file=sys.stderr)
        return 1
    print(f"pyzdb load: {count} top-level keys set from {path} ({fmt})", file=sys.stderr)
    return 0
